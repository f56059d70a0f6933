"""Small threshold keys for tests (512-bit, insecure) and the usual client trees."""

from __future__ import annotations

from typing import Any

import numpy as np

import secagg
from secagg import threshold
from secagg.threshold.dealer import _deal

SMALL = dict(key_bits=512, insecure=True)
CODEC = dict(max_clients=6, clip=1.0, frac_bits=16, max_weight=4, min_clients=2)


def deal_small(parties: int = 5, t: int = 3, **overrides: Any
               ) -> tuple[threshold.ThresholdKeys, secagg.SecretContext]:
    """Dealt keys plus the single-key context of the same key (tests only)."""
    params: dict[str, Any] = dict(
        parties=parties, threshold=t, rounding="nearest", max_terms=0, term_clip=None,
        dp=None, randomness="djn", clients=None, term_signers=None, mode="unverified",
        require_all=False, **SMALL, **CODEC)
    params.update(overrides)
    return _deal("paillier", **params)


def tree(seed: int, n: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(0, 0.2, (n // 2, 2)).astype(np.float32),
            "b": rng.normal(0, 0.2, n % 7 + 1)}


def aggregate(pub: secagg.PublicContext, clients: int = 3, *, round_id: Any = None,
              weights: list[int] | None = None, n: int = 20) -> bytes:
    agg = secagg.Aggregator(pub, round_id=round_id)
    for k in range(clients):
        w = 1 if weights is None else weights[k]
        agg.add(pub.encrypt(tree(k, n), weight=w, round_id=round_id).to_bytes())
    return agg.result().to_bytes()


def assert_trees_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        assert np.array_equal(a[k], b[k]), k
