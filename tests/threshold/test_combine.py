"""Threshold Paillier: any t of n decrypt, fewer cannot, wrong partials are caught and named.

Keys are 512-bit test keys (two 256-bit safe primes); every result is compared
bit for bit with a single-key decryption of the same aggregate under the same
key (the dealer's factors, kept by the test-only ``_deal``).
"""

from __future__ import annotations

import itertools

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import errors, threshold
from secagg.dp import DistributedDP
from secagg.threshold import proofs
from secagg.threshold.partial import compute_partial, read_partial, verify_partial
from secagg.update import EncryptedUpdate
from tests.threshold.util import aggregate, assert_trees_equal, deal_small, tree


@pytest.fixture(scope="module")
def dealt():
    return deal_small(5, 3)


@pytest.fixture(scope="module")
def total(dealt):
    keys, _ = dealt
    return aggregate(keys.public, 3, weights=[1, 3, 2])


@pytest.fixture(scope="module")
def partials(dealt, total):
    keys, _ = dealt
    return {h.index: h.partial_decrypt(total) for h in keys.shares}


def forge_partial(keys, total: bytes, data: bytes, **changes) -> bytes:
    """A partial decryption with fields changed, re-sealed (as a malicious holder would send)."""
    upd = EncryptedUpdate.from_bytes(total, keys.public)
    part = read_partial(data, keys.verification, upd)
    fields = {**part.__dict__, **changes}
    return type(part)(**fields).to_bytes(keys.verification, keys.public.fingerprint)


# -- any t of n ----------------------------------------------------------------------


def test_pinned_api_and_bit_for_bit_equality(dealt, total, partials):
    keys, single = dealt
    assert isinstance(keys.public, secagg.PublicContext)
    assert keys.public.fingerprint == single.fingerprint
    for reduce in ("sum", "mean", "weighted_mean"):
        got = threshold.combine(keys.public, total, [partials[1], partials[2], partials[3]],
                                reduce=reduce)
        assert_trees_equal(got, single.decrypt(total, reduce=reduce))
    raw = threshold.combine_raw(keys.public, total, list(partials.values()))
    ref = single.decrypt_raw(total)
    assert np.array_equal(raw.values, ref.values)
    assert (raw.weight_sum, raw.count, raw.terms) == (ref.weight_sum, ref.count, ref.terms) == (
        6, 3, 0)


@settings(max_examples=25)
@given(data=st.data())
def test_any_t_of_n_decrypt(dealt, total, partials, data):
    keys, single = dealt
    k = data.draw(st.integers(3, 5))
    chosen = data.draw(st.permutations([1, 2, 3, 4, 5]))[:k]
    parts = [partials[h] for h in chosen]
    result = threshold.combine(keys.public, total, parts, reduce="mean", report=True)
    assert result.used == tuple(sorted(chosen)[:3]) and result.rejected == ()
    assert_trees_equal(result.value, single.decrypt(total))


@pytest.mark.parametrize("chosen", list(itertools.combinations(range(1, 6), 2)))
def test_t_minus_one_cannot_decrypt(dealt, total, partials, chosen):
    keys, _ = dealt
    with pytest.raises(errors.NotEnoughPartialsError, match="3 valid partial decryptions are "
                       r"needed \(3 of 5\); got 2 valid"):
        threshold.combine(keys.public, total, [partials[h] for h in chosen])


def test_every_threshold_and_size_works():
    for parties, t in ((2, 2), (3, 2), (4, 4)):
        keys, single = deal_small(parties, t)
        total = aggregate(keys.public, 2)
        parts = [h.partial_decrypt(total) for h in keys.shares[-t:]]
        assert_trees_equal(threshold.combine(keys.public, total, parts), single.decrypt(total))
        if t > 2:
            with pytest.raises(errors.NotEnoughPartialsError):
                threshold.combine(keys.public, total, parts[1:])


def test_per_ciphertext_proofs_combine_with_batched_ones(dealt, total, partials):
    keys, single = dealt
    each = keys.shares[3].partial_decrypt(total, proofs="each")
    got = threshold.combine(keys.public, total, [partials[1], each, partials[5]])
    assert_trees_equal(got, single.decrypt(total))


def test_workers_give_the_same_result(dealt):
    keys, single = dealt
    total = aggregate(keys.public, 2, n=2000)  # enough ciphertexts to fork
    parts = [h.partial_decrypt(total, workers=2) for h in keys.shares[:3]]
    got = threshold.combine(keys.public, total, parts, workers=2)
    assert_trees_equal(got, single.decrypt(total))


# -- wrong partials are caught and named --------------------------------------------------


TAMPER = ("value", "times (1+n)", "swap values", "proof e", "proof z", "other aggregate",
          "claims another holder", "wrong share", "garbage")


def tampered(keys, total: bytes, partials, holder: int, how: str, other_total: bytes) -> bytes:
    vk = keys.verification
    upd = EncryptedUpdate.from_bytes(total, keys.public)
    good = partials[holder]
    part = read_partial(good, vk, upd)
    n, n2 = vk.n, vk.nsquare
    if how == "value":
        return forge_partial(keys, total, good, partials=[part.partials[0] * 3 % n2,
                                                          *part.partials[1:]])
    if how == "times (1+n)":  # shifts the plaintext by a chosen amount: the attack that matters
        return forge_partial(keys, total, good, partials=[
            part.partials[0] * (1 + 5 * n) % n2, *part.partials[1:]])
    if how == "swap values":
        return forge_partial(keys, total, good, partials=part.partials[::-1])
    if how == "proof e":
        return forge_partial(keys, total, good, e=[part.e[0] ^ 1])
    if how == "proof z":
        return forge_partial(keys, total, good, z=[part.z[0] + 1])
    if how == "other aggregate":
        return keys.shares[holder - 1].partial_decrypt(other_total)
    if how == "claims another holder":
        return forge_partial(keys, total, good, holder=holder % 5 + 1)
    if how == "wrong share":  # honest proof, but for another exponent
        sigma = vk.delta * (keys.shares[holder - 1]._share + 1)
        return compute_partial(upd, vk, holder, sigma).to_bytes(vk, keys.public.fingerprint)
    return b"SECAGG" + bytes(40)


@settings(max_examples=30)
@given(holder=st.integers(1, 5), how=st.sampled_from(TAMPER), data=st.data())
def test_a_wrong_partial_is_named_and_any_other_t_still_decrypt(dealt, total, partials, holder,
                                                                 how, data):
    keys, single = dealt
    other_total = aggregate(keys.public, 2)
    bad = tampered(keys, total, partials, holder, how, other_total)
    others = [h for h in range(1, 6) if h != holder]
    helpers = data.draw(st.permutations(others))[: data.draw(st.integers(3, 4))]
    parts = {h: partials[h] for h in helpers}
    parts[holder] = bad
    result = threshold.combine(keys.public, total, parts, report=True)
    assert_trees_equal(result.value, single.decrypt(total))
    assert [r.holder for r in result.rejected] == [holder]
    assert holder not in result.used
    # given as a list, the holder is read from the payload (or unknown for garbage)
    listed = threshold.combine(keys.public, total, [bad, *(partials[h] for h in helpers)],
                               report=True)
    assert len(listed.rejected) == 1 and listed.rejected[0].position == 0
    # with only t - 1 good ones the error names the culprit
    with pytest.raises(errors.NotEnoughPartialsError) as info:
        threshold.combine(keys.public, total, {holder: bad, **{h: partials[h] for h in others[:2]}})
    assert [r.holder for r in info.value.rejected] == [holder]
    assert f"holder {holder}" in str(info.value)


def test_a_duplicate_partial_is_set_aside(dealt, total, partials):
    keys, _single = dealt
    result = threshold.combine(keys.public, total, [partials[1], partials[1], partials[2],
                                                    partials[4]], report=True)
    assert result.used == (1, 2, 4) and [r.holder for r in result.rejected] == [1]
    assert "second partial" in result.rejected[0].reason


def test_a_sign_flip_of_a_partial_changes_nothing(dealt, total, partials):
    """Proofs and combination use c_i**2: an element of order 2 times c_i is harmless."""
    keys, single = dealt
    n2 = keys.verification.nsquare
    upd = EncryptedUpdate.from_bytes(total, keys.public)
    each = keys.shares[1].partial_decrypt(total, proofs="each")  # proofs bind j, not the bytes
    part = read_partial(each, keys.verification, upd)
    flipped = forge_partial(keys, total, each, partials=[n2 - c for c in part.partials])
    got = threshold.combine(keys.public, total, [partials[1], flipped, partials[3]], report=True)
    assert got.rejected == () and got.used == (1, 2, 3)
    assert_trees_equal(got.value, single.decrypt(total))


def test_proofs_reject_a_wrong_statement(dealt):
    keys, _ = dealt
    vk = keys.verification
    n2 = vk.nsquare
    x = gmpy2.mpz(7) ** 4 % n2
    sigma = vk.delta * keys.shares[0]._share
    y = gmpy2.powmod(x, sigma, n2)
    e, z = proofs.prove(x, y, vk.v, vk.key(1), sigma, n2, vk.r_bits, b"ctx")
    assert proofs.verify(x, y, vk.v, vk.key(1), e, z, n2, b"ctx")
    assert not proofs.verify(x, y * 4 % n2, vk.v, vk.key(1), e, z, n2, b"ctx")
    assert not proofs.verify(x, y, vk.v, vk.key(2), e, z, n2, b"ctx")
    assert not proofs.verify(x, y, vk.v, vk.key(1), e, z, n2, b"other context")
    assert not proofs.verify(x, y, vk.v, vk.key(1), e + 1, z, n2, b"ctx")
    assert not proofs.verify(x, y, vk.v, vk.key(1), e, -z, n2, b"ctx")
    # a proof for the wrong exponent (another holder's share) does not verify either
    bad = gmpy2.powmod(x, sigma + vk.delta, n2)
    e, z = proofs.prove(x, bad, vk.v, vk.key(1), sigma + vk.delta, n2, vk.r_bits, b"ctx")
    assert not proofs.verify(x, bad, vk.v, vk.key(1), e, z, n2, b"ctx")


def test_batched_proof_catches_one_wrong_ciphertext_among_many(dealt):
    keys, _ = dealt
    vk = keys.verification
    upd = EncryptedUpdate.from_bytes(aggregate(keys.public, 2, n=400), keys.public)
    holder = keys.shares[1]
    part = compute_partial(upd, vk, 2, holder._sigma)
    verify_partial(part, vk, upd)
    for j in (0, len(part.partials) // 2, len(part.partials) - 1):
        values = list(part.partials)
        values[j] = values[j] * (1 + vk.n) % vk.nsquare
        forged = type(part)(**{**part.__dict__, "partials": values})
        with pytest.raises(errors.InvalidPartialError, match="holder 2"):
            verify_partial(forged, vk, upd)


@settings(max_examples=30)
@given(st.lists(st.integers(0, 2**128 - 1), min_size=0, max_size=40))
def test_multi_pow_is_the_product_of_powers(exps):
    m = gmpy2.mpz(2**127 - 1) * (2**89 - 1)
    bases = [gmpy2.mpz(3 + 2 * i) for i in range(len(exps))]
    want = gmpy2.mpz(1)
    for b, e in zip(bases, exps):
        want = want * gmpy2.powmod(b, e, m) % m
    assert proofs.multi_pow(bases, exps, m) == want


# -- the same post-decryption path: terms, DP, weights, hierarchical sums --------------


def test_terms_dp_and_hierarchical_sums_match_single_key_decryption():
    dp = DistributedDP(l2_clip=0.5, noise_multiplier=1.0, min_clients=2)
    keys, single = deal_small(3, 2, max_terms=2, dp=dp, max_weight=1)
    pub = keys.public
    left, right = secagg.Aggregator(pub), secagg.Aggregator(pub)
    for k in range(4):
        (left if k % 2 else right).add(pub.encrypt(tree(k)).to_bytes())
    left.add_plain({"w": np.full((10, 2), 0.25, np.float32), "b": np.zeros(7)})
    right.add_term(pub.encrypt_term({"w": np.zeros((10, 2), np.float32),
                                     "b": np.full(7, -0.5)}).to_bytes())
    top = secagg.Aggregator(pub)
    top.merge(left.result())
    top.merge(right.result())
    total = top.result().to_bytes()
    parts = [h.partial_decrypt(total) for h in keys.shares[1:]]
    for reduce in ("sum", "mean"):
        assert_trees_equal(threshold.combine(pub, total, parts, reduce=reduce),
                           single.decrypt(total, reduce=reduce))
    raw = threshold.combine_raw(pub, total, parts)
    assert (raw.count, raw.terms) == (4, 2)


def test_crafted_aggregates_fail_the_same_checks_after_combining(dealt):
    """Unverified mode decrypts what passes the header checks; after combining, the checks of
    a key holder run (count slot, ranges) and their messages hold no decrypted number."""
    keys, single = dealt
    pub = keys.public
    victim = EncryptedUpdate.from_bytes(pub.encrypt(tree(1)).to_bytes(), pub)
    relabelled = EncryptedUpdate(pub.scheme, pub.fingerprint, secagg.Kind.AGGREGATE, 2,
                                 victim.spec, None, victim.ciphertexts, pub.backend).to_bytes()
    parts = [h.partial_decrypt(relabelled) for h in keys.shares[:3]]
    with pytest.raises(secagg.CountMismatchError) as info:
        threshold.combine(pub, relabelled, parts)
    with pytest.raises(secagg.CountMismatchError) as ref:
        single.decrypt(relabelled)
    assert str(info.value) == str(ref.value)


def test_combine_argument_errors(dealt, total, partials):
    keys, _ = dealt
    plain = secagg.PublicContext.from_bytes(keys.public.to_bytes(), allow_insecure=True)
    with pytest.raises(secagg.ConfigError, match="verification keys"):
        threshold.combine(plain, total, list(partials.values()))
    got = threshold.combine(plain, total, list(partials.values()),
                            verification=keys.verification.to_bytes())
    loaded = threshold.load_public(keys.public.to_bytes(), keys.verification.to_bytes(),
                                   allow_insecure=True)
    assert_trees_equal(got, threshold.combine(loaded, total, list(partials.values())))
    with pytest.raises(secagg.ConfigError, match="reduce"):
        threshold.combine(keys.public, total, list(partials.values()), reduce="max")
    with pytest.raises(secagg.ConfigError):
        threshold.combine(keys.public, total, partials[1])
    other, _ = deal_small(5, 3)
    with pytest.raises(secagg.ContextMismatchError):
        threshold.combine(other.public, total, list(partials.values()))
    with pytest.raises(errors.NotEnoughPartialsError):  # partials of another key set
        other_total = aggregate(other.public, 2)
        threshold.combine(other.public, other_total, list(partials.values()))
    single_update = keys.public.encrypt(tree(0)).to_bytes()
    with pytest.raises(secagg.FormatError, match="aggregate"):
        threshold.combine(keys.public, single_update, list(partials.values()))


def test_per_ciphertext_proofs_catch_one_wrong_ciphertext(dealt, total):
    keys, _ = dealt
    vk = keys.verification
    upd = EncryptedUpdate.from_bytes(total, keys.public)
    part = compute_partial(upd, vk, 4, keys.shares[3]._sigma, mode="each")
    verify_partial(part, vk, upd)
    values = list(part.partials)
    values[-1] = values[-1] * (1 + vk.n) % vk.nsquare
    with pytest.raises(errors.InvalidPartialError, match=f"ciphertext {len(values) - 1}"):
        verify_partial(type(part)(**{**part.__dict__, "partials": values}), vk, upd)
