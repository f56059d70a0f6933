"""Wire format: lossless round trips, and every malformed payload refused by name
with the aggregator's state left exactly as it was."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import wire
from tests.helpers import CODEC, make_context, snapshot


def reseal(data: bytes, mutate) -> bytes:
    """Decode a payload's body, let ``mutate`` change it, and seal it with a valid digest."""
    kind = wire.peek_kind(data)
    (length,) = __import__("struct").unpack_from(">Q", data, 8)
    body = msgpack.unpackb(data[16 : 16 + length], raw=False)
    mutate(body)
    return wire.seal(kind, body)


@pytest.fixture
def primed(ctx, pub):
    """An aggregator holding one update, and a second valid update's bytes."""
    agg = secagg.Aggregator(pub)
    agg.add(pub.encrypt({"w": np.full((3, 2), 0.5), "b": np.zeros(2)}).to_bytes())
    data = pub.encrypt({"w": np.full((3, 2), -0.25), "b": np.ones(2)}).to_bytes()
    return agg, data


def assert_refused(agg, data, error=secagg.SecAggError):
    before = snapshot(agg)
    with pytest.raises(error):
        agg.add(data)
    assert snapshot(agg) == before


# -- round trips -----------------------------------------------------------------
def test_context_round_trips(ctx):
    pub_bytes = ctx.public.to_bytes()
    pub = secagg.PublicContext.from_bytes(pub_bytes, allow_insecure=True)
    assert pub.fingerprint == ctx.fingerprint and pub.to_bytes() == pub_bytes
    again = secagg.SecretContext.from_bytes(ctx.to_bytes(), allow_insecure=True)
    assert again.fingerprint == ctx.fingerprint
    assert again.public.describe() == ctx.public.describe()
    with pytest.raises(secagg.FormatError, match="expected a public_context"):
        secagg.PublicContext.from_bytes(ctx.to_bytes(), allow_insecure=True)
    with pytest.raises(secagg.FormatError, match="expected a secret_context"):
        secagg.SecretContext.from_bytes(pub_bytes, allow_insecure=True)


def test_secret_context_from_bytes_decrypts(ctx, pub):
    again = secagg.SecretContext.from_bytes(ctx.to_bytes(), allow_insecure=True)
    agg = secagg.Aggregator(pub)
    for v in (0.5, 0.25):
        agg.add(pub.encrypt(np.array([v])))
    assert again.decrypt(agg.result().to_bytes(), reduce="sum")[0] == 0.75


def test_public_bytes_hold_no_secret(contexts):
    paillier = contexts["paillier"]
    blob = paillier.public.to_bytes()
    sk = paillier.secret_backend.private_key
    width = (sk.public_key.n.bit_length() + 7) // 8
    for factor in (sk.p, sk.q):
        assert int(factor).to_bytes(width, "big").lstrip(b"\0")[:24] not in blob
    ckks_pub = secagg.PublicContext.from_bytes(contexts["ckks"].public.to_bytes(), allow_insecure=True)
    assert not ckks_pub.backend.context.is_private()


@given(st.data())
@settings(max_examples=10)
def test_update_bytes_round_trip(pub, data):
    x = data.draw(st.lists(st.floats(-1, 1), min_size=1, max_size=30))
    round_id = data.draw(st.one_of(st.none(), st.integers(0, 9), st.text(max_size=5)))
    upd = pub.encrypt({"x": np.array(x)}, round_id=round_id)
    blob = upd.to_bytes()
    again = secagg.EncryptedUpdate.from_bytes(blob, pub)
    assert again.to_bytes() == blob
    assert again.spec == upd.spec and again.round_id == upd.round_id and again.count == 1


# -- hostile bytes ---------------------------------------------------------------
@given(st.data())
def test_any_truncation_is_refused(primed, data):
    agg, blob = primed
    cut = data.draw(st.integers(0, len(blob) - 1))
    assert_refused(agg, blob[:cut], secagg.FormatError)


@given(st.data())
def test_any_corruption_is_refused(primed, data):
    agg, blob = primed
    # draw the region first so that header, body, ciphertexts and digest are all hit
    region = data.draw(st.sampled_from(["header", "body", "tail", "digest"]))
    lo, hi = {"header": (0, 16), "body": (16, 200), "tail": (200, len(blob) - 16),
              "digest": (len(blob) - 16, len(blob))}[region]
    pos = data.draw(st.integers(lo, hi - 1))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(blob)
    bad[pos] ^= flip
    assert_refused(agg, bytes(bad), secagg.FormatError)


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_unsupported_version_is_named(primed, version):
    """Version 1 is read for stored material, but an update in it is refused: one envelope each."""
    agg, blob = primed
    head = bytearray(blob[:-16])
    head[6] = version
    digest = hashlib.blake2b(bytes(head), digest_size=16).digest()  # a valid version-1 digest
    assert_refused(agg, bytes(head) + digest, secagg.UnsupportedVersionError)


def test_version_1_material_is_still_read():
    """Contexts and kits saved by an older secagg: the same body in a version-1 envelope loads."""
    ctx = secagg.generate("paillier", key_bits=512, insecure=True)
    data = ctx.public.to_bytes()
    head = bytearray(data[:-16])
    assert head[6] == wire.VERSION == 2
    head[6] = 1
    old = bytes(head) + hashlib.blake2b(bytes(head), digest_size=16).digest()
    assert secagg.PublicContext.from_bytes(old, allow_insecure=True).fingerprint == ctx.fingerprint
    with pytest.raises(secagg.CorruptPayloadError):  # a version-2 digest under a version-1 header
        secagg.PublicContext.from_bytes(bytes(head) + data[-16:], allow_insecure=True)


def test_not_bytes_is_refused(primed):
    agg, _ = primed
    assert_refused(agg, "not bytes", secagg.FormatError)
    assert_refused(agg, b"garbage", secagg.FormatError)


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("fingerprint", b"\0" * 16, secagg.ContextMismatchError),
        ("scheme", "elgamal", secagg.ContextMismatchError),
        ("count", 0, secagg.FormatError),
        ("count", 2, secagg.FormatError),  # a client update claims to be a sum
        ("values", 7, secagg.FormatError),
        ("round", [1], secagg.FormatError),
        ("spec", [["leaf", 0], [["w", [2, 4], "float64", "numpy", "cpu"]]], secagg.SecAggError),
        ("spec", "x", secagg.FormatError),
        ("ciphertexts", b"", secagg.CiphertextError),
        ("ciphertexts", [], secagg.CiphertextError),
    ],
)
def test_resealed_field_mutations_are_refused(primed, field, value, error):
    agg, blob = primed
    assert_refused(agg, reseal(blob, lambda body: body.__setitem__(field, value)), error)


def test_missing_field_is_named(primed):
    agg, blob = primed
    bad = reseal(blob, lambda body: body.pop("spec"))
    with pytest.raises(secagg.FormatError, match="'spec'"):
        agg.add(bad)


def test_out_of_range_paillier_ciphertexts_are_refused(contexts):
    pub = contexts["paillier"].public
    agg = secagg.Aggregator(pub)
    blob = pub.encrypt(np.zeros(3)).to_bytes()
    width = pub.backend.ct_bytes
    n = int(pub.backend.n)
    for bad_ct in (0, n * n, n * n + 5, n):  # zero, >= n^2, and a non-unit
        if bad_ct >= 2 ** (8 * width):
            continue
        bad = reseal(blob, lambda body, ct=bad_ct: body.__setitem__("ciphertexts",
                                                                    ct.to_bytes(width, "big")))
        assert_refused(agg, bad, secagg.CiphertextError)


def test_garbage_ckks_ciphertext_is_refused(contexts):
    pub = contexts["ckks"].public
    agg = secagg.Aggregator(pub)
    blob = pub.encrypt(np.zeros(3)).to_bytes()
    for junk in (b"\x00" * 64, b"", 17):
        bad = reseal(blob, lambda body, junk=junk: body.__setitem__("ciphertexts", [junk]))
        assert_refused(agg, bad, secagg.CiphertextError)


# -- protocol refusals -------------------------------------------------------------
def test_foreign_key_is_refused(scheme, primed):
    agg, _ = primed
    other = make_context(scheme)
    assert_refused(agg, other.public.encrypt({"w": np.zeros((3, 2)), "b": np.zeros(2)}).to_bytes(),
                   secagg.ContextMismatchError)
    assert_refused(agg, other.public.encrypt({"w": np.zeros((3, 2)), "b": np.zeros(2)}),
                   secagg.ContextMismatchError)


def test_other_tree_spec_is_refused(pub, primed):
    agg, _ = primed
    for tree in ({"w": np.zeros((2, 3)), "b": np.zeros(2)}, {"w": np.zeros((3, 2))},
                 {"v": np.zeros((3, 2)), "b": np.zeros(2)}):
        assert_refused(agg, pub.encrypt(tree).to_bytes(), secagg.TreeMismatchError)


def test_replay_is_refused(primed):
    agg, blob = primed
    agg.add(blob)
    assert_refused(agg, blob, secagg.ReplayError)
    assert_refused(agg, secagg.EncryptedUpdate.from_bytes(blob, agg.public), secagg.ReplayError)


def test_more_than_max_clients_is_refused(pub):
    agg = secagg.Aggregator(pub)
    for _ in range(CODEC["max_clients"]):
        agg.add(pub.encrypt(np.ones(2)))
    assert_refused(agg, pub.encrypt(np.ones(2)).to_bytes(), secagg.CapacityError)
    assert len(agg) == CODEC["max_clients"]


def test_round_id_is_enforced(pub):
    agg = secagg.Aggregator(pub, round_id=3)
    agg.add(pub.encrypt(np.ones(2), round_id=3))
    assert_refused(agg, pub.encrypt(np.ones(2), round_id=2).to_bytes(), secagg.RoundMismatchError)
    assert_refused(agg, pub.encrypt(np.ones(2)).to_bytes(), secagg.RoundMismatchError)
    assert agg.result().round_id == 3


def test_aggregator_state_does_not_grow(pub):
    agg = secagg.Aggregator(pub)
    sizes = []
    for i in range(CODEC["max_clients"]):
        agg.add(pub.encrypt(np.full(50, 0.01 * i)).to_bytes())
        state = agg.public.backend.ciphertexts_to_wire(agg._sum)
        sizes.append(len(state) if isinstance(state, bytes) else sum(map(len, state)))
        assert len(agg._sum) == pub.backend.num_ciphertexts(51)
    # Paillier sums are fixed-width; CKKS blobs vary by a few bytes of compression
    assert max(sizes) - min(sizes) <= 0.02 * max(sizes)
    assert len(agg._seen) == len(agg)  # 16 bytes per summed update, bounded by max_clients



@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(max_size=300), st.text(max_size=20),
              st.lists(st.integers(0, 9), max_size=5),
              st.dictionaries(st.text(max_size=4), st.binary(min_size=0, max_size=200), max_size=3),
              st.integers(1 << 16, (1 << 16) + 300).map(lambda n: bytes(n % 251 for n in range(n)))),
    max_size=6))
def test_seal_writes_exactly_what_msgpack_writes(body):
    """Big byte strings go in by reference; the bytes are packb's, and they open to the body."""
    data = wire.seal(wire.Kind.UPDATE, body)
    assert data[16:-16] == msgpack.packb(body, use_bin_type=True)
    assert data[-16:] == wire.envelope_digest(data[:-16])
    assert wire.open_payload(data)[1].raw() == body


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
                  st.text(max_size=12), st.binary(max_size=40),
                  st.integers(1 << 16, (1 << 16) + 500).map(lambda n: bytes(i % 253 for i in range(n))))
_BODY = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _as_bytes(obj):
    if isinstance(obj, memoryview):
        return bytes(obj)
    if isinstance(obj, dict):
        return {k: _as_bytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_as_bytes(v) for v in obj]
    return obj


@settings(max_examples=80, deadline=None)
@given(body=st.dictionaries(st.text(max_size=6), _BODY, max_size=5))
def test_views_decode_to_what_the_decoder_gives(body):
    """Large byte strings as views of the payload: the same body as msgpack's own decoding."""
    data = wire.seal(wire.Kind.UPDATE, body)
    _, plain = wire.open_payload(data)
    _, viewed = wire.open_payload(data, views=True)
    assert _as_bytes(viewed.raw()) == plain.raw() == body


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_views_refuse_or_agree_on_hostile_bodies(data):
    """A corrupted body (valid digest: a deviating sender) decodes the same both ways, or fails both."""
    body = {"a": bytes(range(256)) * 300, "b": [1, "x", {"c": b"y" * 70_000}]}
    payload = bytearray(wire.seal(wire.Kind.UPDATE, body))
    second = payload.index(b"\xa1b") + 2  # the list holding the second byte string
    structure = list(range(16, 24)) + list(range(76_816, 76_832)) + list(range(second, second + 16))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.sampled_from(structure) | st.integers(16, len(payload) - 17))
        payload[pos] = data.draw(st.integers(0, 255))
    head = bytes(payload[:-16])
    forged = head + wire.envelope_digest(head)
    outcomes = []
    for views in (False, True):
        try:
            outcomes.append(_as_bytes(wire.open_payload(forged, views=views)[1].raw()))
        except secagg.FormatError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]


def test_views_never_alias_a_buffer_the_caller_can_change():
    """Validated once, a mutable buffer could be changed under the views afterwards."""
    blob = bytes(range(256)) * 300
    data = bytearray(wire.seal(wire.Kind.UPDATE, {"a": blob}))
    _, body = wire.open_payload(data, views=True)
    data[40] ^= 0xFF
    assert bytes(body.raw()["a"]) == blob
