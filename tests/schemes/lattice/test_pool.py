"""Precomputed encryptions of zero: used once each, equal to SEAL's own encryption."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tenseal.sealapi as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import secagg
from secagg.errors import ConfigError


@pytest.fixture(scope="module", params=("ckks", "bfv"))
def ctx(request):
    return secagg.generate(request.param, max_clients=20)


def _drain(*backends):
    for b in backends:
        b._pool.clear()


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_pooled_zero_plus_the_plaintext_is_what_seal_adds(ctx, data):
    """The online step equals SEAL's ``add_plain`` on the same encryption of zero, bit for bit."""
    b = ctx.public.backend
    bound = ctx.codec.contribution_bound
    v = data.draw(arrays(np.int64, b.slots, elements=st.integers(-bound, bound)))
    pt, fmt = b.encode(v), b.format()
    ct = sa.Ciphertext()
    b._public_encryptor().encrypt(b.encode(np.zeros(1, dtype=np.int64)), ct)
    zero = np.empty(fmt.words, dtype=np.uint64)
    fmt.residues(ct, zero)
    b._evaluator.add_plain_inplace(ct, pt)
    want = np.empty(fmt.words, dtype=np.uint64)
    fmt.residues(ct, want)
    got = np.empty((fmt.polys, fmt.primes, fmt.degree), dtype=np.uint64)
    b._add_plain(zero.reshape(got.shape), pt, got)
    assert got.reshape(-1).tolist() == want.tolist()


@settings(max_examples=5, deadline=None)
@given(xs=st.lists(arrays(np.float64, 300, elements=st.floats(-1, 1)), min_size=2, max_size=3))
def test_pooled_encryptions_sum_exactly_and_spend_the_pool(ctx, xs):
    pub = ctx.public
    k = pub.backend.num_ciphertexts(300 + 2)
    pub.precompute(k * (len(xs) - 1))
    agg = secagg.Aggregator(pub)
    try:
        for x in xs:  # the last one finds the pool empty: fresh encryption
            agg.add(pub.encrypt(x).to_bytes())
        assert pub.backend.pool_size == 0
    finally:
        _drain(pub.backend)
    want = np.sum([pub.codec.encode(x) for x in xs], axis=0)
    assert ctx.decrypt_raw(agg.result()).values.tolist() == want.tolist()


def test_no_zero_is_used_twice(ctx):
    pub = ctx.public
    k = pub.backend.num_ciphertexts(10 + 2)
    pub.precompute(2 * k)
    pooled = {z.tobytes() for z in pub.backend._pool}
    try:
        a = pub.encrypt(np.zeros(10)).ciphertexts.residues()
        b = pub.encrypt(np.zeros(10)).ciphertexts.residues()
    finally:
        _drain(pub.backend)
    # c1 of a pooled encryption is the zero's c1: all different, none seen twice
    c1s = [c[1].tobytes() for c in (*a, *b)]
    assert len(set(c1s)) == len(c1s) == 2 * k
    assert all(any(c1 in z for z in pooled) for c1 in c1s)


def test_a_copy_starts_with_an_empty_pool(ctx):
    backend = ctx.public.backend
    backend.precompute(3)
    try:
        clone = copy.copy(backend)
        assert clone.pool_size == 0 and backend.pool_size == 3
        assert backend.__getstate__()["_pool"] == []
    finally:
        _drain(backend)


@pytest.mark.parametrize("count", [-1, 1.5, True, "3"])
def test_a_bad_count_is_refused(ctx, count):
    with pytest.raises(ConfigError):
        ctx.public.precompute(count)
    assert ctx.public.backend.pool_size == 0


def test_forked_workers_do_not_take_the_pool(ctx):
    pub = ctx.public
    n = 300 * pub.backend.slots  # enough ciphertexts that workers=2 would fork
    pub.precompute(2)
    try:
        upd = pub.encrypt(np.zeros(n), workers=2)  # the pool is spent serially, in this process
        assert pub.backend.pool_size == 0
    finally:
        _drain(pub.backend)
    assert len(upd.ciphertexts) == pub.backend.num_ciphertexts(n + 2)
