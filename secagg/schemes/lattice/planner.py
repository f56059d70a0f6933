"""Choosing lattice parameters for exact sums (pure arithmetic, no tenseal import).

CKKS is approximate, but secagg encrypts *integers* and rounds after
decryption, so a sum is exact whenever the accumulated noise stays below 1/2
in every slot. :func:`plan_ckks` picks the smallest ring degree ``N``, one data
prime, one special prime and the scale ``Δ = 2**scale_bits`` for which that
holds with overwhelming probability, within the HomomorphicEncryption.org
security standard.

Noise model (SEAL public-key encryption, as TenSEAL calls it). SEAL encrypts
at the key level, modulo ``q·P`` with ``P`` the special prime, and divides by
``P`` with rounding to reach the data level. Per coefficient the fresh noise
is therefore::

    (e0 + e·u + e1·s) / P   +   r0 + r1·s   +   ε
      Gaussian σ=3.2,          rounding,        encoding
      u, s ternary              r ∈ [-½, ½]     rounding

with variance ``τ² = σ²(1 + 4N/3)/P² + 1/12 + N/18 + 1/12`` (ternary
coefficients have variance 2/3, rounding errors 1/12). Decoding evaluates the
polynomial at ``N/2`` roots of unity and divides by Δ, so the real part of
one slot's error has standard deviation ``τ·sqrt(N/2)/Δ``. For N = 4096 this
is ``≈ N/(6Δ)``, which the test suite checks against measured noise. ``K``
independent summands add variances, giving ``σ_sum = sqrt(K)·τ·sqrt(N/2)/Δ``.

The slot error is *not* identically distributed across slots: the ``r1·s``
term evaluates to ``r1(ζ_j)·s(ζ_j)`` in slot ``j``, so a slot's variance scales
with ``|s(ζ_j)|²`` for the one secret key ``s``, roughly exponentially
distributed over the slots (measured: per-slot standard deviations from 0.03x
to 2.6x the average at N = 4096). Given the key, a slot's error is Gaussian
(the canonical-embedding heuristic of Costache, Curtis, Hales, Murphy, Ogilvie
and Player, "On the precision loss in approximate homomorphic encryption",
2022); mixed over an exponential variance it is Laplace, with tail
``P(|e| > t) <= exp(-sqrt(2)·t/σ)`` for the average standard deviation ``σ``.
The planner therefore requires ``exp(-sqrt(2)·0.5/σ_sum) <= 2**failure_log2``
(default ``2**-60`` per slot, ``2**-40`` for a million-value update by the union
bound): about 3.3x more margin than a Gaussian tail would ask for.

The data prime must hold the largest sum: ``2·(sum_bound + 1)·Δ < 2**(P_bits-1)``.

Security: total modulus bits per ring degree from the HomomorphicEncryption.org
standard (Albrecht et al., "Homomorphic Encryption Security Standard", 2018,
Table 1, uniform ternary secrets, classical attacks).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import Field, asdict, dataclass
from typing import Any, ClassVar

from secagg.errors import PlanningError

__all__ = ["LatticePlan", "CkksPlan", "plan_ckks", "ckks_failure_log2", "BfvPlan", "plan_bfv",
           "HE_STANDARD_MAX_LOGQ", "ckks_slot_noise_std", "bfv_fresh_noise_bound"]

# N -> {security level: max total bits of the coefficient modulus}
HE_STANDARD_MAX_LOGQ: dict[int, dict[int, int]] = {
    1024: {128: 27, 192: 19, 256: 14},
    2048: {128: 54, 192: 37, 256: 29},
    4096: {128: 109, 192: 75, 256: 58},
    8192: {128: 218, 192: 152, 256: 118},
    16384: {128: 438, 192: 305, 256: 237},
    32768: {128: 881, 192: 611, 256: 476},
}

_SEAL_SIGMA = 3.2
_MAX_PRIME_BITS = 60  # SEAL's limit per prime
_MIN_SPECIAL_BITS = 20  # makes the key-level noise term negligible after division


class LatticePlan(ABC):
    """What CKKS and BFV plans share: a ring degree, two primes, the sizes they give.

    ``coeff_mod_bit_sizes`` is ``(data prime, special prime)``.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # each plan is a frozen dataclass
    #: the fields the public context carries, in order (the rest is recomputed and checked on load)
    WIRE_FIELDS: ClassVar[tuple[str, ...]]

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]

    @property
    @abstractmethod
    def slots(self) -> int:
        """Values per ciphertext."""

    @property
    def raw_bytes_per_value(self) -> float:
        """Uncompressed ciphertext bytes per value (two polynomials, one prime, 8 B words)."""
        return 2 * self.poly_modulus_degree * 8 / self.slots

    def _fields(self) -> dict[str, Any]:
        d = asdict(self)
        d["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        return d

    def _margins(self) -> dict[str, object]:
        """Derived noise figures to report next to the sizes (none by default)."""
        return {}

    def as_dict(self) -> dict[str, object]:
        """The plan as plain data, with the derived sizes (and the noise margin where modelled)."""
        d = self._fields()
        d["slots"] = self.slots
        d.update(self._margins())
        d["raw_bytes_per_value"] = self.raw_bytes_per_value
        d["approx_bytes_per_value"] = self.raw_bytes_per_value * self.coeff_mod_bit_sizes[0] / 64
        return d

    def wire_dict(self) -> dict[str, object]:
        """What the public context carries (:attr:`WIRE_FIELDS`)."""
        d = self._fields()
        return {name: d[name] for name in self.WIRE_FIELDS}


@dataclass(frozen=True)
class CkksPlan(LatticePlan):
    """A CKKS parameter set for exact integer sums, with its noise budget."""

    WIRE_FIELDS = ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "security")

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]  # (data prime, special prime)
    scale_bits: int
    security: int
    sum_bound: int
    max_summands: int
    slot_noise_std: float  # one summand, in integer units
    sum_noise_std: float  # max_summands summands
    failure_log2: float  # log2 of the per-slot decoding failure bound

    @property
    def slots(self) -> int:
        """Values per ciphertext."""
        return self.poly_modulus_degree // 2

    def _margins(self) -> dict[str, object]:
        return {"noise_margin": 0.5 / self.sum_noise_std}  # standard deviations to a wrong sum


def ckks_slot_noise_std(poly_modulus_degree: int, special_bits: int, scale_bits: int) -> float:
    """Modelled std of one fresh encryption's decoding error, in units of 1."""
    n = poly_modulus_degree
    tau2 = _SEAL_SIGMA**2 * (1 + 4 * n / 3) / 2.0 ** (2 * (special_bits - 1)) + 1 / 6 + n / 18
    return math.sqrt(tau2) * math.sqrt(n / 2) / 2.0**scale_bits


def ckks_failure_log2(sum_noise_std: float) -> float:
    """log2 of the per-slot probability that a sum with this noise rounds wrongly."""
    return -math.sqrt(2) * 0.5 / sum_noise_std / math.log(2)


def _check_targets(sum_bound: int, max_summands: int, security: int) -> None:
    """Refuse what no plan can be made for (both planners)."""
    if security not in (128, 192, 256):
        raise PlanningError(f"security must be 128, 192 or 256 bits. Found {security!r}.")
    if sum_bound < 1 or max_summands < 1:
        raise PlanningError(
            f"sum_bound and max_summands must be positive. Found {sum_bound}, {max_summands}."
        )


def _special_prime_bits(n: int, data_bits: int, max_logq: int) -> int | str:
    """The special prime's bits beside a ``data_bits`` data prime at ring degree ``n``, or why none fit."""
    if data_bits > _MAX_PRIME_BITS:
        return f"N={n}: needs a {data_bits}-bit data prime (max 60)"
    special_bits = min(_MAX_PRIME_BITS, max_logq - data_bits)
    if special_bits < max(_MIN_SPECIAL_BITS, (2 * n).bit_length() + 1):
        return f"N={n}: {data_bits}+{_MIN_SPECIAL_BITS} bits exceed {max_logq}"
    return special_bits


def plan_ckks(
    sum_bound: int,
    max_summands: int,
    *,
    security: int = 128,
    failure_log2: float = -60.0,
) -> CkksPlan:
    """Smallest CKKS parameters that sum ``max_summands`` integers exactly.

    Args:
        sum_bound: largest magnitude of any slot of the sum.
        max_summands: how many encryptions one sum may hold.
        security: 128, 192 or 256 bits (HomomorphicEncryption.org standard).
        failure_log2: log2 of the tolerated per-slot probability of a wrong sum.

    Raises:
        PlanningError: when no ring degree up to 32768 with one data prime of at
            most 60 bits can keep the sum exact; the message says what to lower.

    Example: ``plan_ckks(6_553_600, 100)`` (clip 1, 16 fractional bits, 100
    clients) gives N = 4096, moduli (44, 60) and scale 2**19.
    """
    _check_targets(sum_bound, max_summands, security)
    if not failure_log2 < 0:
        raise PlanningError(f"failure_log2 must be negative. Found {failure_log2}.")
    # Laplace tail (see the module docstring): exp(-sqrt(2)·0.5/σ) <= 2**failure_log2
    z = -failure_log2 * math.log(2) / math.sqrt(2)
    value_bits = (sum_bound + 1).bit_length()
    reasons = []
    for n, limits in HE_STANDARD_MAX_LOGQ.items():
        max_logq = limits[security]
        # scale: smallest power of two with z * sigma_sum <= 1/2 (special prime at its widest)
        special_guess = min(_MAX_PRIME_BITS, max_logq - value_bits)
        if special_guess < _MIN_SPECIAL_BITS:
            reasons.append(f"N={n}: no room for a special prime")
            continue
        per_unit = ckks_slot_noise_std(n, special_guess, 0) * math.sqrt(max_summands)
        scale_bits = max(1, math.ceil(math.log2(2 * z * per_unit)))
        data_bits = value_bits + scale_bits + 2
        special_bits = _special_prime_bits(n, data_bits, max_logq)
        if isinstance(special_bits, str):
            reasons.append(special_bits)
            continue
        one = ckks_slot_noise_std(n, special_bits, scale_bits)
        total = one * math.sqrt(max_summands)
        return CkksPlan(
            poly_modulus_degree=n,
            coeff_mod_bit_sizes=(data_bits, special_bits),
            scale_bits=scale_bits,
            security=security,
            sum_bound=sum_bound,
            max_summands=max_summands,
            slot_noise_std=one,
            sum_noise_std=total,
            failure_log2=ckks_failure_log2(total),
        )
    raise PlanningError(
        f"no CKKS parameters keep a sum of {max_summands} values of up to {sum_bound} "
        f"exact at {security}-bit security ({'; '.join(reasons)}). Lower frac_bits, clip, "
        f"max_clients or max_weight, or use the 'paillier' scheme."
    )


# -- BFV ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BfvPlan(LatticePlan):
    """A BFV parameter set for exact integer sums, with its noise budget.

    BFV is exact by construction: a slot decrypts to the sum modulo the plain
    modulus ``t``, centred, so it suffices that ``t > 2 * sum_bound`` and that
    the accumulated noise stays below half of ``Δ = q/t``.
    """

    WIRE_FIELDS = ("poly_modulus_degree", "coeff_mod_bit_sizes", "plain_modulus", "security")

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]  # (data prime, special prime)
    plain_modulus: int
    security: int
    sum_bound: int
    max_summands: int
    noise_bound_log2: float  # log2 of the worst-case noise of a full sum
    margin_bits: float  # log2(Δ / 2) - noise_bound_log2

    @property
    def slots(self) -> int:
        """Values per ciphertext (batching)."""
        return self.poly_modulus_degree


def bfv_fresh_noise_bound(poly_modulus_degree: int) -> float:
    """A bound on one fresh BFV encryption's noise coefficients after SEAL's mod switch.

    As for CKKS, SEAL encrypts at the key level and divides by the special prime,
    leaving rounding noise ``r0 + r1·s`` (``r`` in ``[-1/2, 1/2]``, ``s`` ternary)
    of standard deviation ``sqrt(1/12 + N/18)`` per coefficient, plus a key-level
    term divided by the special prime that is negligible. The bound is 12
    standard deviations (a coefficient exceeds it with probability below
    ``2**-100`` under the Gaussian heuristic); the test suite checks it against
    SEAL's own ``invariant_noise_budget``.
    """
    n = poly_modulus_degree
    return 12 * math.sqrt(1 / 12 + n / 18) + 1


def _batching_prime_above(bound: int, poly_modulus_degree: int) -> int:
    """The smallest prime ``t > bound`` with ``t ≡ 1 (mod 2N)`` (batching needs it)."""
    import gmpy2

    step = 2 * poly_modulus_degree
    k = bound // step + 1
    while True:
        t = k * step + 1
        if gmpy2.is_prime(t, 40):
            return t
        k += 1


def plan_bfv(sum_bound: int, max_summands: int, *, security: int = 128) -> BfvPlan:
    """Smallest BFV parameters that sum ``max_summands`` integers exactly.

    The plain modulus is the smallest batching-friendly prime above
    ``2 * sum_bound``; the data prime is the smallest that keeps
    ``max_summands * (fresh noise + 1/2)`` below ``Δ/2`` with 8 bits to spare
    (the ``+1/2`` is SEAL's rounding of ``q·m/t`` per summand).

    Raises:
        PlanningError: when no ring degree with a data prime of at most 60 bits fits.
    """
    _check_targets(sum_bound, max_summands, security)
    reasons = []
    for n, limits in HE_STANDARD_MAX_LOGQ.items():
        if n < 2048:
            continue
        t = _batching_prime_above(2 * sum_bound + 1, n)
        if t.bit_length() > 60:
            reasons.append(f"N={n}: plain modulus of {t.bit_length()} bits")
            continue
        noise = max_summands * (bfv_fresh_noise_bound(n) + 0.5)
        # q/t >= 2 * noise * 2**8  ->  bits(q) >= bits(t) + log2(noise) + 9
        data_bits = t.bit_length() + math.ceil(math.log2(noise)) + 9
        max_logq = limits[security]
        special_bits = _special_prime_bits(n, data_bits, max_logq)
        if isinstance(special_bits, str):
            reasons.append(special_bits)
            continue
        delta_half_log2 = data_bits - 1 - t.bit_length() - 1
        return BfvPlan(
            poly_modulus_degree=n,
            coeff_mod_bit_sizes=(data_bits, special_bits),
            plain_modulus=t,
            security=security,
            sum_bound=sum_bound,
            max_summands=max_summands,
            noise_bound_log2=math.log2(noise),
            margin_bits=delta_half_log2 - math.log2(noise),
        )
    raise PlanningError(
        f"no BFV parameters keep a sum of {max_summands} values of up to {sum_bound} exact "
        f"at {security}-bit security ({'; '.join(reasons)}). Lower frac_bits, clip, "
        f"max_clients or max_weight."
    )
