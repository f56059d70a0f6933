"""The dealing ceremony: make a Paillier key, split its decryption exponent, forget it.

Construction (Damgård, Jurik, "A Generalisation, a Simplification and Some
Applications of Paillier's Probabilistic Public-Key System", PKC 2001, §4 with
s = 1; Fouque, Poupard, Stern, "Sharing Decryption in the Context of Voting or
Lotteries", FC 2000; after Shoup, "Practical threshold signatures", EUROCRYPT
2000):

- safe primes ``p = 2p' + 1``, ``q = 2q' + 1`` (:mod:`secagg.threshold.primes`),
  ``n = pq``, ``m = p'q'``; the public key is the ordinary ``phe`` key ``n``
  (``g = n + 1``), so clients and the aggregator do not change;
- ``d`` with ``d ≡ 0 (mod m)`` and ``d ≡ 1 (mod n)``; the polynomial
  ``f(X) = d + a_1 X + … + a_{t-1} X^{t-1} mod nm`` with uniform ``a_i``;
  share holder ``i`` gets ``s_i = f(i)``;
- ``Δ = parties!``; a verification base ``v``, a random square of ``Z*_{n²}``
  checked to generate the squares (order ``n·p'q'``), and verification keys
  ``v_i = v**(Δ·s_i) mod n²``.

Holder ``i`` partially decrypts ``c`` to ``c_i = c**(2Δ·s_i)``; any set ``S`` of
``t`` of them combine to ``c' = Π c_i**(2μ_i)`` with the integers
``μ_i = Δ·λ^S_{0,i}`` (Lagrange at 0 times Δ), which is ``c**(4Δ²·d)``, i.e.
``1 + n·(4Δ²·M mod n)``: ``M = L(c')·(4Δ²)^-1 mod n``. Fewer than ``t`` shares
say nothing about ``d`` (Shamir), and the partials reveal nothing beyond
``M`` (the simulation in the papers).

**What the dealer is trusted for, and for how long.** The dealer sees the
factorization ``p, q`` (and ``m``, ``d`` and every share) while it deals, i.e.
for the seconds this function runs. It must (1) generate them honestly (safe
primes, uniform polynomial, a generating ``v``: this module does), (2) hand
each share to its holder only, over a confidential channel, and publish the
public context and the verification keys, and (3) **erase** everything
afterwards. A dealer that keeps ``p``, ``q``, ``d`` or ``t`` shares can decrypt
every ciphertext ever made under the key, alone, forever: no share holder can
notice. This function keeps none of it once it returns (the factors live in
local variables only), but Python cannot wipe freed memory: run the ceremony
in a process that exits right after writing the shares (``python -c`` or a
script), on a machine the holders trust, ideally offline. There is no
dealer-free (distributed) key generation here: that is a different protocol
(e.g. Nishide–Sakurai, or TNO's ``tno.mpc.protocols.distributed_keygen``).
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gmpy2
import phe

from secagg.codec import Rounding
from secagg.context import DEFAULT_MIN_CLIENTS, PublicContext, SecretContext, make_codec
from secagg.dp import DistributedDP
from secagg.errors import ConfigError, SecAggWarning
from secagg.schemes.paillier.backend import (
    MIN_SECURE_KEY_BITS,
    RANDOMNESS,
    PaillierPublic,
    PaillierSecret,
)
from secagg.schemes.paillier.keys import djn_generator
from secagg.threshold.holder import MODES, ShareHolder
from secagg.threshold.keys import ThresholdPublicContext, VerificationKeys, check_parties
from secagg.threshold.primes import safe_prime

__all__ = ["deal", "ThresholdKeys"]

_MIN_KEY_BITS = 256
_MAX_KEY_BITS = 16384


@dataclass(frozen=True)
class ThresholdKeys:
    """What :func:`deal` hands out: the public context and one :class:`ShareHolder` per party.

    ``public`` goes to clients, the aggregator and combiners (``public.to_bytes()``
    and ``verification.to_bytes()``); ``shares[i]`` to share holder ``i + 1``
    only (``shares[i].save(path, passphrase=...)``).
    """

    public: ThresholdPublicContext
    shares: tuple[ShareHolder, ...]

    @property
    def verification(self) -> VerificationKeys:
        """The public verification keys (also ``public.verification``)."""
        return self.public.verification

    @property
    def parties(self) -> int:
        """How many share holders there are."""
        return self.verification.parties

    @property
    def threshold(self) -> int:
        """How many of them decrypt together."""
        return self.verification.threshold

    def __repr__(self) -> str:
        return (f"ThresholdKeys(threshold={self.threshold}-of-{self.parties}, "
                f"fingerprint={self.public.fingerprint.hex()[:12]})")


def _min_clients(min_clients: object, max_clients: int, dp: DistributedDP | None) -> int:
    if min_clients is None:
        if dp is not None and dp.min_clients > DEFAULT_MIN_CLIENTS:
            raise ConfigError(
                f"the default min_clients={DEFAULT_MIN_CLIENTS} is below the DP calibration "
                f"target dp.min_clients={dp.min_clients}; pass min_clients={dp.min_clients}."
            )
        if max_clients < DEFAULT_MIN_CLIENTS:
            raise ConfigError(
                f"max_clients={max_clients} is below the default min_clients="
                f"{DEFAULT_MIN_CLIENTS}; pass min_clients={max_clients} as well (tests only)."
            )
        return DEFAULT_MIN_CLIENTS
    if isinstance(min_clients, bool) or not isinstance(min_clients, int) or not (
            1 <= min_clients <= max_clients):
        raise ConfigError(f"min_clients must be an integer in [1, max_clients={max_clients}]. "
                          f"Found {min_clients!r}.")
    return min_clients


def _check_key_bits(key_bits: object, insecure: bool) -> int:
    if isinstance(key_bits, bool) or not isinstance(key_bits, int) or key_bits % 16:
        raise ConfigError(f"key_bits must be a multiple of 16. Found {key_bits!r}.")
    if not _MIN_KEY_BITS <= key_bits <= _MAX_KEY_BITS:
        raise ConfigError(f"key_bits must be in [{_MIN_KEY_BITS}, {_MAX_KEY_BITS}]. Found {key_bits}.")
    if key_bits < MIN_SECURE_KEY_BITS and not insecure:
        raise ConfigError(
            f"Paillier keys below {MIN_SECURE_KEY_BITS} bits are insecure (asked for {key_bits}); "
            f"pass insecure=True only in tests."
        )
    return key_bits


def _safe_modulus(key_bits: int) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """Two distinct safe primes of ``key_bits / 2`` bits whose product has ``key_bits`` bits."""
    while True:
        p, q = safe_prime(key_bits // 2), safe_prime(key_bits // 2)
        if p != q and (p * q).bit_length() == key_bits:
            return (p, q) if p < q else (q, p)


def _generates_squares(v: gmpy2.mpz, primes: tuple[gmpy2.mpz, ...], order: gmpy2.mpz,
                       nsquare: gmpy2.mpz) -> bool:
    """Whether the square ``v`` has order ``order`` (= n·p'q', with prime factors ``primes``)."""
    return all(gmpy2.powmod(v, order // ell, nsquare) != 1 for ell in primes)


def _random_unit(n: gmpy2.mpz, bound: gmpy2.mpz) -> gmpy2.mpz:
    while True:
        x = gmpy2.mpz(secrets.randbelow(int(bound) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            return x


def _lagrange_times_delta(holders: list[int], delta: int) -> list[int]:
    """``μ_i = Δ·λ_{0,i}`` for the set ``holders`` (integers, as Shoup shows)."""
    out = []
    for i in holders:
        num, den = delta, 1
        for j in holders:
            if j != i:
                num *= j
                den *= j - i
        if num % den:
            raise ArithmeticError("Δ·λ is not an integer")  # cannot happen with Δ = parties!
        out.append(num // den)
    return out


def deal(
    scheme: str = "paillier",
    *,
    parties: int,
    threshold: int,
    key_bits: int = 2048,
    max_clients: int = 100,
    clip: float = 1.0,
    frac_bits: int = 16,
    max_weight: int = 1,
    min_clients: int | None = None,
    rounding: Rounding = "nearest",
    max_terms: int = 0,
    term_clip: float | None = None,
    dp: DistributedDP | None = None,
    randomness: str = "djn",
    insecure: bool = False,
    clients: Mapping[str, Any] | None = None,
    term_signers: Mapping[str, Any] | None = None,
    mode: str | None = None,
    require_all: bool = False,
) -> ThresholdKeys:
    """Deal a ``threshold``-of-``parties`` Paillier key (the one-time ceremony; see the module docs).

    The codec options are those of :func:`secagg.generate`; ``key_bits``,
    ``randomness`` and ``insecure`` those of its ``"paillier"`` scheme. Then:

    Args:
        parties: share holders (2 to 64).
        threshold: how many of them decrypt together (2 to ``parties``).
        clients: ``{client_id: Ed25519 public key}`` registered with every
            share holder (verified mode; :func:`secagg.threshold.sign_update`).
        term_signers: parties allowed to add a signed term (e.g. DP noise) to
            a verified sum, ``{id: Ed25519 public key}``.
        mode: ``"verified"`` (default when ``clients`` are given): holders
            decrypt only sums they recompute from signed updates of registered
            clients; ``"unverified"``: any aggregate that passes the header
            checks (default without ``clients``, with a ``SecAggWarning``).
        require_all: verified holders decrypt only a sum of every registered client.

    Takes a few seconds at 2048 bits (two 1024-bit safe primes). The dealer
    (the process running this) sees the factorization while it runs and must
    erase it: run it in a process that exits after saving the shares; see the
    module docstring for exactly what it is trusted with.
    """
    keys, _ = _deal(scheme, parties=parties, threshold=threshold, key_bits=key_bits,
                    max_clients=max_clients, clip=clip, frac_bits=frac_bits,
                    max_weight=max_weight, min_clients=min_clients, rounding=rounding,
                    max_terms=max_terms, term_clip=term_clip, dp=dp, randomness=randomness,
                    insecure=insecure, clients=clients, term_signers=term_signers, mode=mode,
                    require_all=require_all)
    return keys


def _deal(scheme: str, *, parties: int, threshold: int, key_bits: int, max_clients: int,
          clip: float, frac_bits: int, max_weight: int, min_clients: int | None,
          rounding: Rounding, max_terms: int, term_clip: float | None,
          dp: DistributedDP | None, randomness: str, insecure: bool,
          clients: Mapping[str, Any] | None, term_signers: Mapping[str, Any] | None,
          mode: str | None, require_all: bool) -> tuple[ThresholdKeys, SecretContext]:
    """:func:`deal`, plus the single-key ``SecretContext`` (tests compare decryptions with it)."""
    if scheme != "paillier":
        raise ConfigError(f"threshold keys are Paillier keys; scheme must be 'paillier'. "
                          f"Found {scheme!r:.40}.")
    n_parties, t = check_parties(parties, threshold)
    bits = _check_key_bits(key_bits, insecure)
    if randomness not in RANDOMNESS:
        raise ConfigError(f"randomness must be one of {RANDOMNESS}. Found {randomness!r}.")
    if dp is not None and not isinstance(dp, DistributedDP):
        raise ConfigError(f"dp must be a secagg.dp.DistributedDP. Found {type(dp).__name__}.")
    if mode is None:
        mode = "verified" if clients else "unverified"
        if mode == "unverified":
            warnings.warn(
                "threshold.deal() without clients=: the share holders run in unverified mode "
                "and partially decrypt any aggregate that passes the header checks, so a "
                "server that pads one update with its own encryptions reads that update. "
                "Register the clients' Ed25519 keys (clients=...) for verified mode, or pass "
                "mode='unverified' to accept this.", SecAggWarning, stacklevel=3)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}. Found {mode!r:.40}.")
    codec = make_codec(clip=clip, frac_bits=frac_bits, max_clients=max_clients,
                       max_weight=max_weight, rounding=rounding, max_terms=max_terms,
                       term_clip=term_clip, dp=dp)
    min_clients = _min_clients(min_clients, codec.max_clients, dp)

    # -- the secret part: everything from here to the end of the function ------------
    p, q = _safe_modulus(bits)
    n = p * q
    nsquare = n * n
    p1, q1 = (p - 1) // 2, (q - 1) // 2
    m = p1 * q1
    nm = n * m
    if gmpy2.gcd(n, m) != 1:  # cannot happen for distinct safe primes of equal size
        raise ArithmeticError("gcd(n, m) != 1")
    d = m * gmpy2.invert(m, n) % nm  # d ≡ 0 (mod m), d ≡ 1 (mod n)
    coefficients = [d] + [gmpy2.mpz(secrets.randbelow(int(nm))) for _ in range(t - 1)]
    shares = []
    for i in range(1, n_parties + 1):
        value = gmpy2.mpz(0)
        for a in reversed(coefficients):  # Horner
            value = (value * i + a) % nm
        shares.append(value)
    delta = math.factorial(n_parties)
    order = n * m  # of the squares of Z*_{n^2}
    while True:
        x = _random_unit(n, nsquare)
        v = x * x % nsquare
        if _generates_squares(v, (p, q, p1, q1), order, nsquare):
            break
    keys = [gmpy2.powmod(v, delta * s, nsquare) for s in shares]
    hs = djn_generator(n) if randomness == "djn" else None
    backend = PaillierPublic(phe.PaillierPublicKey(int(n)), codec, insecure=insecure,
                             randomness=randomness, hs=hs)
    # checks hs against the factors (the exact subgroup) as a key holder would
    secret = PaillierSecret(phe.PaillierPrivateKey(backend.public_key, int(p), int(q)), backend)
    single = SecretContext(secret, min_clients=min_clients, dp=dp)
    _self_test(backend, shares[:t], list(range(1, t + 1)), delta)
    del p, q, p1, q1, m, nm, d, coefficients, x
    # -- public from here on (each share goes to its holder only) --------------------
    plain = PublicContext(backend, min_clients=min_clients, dp=dp)
    vk = VerificationKeys(plain, n_parties, t, v, keys)
    public = ThresholdPublicContext(plain, vk)
    holders = tuple(
        ShareHolder(public, i, s, mode=mode, clients=clients, term_signers=term_signers,
                    require_all=require_all)
        for i, s in enumerate(shares, start=1)
    )
    del shares
    return ThresholdKeys(public, holders), single


def _self_test(backend: PaillierPublic, shares: list[gmpy2.mpz], holders: list[int],
               delta: int) -> None:
    """Decrypt one random ciphertext with ``shares`` (a set of ``threshold``); raise if wrong."""
    n, n2 = backend.n, backend.nsquare
    msg = gmpy2.mpz(secrets.randbelow(int(n)))
    c = backend.raw_encrypt_int(msg, backend.raw_fresh_obfuscator())
    mus = _lagrange_times_delta(holders, delta)
    acc = gmpy2.mpz(1)
    for s, mu in zip(shares, mus):
        ci = gmpy2.powmod(c, 2 * delta * s, n2)
        acc = acc * gmpy2.powmod(ci, 2 * mu, n2) % n2
    got = (acc - 1) // n * gmpy2.invert(4 * delta * delta, n) % n
    if acc % n != 1 or got != msg:
        raise ArithmeticError("the dealt shares do not decrypt: refusing to hand them out.")
