"""The scheme registry: a plug-in scheme runs end to end through the public API.

The plug-in is an insecure *identity* scheme: its "ciphertexts" are the int64
slot vectors themselves, each with a random nonce (so that, as with a real
scheme, two encryptions of one vector differ and the aggregator's replay check
tells them apart). It exercises everything a scheme provides to the rest
of secagg (wire round trips, validation, homomorphic sums, the range check after
decryption) and nothing else, so what the test checks is the registry and the
code around it: contexts, payloads, the aggregator and decoding.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
from secagg import schemes, wire
from secagg.codec import FixedPointCodec
from secagg.errors import SUM_OUT_OF_RANGE, CiphertextError, ConfigError, FormatError
from secagg.schemes import Scheme
from secagg.schemes.base import PublicBackend, SecretBackend
from secagg.wire import Kind
from tests.helpers import SCHEMES

MAX_CLIENTS = 5
NONCE = 16  # bytes


class IdentityPublic(PublicBackend):
    """Slots in the clear: one (int64 vector, nonce) per update. Insecure by design (tests only)."""

    scheme = "identity"
    insecure = True

    def __init__(self, codec: FixedPointCodec, note: str = "") -> None:
        self.codec = codec
        self.note = note

    # -- wire ------------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        return {"note": self.note}

    @classmethod
    def from_material(cls, body: wire.Body, codec: FixedPointCodec) -> IdentityPublic:
        note = body.raw().get("note")
        if not isinstance(note, str) or len(note) > 256:
            raise FormatError("identity context field 'note' must be a short string.")
        return cls(codec, note)

    def fingerprint_material(self) -> bytes:
        return b"identity:" + self.note.encode()

    def describe(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "note": self.note}

    # -- "encryption" ------------------------------------------------------------
    def num_ciphertexts(self, n_slots: int) -> int:
        return 1

    def raw_encrypt(self, slots: np.ndarray, *, term: bool = False, workers: int = 1,
                    progress: bool = False) -> list:
        # a copy: the caller may reuse its buffer
        return [(np.array(slots, dtype=np.int64), os.urandom(NONCE))]

    def ciphertexts_to_wire(self, cts: list) -> list[bytes]:
        return [nonce + values.astype("<i8").tobytes() for values, nonce in cts]

    def precheck(self, obj: Any, n_slots: int) -> None:
        if not (isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], bytes)
                and len(obj[0]) == NONCE + 8 * n_slots):
            raise CiphertextError(f"expected one identity vector of {n_slots} int64 slots.")

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list:
        self.precheck(obj, n_slots)
        values = np.frombuffer(obj[0], dtype="<i8", offset=NONCE).astype(np.int64)
        # a slot beyond a full sum's range is no secagg vector (and keeps sums far from int64)
        if np.any(np.abs(values) > self.codec.sum_bound):
            raise CiphertextError("an identity vector holds a slot outside the codec's range.")
        return [(values, obj[0][:NONCE])]

    def raw_add(self, a: list, b: list) -> list:
        return [(x + y, bytes(i ^ j for i, j in zip(nx, ny))) for (x, nx), (y, ny) in zip(a, b)]


class IdentitySecret(SecretBackend):
    """Decryption returns the slots, after the range check every real scheme does."""

    def __init__(self, public: IdentityPublic) -> None:
        self.public = public

    def material(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_material(cls, body: wire.Body, public: PublicBackend) -> IdentitySecret:
        if not isinstance(public, IdentityPublic):
            raise FormatError("an identity secret needs an identity public half.")
        return cls(public)

    def raw_decrypt(self, cts: list, n_slots: int, count: int, terms: int, *, workers: int = 1,
                    progress: bool = False) -> np.ndarray:
        values = np.concatenate([v for v, _ in cts])[:n_slots]
        # as secagg/schemes/lattice/seal.py: say what failed, never what was found
        if np.any(np.abs(values) > self.public.codec.range_of(count, terms)):
            raise secagg.SumOverflowError(SUM_OUT_OF_RANGE)
        return values


def _generate(codec: FixedPointCodec, options: dict[str, Any]) -> IdentitySecret:
    note = options.get("note", "")
    if not isinstance(note, str):
        raise ConfigError(f"the identity scheme's note must be a string. Found {note!r}.")
    return IdentitySecret(IdentityPublic(codec, note))


IDENTITY = Scheme(name="identity", options=frozenset({"note"}), generate=_generate,
                  load=lambda: (IdentityPublic, IdentitySecret), summary="tests only")


@pytest.fixture
def identity():
    """The identity scheme, registered for one test and unregistered after it."""
    assert "identity" not in schemes.available()
    schemes.register(IDENTITY)
    yield IDENTITY
    schemes.unregister("identity")


def _batches():
    """2..MAX_CLIENTS updates of one shape, each with a weight."""
    shape = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8)
    return shape.flatmap(lambda s: st.lists(
        st.tuples(hnp.arrays(np.float64, s, elements=st.floats(-2, 2, allow_nan=False)),
                  st.integers(1, 3)),
        min_size=2, max_size=MAX_CLIENTS))


@settings(max_examples=50)
@given(batch=_batches())
def test_a_plug_in_scheme_runs_end_to_end(identity, batch):
    ctx = secagg.generate("identity", max_clients=MAX_CLIENTS, max_weight=3, frac_bits=12,
                          note="tests only")
    assert ctx.scheme == "identity" and ctx.describe()["note"] == "tests only"
    blob = ctx.public.to_bytes()
    with pytest.raises(secagg.InsecureContextError):
        secagg.PublicContext.from_bytes(blob)
    pub = secagg.PublicContext.from_bytes(blob, allow_insecure=True)
    assert pub.fingerprint == ctx.fingerprint and pub.backend.note == "tests only"

    agg = secagg.Aggregator(pub)
    for x, w in batch:
        agg.add(pub.encrypt({"x": x}, weight=w).to_bytes())
    total = secagg.EncryptedUpdate.from_bytes(agg.result().to_bytes(), pub)

    codec = pub.codec
    sums = sum(w * codec.encode(x.ravel()) for x, w in batch)  # exact integers
    raw = ctx.decrypt_raw(total)
    assert np.array_equal(raw.values, sums)
    assert (raw.count, raw.weight_sum) == (len(batch), sum(w for _, w in batch))
    mean = ctx.decrypt(total, reduce="mean")["x"]
    # the exact rational mean, rounded once to float64
    scale = 2**codec.frac_bits
    exact = [float(Fraction(int(s), scale * len(batch))) for s in sums]
    assert mean.shape == batch[0][0].shape
    assert mean.ravel().tolist() == exact

    again = secagg.SecretContext.from_bytes(ctx.to_bytes(), allow_insecure=True)
    assert np.array_equal(again.decrypt(total, reduce="mean")["x"], mean)


def test_the_range_check_refuses_a_crafted_sum(identity):
    ctx = secagg.generate("identity", max_clients=MAX_CLIENTS, note="")
    pub = ctx.public
    spec, _ = secagg.flatten(np.zeros(3))
    slots = np.array([3 * pub.codec.contribution_bound, 0, 0, 1, 1], dtype=np.int64)
    crafted = secagg.EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.UPDATE, 1, spec, None,
                                     pub.backend.raw_encrypt(slots), pub.backend)
    agg = secagg.Aggregator(pub)
    agg.add(crafted.to_bytes())
    agg.add(pub.encrypt(np.zeros(3)))
    with pytest.raises(secagg.SumOverflowError) as info:
        ctx.decrypt(agg.result())
    assert str(info.value) == SUM_OUT_OF_RANGE


def test_available_and_get_follow_registration(identity):
    assert "identity" in schemes.available()
    assert schemes.get("identity") is identity
    schemes.unregister("identity")
    assert "identity" not in schemes.available()
    with pytest.raises(ConfigError, match="identity"):
        schemes.get("identity")


def test_unknown_option_is_refused_naming_the_allowed_ones(identity):
    with pytest.raises(ConfigError, match="note") as info:
        secagg.generate("identity", colour="red")
    assert "colour" in str(info.value)


def test_ckks_refuses_paillier_options_naming_its_own():
    with pytest.raises(ConfigError, match="security") as info:
        secagg.generate("ckks", key_bits=2048)
    assert "key_bits" in str(info.value)


def test_a_second_scheme_under_the_same_name_is_refused(identity):
    schemes.register(identity)  # the same object again: a no-op
    other = Scheme(name="identity", options=frozenset(), generate=_generate,
                   load=lambda: (IdentityPublic, IdentitySecret))
    with pytest.raises(ConfigError, match="already registered"):
        schemes.register(other)
    assert schemes.get("identity") is identity
    paillier = schemes.get("paillier")
    try:
        with pytest.raises(ConfigError, match="already registered"):
            schemes.register(Scheme(name="paillier", options=frozenset(), generate=_generate,
                                    load=lambda: (IdentityPublic, IdentitySecret)))
    finally:
        schemes.register(paillier, replace=True)  # whatever happened, the built-in stays
    assert schemes.get("paillier") is paillier


@pytest.mark.parametrize("name", ["", "two words", "1st", None])
def test_bad_scheme_names_are_refused(name):
    with pytest.raises(ConfigError):
        schemes.register(Scheme(name=name, options=frozenset(), generate=_generate,
                                load=lambda: (IdentityPublic, IdentitySecret)))


def test_a_payload_naming_an_unregistered_scheme_is_a_format_error(identity):
    ctx = secagg.generate("identity", max_clients=MAX_CLIENTS, note="gone soon")
    public, secret = ctx.public.to_bytes(), ctx.to_bytes()
    schemes.unregister("identity")
    with pytest.raises(FormatError, match="identity"):
        secagg.PublicContext.from_bytes(public, allow_insecure=True)
    with pytest.raises(FormatError, match="identity"):
        secagg.SecretContext.from_bytes(secret, allow_insecure=True)
    # and a built-in payload relabelled with a name nobody registered
    ckks = secagg.generate("ckks", max_clients=MAX_CLIENTS).public.to_bytes()
    _, body = wire.open_payload(ckks)
    relabelled = wire.seal(Kind.PUBLIC_CONTEXT, {**body.raw(), "scheme": "nonesuch"})
    with pytest.raises(FormatError, match="nonesuch"):
        secagg.PublicContext.from_bytes(relabelled)


def test_the_registry_is_left_as_it_was_found():
    # last in this file: no throwaway scheme stays behind (the fixture also checks on setup)
    assert "identity" not in schemes.available()
    assert set(SCHEMES) >= {"paillier", "ckks", "bfv"} and "identity" not in SCHEMES
    assert schemes.available() == sorted(SCHEMES)
