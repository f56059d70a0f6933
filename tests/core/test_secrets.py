"""Secret hygiene: owner-only files, passphrase encryption, no secret in public bytes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import wire
from secagg.keystore import WrongPassphraseError
from tests.helpers import SCHEMES, make_context

CHEAP = 2**10  # a cheap scrypt work factor for tests


@pytest.fixture(scope="module", params=SCHEMES)
def sctx(request):
    return make_context(request.param)


def test_saved_secret_is_owner_only_and_reloads(sctx, tmp_path):
    plain, sealed = tmp_path / "key", tmp_path / "key.sealed"
    sctx.save(plain)
    sctx.save(sealed, passphrase="correct horse", scrypt_n=CHEAP)
    for path in (plain, sealed):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secagg.SecretContext.load(plain, allow_insecure=True).fingerprint == sctx.fingerprint
    again = secagg.SecretContext.load(sealed, passphrase="correct horse", allow_insecure=True)
    assert again.fingerprint == sctx.fingerprint
    with pytest.raises(WrongPassphraseError):
        secagg.SecretContext.load(sealed, passphrase="wrong", allow_insecure=True)
    with pytest.raises(secagg.FormatError, match="passphrase"):
        secagg.SecretContext.load(sealed, allow_insecure=True)
    with pytest.raises(secagg.ConfigError, match="exists"):
        sctx.save(plain)
    assert sctx.to_bytes() not in sealed.read_bytes()


def _secret_key_bytes(sctx) -> list[bytes]:
    """The secret key itself, serialized: the factors of n, or SEAL's secret key polynomial."""
    if sctx.scheme == "paillier":
        _, body = wire.open_payload(sctx.to_bytes())
        secret = body.raw()["secret"]
        return [secret["p"].lstrip(b"\0"), secret["q"].lstrip(b"\0")]
    from secagg.schemes.lattice.seal import FILES

    return [FILES.save(sctx.secret_backend.context.secret_key().data)]


def test_public_bytes_hold_no_secret_material(sctx):
    public = sctx.public.to_bytes()
    for key in _secret_key_bytes(sctx):
        assert len(key) >= 32
        # no 16-byte window of the serialized secret key occurs in the public bytes
        for i in range(0, len(key) - 16, max(1, len(key) // 64)):
            assert key[i : i + 16] not in public
    if sctx.scheme != "paillier":
        assert not secagg.PublicContext.from_bytes(public, allow_insecure=True).backend.context.is_private()


@settings(max_examples=30)
@given(st.binary(max_size=300), st.integers(0, 400), st.integers(1, 255))
def test_hostile_sealed_secrets_raise_secagg_errors(data, pos, flip):
    ctx = make_context("paillier")
    sealed = ctx.to_sealed_bytes("pw", scrypt_n=CHEAP)
    bad = bytearray(sealed)
    bad[pos % len(bad)] ^= flip
    for blob in (bytes(bad), data, sealed[: pos % len(sealed)]):
        with pytest.raises(secagg.SecAggError):
            secagg.SecretContext.from_bytes(blob, passphrase="pw", allow_insecure=True)


def test_absurd_scrypt_cost_is_refused_before_deriving():
    ctx = make_context("paillier")
    kind, body = wire.open_payload(ctx.to_sealed_bytes("pw", scrypt_n=CHEAP))
    raw = dict(body.raw())
    raw["n"] = 2**21
    with pytest.raises(secagg.FormatError, match="scrypt"):
        secagg.SecretContext.from_bytes(wire.seal(kind, raw), passphrase="pw", allow_insecure=True)


def test_sealed_secret_still_decrypts(sctx):
    again = secagg.SecretContext.from_bytes(sctx.to_sealed_bytes("pw", scrypt_n=CHEAP),
                                            passphrase="pw", allow_insecure=True)
    agg = secagg.Aggregator(sctx.public)
    for v in (0.25, 0.5):
        agg.add(sctx.public.encrypt(np.array([v])))
    assert again.decrypt(agg.result(), reduce="sum")[0] == 0.75
