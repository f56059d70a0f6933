"""Safe primes ``p = 2p' + 1`` (``p'`` prime) for threshold Paillier moduli.

Threshold Paillier à la Shoup / Damgård–Jurik / Fouque–Poupard–Stern needs
``n = pq`` with safe primes: then the squares of ``Z*_{n²}`` form a cyclic group
of order ``n·p'q'`` whose prime factors are all huge, which is what makes the
zero-knowledge proofs of correct partial decryption sound (see
:mod:`secagg.threshold.proofs`).

Generation is an incremental search with a combined sieve: pick a random odd
start ``q0`` of ``bits - 1`` bits (top two bits set, so that a product of two
such primes has exactly ``2·bits`` bits), and mark, in a window of ``2**16``
candidates ``q = q0 + 2k``, every ``k`` for which ``q`` *or* ``2q + 1`` is
divisible by an odd prime below ``2**16`` (two slice assignments per prime in a
numpy array). About one candidate in a thousand survives; each survivor gets a
base-2 Fermat test on ``q``, then on ``2q + 1``, and only the rare pair that
passes both goes to ``gmpy2.is_prime`` (Miller–Rabin, 30 rounds) for ``q`` and
for ``p``. Measured on the 2-core CI machine (``benchmarks/bench_threshold.py``):
dealing a 2048-bit key, two 1024-bit safe primes included, took 1.5–5.6 s
(median 2.6 s); the search time varies with the luck of the draw.

An incremental search picks primes that follow long prime-free gaps slightly
more often than others; this is the usual trade (OpenSSL, GMP's
``next_prime``) and is not known to help factoring.
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np

__all__ = ["safe_prime", "is_safe_prime"]

_SIEVE_BOUND = 1 << 16
_WINDOW = 1 << 16
_MR_ROUNDS = 30


def _odd_primes(bound: int) -> list[int]:
    sieve = np.ones(bound, dtype=bool)
    sieve[:2] = False
    for i in range(2, int(bound**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(x) for x in np.nonzero(sieve)[0][1:]]  # drop 2


_PRIMES = _odd_primes(_SIEVE_BOUND)
# (l, 2^-1 mod l, (l - 1) / 2) per sieving prime
_SIEVE = [(p, (p + 1) // 2, (p - 1) // 2) for p in _PRIMES]


def is_safe_prime(p: int) -> bool:
    """Whether ``p`` and ``(p - 1) / 2`` are both (probable) primes."""
    p = gmpy2.mpz(p)
    return bool(p > 5 and p % 2 == 1 and gmpy2.is_prime((p - 1) // 2, _MR_ROUNDS)
                and gmpy2.is_prime(p, _MR_ROUNDS))


def _survivors(q0: gmpy2.mpz, window: int) -> list[int]:
    """Offsets ``k`` in ``[0, window)`` with neither ``q0 + 2k`` nor ``2(q0 + 2k) + 1``
    divisible by a sieving prime."""
    ok = np.ones(window, dtype=bool)
    for ell, half_inv, target in _SIEVE:
        r = int(q0 % ell)
        # q0 + 2k ≡ 0 (mod ℓ)  <=>  k ≡ -r / 2
        ok[(-r * half_inv) % ell :: ell] = False
        # 2(q0 + 2k) + 1 ≡ 0 (mod ℓ)  <=>  q0 + 2k ≡ (ℓ - 1) / 2  <=>  k ≡ (target - r) / 2
        ok[((target - r) * half_inv) % ell :: ell] = False
    return [int(k) for k in np.nonzero(ok)[0]]


def safe_prime(bits: int) -> gmpy2.mpz:
    """A random safe prime of exactly ``bits`` bits whose top two bits are set.

    ``bits`` must be at least 64 (test keys use 256; a 2048-bit modulus takes
    two of 1024 bits).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 64:
        raise ValueError(f"safe primes need at least 64 bits. Found {bits!r}.")
    qbits = bits - 1
    two = gmpy2.mpz(2)
    while True:
        # q of qbits bits with its top two bits set (then p = 2q + 1 has them too)
        q0 = gmpy2.mpz(secrets.randbits(qbits)) | (3 << (qbits - 2)) | 1
        for k in _survivors(q0, _WINDOW):
            q = q0 + 2 * k
            if gmpy2.powmod(two, q - 1, q) != 1:
                continue
            p = 2 * q + 1
            if gmpy2.powmod(two, p - 1, p) != 1:
                continue
            if p.bit_length() == bits and gmpy2.is_prime(q, _MR_ROUNDS) and gmpy2.is_prime(
                    p, _MR_ROUNDS):
                return p
