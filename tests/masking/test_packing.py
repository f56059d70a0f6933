"""Bit-packing at w bits: exact round trips, in-place accumulation, size, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import FormatError
from secagg.masking.packing import MAX_WIDTH, pack, packed_size, unpack, unpack_add


@st.composite
def vectors(draw):
    w = draw(st.integers(1, MAX_WIDTH))
    n = draw(st.integers(0, 90))
    values = draw(st.lists(st.integers(0, (1 << w) - 1), min_size=n, max_size=n))
    return w, np.array(values, dtype=np.uint64)


@given(vectors())
def test_pack_round_trip(wv):
    w, v = wv
    data = pack(v, w)
    assert len(data) == packed_size(v.size, w) == -(-v.size * w // 8)
    np.testing.assert_array_equal(unpack(data, v.size, w), v)


@given(vectors(), st.data())
def test_unpack_add_is_addition_mod_2w(wv, data):
    w, v = wv
    dtype = np.uint32 if w <= 32 and data.draw(st.booleans(), label="uint32") else np.uint64
    start = np.array(data.draw(st.lists(st.integers(0, (1 << min(w, 32)) - 1), min_size=v.size,
                                        max_size=v.size), label="acc"), dtype=np.uint64)
    acc = start.astype(dtype)
    unpack_add(acc, pack(v, w), v.size, w)
    mask = np.uint64((1 << w) - 1)
    np.testing.assert_array_equal(acc.astype(np.uint64) & mask, (start + v) & mask)


def test_large_vector_round_trip_at_every_width():
    rng = np.random.default_rng(7)
    for w in range(1, MAX_WIDTH + 1):
        for n in (8 * 41, 8 * 41 + 5):
            v = rng.integers(0, 1 << w, n, dtype=np.uint64)
            np.testing.assert_array_equal(unpack(pack(v, w), n, w), v)


def test_wrong_lengths_and_widths_are_refused():
    data = pack(np.arange(10, dtype=np.uint64), 9)
    for bad in (data[:-1], data + b"\0"):
        with pytest.raises(FormatError):
            unpack(bad, 10, 9)
        acc = np.zeros(10, dtype=np.uint64)
        with pytest.raises(FormatError):
            unpack_add(acc, bad, 10, 9)
        assert not acc.any()  # refused before touching the accumulator
    with pytest.raises(FormatError):
        pack(np.zeros(3, dtype=np.uint64), MAX_WIDTH + 1)
