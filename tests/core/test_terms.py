"""Adding a plaintext or encrypted tensor to the aggregate: exact, budgeted, never clipped."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
from tests.helpers import SCHEMES, make_context, snapshot


@pytest.fixture(scope="module", params=SCHEMES)
def tctx(request):
    return make_context(request.param, max_terms=2, term_clip=3.0)


@settings(max_examples=20)
@given(st.data())
def test_terms_add_exactly(tctx, data):
    pub = tctx.public
    shape = (data.draw(st.integers(1, 6)),)
    xs = [data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1))) for _ in range(2)]
    ws = [data.draw(st.integers(1, 4)) for _ in xs]
    plain = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    noise = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    agg = secagg.Aggregator(pub)
    for x, w in zip(xs, ws):
        agg.add(pub.encrypt(x, weight=w).to_bytes())
    agg.add_plain(plain)                                  # known to the server
    agg.add_term(pub.encrypt_term(noise).to_bytes())      # from another party, encrypted
    codec = pub.codec
    expected = sum(w * codec.encode(x) for x, w in zip(xs, ws))
    expected = expected + codec.raw_encode_term(plain) + codec.raw_encode_term(noise)
    raw = tctx.decrypt_raw(agg.result().to_bytes())
    assert np.array_equal(raw.values, expected)
    assert (raw.count, raw.terms, raw.weight_sum) == (2, 2, sum(ws))
    mean = tctx.decrypt(agg.result(), reduce="mean")
    np.testing.assert_array_equal(mean, expected / codec.scale / 2)


def test_extreme_terms_and_clients_do_not_overflow(tctx):
    pub = tctx.public
    agg = secagg.Aggregator(pub)
    for _ in range(pub.codec.max_clients):
        agg.add(pub.encrypt(np.full(3, -9.0), weight=pub.codec.max_weight))
    agg.add_plain(np.full(3, -3.0))
    agg.add_term(pub.encrypt_term(np.full(3, -3.0)))
    raw = tctx.decrypt_raw(agg.result())
    assert raw.values.tolist() == [-pub.codec.sum_bound] * 3


def test_terms_are_never_clipped_and_are_budgeted(tctx):
    pub = tctx.public
    agg = secagg.Aggregator(pub)
    agg.add(pub.encrypt(np.zeros(2)))
    with pytest.raises(secagg.EncodingError, match="never"):
        agg.add_plain(np.array([0.0, 3.5]))
    agg.add_plain(np.ones(2))
    agg.add_plain(np.ones(2))
    before = snapshot(agg)
    with pytest.raises(secagg.CapacityError, match="max_terms"):
        agg.add_plain(np.ones(2))
    assert snapshot(agg) == before
    with pytest.raises(secagg.FormatError, match="add_term"):
        agg.add(pub.encrypt_term(np.ones(2)))
    with pytest.raises(secagg.FormatError, match="term payload"):
        agg.add_term(pub.encrypt(np.ones(2)))
    other = secagg.Aggregator(pub)
    other.add_plain(np.ones(2))
    with pytest.raises(secagg.TreeMismatchError):
        other.add_plain(np.ones(3))


def test_no_room_reserved_means_no_terms():
    ctx = make_context("ckks")
    with pytest.raises(secagg.ConfigError, match="max_terms"):
        ctx.public.encrypt_term(np.ones(2))


def test_terms_alone_are_not_an_aggregate(tctx):
    agg = secagg.Aggregator(tctx.public)
    agg.add_plain(np.ones(2))
    with pytest.raises(secagg.EmptyAggregateError):
        agg.result()
