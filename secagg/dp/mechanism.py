"""Distributed differential privacy: per-client clipping and discrete Gaussian noise.

Secure aggregation hides each client's update from the aggregator, but the key
holder still learns the exact sum, and an exact sum can reveal a lot about one
participant. This module makes the *decrypted* sum differentially private
without trusting anyone with a noiseless value, following Kairouz, Liu and
Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation", ICML 2021 ([KLS21], arXiv:2102.06387).

Pipeline, on every client, before anything leaves the device::

    x      = flatten(update)                          # all leaves, one float64 vector
    x_c    = x * min(1, l2_clip / ||x||_2)            # DistributedDP.clip_update
    q      = rint(x_c * 2**frac_bits)                 # FixedPointCodec, nearest rounding
    c      = w * q + Z,   Z ~ N_Z(0, sigma2)^d        # DistributedDP.sample_noise
    encrypt(c)                                        # Paillier / CKKS, as without DP

``N_Z(0, sigma2)`` is the discrete Gaussian on the integers,
``P[Z = z] = exp(-z^2 / (2 sigma2)) / sum_{y in Z} exp(-y^2 / (2 sigma2))``,
sampled *exactly* (no floating point anywhere in the sampler) with the algorithm
of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
Privacy", NeurIPS 2020 ([CKS20], arXiv:2004.00010), from the operating system's
cryptographically secure generator. Noise is added to the weighted integer
contribution ``w * q``; it is never multiplied by the weight.

**Why the key holder only sees a noisy sum.** Each ciphertext already contains
its client's noise, and the aggregator only adds ciphertexts, so the one value
that is ever decrypted is ``sum_i (w_i q_i + Z_i) = sum_i w_i q_i + sum_i Z_i``.
No party other than client ``i`` ever knows ``Z_i``, and the decrypted total
carries the noise of every reporting client, so it is private against the key
holder, against the aggregator, and against both together as long as they do
not also collude with the clients whose noise they would need to subtract.
(Like every distributed-DP scheme, a client that skips its noise weakens the
guarantee by the share it should have added; see "dropouts" below for how
calibration covers that share when clients are merely absent.)

**Calibration and dropouts.** With ``noise_multiplier = z`` the target is a
total noise of standard deviation ``z * l2_clip`` in the decoded (float) domain
as soon as ``min_clients`` clients report: each client adds variance
``sigma2 = (z * l2_clip * 2**frac_bits)**2 / min_clients`` in quantized units
(:meth:`DistributedDP.client_sigma2`). A round in which ``n >= min_clients``
clients report carries ``n * sigma2``, more noise than the target, never less; a
round with fewer than ``min_clients`` would carry less, which is why the key
holder should refuse to decrypt those (``generate(..., min_clients=m)`` with ``m``
at least this ``min_clients``) and why :meth:`DistributedDP.epsilon` always
accounts with the *actual* reporting counts (per round), not with the
calibration target. A client that drops out after encrypting simply contributes
neither its update nor its noise; nothing has to be recovered or re-randomised.

**Privacy accounting.** One round is ``rho``-zCDP by [KLS21, Theorem 1 via
Proposition 14] (:meth:`DistributedDP.rho`), with the L2 sensitivity of one
client's quantized contribution ``max_weight * (l2_clip * 2**frac_bits +
sqrt(d) / 2)`` (:meth:`DistributedDP.sensitivity`), under add/remove-one-client
adjacency (the codec's per-coordinate clamp to ``[-clip, clip]`` can only
shorten the vector, so it never breaks this bound). Rounds compose through
``dp_accounting``'s RDP accountant and are converted to ``(epsilon, delta)``
(:meth:`DistributedDP.epsilon`). There is no amplification by client
subsampling: every round is charged in full. The number of reporting clients
(and, for ``weighted_mean``, the weight sum, which travels unnoised in its own
slot) is treated as public.

**Overflow.** The codec must reserve room for the noise, or a sum could wrap.
:meth:`DistributedDP.noise_bound` gives a per-coordinate bound ``B`` with
``P[some |Z_j| > B] <= 2**overflow_log2`` (default ``2**-40``) for up to
``max_values`` coordinates, from the discrete Gaussian's sub-Gaussian tail.
:meth:`DistributedDP.sample_noise` redraws the whole vector in that event, so
noise is *always* within ``+-B`` and a codec sized for ``contribution_bound + B``
per client can never overflow. The price is that each client's noise is
conditioned on an event of probability at least ``1 - 2**-40``: its law moves by
at most ``2**-40`` in total variation, so an ``(epsilon, delta)`` guarantee of the
unconditioned mechanism holds with ``delta`` increased by
``n * 2**-40 * (1 + e**epsilon)`` for every round of ``n`` clients, which is
negligible next to any ``delta`` used in practice (:meth:`DistributedDP.epsilon`
reports the unconditioned mechanism's ``epsilon``).

The sampler itself is :mod:`secagg.dp.sampler`; the accounting is
:mod:`secagg.dp.accounting`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from secagg._checks import check_int as _check_int
from secagg._checks import check_positive as _check_positive
from secagg.dp import accounting
from secagg.dp.sampler import sample_discrete_gaussian
from secagg.errors import ConfigError, EncodingError

__all__ = ["DistributedDP"]

# sample_noise gives up after this many redraws (the real bound fails w.p. <= 2**-40).
_MAX_REDRAWS = 1000


# ---------------------------------------------------------------------------
# the mechanism
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributedDP:
    """Per-client L2 clipping + distributed discrete Gaussian noise in the quantized domain.

    Args:
        l2_clip: each client's whole update (all leaves together) is scaled to L2
            norm at most ``l2_clip`` (in floats) before quantization.
        noise_multiplier: ``z``; the total noise of a sum decodes to standard
            deviation ``z * l2_clip`` (per coordinate) when exactly ``min_clients``
            clients report, and to more when more report.
        min_clients: the calibration target: the noise suffices even if only this
            many clients report.

    Raises:
        ConfigError: a non-positive or non-finite ``l2_clip`` or ``noise_multiplier``,
            or ``min_clients < 1``.

    Example (``l2_clip=1, noise_multiplier=1, min_clients=10, frac_bits=16``): each
    client adds ``N_Z(0, 65536**2 / 10)``, standard deviation ~20724 quantized
    units; ten clients together add variance ``65536**2``, i.e. standard deviation
    1.0 in the decoded domain.
    """

    l2_clip: float
    noise_multiplier: float
    min_clients: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2_clip", _check_positive("l2_clip", self.l2_clip))
        object.__setattr__(self, "noise_multiplier",
                           _check_positive("noise_multiplier", self.noise_multiplier))
        object.__setattr__(self, "min_clients",
                           _check_int("min_clients", self.min_clients, 1, 2**31))

    # -- clients -------------------------------------------------------------
    def clip_update(self, flat: np.ndarray) -> tuple[np.ndarray, float]:
        """Scales a flat update into the L2 ball of radius ``l2_clip``.

        ``x -> x * min(1, l2_clip / ||x||_2)``: unchanged when ``||x||_2 <= l2_clip``,
        otherwise shrunk (direction kept) to norm ``l2_clip * (1 - 2**-40)`` so that
        float rounding cannot leave it outside the ball.

        Args:
            flat: the update, any shape (it is flattened), real values.

        Returns:
            The clipped ``float64`` vector (1-D) and the norm before clipping.

        Raises:
            EncodingError: NaN or infinity in the update.
        """
        x = np.asarray(flat, dtype=np.float64).ravel()
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise EncodingError(
                f"cannot clip non-finite value {x[bad]!r} at flat index {bad}; check the update."
            )
        norm = _l2_norm(x)
        if norm <= self.l2_clip:
            return x.copy(), norm
        return x * (self.l2_clip / norm * (1.0 - 2.0**-40)), norm

    def client_sigma2(self, frac_bits: int) -> Fraction:
        """Per-client ``sigma2`` in quantized units (a ``Fraction``).

        ``sigma2 = (noise_multiplier * l2_clip * 2**frac_bits)**2 / min_clients``,
        computed exactly from the two floats and rounded *up* to 24 significant bits
        (relative increase below ``2**-23``), or to a multiple of ``2**-40`` when the
        target is below ``2**-16``: never less noise than the target, and a small
        denominator so the sampler stays on its fast path.

        Raises:
            ConfigError: ``frac_bits`` not an integer in ``[0, 40]``.
        """
        f = _check_int("frac_bits", frac_bits, 0, 40)
        target = (Fraction(self.noise_multiplier) * Fraction(self.l2_clip) * (1 << f)) ** 2
        target /= self.min_clients
        e = min(40, max(0, 24 - math.floor(math.log2(target))))
        return Fraction(math.ceil(target * (1 << e)), 1 << e)

    def noise_bound(
        self, frac_bits: int, *, overflow_log2: float = -40, max_values: int = 2**32
    ) -> int:
        """Per-coordinate bound ``B`` on one client's noise.

        The discrete Gaussian is sub-Gaussian: ``E[exp(lambda X)] <= exp(lambda**2
        sigma2 / 2)`` for ``X ~ N_Z(0, sigma2)`` [CKS20, Section 2 (utility): the
        corollary that the discrete Gaussian is sigma-sub-Gaussian, with its tail
        bound ``P[X >= s] <= exp(-s**2 / (2 sigma2))``], so by Chernoff on both sides
        ``P[|X| >= s] <= 2 exp(-s**2 / (2 sigma2))``. With the union bound over
        ``M = max_values`` coordinates,
        ``P[exists j: |X_j| > B] <= 2 M exp(-(B + 1)**2 / (2 sigma2))``, which is at most
        ``2**overflow_log2`` once ``B + 1 >= sqrt(2 sigma2 (ln(2M) - overflow_log2 ln 2))``.
        The returned ``B = ceil(sqrt(...))`` keeps one unit of slack over the smallest
        such integer, so float rounding of the square root cannot break the bound.

        Args:
            frac_bits: fixed-point fractional bits.
            overflow_log2: log2 of the allowed probability (negative).
            max_values: most coordinates one client's vector may have.

        Raises:
            ConfigError: ``overflow_log2`` not negative and finite, ``max_values < 1``.
        """
        if isinstance(overflow_log2, bool) or not isinstance(overflow_log2, (int, float)) \
                or not math.isfinite(overflow_log2) or overflow_log2 >= 0:
            raise ConfigError(
                f"overflow_log2 must be negative and finite. Found {overflow_log2!r}."
            )
        m = _check_int("max_values", max_values, 1)
        s2 = float(self.client_sigma2(frac_bits))
        log_term = math.log(2 * m) - overflow_log2 * math.log(2)
        return math.ceil(math.sqrt(2.0 * s2 * log_term))

    def sample_noise(
        self, size: int, frac_bits: int, *, _rng: random.Random | None = None,
        _bound: int | None = None,
    ) -> np.ndarray:
        """One client's noise vector: ``size`` draws of ``N_Z(0, client_sigma2)``.

        If any coordinate exceeds :meth:`noise_bound` (probability at most
        ``2**-40``) the whole vector is drawn again, so the result always lies in
        ``[-B, B]``; the conditioning moves the noise's law by at most ``2**-40``
        in total variation (see the module docstring for its effect on ``delta``).

        Args:
            size: number of coordinates (at most ``2**32``, the bound's ``max_values``).
            frac_bits: fixed-point fractional bits.
            _rng: tests only: a seeded ``random.Random``.
            _bound: tests only: a bound to enforce instead of :meth:`noise_bound`.

        Returns:
            ``int64`` noise, to be added to the client's weighted integer contribution.

        Raises:
            ConfigError: bad ``size`` or ``frac_bits``, or the bound is so small that
                1000 redraws all failed (impossible with the real bound).
        """
        n = _check_int("size", size, 0, 2**32)
        sigma2 = self.client_sigma2(frac_bits)
        bound = self.noise_bound(frac_bits) if _bound is None else _check_int("_bound", _bound, 0)
        for _ in range(_MAX_REDRAWS):
            z = sample_discrete_gaussian(sigma2, n, _rng=_rng)
            if n == 0 or int(np.abs(z).max()) <= bound:
                return z
        raise ConfigError(
            f"noise exceeded the bound {bound} in {_MAX_REDRAWS} consecutive draws; the "
            f"bound is far too small for sigma2={float(sigma2):.4g}."
        )

    # -- accounting ----------------------------------------------------------
    def sensitivity(self, frac_bits: int, dim: int, max_weight: int = 1) -> float:
        """L2 sensitivity of one client's quantized contribution, in quantized units.

        ``Delta2 = max_weight * (l2_clip * 2**frac_bits + sqrt(dim) / 2)``. The clipped
        update has norm at most ``l2_clip``, scaling by ``2**frac_bits`` is exact,
        and nearest rounding moves each of the ``dim`` coordinates by at most 1/2, so
        by the triangle inequality the rounded vector has norm at most
        ``l2_clip 2**f + sqrt(dim)/2``; weighting multiplies by at most
        ``max_weight``. This is the deterministic bound: the nearest-rounding
        analogue of the ``c + sqrt(d)`` bound that KLS21 (Theorem 1 and Section 3,
        randomized rounding) use for stochastic rounding, without their
        probabilistic ``beta`` refinement, which is specific to conditional
        stochastic rounding. Adjacency is adding or removing one client.

        Raises:
            ConfigError: bad ``frac_bits``, ``dim < 1`` or ``max_weight < 1``.
        """
        f = _check_int("frac_bits", frac_bits, 0, 40)
        d = _check_int("dim", dim, 1)
        w = _check_int("max_weight", max_weight, 1)
        return w * (self.l2_clip * 2.0**f + math.sqrt(d) / 2.0)

    def rho(self, frac_bits: int, dim: int, reporting_clients: int, max_weight: int = 1) -> float:
        """zCDP ``rho`` of one round in which ``reporting_clients`` clients add noise.

        [KLS21, Theorem 1 / Proposition 14]: let ``n`` clients each add
        ``N_Z(0, sigma2)^d`` (``sigma >= 1/2``) and let ``Delta`` be an integer vector
        with ``||Delta||_2 <= Delta2`` and ``||Delta||_1 <= Delta1``. With
        ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi**2 sigma2 k / (k + 1))``, for all
        ``alpha > 1`` the Rényi divergence between the noisy sums at neighbours is
        at most ``min(alpha/2 Delta2**2/(n sigma2) + tau d,
        alpha/2 (Delta2**2/(n sigma2) + 2 tau Delta1/sqrt(n sigma2) + tau**2 d))``.
        Both are at most ``alpha * rho`` for all ``alpha >= 1`` with

            rho = 1/2 * min(Delta2**2/(n sigma2) + 2 tau d,
                            Delta2**2/(n sigma2) + 2 tau Delta1/sqrt(n sigma2) + tau**2 d),

        i.e. ``rho = eps**2 / 2`` with ``eps`` the minimum of the two square roots
        (the second is at most ``Delta2/sqrt(n sigma2) + tau sqrt(d)``, the form of
        Theorem 1). ``Delta1 = min(sqrt(d) Delta2, Delta2**2)`` (Cauchy–Schwarz; and
        ``|v| <= v**2`` for integers). For ``n = 1``, ``tau = 0`` and this is the
        single discrete Gaussian's ``Delta2**2 / (2 sigma2)`` (CKS20's concentrated-DP
        theorem for the discrete Gaussian mechanism); for ``sigma`` above about 10,
        ``tau < n exp(-pi**2 sigma2)`` underflows and ``rho`` equals the continuous
        Gaussian's ``Delta2**2 / (2 n sigma2)``.

        Args:
            frac_bits: fixed-point fractional bits.
            dim: number of coordinates ``d`` of one client's vector.
            reporting_clients: ``n``, the clients whose noise is in the sum.
            max_weight: largest weight a client may use.

        Raises:
            ConfigError: bad arguments, or ``sigma2 < 1/4`` (outside the theorem).
        """
        n = _check_int("reporting_clients", reporting_clients, 1)
        d = _check_int("dim", dim, 1)
        delta2 = self.sensitivity(frac_bits, d, max_weight)
        sigma2 = self.client_sigma2(frac_bits)
        if sigma2 < Fraction(1, 4):
            raise ConfigError(
                f"the per-client sigma2 {float(sigma2):.4g} is below 1/4, outside KLS21 "
                f"Theorem 1; raise noise_multiplier, l2_clip or frac_bits."
            )
        return accounting.kls21_rho(delta2, float(sigma2), n, d)

    def epsilon(
        self, rounds: int, delta: float, *, frac_bits: int, dim: int,
        reporting_clients: int | Sequence[int], max_weight: int = 1,
    ) -> float:
        """``epsilon`` of ``rounds`` rounds at the given ``delta``.

        Round ``r`` is ``rho_r``-zCDP (:meth:`rho` with that round's reporting count),
        i.e. its Rényi divergence of order ``alpha`` is at most ``alpha rho_r``,
        exactly the RDP curve of a Gaussian mechanism with noise multiplier
        ``1/sqrt(2 rho_r)``. The rounds are composed as such Gaussian events in
        ``dp_accounting.rdp.RdpAccountant`` (add/remove adjacency) and converted
        to ``(epsilon, delta)`` by its ``get_epsilon``. No amplification by
        subsampling clients is claimed.

        Args:
            rounds: number of rounds.
            delta: target ``delta`` in ``(0, 1)``.
            frac_bits: fixed-point fractional bits.
            dim: number of coordinates of one client's vector.
            reporting_clients: clients whose noise was in each round's sum: one count
                for every round, or a list of ``rounds`` counts.
            max_weight: largest weight a client may use.

        Raises:
            ConfigError: bad arguments.
        """
        r = _check_int("rounds", rounds, 1)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1). Found {delta!r}.")
        per_round = reporting_clients
        if isinstance(per_round, (int, np.integer)) and not isinstance(per_round, bool):
            counts = [_check_int("reporting_clients", per_round, 1)] * r
        elif isinstance(per_round, Sequence) and not isinstance(per_round, (str, bytes)):
            counts = [_check_int("reporting_clients[i]", c, 1) for c in per_round]
            if len(counts) != r:
                raise ConfigError(
                    f"reporting_clients lists {len(counts)} rounds, but rounds={r}."
                )
        else:
            raise ConfigError(
                f"reporting_clients must be an integer or a list of integers. "
                f"Found {reporting_clients!r}."
            )
        return accounting.compose_zcdp(
            [(self.rho(frac_bits, dim, n, max_weight), c) for n, c in Counter(counts).items()],
            float(delta))


def _l2_norm(x: np.ndarray) -> float:
    """``||x||_2`` without overflow or underflow (scaled by the largest magnitude)."""
    if x.size == 0:
        return 0.0
    m = float(np.max(np.abs(x)))
    if m == 0.0:
        return 0.0
    y = x / m
    return m * math.sqrt(float(np.dot(y, y)))
