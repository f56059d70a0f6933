"""Masked uploads are bit-packed at w bits: 3 bytes a value at the default codec and 100 clients."""

from __future__ import annotations

import numpy as np

from tests.masking.util import Round

# header (16) + digest (16) + field names, round, fingerprint, index, width, slot count and
# a one-leaf tree spec; the two extra slots (weight, count) add 6 bytes at w = 24
OVERHEAD = 160


def upload_size(values: int) -> tuple[int, int]:
    r = Round(3, 2, max_clients=100)            # clip 1, frac_bits 16, max_weight 1
    r.trees = [{"w": np.linspace(-1, 1, values, dtype=np.float32)} for _ in range(3)]
    r.keys(), r.shares()
    r.masked()
    r.check(r.unmask())
    return len(r.inputs[0]), r.config.width


def test_upload_is_three_bytes_per_value_at_the_default_codec():
    small, w = upload_size(1000)
    large, _ = upload_size(3000)
    assert w == 24
    float32 = 4 * 1000
    assert (large - small) / 2000 == 3.0 == 0.75 * 4      # each value costs exactly w / 8 bytes
    assert small <= 0.75 * float32 + OVERHEAD             # 3000 bytes of values + fixed overhead
    assert small / float32 < 0.79 and large / (4 * 3000) < 0.765
