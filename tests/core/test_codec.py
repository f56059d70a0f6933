"""The fixed-point codec: error bound, saturation, headroom, non-finite input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
from secagg import FixedPointCodec
from tests.strategies import codecs, floats_around


@given(codecs(), st.data())
def test_round_trip_within_documented_bound(codec, data):
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 50), elements=floats_around(codec.clip)))
    q, clipped = codec.raw_encode(x, np.random.default_rng(0))
    assert q.dtype == np.int64 and np.abs(q).max() <= codec.qmax
    clamped = np.clip(x, -codec.clip_value, codec.clip_value)
    err = np.abs(codec.raw_decode(q) - clamped)
    if codec.rounding == "nearest":
        assert err.max() <= codec.error_bound
    else:
        assert err.max() < codec.error_bound
    assert clipped == int(np.count_nonzero(np.abs(x) * codec.scale > codec.qmax))


@given(codecs())
def test_headroom_holds_the_extreme_sum(codec):
    # every client at the extreme, with the largest weight: the offset slot sum still fits
    extreme = codec.max_clients * codec.max_weight * codec.qmax
    assert extreme == codec.sum_bound
    assert 2 * extreme < 2**codec.slot_bits
    assert extreme < 2**52  # exact in float64 and in CKKS decoding


def test_worked_example_from_docstring():
    codec = FixedPointCodec(clip=1.0, frac_bits=16, max_clients=100)
    assert codec.qmax == 65536 and codec.sum_bound == 6_553_600 and codec.slot_bits == 24
    q, _ = codec.raw_encode(np.array([0.3]))
    assert q[0] == 19661


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad):
    codec = FixedPointCodec()
    with pytest.raises(secagg.EncodingError, match="non-finite"):
        codec.raw_encode(np.array([0.0, bad]))


def test_stochastic_rounding_is_unbiased():
    codec = FixedPointCodec(frac_bits=4, rounding="stochastic")
    x = np.full(200_000, 0.3)  # 0.3 * 16 = 4.8: rounds to 4 or 5
    q, _ = codec.raw_encode(x, np.random.default_rng(1))
    assert set(np.unique(q)) == {4, 5}
    # mean 4.8, std of the mean sqrt(0.16/200000) ~ 9e-4: 6 sigma tolerance
    assert abs(q.mean() - 4.8) < 6e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(clip=0.0), "clip"),
        (dict(clip=float("nan")), "clip"),
        (dict(frac_bits=-1), "frac_bits"),
        (dict(max_clients=0), "max_clients"),
        (dict(max_weight=0), "max_weight"),
        (dict(rounding="up"), "rounding"),
        (dict(clip=1e-9), "at least 1"),
        (dict(frac_bits=40, max_clients=2**20), "bits"),
    ],
)
def test_bad_parameters_name_the_problem(kwargs, match):
    with pytest.raises(secagg.ConfigError, match=match):
        FixedPointCodec(**kwargs)
