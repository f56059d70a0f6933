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

Treating the slot error as Gaussian (the canonical-embedding heuristic of
Costache, Curtis, Hales, Murphy, Ogilvie and Player, "On the precision loss in
approximate homomorphic encryption", 2022), a slot decodes wrongly with
probability at most ``exp(-z²/2)`` where ``z = 0.5/σ_sum``. The planner picks
Δ so that this is below ``2**failure_log2`` (default ``2**-60`` per slot,
``2**-40`` for a million-value update by the union bound).

The data prime must hold the largest sum: ``2·(sum_bound + 1)·Δ < 2**(P_bits-1)``.

Security: total modulus bits per ring degree from the HomomorphicEncryption.org
standard (Albrecht et al., "Homomorphic Encryption Security Standard", 2018,
Table 1, uniform ternary secrets, classical attacks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import PlanningError

__all__ = ["CkksPlan", "plan_ckks", "HE_STANDARD_MAX_LOGQ", "ckks_slot_noise_std"]

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


@dataclass(frozen=True)
class CkksPlan:
    """A CKKS parameter set for exact integer sums, with its noise budget."""

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

    @property
    def raw_bytes_per_value(self) -> float:
        """Uncompressed ciphertext bytes per value (two polynomials, one prime, 8 B words)."""
        return 2 * self.poly_modulus_degree * 8 / self.slots

    def as_dict(self) -> dict[str, object]:
        """The plan as plain data."""
        d = asdict(self)
        d["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        d["slots"] = self.slots
        return d


def ckks_slot_noise_std(poly_modulus_degree: int, special_bits: int, scale_bits: int) -> float:
    """Modelled std of one fresh encryption's decoding error, in units of 1."""
    n = poly_modulus_degree
    tau2 = _SEAL_SIGMA**2 * (1 + 4 * n / 3) / 2.0 ** (2 * (special_bits - 1)) + 1 / 6 + n / 18
    return math.sqrt(tau2) * math.sqrt(n / 2) / 2.0**scale_bits


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
    clients) gives N = 4096, moduli (42, 60) and scale 2**17.
    """
    if security not in (128, 192, 256):
        raise PlanningError(f"security must be 128, 192 or 256 bits. Found {security!r}.")
    if sum_bound < 1 or max_summands < 1:
        raise PlanningError(
            f"sum_bound and max_summands must be positive. Found {sum_bound}, {max_summands}."
        )
    if not failure_log2 < 0:
        raise PlanningError(f"failure_log2 must be negative. Found {failure_log2}.")
    z = math.sqrt(-2 * failure_log2 * math.log(2))
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
        if data_bits > _MAX_PRIME_BITS:
            reasons.append(f"N={n}: needs a {data_bits}-bit data prime (max 60)")
            continue
        special_bits = min(_MAX_PRIME_BITS, max_logq - data_bits)
        if special_bits < max(_MIN_SPECIAL_BITS, (2 * n).bit_length() + 1):
            reasons.append(f"N={n}: {data_bits}+{_MIN_SPECIAL_BITS} bits exceed {max_logq}")
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
            failure_log2=-((0.5 / total) ** 2) / 2 / math.log(2),
        )
    raise PlanningError(
        f"no CKKS parameters keep a sum of {max_summands} values of up to {sum_bound} "
        f"exact at {security}-bit security ({'; '.join(reasons)}). Lower frac_bits, clip, "
        f"max_clients or max_weight, or use the 'paillier' scheme."
    )
