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

**The sampler.** [CKS20, Algorithm 3]: draw ``Y`` from a discrete Laplace and
accept it with probability ``exp(-(|Y| - sigma2/t)**2 / (2 sigma2))`` where ``t``
is the Laplace scale; the discrete Laplace is [CKS20, Algorithm 2] (a uniform
remainder accepted with ``Bernoulli(exp(-U/t))`` plus ``t`` times a geometric
count of ``Bernoulli(exp(-1))`` successes), and every ``Bernoulli(exp(-gamma))``
is [CKS20, Algorithm 1] (von Neumann's trick with ``Bernoulli(gamma/k)`` draws for
rational ``gamma``, and ``floor(gamma)`` draws of ``Bernoulli(exp(-1))`` for the
integer part). Every coin is a comparison of a uniform integer with an integer,
drawn by rejection from 64-bit words, so the output law is exactly the stated
one. Speed comes from running these loops over numpy batches of integers and
from three exact re-arrangements, each documented where it is made:

* the Laplace scale is ``sigma2 / t`` with ``t = floor(sigma) + 1`` (the roles of
  ``t`` and ``sigma2 / t`` swapped with respect to the paper), which keeps the
  rejection exponent ``(|Y| - t)**2 / (2 sigma2)`` a ratio of small integers;
* the first 20 coins of ``Bernoulli(exp(-1))`` come from one uniform integer
  below ``20!`` (nested events with the same joint law);
* ``floor(gamma)`` coins of ``Bernoulli(exp(-1))`` are a geometric count compared
  with ``floor(gamma)``.

Parameters whose integers do not fit 64-bit words (``sigma2 = p/q`` in lowest
terms with ``(floor(sigma) + 1)**2 * q`` beyond about ``3e16``: ``sigma`` beyond
about ``1.8e8`` for an integer ``sigma2``, or a float with many fractional
bits) fall back to a literal Python-integer transcription of the three
algorithms (about 30k samples/s), and so do the rare proposals beyond about
``16 sigma`` on the fast path. Measured on one core: about 2M samples/s for
``sigma`` from 10 to ``1e7`` (batches of 10^5).

The randomness is ``random.SystemRandom`` (``os.urandom``). Tests may pass a
seeded ``random.Random`` through the private ``_rng`` argument for
reproducibility; numpy's generators are refused.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from .errors import ConfigError, EncodingError, SecAggError

__all__ = ["DistributedDP", "sample_discrete_gaussian", "sample_discrete_laplace"]

_TWO64 = 1 << 64
_INT64_MAX = (1 << 63) - 1
# Largest sigma2 accepted: samples stay far inside int64 (P[|Z| >= 2**63] < exp(-2**24)).
_MAX_SIGMA2 = Fraction(1 << 78)
# Largest discrete Laplace scale accepted, for the same reason.
_MAX_LAPLACE_SCALE = Fraction(1 << 39)
# Candidates drawn per numpy pass: bounds memory, large enough to amortise overheads.
_CHUNK = 1 << 16
# sample_noise gives up after this many redraws (the real bound fails w.p. <= 2**-40).
_MAX_REDRAWS = 1000
# RDP orders for the accountant: dp_accounting's defaults plus orders close to 1,
# which are the optimal ones when the composed rho is large.
_RDP_ORDERS = tuple([1.0 + k / 100 for k in range(1, 10)] + [1.1 + k / 10 for k in range(0, 99)]
                    + list(range(11, 64)) + [128, 256, 512, 1024, 4096])


# ---------------------------------------------------------------------------
# randomness
# ---------------------------------------------------------------------------
class _Source:
    """Uniform integers from a ``random.Random`` (by default the OS CSPRNG).

    Everything else in this module is a deterministic function of these draws.
    ``words`` turns ``randbytes`` into uint64 words; ``below`` is exact by
    rejection: a word ``r`` is kept iff ``r >= 2**64 mod m``, which leaves a
    multiple of ``m`` equally likely words, and ``r mod m`` is then uniform.
    """

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None) -> None:
        if rng is None:
            rng = random.SystemRandom()
        elif not isinstance(rng, random.Random):
            raise ConfigError(
                f"_rng must be a random.Random (a seeded one, for tests only). Found "
                f"{type(rng).__name__}; numpy generators are not accepted."
            )
        self._rng = rng

    def words(self, n: int) -> np.ndarray:
        """``n`` independent uniform 64-bit words."""
        return np.frombuffer(self._rng.randbytes(8 * n), dtype=np.uint64)

    def below(self, m: int, n: int) -> np.ndarray:
        """``n`` independent uniform integers in ``[0, m)`` (uint64), ``1 <= m <= 2**64``."""
        if m == _TWO64:
            return self.words(n)
        if m & (m - 1) == 0:
            return self.words(n) & np.uint64(m - 1)
        threshold = np.uint64(_TWO64 % m)
        out = self.words(n).copy()
        bad = np.flatnonzero(out < threshold)
        while bad.size:
            redraw = self.words(bad.size)
            out[bad] = redraw
            bad = bad[redraw < threshold]
        return out % np.uint64(m)

    def randbelow(self, m: int) -> int:
        """One uniform integer in ``[0, m)``, any size."""
        return self._rng.randrange(m)


# ---------------------------------------------------------------------------
# reference implementation: CKS20 Algorithms 1-3, literally, on Python integers
# ---------------------------------------------------------------------------
def _bern_exp_ref(src: _Source, gamma: Fraction) -> bool:
    """``Bernoulli(exp(-gamma))`` for rational ``gamma >= 0`` [CKS20, Algorithm 1].

    For ``gamma <= 1``: ``K = 1``; while ``Bernoulli(gamma / K)`` succeeds, ``K += 1``;
    return ``K`` odd. Then ``P[K > k] = gamma**k / k!`` and
    ``P[K odd] = sum_k (-gamma)**k / k! = exp(-gamma)``. For ``gamma > 1``: the
    product of ``floor(gamma)`` coins ``Bernoulli(exp(-1))`` and one
    ``Bernoulli(exp(-(gamma - floor(gamma))))``.
    """
    num, den = gamma.numerator, gamma.denominator
    while num > den:  # integer part, one Bernoulli(exp(-1)) at a time
        if not _bern_exp_ref(src, Fraction(1)):
            return False
        num -= den
    k = 1
    while src.randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def _laplace_ref(src: _Source, t: int, s: int) -> int:
    """One draw of the discrete Laplace ``P[Z = z] ∝ exp(-|z| s / t)`` [CKS20, Algorithm 2]."""
    one = Fraction(1)
    while True:
        u = src.randbelow(t)
        if not _bern_exp_ref(src, Fraction(u, t)):
            continue
        v = 0
        while _bern_exp_ref(src, one):
            v += 1
        y = (u + t * v) // s
        if src.randbelow(2):
            if y == 0:
                continue
            return -y
        return y


def _gaussian_ref(src: _Source, sigma2: Fraction) -> int:
    """One draw of ``N_Z(0, sigma2)`` [CKS20, Algorithm 3], Laplace scale ``t = floor(sigma)+1``."""
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = _laplace_ref(src, t, 1)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bern_exp_ref(src, gamma):
            return y


# ---------------------------------------------------------------------------
# batched, exact: the same algorithms over numpy integer arrays
# ---------------------------------------------------------------------------
_FACT20 = math.factorial(20)
# Thresholds 20!/k! for k = 20, 19, ..., 1 (ascending).
_FACT_THRESHOLDS = np.array([_FACT20 // math.factorial(k) for k in range(20, 0, -1)],
                            dtype=np.uint64)


def _bern_exp1(src: _Source, n: int) -> np.ndarray:
    """``n`` coins ``Bernoulli(exp(-1))`` [CKS20, Algorithm 1 with gamma = 1].

    Algorithm 1 with ``gamma = 1`` draws ``A_k ~ Bernoulli(1/k)`` until one fails and
    returns ``K`` odd, with ``P[K > k] = 1/k!``. Drawing ``W`` uniform below ``20!``
    and declaring ``K > k  <=>  W < 20!/k!`` for ``k <= 20`` gives the same nested
    events with the same probabilities ``(20!/k!)/20! = 1/k!``; the rare ``W = 0``
    (``K > 20``) continues Algorithm 1 from ``k = 21`` coin by coin.
    """
    w = src.below(_FACT20, n)
    passed = 20 - np.searchsorted(_FACT_THRESHOLDS, w, side="right")  # = K - 1 (capped at 20)
    out = (passed % 2) == 0
    for i in np.flatnonzero(passed == 20):  # probability 1/20! each
        k = 21
        while src.randbelow(k) == 0:
            k += 1
        out[i] = k % 2 == 1
    return out


def _geometric_exp1(src: _Source, n: int, cap: np.ndarray | None = None) -> np.ndarray:
    """Counts of consecutive ``Bernoulli(exp(-1))`` successes, ``P[V >= v] = exp(-v)``.

    With ``cap``, counting stops once ``cap`` successes are reached, so the result is
    ``min(V, cap)`` and ``result == cap`` is an event of probability ``exp(-cap)``:
    the ``floor(gamma)`` coins of Algorithm 1 for ``gamma > 1``.
    """
    v = np.zeros(n, dtype=np.int64)
    idx = np.arange(n) if cap is None else np.flatnonzero(cap > 0)
    while idx.size:
        ok = _bern_exp1(src, idx.size)
        idx = idx[ok]
        v[idx] += 1
        if cap is not None:
            idx = idx[v[idx] < cap[idx]]
    return v


def _bern_exp_frac(src: _Source, num: np.ndarray, den: int) -> np.ndarray:
    """Coins ``Bernoulli(exp(-num[i] / den))`` for integers ``0 <= num[i] <= den`` [CKS20, Alg. 1].

    Every element still looping is at the same ``K``, so ``Bernoulli(num/(den*K))`` is
    one batched comparison of a uniform integer below ``den*K`` with ``num``
    (or, past 64 bits, the product of ``Bernoulli(num/den)`` and ``Bernoulli(1/K)``).
    """
    n = num.size
    out = np.empty(n, dtype=bool)
    idx = np.arange(n)
    cur = num.astype(np.uint64)
    k = 1
    while idx.size:
        m = den * k
        if m <= _TWO64:
            a = src.below(m, idx.size) < cur
        else:
            a = (src.below(den, idx.size) < cur) & (src.below(k, idx.size) == 0)
        out[idx[~a]] = k % 2 == 1
        idx, cur = idx[a], cur[a]
        k += 1
    return out


def _laplace_batch(src: _Source, t: int, s: int, n: int) -> np.ndarray:
    """Up to ``n`` discrete Laplace draws, ``P[Z = z] ∝ exp(-|z| s / t)`` [CKS20, Algorithm 2].

    ``n`` candidates run through the algorithm together; rejected ones are dropped,
    the rest keep their order (each survivor is an independent exact draw).
    Requires ``t, s < 2**62``.
    """
    u = src.below(t, n).astype(np.int64)
    u = u[_bern_exp_frac(src, u, t)]  # U accepted w.p. exp(-U/t)
    v = _geometric_exp1(src, u.size)  # V ~ Geometric: P[V >= v] = exp(-v)
    vmax = (_INT64_MAX - t) // t
    if v.size and int(v.max()) > vmax:  # X = U + tV past int64 (t near 2**62): Python ints
        y = np.array([(int(a) + t * int(b)) // s for a, b in zip(u, v)], dtype=object)
        if any(abs(int(val)) > _INT64_MAX for val in y):  # scale <= 2**39: P < exp(-2**24)
            raise SecAggError(
                "a discrete Laplace draw does not fit int64 (probability < e**-(2**24))."
            )
        y = y.astype(np.int64)
    else:
        y = (u + t * v) // s
    sign = (src.words(y.size) & np.uint64(1)).astype(bool)
    keep = ~(sign & (y == 0))  # reject (B = 1, Y = 0): zero would be counted twice
    return np.where(sign, -y, y)[keep]


@dataclass(frozen=True)
class _GaussPlan:
    """What the batched Gaussian sampler precomputes for ``sigma2 = p / q``.

    ``c = floor(sigma) + 1``. Proposals come from the discrete Laplace with scale
    ``sigma2 / c = p / (q c) = lap_t / lap_s`` and are accepted with probability
    ``exp(-gamma)``, ``gamma = (|y| - c)**2 / (2 sigma2) = (|y| - c)**2 q / (2p)``:
    CKS20 Algorithm 3 with scale ``s`` in place of ``t`` — for any scale ``s > 0``,
    ``exp(-|y|/s) exp(-(|y| - sigma2/s)**2 / (2 sigma2)) = exp(-y**2 / (2 sigma2))
    exp(-sigma2 / (2 s**2))``, so accepted values are exactly ``N_Z(0, sigma2)``.
    ``ymax`` is the largest ``|y|`` whose numerator ``(|y| - c)**2 q`` fits int64.
    """

    p: int
    q: int
    c: int
    lap_t: int
    lap_s: int
    ymax: int
    accept: float  # rough acceptance rate per Laplace candidate, only to size batches

    @property
    def den(self) -> int:
        return 2 * self.p


@lru_cache(maxsize=64)
def _gauss_plan(p: int, q: int) -> _GaussPlan | None:
    """The batched plan, or None when its integers do not fit 64-bit words."""
    c = math.isqrt(p // q) + 1
    g = math.gcd(p, q * c)
    lap_t, lap_s = p // g, q * c // g
    ymax = math.isqrt(_INT64_MAX // q) - c
    if 2 * p >= 1 << 62 or lap_t >= 1 << 62 or lap_s >= 1 << 62 or ymax < 16 * c:
        return None
    # measured: ~0.48 of Laplace candidates become samples for sigma >= 10, ~0.28 at sigma2 = 1/2
    accept = 0.45 if c > 10 else 0.25
    return _GaussPlan(p, q, c, lap_t, lap_s, ymax, accept)


def _gaussian_batch(src: _Source, plan: _GaussPlan, n: int) -> np.ndarray:
    """Up to ``n`` exact ``N_Z(0, p/q)`` draws from ``n`` Laplace candidates, in order."""
    y = _laplace_batch(src, plan.lap_t, plan.lap_s, n)
    ay = np.abs(y)
    accept = np.zeros(y.size, dtype=bool)
    small = np.flatnonzero(ay <= plan.ymax)
    d = ay[small] - plan.c
    num = d * d * plan.q  # < 2**63 by the choice of ymax
    k, r = np.divmod(num, plan.den)  # gamma = k + r / den, 0 <= r < den
    ok = _geometric_exp1(src, small.size, cap=k) == k  # floor(gamma) coins Bernoulli(exp(-1))
    live = np.flatnonzero(ok)
    ok[live] = _bern_exp_frac(src, r[live], plan.den)  # Bernoulli(exp(-(gamma - floor gamma)))
    accept[small] = ok
    for i in np.flatnonzero(ay > plan.ymax):  # |y| beyond ~16 sigma: Python integers
        gamma = Fraction((int(ay[i]) - plan.c) ** 2 * plan.q, plan.den)
        accept[i] = _bern_exp_ref(src, gamma)
    return y[accept]


# ---------------------------------------------------------------------------
# public samplers
# ---------------------------------------------------------------------------
def _as_fraction(name: str, value: object, upper: Fraction) -> Fraction:
    numeric = (int, float, Fraction, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise ConfigError(f"{name} must be an int, float or Fraction. Found {value!r}.")
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite. Found {value!r}.")
    if isinstance(value, np.integer):
        value = int(value)
    frac = Fraction(value) if not isinstance(value, np.floating) else Fraction(float(value))
    if not 0 < frac <= upper:
        raise ConfigError(f"{name} must be in (0, {float(upper):.3g}]. Found {value!r}.")
    return frac


def _as_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < 0:
        raise ConfigError(f"size must be a non-negative integer. Found {size!r}.")
    return int(size)


def sample_discrete_gaussian(
    sigma2: Fraction | int | float, size: int, *, _rng: random.Random | None = None
) -> np.ndarray:
    """Draws exact samples of the discrete Gaussian ``N_Z(0, sigma2)``.

    ``P[X = x] = exp(-x**2 / (2 sigma2)) / sum_{y in Z} exp(-y**2 / (2 sigma2))`` for
    every integer ``x``; its variance is slightly below ``sigma2`` for small
    ``sigma2`` and equal to it up to ``O(exp(-2 pi**2 sigma2))`` otherwise (CKS20
    show it is at most ``sigma2``). Sampled with [CKS20, Algorithms 1-3] over
    ``random.SystemRandom`` (see the module docstring for the batched,
    exact arrangement).

    Args:
        sigma2: the scale parameter ``sigma**2`` (not exactly the variance), a
            positive rational: an ``int``, a ``Fraction``, or a ``float`` (taken at
            its exact binary value). With ``sigma2 = p/q`` in lowest terms,
            ``(floor(sigma) + 1)**2 * q`` up to about ``3e16`` takes the fast path;
            beyond, the slower pure-Python reference runs (pass a ``Fraction`` with a
            small denominator rather than a float such as ``0.1``, whose exact value
            has denominator ``2**55``).
        size: number of samples.
        _rng: tests only: a seeded ``random.Random`` for reproducible draws.

    Returns:
        ``int64`` array of ``size`` independent samples.

    Raises:
        ConfigError: ``sigma2`` not a positive finite number at most ``2**78``,
            ``size`` negative, or ``_rng`` not a ``random.Random``.
    """
    s2 = _as_fraction("sigma2", sigma2, _MAX_SIGMA2)
    n = _as_size(size)
    src = _Source(_rng)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    plan = _gauss_plan(s2.numerator, s2.denominator)
    if plan is None:
        return np.array([_gaussian_ref(src, s2) for _ in range(n)], dtype=np.int64)
    parts: list[np.ndarray] = []
    have = 0
    while have < n:
        want = min(_CHUNK, int((n - have) / plan.accept * 1.1) + 32)
        got = _gaussian_batch(src, plan, want)
        parts.append(got)
        have += got.size
    return np.concatenate(parts)[:n]


def sample_discrete_laplace(
    t: Fraction | int, size: int, *, _rng: random.Random | None = None
) -> np.ndarray:
    """Draws exact samples of the discrete Laplace distribution with scale ``t``.

    ``P[X = x] = (1 - e^{-1/t}) / (1 + e^{-1/t}) * exp(-|x| / t)`` for every integer
    ``x``; mean 0, variance ``2 e^{-1/t} / (1 - e^{-1/t})**2``. Sampled with
    [CKS20, Algorithm 2] (``t = num/den`` gives its integers ``t = num, s = den``):
    a remainder ``U`` uniform below ``num`` kept with probability ``exp(-U/num)``,
    plus ``num`` times a geometric ``V`` with ``P[V >= v] = exp(-v)``, divided by
    ``den`` (floor) and given a random sign, rejecting ``-0``.

    Args:
        t: the scale, a positive ``int`` or ``Fraction`` (a ``float`` is taken at its
            exact binary value), at most ``2**39``, with numerator and denominator
            below ``2**62``.
        size: number of samples.
        _rng: tests only: a seeded ``random.Random`` for reproducible draws.

    Returns:
        ``int64`` array of ``size`` independent samples.

    Raises:
        ConfigError: ``t`` out of range, ``size`` negative, or a bad ``_rng``.
    """
    scale = _as_fraction("t", t, _MAX_LAPLACE_SCALE)
    if scale.numerator >= 1 << 62 or scale.denominator >= 1 << 62:
        raise ConfigError(f"t must have numerator and denominator below 2**62. Found {t!r}.")
    n = _as_size(size)
    src = _Source(_rng)
    parts: list[np.ndarray] = []
    have = 0
    while have < n:
        want = min(_CHUNK, int((n - have) * 1.7) + 32)
        got = _laplace_batch(src, scale.numerator, scale.denominator, want)
        parts.append(got)
        have += got.size
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)[:n]


# ---------------------------------------------------------------------------
# the mechanism
# ---------------------------------------------------------------------------
def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer. Found {value!r}.")
    if int(value) < lo or (hi is not None and int(value) > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} must be {rng}. Found {value!r}.")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number. Found {value!r}.")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"{name} must be positive and finite. Found {value!r}.")
    return float(value)


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
        s2 = float(sigma2)
        tau = _kls21_tau(s2, n)
        delta1 = min(math.sqrt(d) * delta2, delta2 * delta2)
        l2sq = delta2 * delta2 / (n * s2)
        l1 = delta1 / math.sqrt(n * s2)
        return 0.5 * min(l2sq + 2.0 * tau * d, l2sq + 2.0 * tau * l1 + tau * tau * d)

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
        try:
            import dp_accounting
            from dp_accounting import rdp
        except ImportError as exc:  # an optional dependency: only accounting needs it
            raise ImportError(
                "DistributedDP.epsilon needs dp-accounting: pip install dp-accounting==0.6.0"
            ) from exc

        r = _check_int("rounds", rounds, 1)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1). Found {delta!r}.")
        per_round = reporting_clients
        if isinstance(per_round, (int, np.integer)) and not isinstance(per_round, bool):
            counts = [_check_int("reporting_clients", per_round, 1)] * r
        elif isinstance(per_round, Sequence) and not isinstance(per_round, (str, bytes)):
            counts = [_check_int("reporting_clients[i]", c, 1) for c in reporting_clients]
            if len(counts) != r:
                raise ConfigError(
                    f"reporting_clients lists {len(counts)} rounds, but rounds={r}."
                )
        else:
            raise ConfigError(
                f"reporting_clients must be an integer or a list of integers. "
                f"Found {reporting_clients!r}."
            )
        accountant = rdp.RdpAccountant(orders=_RDP_ORDERS)
        for n, count in sorted(Counter(counts).items()):
            rho = self.rho(frac_bits, dim, n, max_weight)
            event = dp_accounting.GaussianDpEvent(noise_multiplier=1.0 / math.sqrt(2.0 * rho))
            accountant.compose(dp_accounting.SelfComposedDpEvent(event, count))
        return float(accountant.get_epsilon(float(delta)))


def _l2_norm(x: np.ndarray) -> float:
    """``||x||_2`` without overflow or underflow (scaled by the largest magnitude)."""
    if x.size == 0:
        return 0.0
    m = float(np.max(np.abs(x)))
    if m == 0.0:
        return 0.0
    y = x / m
    return m * math.sqrt(float(np.dot(y, y)))


def _kls21_tau(sigma2: float, n: int) -> float:
    """``tau = 10 sum_{k=1}^{n-1} exp(-2 pi**2 sigma2 k/(k+1))`` [KLS21, Theorem 1]."""
    if n <= 1:
        return 0.0
    # every term is at most exp(-pi**2 sigma2) (k = 1); past ~745 they all underflow
    if math.pi**2 * sigma2 > 800:
        return 0.0
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * sigma2 * k / (k + 1.0))))
