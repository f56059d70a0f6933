"""The rns layout: residues on the wire, validated and summed with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import secagg
from secagg.errors import CiphertextError, SecAggError
from secagg.schemes.lattice.rns import BLOCK, pack, unpack
from secagg.schemes.lattice.seal import FILES
from secagg.update import EncryptedUpdate
from secagg.wire import Kind, open_payload, seal

SCHEMES = ("ckks", "bfv")


@pytest.fixture(scope="module", params=SCHEMES)
def ctx(request):
    return secagg.generate(request.param, max_clients=20)


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 8), data=st.data())
def test_pack_unpack_round_trip(width, data):
    n = data.draw(st.integers(1, 300))
    res = data.draw(arrays(np.uint64, n, elements=st.integers(0, 2 ** (8 * width) - 1)))
    blob = pack(res, width)
    assert len(blob) == n * width
    start = data.draw(st.integers(0, n - 1))
    count = data.draw(st.integers(1, n - start))
    assert unpack(blob, start, count, width).tolist() == res[start : start + count].tolist()


def _body(payload: bytes) -> tuple[Kind, dict]:
    kind, body = open_payload(payload)
    return kind, dict(body.raw())


def _reseal(payload: bytes, **changes) -> bytes:
    """What a deviating party can send: the payload with fields changed and a valid digest."""
    kind, body = _body(payload)
    body["ciphertexts"] = dict(body["ciphertexts"]) | changes
    return seal(kind, body)


@settings(max_examples=10, deadline=None)
@given(x=arrays(np.float64, 37, elements=st.floats(-1, 1)))
def test_bytes_round_trip_is_lossless(ctx, x):
    for who in (ctx.public, ctx):  # public-key and seeded uploads
        data = who.encrypt(x).to_bytes()
        again = EncryptedUpdate.from_bytes(data, ctx.public).to_bytes()
        assert again == data


def test_uploads_use_the_rns_layout_and_are_no_larger_than_planned(ctx):
    pub = ctx.public
    n = pub.backend.slots * 3
    data = pub.encrypt(np.zeros(n)).to_bytes()
    _, body = _body(data)
    cts = body["ciphertexts"]
    assert cts["layout"] == "rns" and cts["moduli"] == list(pub.backend.moduli)
    k = pub.backend.num_ciphertexts(n + 2)  # plus the encrypted weight and count slots
    residues = k * 2 * pub.backend.plan.poly_modulus_degree
    assert len(cts["data"]) == residues * cts["width"] and cts["width"] == 6
    assert len(data) <= len(cts["data"]) + 1024  # the rest is the header and the tree spec
    seeded = ctx.encrypt(np.zeros(n)).to_bytes()
    assert _body(seeded)[1]["ciphertexts"]["layout"] == "rns-seeded"
    assert len(seeded) < 0.6 * len(data)


@pytest.mark.parametrize("field, value", [
    ("width", 7), ("degree", 2048), ("count", 5), ("layout", "raw"), ("data", b"\0" * 10),
])
def test_malformed_layout_fields_are_refused_and_nothing_is_summed(ctx, field, value):
    pub = ctx.public
    good = [pub.encrypt(np.full(30, 0.25)).to_bytes() for _ in range(2)]
    agg = secagg.Aggregator(pub)
    agg.add(good[0])
    with pytest.raises(SecAggError):
        agg.add(_reseal(good[1], **{field: value}))
    assert len(agg) == 1
    agg.add(good[1])
    assert ctx.decrypt(agg.result(), reduce="sum").tolist() == pytest.approx([0.5] * 30, abs=1e-4)


def test_a_residue_not_below_its_prime_is_refused(ctx):
    pub = ctx.public
    data = pub.encrypt(np.zeros(10)).to_bytes()
    cts = _body(data)[1]["ciphertexts"]
    res = unpack(cts["data"], 0, len(cts["data"]) // cts["width"], cts["width"])
    for where in (0, res.size - 1):
        bad = res.copy()
        bad[where] = pub.backend.moduli[0]  # q itself: one too large
        with pytest.raises(CiphertextError, match="not below its prime"):
            EncryptedUpdate.from_bytes(_reseal(data, data=bytes(pack(bad, cts["width"]))), pub)


def test_seed_records_are_checked(ctx):
    data = ctx.encrypt(np.zeros(10)).to_bytes()
    seeds = _body(data)[1]["ciphertexts"]["seeds"]
    with pytest.raises(CiphertextError):
        EncryptedUpdate.from_bytes(_reseal(data, seeds=seeds[:-1]), ctx.public)
    with pytest.raises(CiphertextError):
        EncryptedUpdate.from_bytes(_reseal(data, seeds=b"\x01" * len(seeds)), ctx.public)


def test_payloads_in_seals_own_serialization_are_refused(ctx):
    """One blob per ciphertext (the old layout) would let one update arrive as two byte strings."""
    pub = ctx.public
    new = pub.encrypt(np.linspace(-1, 1, 40))
    kind, body = _body(new.to_bytes())
    body["ciphertexts"] = [FILES.save(c.ct) for c in new.ciphertexts]
    with pytest.raises(CiphertextError, match="encrypt the update again"):
        EncryptedUpdate.from_bytes(seal(kind, body), pub)


@pytest.mark.parametrize("field, value", [
    ("count", True), ("count", 1.0), ("degree", 4096.0), ("width", 6.0), ("moduli", "float"),
])
def test_layout_fields_must_have_their_exact_types(ctx, field, value):
    """``4096.0 == 4096`` in Python: a float or bool in place of an int would re-encode an update."""
    pub = ctx.public
    data = pub.encrypt(np.zeros(10)).to_bytes()
    cts = _body(data)[1]["ciphertexts"]
    if value == "float":
        value = [float(q) for q in cts["moduli"]]
    elif field == "count":
        value = type(value)(cts["count"])
    with pytest.raises(CiphertextError, match=field):
        EncryptedUpdate.from_bytes(_reseal(data, **{field: value}), pub)


def test_a_seed_record_in_another_encoding_is_refused(ctx):
    data = ctx.encrypt(np.zeros(10)).to_bytes()
    seeds = bytearray(_body(data)[1]["ciphertexts"]["seeds"])
    for where, byte in ((5, 7), (6, 1), (7, 1), (16, 2)):  # minor version, reserved, PRNG type
        bad = bytearray(seeds)
        bad[where] = byte
        with pytest.raises(CiphertextError):
            EncryptedUpdate.from_bytes(_reseal(data, seeds=bytes(bad)), ctx.public)


def test_a_sum_seal_calls_transparent_is_refused_and_changes_nothing(ctx):
    """Found by attack: SEAL objects added in place, one ciphertext at a time, failed half way."""
    pub = ctx.public
    b = pub.backend
    x = np.full(b.slots + 3, 0.25)
    acc = b.raw_copy(b.ciphertexts_from_wire(
        _body(ctx.encrypt(x).to_bytes())[1]["ciphertexts"], x.size + 2))  # seeded: held by SEAL
    assert acc.in_seal and len(acc) == 2
    before = acc.copy().residues().copy()
    q = b.moduli[0]
    fmt = b.format()
    cancel = before.copy()
    cancel[1] = (q - cancel[1]) % q  # ciphertext 1 negated: the sum of the two is all zero
    other = type(acc)(fmt, acc._moduli, 2, seal=[fmt.ciphertext(c) for c in cancel])
    with pytest.raises(CiphertextError):
        b.raw_accumulate(acc, other)
    assert np.array_equal(acc.residues(), before)  # nothing of ciphertext 0 was added either


def test_a_result_does_not_change_when_the_aggregator_goes_on(ctx):
    pub = ctx.public
    x = np.full(20, 0.5)
    agg = secagg.Aggregator(pub)
    for _ in range(2):
        agg.add(pub.encrypt(x).to_bytes())
    first = agg.result()
    agg.add(pub.encrypt(x).to_bytes())
    assert ctx.decrypt_raw(first).values.tolist() == (2 * pub.codec.encode(x)).tolist()
    assert ctx.decrypt_raw(agg.result()).values.tolist() == (3 * pub.codec.encode(x)).tolist()


def test_lazy_reduction_reduces_before_a_word_could_overflow(ctx):
    """White box: an accumulator at the limit of unreduced summands reduces, then adds exactly."""
    pub = ctx.public
    x = np.linspace(-1, 1, 50)
    upd = pub.encrypt(x)
    acc = pub.backend.raw_copy(upd.ciphertexts)
    q = max(pub.backend.moduli)
    acc._res[...] = q - 1  # the largest reduced residue, at the pending limit
    acc._pending = (2**64 - 1) // (q - 1)
    before = acc._res.copy()
    pub.backend.raw_accumulate(acc, upd.ciphertexts)
    want = (before.astype(object) % q + upd.ciphertexts.residues().astype(object)) % q
    assert (acc.residues().astype(object) == want).all()


def test_blocks_cover_large_updates_exactly(ctx):
    pub = ctx.public
    n = (BLOCK // pub.backend.slots + 2) * pub.backend.slots // 2 + 3  # several blocks, ragged end
    rng = np.random.default_rng(7)
    xs = [rng.uniform(-1, 1, n) for _ in range(3)]
    agg = secagg.Aggregator(pub)
    for x in xs:
        agg.add(pub.encrypt(x).to_bytes())
    want = np.sum([pub.codec.encode(x) for x in xs], axis=0)
    assert ctx.decrypt_raw(agg.result().to_bytes()).values.tolist() == want.tolist()


@settings(max_examples=80, deadline=None)
@given(data=st.data(), width=st.integers(3, 8), bits_below=st.integers(1, 16))
def test_the_residue_check_accepts_exactly_the_residues_below_the_prime(data, width, bits_below):
    """Against the plain comparison, with values drawn around q and around q's top 16 bits."""
    from secagg.schemes.lattice.rns import check_residues

    top_bits = 8 * width
    q = data.draw(st.integers(2 ** (top_bits - bits_below - 1) + 1, 2 ** (top_bits - bits_below)))
    shift = 8 * (width - 2)
    edge = (q >> shift) << shift  # the first value whose top 16 bits equal q's
    near = st.sampled_from(sorted({0, q - 1, q, q + 1, edge, max(edge - 1, 0), 2**top_bits - 1}))
    values = data.draw(st.lists(st.one_of(near, st.integers(0, 2**top_bits - 1)), min_size=1,
                                max_size=200))
    blob = pack(np.array(values, dtype=np.uint64), width)
    if all(v < q for v in values):
        check_residues(bytes(blob), len(values), (q,), len(values), width)
    else:
        with pytest.raises(CiphertextError):
            check_residues(bytes(blob), len(values), (q,), len(values), width)
