"""Hypothesis strategies shared by the tests: data is drawn, never randn'd, so it shrinks."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg


def floats_around(clip: float, *, width: int = 64) -> st.SearchStrategy[float]:
    """Finite floats in [-2*clip, 2*clip] (half of them saturate), including the edges."""
    return st.floats(-2 * clip, 2 * clip, allow_nan=False, allow_infinity=False, width=width)


def arrays(clip: float = 1.0, *, max_size: int = 40, dtype=np.float64) -> st.SearchStrategy[np.ndarray]:
    """1-D or 2-D float arrays of at least one value."""
    width = {np.float16: 16, np.float32: 32}.get(dtype, 64)
    return hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=max_size // 4 + 1),
        elements=floats_around(clip, width=width),
    )


@st.composite
def codecs(draw) -> secagg.FixedPointCodec:
    """Valid codecs across the supported range (at least one step, sums within 52 bits)."""
    clip = draw(st.sampled_from([0.01, 0.5, 1.0, 3.0, 1000.0]))
    min_frac = max(0, math.ceil(-math.log2(clip)))
    return secagg.FixedPointCodec(
        clip=clip,
        frac_bits=draw(st.integers(min_frac, 24)),
        max_clients=draw(st.integers(1, 1000)),
        max_weight=draw(st.integers(1, 100)),
        rounding=draw(st.sampled_from(["nearest", "stochastic"])),
    )


@st.composite
def client_batches(draw, *, max_clients: int, max_weight: int, clip: float = 1.0,
                   min_clients: int = 1):
    """A shape and, for min_clients..max_clients clients, an array of that shape and a weight."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=12))
    k = draw(st.integers(min_clients, max_clients))
    xs = [draw(hnp.arrays(np.float64, shape, elements=floats_around(clip))) for _ in range(k)]
    ws = [draw(st.integers(1, max_weight)) for _ in range(k)]
    return xs, ws
