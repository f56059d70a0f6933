"""Distributed differential privacy (Kairouz–Liu–Steinke, ICML 2021).

``mechanism`` (:class:`DistributedDP`: L2 clipping, calibration, noise bounds),
``sampler`` (exact discrete Gaussian and Laplace, Canonne–Kamath–Steinke 2020),
``accounting`` (zCDP per round, (ε, δ) through ``dp_accounting``).
"""

from __future__ import annotations

from secagg.dp.mechanism import DistributedDP
from secagg.dp.sampler import sample_discrete_gaussian, sample_discrete_laplace

__all__ = ["DistributedDP", "sample_discrete_gaussian", "sample_discrete_laplace"]
