"""Paillier key material beyond ``phe``'s: the DJN generator and optimized keys.

Both produce ordinary Paillier keys (``n = PQ``, ``g = n + 1``): ``phe``'s
``raw_decrypt`` decrypts every ciphertext made with them. What changes is how
the encryption randomness ``r**n`` is drawn.

**DJN randomness** (Damgård, Jurik, Nielsen, "A generalization of Paillier's
public-key system with applications to electronic voting", IJIS 2010, §4.1):
the key holder publishes ``hs = (-x**2)**n mod n**2`` for a random ``x`` in
``Z_n*``; a client draws ``a`` uniform of ``ceil(|n|/2)`` bits and uses
``hs**a`` in place of ``r**n``. That is the exponent length of the audited
implementations (Intel IPCL ``pub_key.cpp``, SecretFlow HEU, ENCRYPTO_utils
``djn.cpp``). Security rests on the decisional composite residuosity
assumption plus a short-exponent assumption; ``randomness="standard"`` keeps
the textbook full ``r**n`` with ``r`` uniform in ``Z_n*``.

**Optimized keys** (Ma, Han, Lei, "Optimized Paillier's Cryptosystem with Fast
Encryption and Decryption", ACSAC 2021): ``P = 2·a_p·b_p + 1`` and
``Q = 2·a_q·b_q + 1`` with ``a_p, a_q`` primes of ``ℓ/2`` bits and ``b_p, b_q``
large primes, ``hs = (-y**(2·b_p·b_q))**n mod n**2``. Then ``hs`` has order
dividing ``2·a_p·a_q``, so ``ℓ``-bit encryption exponents suffice and
decryption exponentiates by ``2·a_p`` (``ℓ/2 + 1`` bits) modulo ``P**2`` instead
of by ``P - 1``. The paper's parameters: ``ℓ = 448`` for 2048-bit ``n``
(112-bit security) and ``ℓ = 512`` for 3072-bit ``n`` (128-bit security).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import gmpy2
import phe

from secagg.codec import FixedPointCodec
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from secagg.schemes.paillier.backend import PaillierSecret

__all__ = ["OPTIMIZED_EXPONENT_BITS", "djn_generator", "generate_optimized_keypair",
           "optimized_exponent_bits", "generate_backend"]

# |n| -> ℓ, from Ma-Han-Lei (ACSAC 2021); sizes below 2048 are for tests only.
OPTIMIZED_EXPONENT_BITS = {512: 160, 1024: 320, 2048: 448, 3072: 512, 4096: 512}


def optimized_exponent_bits(n_bits: int) -> int:
    """ℓ for a modulus of ``n_bits`` bits (the next listed size up)."""
    for size in sorted(OPTIMIZED_EXPONENT_BITS):
        if n_bits <= size:
            return OPTIMIZED_EXPONENT_BITS[size]
    raise ConfigError(f"optimized keys are defined up to 4096 bits. Found {n_bits}.")


def _random_prime(bits: int) -> gmpy2.mpz:
    """A uniform-ish prime with exactly ``bits`` bits (top bit set)."""
    while True:
        p = gmpy2.next_prime(gmpy2.mpz(secrets.randbits(bits)) | (1 << (bits - 1)))
        if p.bit_length() == bits:
            return p


def _random_unit(n: gmpy2.mpz) -> gmpy2.mpz:
    while True:
        x = gmpy2.mpz(secrets.randbelow(int(n) - 1) + 1)
        if gmpy2.gcd(x, n) == 1:
            return x


def djn_generator(n: int) -> gmpy2.mpz:
    """``hs = (-x**2)**n mod n**2`` for a random ``x`` in ``Z_n*`` (ordinary keys)."""
    n = gmpy2.mpz(n)
    x = _random_unit(n)
    return gmpy2.powmod(-(x * x) % n, n, n * n)


def _special_prime(half: int, a_bits: int, avoid: gmpy2.mpz | None) -> tuple[gmpy2.mpz, gmpy2.mpz, gmpy2.mpz]:
    """A prime ``P = 2·a·b + 1`` of ``half`` bits with ``a`` of ``a_bits`` bits, ``b`` prime."""
    b_bits = half - a_bits - 1
    while True:
        b = _random_prime(b_bits)
        for _ in range(4000):
            a = _random_prime(a_bits)
            if avoid is not None and a == avoid:
                continue
            big = 2 * a * b + 1
            if big.bit_length() == half and gmpy2.is_prime(big, 40):
                return big, a, b


def generate_optimized_keypair(
    n_bits: int,
) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey, tuple[int, int], gmpy2.mpz, int]:
    """Ma-Han-Lei keys: ``(public, private, (a_p, a_q), hs, ℓ)``.

    The ``phe`` keys are ordinary; ``(a_p, a_q)`` are the ``ℓ/2``-bit prime
    factors of ``P - 1`` and ``Q - 1`` that make decryption fast; ``hs`` is the
    public generator of the order-``2·a_p·a_q`` subgroup used for encryption.
    """
    if n_bits % 2 or n_bits < 512:
        raise ConfigError(f"optimized keys need an even key size of at least 512 bits. Found {n_bits}.")
    ell = optimized_exponent_bits(n_bits)
    half = n_bits // 2
    while True:
        big_p, a_p, b_p = _special_prime(half, ell // 2, None)
        big_q, a_q, b_q = _special_prime(half, ell // 2, a_p)
        n = big_p * big_q
        if big_p != big_q and b_p != b_q and n.bit_length() == n_bits:
            break
    y = _random_unit(n)
    h = -gmpy2.powmod(y, 2 * b_p * b_q, n) % n
    hs = gmpy2.powmod(h, n, n * n)
    public = phe.PaillierPublicKey(int(n))
    private = phe.PaillierPrivateKey(public, int(big_p), int(big_q))
    return public, private, (int(a_p), int(a_q)), hs, ell


def generate_backend(
    codec: FixedPointCodec,
    *,
    key_bits: int = 2048,
    keypair: tuple[Any, Any] | None = None,
    insecure: bool = False,
    randomness: str = "djn",
    optimized_keys: bool = False,
) -> PaillierSecret:
    """Make a Paillier key (or take ``keypair``) and its packed backend for ``codec``.

    The options are those of ``secagg.generate("paillier", ...)``: see there.
    """
    from secagg.schemes.paillier.backend import (
        MIN_SECURE_KEY_BITS,
        RANDOMNESS,
        PaillierPublic,
        PaillierSecret,
    )

    if randomness not in RANDOMNESS:
        raise ConfigError(f"randomness must be one of {RANDOMNESS}. Found {randomness!r}.")
    if optimized_keys and (keypair is not None or randomness != "djn"):
        raise ConfigError("optimized_keys generates its own keys and needs randomness='djn'.")
    if keypair is None:
        if isinstance(key_bits, bool) or not isinstance(key_bits, int) or key_bits % 8:
            raise ConfigError(f"key_bits must be a multiple of 8. Found {key_bits!r}.")
        if key_bits < MIN_SECURE_KEY_BITS and not insecure:
            raise ConfigError(
                f"Paillier keys below {MIN_SECURE_KEY_BITS} bits are insecure (asked for "
                f"{key_bits}); pass insecure=True only in tests."
            )
        if key_bits > 16384:
            raise ConfigError(f"key_bits must be at most 16384. Found {key_bits}.")
    small = None
    hs = r_bits = None
    if optimized_keys:
        pk, sk, small, hs, r_bits = generate_optimized_keypair(key_bits)
    elif keypair is not None:
        if not (isinstance(keypair, tuple) and len(keypair) == 2):
            raise ConfigError("keypair must be a (phe.PaillierPublicKey, phe.PaillierPrivateKey) tuple.")
        pk, sk = keypair
    else:
        pk, sk = phe.generate_paillier_keypair(n_length=key_bits)
    if randomness == "djn" and hs is None:
        if not isinstance(pk, phe.PaillierPublicKey):
            raise ConfigError(f"public key must be a phe.PaillierPublicKey. Found {type(pk).__name__}.")
        hs = djn_generator(pk.n)
    public = PaillierPublic(pk, codec, insecure=insecure, randomness=randomness, hs=hs,
                            r_bits=r_bits)
    return PaillierSecret(sk, public, small_factors=small)
