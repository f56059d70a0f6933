"""Shares, verification keys, partials and signed updates on the wire and at rest.

Hostile bytes raise SecAggError subclasses only; a share's bytes hold its own
share and public material, never the factorization, ``d`` or another share.
"""

from __future__ import annotations

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import errors, threshold, wire
from secagg.keystore import WrongPassphraseError
from secagg.threshold.signed import SignedUpdate
from secagg.wire import Kind
from tests.threshold.util import aggregate, assert_trees_equal, deal_small, tree

SCRYPT_N = 2**10  # fast sealing in tests


@pytest.fixture(scope="module")
def dealt():
    client = Ed25519PrivateKey.generate()
    keys, single = deal_small(3, 2, clients={"c": threshold.public_key_bytes(client)},
                              mode="unverified")
    return keys, single, client


@pytest.fixture(scope="module")
def total(dealt):
    return aggregate(dealt[0].public, 2)


@pytest.fixture(scope="module")
def samples(dealt, total):
    keys, _, client = dealt
    pub = keys.public
    return {
        "share": keys.shares[0].to_bytes(),
        "verification": keys.verification.to_bytes(),
        "partial": keys.shares[1].partial_decrypt(total),
        "partial-each": keys.shares[1].partial_decrypt(total, proofs="each"),
        "signed": threshold.sign_update(pub.encrypt(tree(0), round_id=1), client, 1),
    }


def reseal(data: bytes, **changes) -> bytes:
    kind, body = wire.open_payload(data)
    raw = dict(body.raw())
    raw.update(changes)
    return wire.seal(kind, raw)


def load(name: str, data: bytes, keys, total):
    """Run the loader ``name``'s payload goes through."""
    if name == "share":
        return threshold.ShareHolder.from_bytes(data, allow_insecure=True)
    if name == "verification":
        return threshold.VerificationKeys.from_bytes(data, keys.public)
    if name.startswith("partial"):
        return threshold.combine(keys.public, total, {2: data, 3: keys.shares[2].partial_decrypt(
            total)}, report=True)
    env = SignedUpdate.from_bytes(data)
    env.verify()
    return env


def test_new_kinds_are_distinct_and_peekable(samples):
    assert len({k.value for k in Kind}) == len(Kind)
    assert wire.peek_kind(samples["share"]) == Kind.THRESHOLD_SHARE
    assert wire.peek_kind(samples["verification"]) == Kind.THRESHOLD_PUBLIC
    assert wire.peek_kind(samples["partial"]) == Kind.PARTIAL_DECRYPTION
    assert wire.peek_kind(samples["signed"]) == Kind.SIGNED_UPDATE


@settings(max_examples=60)
@given(name=st.sampled_from(["share", "verification", "partial", "partial-each", "signed"]),
       data=st.data())
def test_hostile_bytes_raise_secagg_errors_only(dealt, total, samples, name, data):
    keys = dealt[0]
    good = samples[name]
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "kind"]))
    if how == "flip":
        pos = data.draw(st.integers(0, len(good) - 1))
        bad = good[:pos] + bytes([good[pos] ^ data.draw(st.integers(1, 255))]) + good[pos + 1:]
    elif how == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    elif how == "extend":
        bad = good + b"\x00"
    else:
        bad = good[:7] + bytes([data.draw(st.integers(0, 255))]) + good[8:]
    try:
        out = load(name, bad, keys, total)
    except secagg.SecAggError:
        return
    # a flip that survives the digest cannot happen; a partial refused is reported, not raised
    assert name.startswith("partial") and len(out.rejected) == 1


FIELD_CHANGES = {
    "share": [dict(index=2), dict(index=9), dict(share=b"\x01" * 5), dict(mode="open"),
              dict(clients=[["c", b"x" * 31]]), dict(clients=[["c", b"x"], ["c", b"y"]]),
              dict(require_all=1), dict(public=b"junk"), dict(verification=b"junk")],
    "verification": [dict(parties=1), dict(threshold=4), dict(keys=[]), dict(v=b"\x00" * 3),
                     dict(fingerprint=b"\x00" * 16), dict(parties=100)],
    "partial": [dict(holder=0), dict(holder=7), dict(keyset=b"\x00" * 32),
                dict(aggregate=b"\x00" * 32), dict(partials=b"\x00"), dict(count=5),
                dict(proof={"mode": "each", "e": b"", "z": b""}), dict(proof="x"),
                dict(round=[1]), dict(fingerprint=b"\x01" * 16)],
    "signed": [dict(signer=b"\x00" * 31), dict(round=None), dict(round=2), dict(payload=b"x"),
               dict(signature=b"\x00" * 64), dict(round=[1])],
}


@pytest.mark.parametrize("name, change", [(n, c) for n, cs in FIELD_CHANGES.items() for c in cs],
                         ids=lambda x: str(x)[:30])
def test_crafted_fields_are_refused(dealt, total, samples, name, change):
    keys = dealt[0]
    bad = reseal(samples[name], **change)
    try:
        out = load(name, bad, keys, total)
    except secagg.SecAggError:
        return
    assert name == "partial" and [r.holder for r in out.rejected] in ([2], [None])


def test_zero_and_non_unit_partial_values_are_refused(dealt, total, samples):
    keys = dealt[0]
    vk = keys.verification
    raw = wire.open_payload(samples["partial"])[1].raw()["partials"]
    w = vk.width
    for value in (0, int(vk.n), int(vk.nsquare)):
        bad = reseal(samples["partial"], partials=value.to_bytes(w, "big") + raw[w:])
        with pytest.raises(errors.NotEnoughPartialsError, match="holder 2") as info:
            threshold.combine(keys.public, total, [bad])
        assert "outside [1, n^2)" in str(info.value) or "not a unit" in str(info.value)


def test_sealed_save_and_load_round_trip(dealt, total, tmp_path):
    keys, single, _ = dealt
    path = tmp_path / "holder1.share"
    keys.shares[0].save(path, passphrase="correct horse", scrypt_n=SCRYPT_N)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert wire.peek_kind(path.read_bytes()) == Kind.SEALED_SECRET
    with pytest.raises(secagg.ConfigError, match="exists"):
        keys.shares[0].save(path, passphrase="x", scrypt_n=SCRYPT_N)
    with pytest.raises(WrongPassphraseError):
        threshold.ShareHolder.load(path, passphrase="wrong", allow_insecure=True)
    with pytest.raises(secagg.FormatError, match="passphrase"):
        threshold.ShareHolder.load(path, allow_insecure=True)
    with pytest.raises(secagg.InsecureContextError):
        threshold.ShareHolder.load(path, passphrase="correct horse")
    holder = threshold.ShareHolder.load(path, passphrase="correct horse", allow_insecure=True)
    assert (holder.index, holder.mode, holder.clients) == (1, "unverified", keys.shares[0].clients)
    assert holder.public.fingerprint == keys.public.fingerprint
    parts = [holder.partial_decrypt(total), keys.shares[2].partial_decrypt(total)]
    assert_trees_equal(threshold.combine(keys.public, total, parts), single.decrypt(total))
    plain = tmp_path / "plain.share"
    keys.shares[1].save(plain)
    assert threshold.ShareHolder.load(plain, allow_insecure=True).index == 2


def _windows(value: int, width: int, size: int = 12) -> list[bytes]:
    raw = int(value).to_bytes(width, "big").lstrip(b"\x00")
    return [raw[i : i + size] for i in range(0, max(1, len(raw) - size + 1), size)]


def test_a_share_holds_no_factor_no_d_and_no_other_share(dealt):
    keys, single, _ = dealt
    secret = single.secret_backend
    p, q = int(secret._p), int(secret._q)
    n = p * q
    m = ((p - 1) // 2) * ((q - 1) // 2)
    d = m * int(gmpy2.invert(m, n)) % (n * m)
    width = keys.verification.width
    for holder in keys.shares:
        blob = holder.to_bytes()
        others = [int(h._share) for h in keys.shares if h is not holder]
        for value in (p, q, m, d, *others):
            for window in _windows(value, width):
                assert window not in blob
        for window in _windows(int(holder._share), width):
            assert window in blob  # the test would see a share if there were one
    for public in (keys.public.to_bytes(), keys.verification.to_bytes()):
        for value in (p, q, m, d, *(int(h._share) for h in keys.shares)):
            assert not any(w in public for w in _windows(value, width))
    assert "share=" not in repr(keys.shares[0]) and str(int(keys.shares[0]._share))[:20] not in repr(
        keys.shares[0])


def test_verification_keys_round_trip_and_bind_the_context(dealt):
    keys = dealt[0]
    vk = threshold.VerificationKeys.from_bytes(keys.verification.to_bytes(), keys.public)
    assert vk.keyset == keys.verification.keyset and vk.keys == keys.verification.keys
    other, _ = deal_small(3, 2)
    with pytest.raises(secagg.ContextMismatchError):
        threshold.VerificationKeys.from_bytes(keys.verification.to_bytes(), other.public)
    with pytest.raises(secagg.ContextMismatchError):
        threshold.ShareHolder.from_bytes(
            reseal(keys.shares[0].to_bytes(), verification=other.verification.to_bytes()),
            allow_insecure=True)
    with pytest.raises(secagg.FormatError):
        threshold.ShareHolder.from_bytes(b"SECAGG", allow_insecure=True)
    with pytest.raises(secagg.FormatError):
        threshold.ShareHolder.from_bytes(keys.public.to_bytes(), allow_insecure=True)
