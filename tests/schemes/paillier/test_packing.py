"""Slot packing: round trips at the boundaries; packed addition is slot-wise addition."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg.schemes.paillier.packing import SlotLayout


@st.composite
def layouts_and_values(draw):
    bits = draw(st.integers(1, 64))
    slots = draw(st.integers(1, 40))
    n = draw(st.integers(1, 3 * slots + 1))
    top = 2**bits - 1
    values = draw(st.lists(st.one_of(st.just(0), st.just(top), st.integers(0, top)), min_size=n, max_size=n))
    return SlotLayout(bits, slots), np.array(values, dtype=np.uint64)


@given(layouts_and_values())
def test_pack_unpack_round_trip(lv):
    layout, values = lv
    packed = layout.raw_pack(values)
    assert len(packed) == layout.num_plaintexts(values.size)
    assert all(0 <= m < 2**layout.plaintext_bits for m in packed)
    assert np.array_equal(layout.raw_unpack(packed, values.size), values)


@given(st.integers(2, 63), st.integers(1, 20), st.data())
def test_packed_sum_is_slot_sum(bits, slots, data):
    layout = SlotLayout(bits, slots)
    half = 2 ** (bits - 1) - 1  # two of these never carry
    a = np.array(data.draw(st.lists(st.integers(0, half), min_size=slots, max_size=slots)), np.uint64)
    b = np.array(data.draw(st.lists(st.integers(0, half), min_size=slots, max_size=slots)), np.uint64)
    (pa,), (pb,) = layout.raw_pack(a), layout.raw_pack(b)
    assert np.array_equal(layout.raw_unpack([pa + pb], slots), a + b)
