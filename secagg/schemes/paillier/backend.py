"""Packed Paillier: many fixed-point slots per ordinary ``phe`` Paillier ciphertext.

Keys are ``phe`` keys (``g = n + 1``). A client shifts each contribution by
``C = codec.contribution_bound`` so every slot is non-negative, packs
``slots = (bits(n) - 1) // slot_bits`` slots into one plaintext ``m < n`` and
encrypts ``c = (1 + n*m) * R mod n**2`` where ``R`` is fresh randomness of the
form ``r**n``. The aggregator multiplies ciphertexts modulo ``n**2``, which adds
plaintexts and therefore slots; the codec guarantees that no slot sum reaches
``2**slot_bits``, so slots never carry into each other. ``phe``'s
``raw_decrypt`` of any of our ciphertexts gives the packed integer.

Randomness ``R`` (see :mod:`secagg.paillier_keys`):

- ``"djn"`` (default): ``R = hs**a`` with ``a`` uniform of ``r_bits`` bits
  (``ceil(|n|/2)``, or ℓ for optimized keys), from a fixed-base table built
  once per key (lazily, on first use);
- ``"standard"``: ``R = r**n`` with ``r`` uniform in ``Z_n*``.

``precompute(k)`` fills a pool of ``R`` values between rounds so that online
encryption is one modular product per ciphertext. Pools are never serialized,
never copied (``copy``, ``deepcopy`` and ``pickle`` give an empty pool) and are
dropped in forked children, so a value is never used twice: two ciphertexts
``c1, c2`` with the same ``R`` give ``c1 / c2 = 1 + n*(m1 - m2) mod n**2``, the
difference of two updates, to anyone.

Loading a context checks what a deviating party could pick (see
:func:`generator_problem` and :func:`min_exponent_bits`): ``hs`` must not have
small order modulo a factor of ``n``, and ``r_bits`` must be at least twice the
security level of the modulus.

Worked numbers (2048-bit n, clip=1, frac_bits=16, max_clients=100): slots are
24 bits, 85 per ciphertext, 512 bytes per ciphertext, about 6 bytes per value.
"""

from __future__ import annotations

import copy
import secrets
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import gmpy2
import numpy as np
import phe

from secagg import parallel
from secagg.codec import FixedPointCodec
from secagg.errors import (
    SUM_OUT_OF_RANGE,
    CiphertextError,
    ConfigError,
    FormatError,
    SumOverflowError,
)
from secagg.schemes.base import PublicBackend, SecretBackend
from secagg.schemes.paillier.fixedbase import FixedBaseTable
from secagg.schemes.paillier.packing import SlotLayout
from secagg.wire import Body

__all__ = ["PaillierPublic", "PaillierSecret", "MIN_SECURE_KEY_BITS", "RANDOMNESS",
           "generator_problem", "min_exponent_bits"]

MIN_SECURE_KEY_BITS = 2048
RANDOMNESS = ("djn", "standard")
_MIN_KEY_BITS = 256  # test keys only; generate() refuses < 2048 unless insecure=True
_MAX_KEY_BITS = 16384
_MIN_PARALLEL_CTS = 16  # below this, forking costs more than it saves

_T = TypeVar("_T")

_LIVE: weakref.WeakSet[PaillierPublic] = weakref.WeakSet()


def _drop_pools_in_child() -> None:
    for backend in list(_LIVE):
        backend._pool.clear()


parallel.on_fork_child(_drop_pools_in_child)


# -- what a loaded generator and exponent length must satisfy ---------------------------------

# NIST SP 800-57 Part 1 Rev. 5, Table 2: security level (bits) of an IFC modulus of k bits.
_NIST_LEVELS = ((15360, 256), (7680, 192), (3072, 128), (2048, 112))
_INSECURE_MIN_EXPONENT_BITS = 160  # 2 x 80, the level of 1024-bit moduli; test keys only


def min_exponent_bits(n_bits: int) -> int:
    """Shortest DJN exponent ``r_bits`` accepted for an ``n_bits``-bit modulus.

    ``2·λ`` for the NIST level ``λ`` of the modulus (224 at 2048 bits, 256 at
    3072 and 4096, 384 at 7680, 512 at 15360): a uniform ``r``-bit exponent
    falls to Pollard's lambda / baby-step giant-step in about ``2**(r/2)``
    steps (van Oorschot, Wiener, "On Diffie-Hellman key agreement with short
    exponents", EUROCRYPT 1996), so ``r = 2λ`` costs as much as breaking the
    modulus. Ma-Han-Lei's ℓ (448 at 2048, 512 at 3072) meets it. Below 2048
    bits (insecure test keys only) the floor is 160, or half the modulus if
    that is less, so that default test contexts keep loading.
    """
    for size, level in _NIST_LEVELS:
        if n_bits >= size:
            return 2 * level
    return min(_INSECURE_MIN_EXPONENT_BITS, (n_bits + 1) // 2)


# hs**L for L = lcm(1..B) is 1 modulo a prime p exactly when the order of hs mod p
# divides L, which every order <= B does. One powmod with a 1479-bit exponent modulo
# n: about 4 ms at 2048 bits, 16 ms at 4096 (B = 2**16 would cost 50x more).
_ORDER_BOUND = 2**10
_ORDER_EXPONENT = gmpy2.mpz(1)
for _k in range(2, _ORDER_BOUND + 1):
    _ORDER_EXPONENT = gmpy2.lcm(_ORDER_EXPONENT, _k)
del _k

# Primes below 2**16, to split p - 1 into its smooth part (key holder only).
_SMOOTH_BOUND = 2**16
_SMOOTH_PRIMORIAL = gmpy2.primorial(_SMOOTH_BOUND)


def generator_problem(hs: int, n: int) -> str | None:
    """Why ``hs`` cannot be a DJN generator for the public modulus ``n``, or ``None``.

    Checks what can be checked without the factors ``p, q`` of ``n``. An honest
    ``hs = (-x**2)**n`` (Damgård, Jurik, Nielsen, "A generalization of Paillier's
    public-key system with applications to electronic voting", IJIS 2010, §4.1)
    is an ``n``-th residue whose order modulo ``p`` and ``q`` is a large divisor
    of ``p - 1`` and ``q - 1``. Refused:

    - ``hs`` outside ``(1, n**2)`` or sharing a factor with ``n``;
    - ``hs`` whose order modulo ``p`` or modulo ``q`` divides ``lcm(1..2**10)``,
      in particular every order up to ``2**10``: this covers ``±1``, every element
      of order 2 (built by CRT from ``±1`` modulo ``p**2`` and ``q**2``),
      ``1 + k·n``, and any ``hs`` that is 1 modulo one factor. With such an
      ``hs`` the randomness ``hs**a`` takes few values modulo that factor; and
      ``gcd(hs**L - 1, n)`` is then ``p`` or ``q``, i.e. the context would hand
      the factorization of ``n`` to everyone.

    The test is ``gcd(hs**L mod n - 1, n) == 1``: ``hs**L ≡ 1 (mod p)`` iff the
    order of ``hs`` modulo ``p`` divides ``L``, and the order modulo ``p**2`` is
    at least that modulo ``p``. What it cannot rule out without the factors:
    that ``hs`` is an ``n``-th residue (that is the DCR problem itself), and
    orders above ``2**10``; writing down a non-trivial root of unity modulo ``n``
    of small order is believed to need its factors (for order 2 it *is*
    factoring), and the key holder checks the exact subgroup on load
    (:meth:`PaillierSecret._generator_problem`).
    """
    hs, n = gmpy2.mpz(hs), gmpy2.mpz(n)
    if not 1 < hs < n * n:
        return "the DJN generator hs is not in (1, n^2)."
    if gmpy2.gcd(hs, n) != 1:
        return "the DJN generator hs is not a unit modulo n^2."
    if gmpy2.gcd(gmpy2.powmod(hs, _ORDER_EXPONENT, n) - 1, n) != 1:
        return (
            f"the DJN generator hs has small order (dividing lcm(1..{_ORDER_BOUND})) modulo a "
            f"factor of n, e.g. +-1 or an element of order 2: its randomness would take few "
            f"values and reveal the factors of n. Refusing it."
        )
    return None


def _smooth_part(m: gmpy2.mpz) -> gmpy2.mpz:
    """The largest divisor of ``m`` whose prime factors are all below ``2**16``."""
    smooth, g = gmpy2.mpz(1), gmpy2.gcd(m, _SMOOTH_PRIMORIAL)
    while g > 1:
        # a small prime left in m divided every earlier g: gcd with the last g finds it
        smooth *= g
        m //= g
        g = gmpy2.gcd(m, g)
    return smooth


def _layout(n_bits: int, codec: FixedPointCodec) -> SlotLayout:
    # plaintexts stay below 2**(bits(n) - 1) <= n
    return SlotLayout(codec.slot_bits, (n_bits - 1) // codec.slot_bits)


def _progress(items: Any, enabled: bool, what: str) -> Any:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return items
    return tqdm(items, desc=what, unit="ct", leave=False)


def _chunks(items: list[_T], workers: int) -> list[list[_T]]:
    k = max(1, min(workers, len(items) // _MIN_PARALLEL_CTS))
    size = -(-len(items) // k)
    return [items[i : i + size] for i in range(0, len(items), size)]


class PaillierPublic(PublicBackend):
    """Public half: encrypts packed slots and sums ciphertexts modulo ``n**2``."""

    scheme = "paillier"
    capabilities = frozenset({"precompute"})
    oracle_safe_key = True

    def __init__(
        self,
        public_key: phe.PaillierPublicKey,
        codec: FixedPointCodec,
        *,
        insecure: bool = False,
        randomness: str = "standard",
        hs: int | None = None,
        r_bits: int | None = None,
    ) -> None:
        if not isinstance(public_key, phe.PaillierPublicKey):
            raise ConfigError(
                f"public key must be a phe.PaillierPublicKey. Found {type(public_key).__name__}."
            )
        self.public_key = public_key
        self.codec = codec
        self.n = gmpy2.mpz(public_key.n)
        self.nsquare = self.n * self.n
        self.key_bits = int(self.n.bit_length())
        if self.key_bits < MIN_SECURE_KEY_BITS and not insecure:
            raise ConfigError(
                f"Paillier keys below {MIN_SECURE_KEY_BITS} bits are insecure (found "
                f"{self.key_bits}); pass insecure=True only in tests."
            )
        self.insecure = self.key_bits < MIN_SECURE_KEY_BITS
        if randomness not in RANDOMNESS:
            raise ConfigError(f"randomness must be one of {RANDOMNESS}. Found {randomness!r}.")
        self.randomness = randomness
        if randomness == "djn":
            if hs is None:
                raise ConfigError("DJN randomness needs the public generator hs.")
            problem = generator_problem(hs, self.n)
            if problem is not None:
                raise ConfigError(problem)
            self.hs = gmpy2.mpz(hs)
            if r_bits is None:
                r_bits = (self.key_bits + 1) // 2
            lo = min_exponent_bits(self.key_bits)
            if isinstance(r_bits, bool) or not isinstance(r_bits, int) or not (
                lo <= r_bits <= self.key_bits
            ):
                raise ConfigError(
                    f"r_bits (the DJN exponent length) must be an integer in [{lo}, "
                    f"{self.key_bits}] for a {self.key_bits}-bit modulus: twice its security "
                    f"level. Found {r_bits!r}."
                )
            self.r_bits = int(r_bits)
        else:
            self.hs = None
            self.r_bits = self.key_bits
        self.layout = _layout(self.key_bits, codec)
        self.ct_bytes = (int(self.nsquare.bit_length()) + 7) // 8
        self.offset = codec.contribution_bound
        self.term_offset = codec.term_bound
        self._table: FixedBaseTable | None = None
        self._pool: list[gmpy2.mpz] = []
        _LIVE.add(self)

    # -- wire ----------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        return {
            "n": int(self.n).to_bytes((self.key_bits + 7) // 8, "big"),
            "slot_bits": self.layout.slot_bits,
            "slots": self.layout.slots,
            "insecure": self.insecure,
            "randomness": self.randomness,
            "hs": None if self.hs is None else self.hs.to_bytes(self.ct_bytes, "big"),
            "r_bits": self.r_bits,
        }

    @classmethod
    def from_material(cls, body: Body, codec: FixedPointCodec) -> PaillierPublic:
        raw_n = body.blob("n", max_size=_MAX_KEY_BITS // 8)
        n = int.from_bytes(raw_n, "big")
        if not _MIN_KEY_BITS <= n.bit_length() <= _MAX_KEY_BITS or n % 2 == 0:
            raise FormatError(f"Paillier modulus has an invalid size ({n.bit_length()} bits).")
        insecure = body.optional("insecure")
        if n.bit_length() < MIN_SECURE_KEY_BITS and insecure is not True:
            raise FormatError(
                f"Paillier modulus of {n.bit_length()} bits is below {MIN_SECURE_KEY_BITS} and the "
                f"context is not marked as an insecure test context; refusing it."
            )
        randomness = body.text("randomness", choices=RANDOMNESS)
        hs = r_bits = None
        if randomness == "djn":
            raw_hs = body.blob("hs", size=(2 * n.bit_length() + 7) // 8)
            hs = int.from_bytes(raw_hs, "big")
            # the exact floor (2λ bits, see min_exponent_bits) is enforced by the constructor
            r_bits = body.integer("r_bits", 1, n.bit_length())
        try:
            # the constructor refuses a small-order hs and a short r_bits (ConfigError)
            public = cls(phe.PaillierPublicKey(n), codec, insecure=True, randomness=randomness,
                         hs=hs, r_bits=r_bits)
        except ConfigError as exc:
            raise FormatError(str(exc)) from None
        slot_bits = body.integer("slot_bits", 1, 64)
        slots = body.integer("slots", 1, _MAX_KEY_BITS)
        if (slot_bits, slots) != (public.layout.slot_bits, public.layout.slots):
            raise FormatError(
                f"Paillier packing layout ({slots} slots of {slot_bits} bits) does not match "
                f"the key and codec ({public.layout.slots} of {public.layout.slot_bits})."
            )
        return public

    def fingerprint_material(self) -> bytes:
        tag = b"insecure-test-key:" if self.insecure else b""
        parts = [tag, int(self.n).to_bytes((self.key_bits + 7) // 8, "big"),
                 self.randomness.encode(), self.r_bits.to_bytes(4, "big")]
        if self.hs is not None:
            parts.append(self.hs.to_bytes(self.ct_bytes, "big"))
        return b"|".join(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "scheme": "paillier",
            "key_bits": self.key_bits,
            "insecure": self.insecure,
            "randomness": self.randomness,
            "randomness_exponent_bits": self.r_bits,
            "slot_bits": self.layout.slot_bits,
            "slots_per_ciphertext": self.layout.slots,
            "ciphertext_bytes": self.ct_bytes,
            "bytes_per_value": self.ct_bytes / self.layout.slots,
        }

    # -- randomness ----------------------------------------------------------
    def table(self) -> FixedBaseTable:
        """The fixed-base table for ``hs`` (built on first use, then cached)."""
        if self._table is None:
            if self.hs is None:
                raise ConfigError("standard randomness uses no fixed-base table.")
            self._table = FixedBaseTable(self.hs, self.nsquare, self.r_bits)
        return self._table

    def random_exponent(self) -> int:
        """A fresh DJN exponent ``a`` of ``r_bits`` bits from the OS CSPRNG."""
        return secrets.randbits(self.r_bits)

    def raw_fresh_obfuscator(self) -> gmpy2.mpz:
        """A fresh ``R`` (``hs**a`` or ``r**n``), never from the pool."""
        if self.randomness == "djn":
            return self.table().pow(self.random_exponent())
        while True:
            r = gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1)
            if gmpy2.gcd(r, self.n) == 1:
                return gmpy2.powmod(r, self.n, self.nsquare)

    def raw_obfuscator(self) -> gmpy2.mpz:
        """The next ``R``: from the precomputed pool if it has one, else fresh."""
        try:
            # one atomic pop: threads (or shallow copies) sharing this pool never get the same R
            return self._pool.pop()
        except IndexError:
            return self.raw_fresh_obfuscator()

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Add ``count`` fresh ``R`` values to the pool (between rounds, off the critical path).

        The pool lives in this object only: it is never serialized, a copy or
        an unpickled object starts with an empty one, and forked children
        empty theirs, so no value is ever used twice.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"count must be a non-negative integer. Found {count!r}.")
        if self.randomness == "djn":
            self.table()  # build before forking, so children share it
        width = self.ct_bytes

        def make(k: int) -> bytes:
            it = _progress(range(k), progress and workers <= 1, "precompute")
            return b"".join(self.raw_fresh_obfuscator().to_bytes(width, "big") for _ in it)

        chunks = [len(c) for c in _chunks(list(range(count)), workers)] if count else []
        for blob in parallel.fork_map(make, chunks, workers):
            self._pool.extend(gmpy2.mpz.from_bytes(blob[i : i + width], "big")
                              for i in range(0, len(blob), width))

    @property
    def pool_size(self) -> int:
        """How many precomputed ``R`` values are left."""
        return len(self._pool)

    # -- copies --------------------------------------------------------------
    # A pool value may be used once, by one object, so a copy never carries it:
    # ``copy``, ``deepcopy`` and ``pickle`` all give an EMPTY pool, and every copy
    # is registered for the at-fork clearing like a new backend. Pickling drops
    # the pool rather than refusing: a pickle can be loaded any number of times
    # (Ray and ``spawn`` workers pickle what they are given), so the only pool it
    # may hold is none, and refusing only after ``precompute`` would make pickle
    # fail depending on hidden state. The fixed-base table holds powers of the
    # public ``hs`` only: copies share it (it is never modified) and a pickle
    # leaves it out (up to 64 MiB, rebuilt on first use).

    def _register(self) -> None:
        self._pool = []
        _LIVE.add(self)

    def __copy__(self) -> PaillierPublic:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._register()
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> PaillierPublic:
        new = object.__new__(type(self))
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            if name not in ("_pool", "_table"):
                setattr(new, name, copy.deepcopy(value, memo))
        new._table = self._table
        new._register()
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = []
        state["_table"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._register()  # empty whatever the pickle held

    # -- encryption ----------------------------------------------------------
    def num_ciphertexts(self, n_slots: int) -> int:
        return self.layout.num_plaintexts(n_slots)

    def raw_encrypt_int(self, m: int, obfuscator: int | None = None) -> gmpy2.mpz:
        """Encrypt one plaintext integer ``0 <= m < n``; ``obfuscator`` is a test seam."""
        rn = self.raw_obfuscator() if obfuscator is None else gmpy2.mpz(obfuscator)
        return (1 + self.n * m) * rn % self.nsquare

    def _encrypt_plaintexts(self, plain: list[int], progress: bool) -> bytes:
        width = self.ct_bytes
        it = _progress(plain, progress, "encrypt")
        return b"".join(self.raw_encrypt_int(m).to_bytes(width, "big") for m in it)

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list[Any]:
        offset = self.term_offset if term else self.offset
        shifted = np.asarray(slots, dtype=np.int64) + np.int64(offset)
        packed = self.layout.raw_pack(shifted.astype(np.uint64))
        if workers <= 1 or self._pool or len(packed) < 2 * _MIN_PARALLEL_CTS:
            # the pool (if any) is spent in this process; children never see it
            return [self.raw_encrypt_int(m) for m in _progress(packed, progress, "encrypt")]
        if self.randomness == "djn":
            self.table()  # build once here; forked children share it copy-on-write
        blobs = parallel.fork_map(
            lambda chunk: self._encrypt_plaintexts(chunk, False), _chunks(packed, workers), workers
        )
        return self.parse_ciphertexts(b"".join(blobs))

    def unpack_plaintexts(self, plain: list[Any], n_slots: int, count: int,
                          terms: int) -> np.ndarray:
        """Decrypted plaintext integers to signed slot sums, range-checked.

        Shared by every way of decrypting (the key holder's CRT decryption,
        threshold combination). After decryption the error says what failed,
        never what was found (no values, no positions).
        """
        layout = self.layout
        if any(int(m) >> layout.plaintext_bits for m in plain):
            raise SumOverflowError(SUM_OUT_OF_RANGE)
        sums = layout.raw_unpack([int(m) for m in plain], n_slots)
        offset = count * self.offset + terms * self.term_offset
        if np.any(sums > np.uint64(2 * offset)):
            raise SumOverflowError(SUM_OUT_OF_RANGE)
        return sums.astype(np.int64) - np.int64(offset)

    def parse_ciphertexts(self, blob: bytes) -> list[Any]:
        """Fixed-width big-endian ciphertexts back to integers (no range checks)."""
        width = self.ct_bytes
        from_bytes = gmpy2.mpz.from_bytes
        return [from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]

    # -- wire ciphertexts ----------------------------------------------------
    def ciphertexts_to_wire(self, cts: Sequence[Any]) -> bytes:
        width = self.ct_bytes
        return b"".join(c.to_bytes(width, "big") for c in cts)

    def precheck(self, obj: Any, n_slots: int) -> None:
        width = self.ct_bytes
        n_cts = self.num_ciphertexts(n_slots)
        if not isinstance(obj, bytes) or len(obj) != n_cts * width:
            found = f"{len(obj)} bytes" if isinstance(obj, bytes) else type(obj).__name__
            raise CiphertextError(
                f"expected {n_cts} Paillier ciphertexts of {width} bytes "
                f"({n_cts * width} bytes); found {found}."
            )

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list[Any]:
        self.precheck(obj, n_slots)
        cts = self.parse_ciphertexts(obj)
        nsquare, n = self.nsquare, self.n
        if min(cts) < 1 or max(cts) >= nsquare:
            i = next(i for i, c in enumerate(cts) if not 0 < c < nsquare)
            raise CiphertextError(f"Paillier ciphertext {i} lies outside [1, n^2).")
        product = gmpy2.mpz(1)
        for c in cts:
            product = product * (c % n) % n  # reducing c first is cheaper than a 6k-bit product
        # c is a unit mod n^2 iff gcd(c, n) == 1; one gcd of the product checks them all.
        if gmpy2.gcd(product, n) != 1:
            raise CiphertextError("a Paillier ciphertext shares a factor with n (not a unit).")
        return cts

    def raw_add(self, a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
        nsquare = self.nsquare
        return [x * y % nsquare for x, y in zip(a, b)]


class PaillierSecret(SecretBackend):
    """Secret half: CRT decryption with precomputed constants, then unpacking.

    With the factors of ``n`` at hand, also CRT encryption (cross-silo clients
    sharing the key): ``hs**a`` is computed modulo ``P**2`` and ``Q**2``, where
    for optimized keys the exponent shrinks to ``a mod 2·a_p``.
    """

    public: PaillierPublic

    def __init__(
        self,
        private_key: phe.PaillierPrivateKey,
        public: PaillierPublic,
        *,
        small_factors: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(private_key, phe.PaillierPrivateKey):
            raise ConfigError(
                f"private key must be a phe.PaillierPrivateKey. Found {type(private_key).__name__}."
            )
        if private_key.public_key.n != public.public_key.n:
            raise ConfigError("the private key does not belong to the public key.")
        self.private_key = private_key
        self.public = public
        p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
        self._p, self._q = p, q
        self._psq, self._qsq = p * p, q * q
        if small_factors is None:
            # m_p = L_p(c**(p-1) mod p^2) * ((p-1)*q)**-1 mod p, and likewise for q
            self._ep, self._eq = p - 1, q - 1
        else:
            # hs has order dividing 2*a_p modulo p^2: exponentiate by 2*a_p instead of p-1
            a_p, a_q = (gmpy2.mpz(a) for a in small_factors)
            if (p - 1) % (2 * a_p):  # phe orders p < q; match the factors to them
                a_p, a_q = a_q, a_p
            if (p - 1) % (2 * a_p) or (q - 1) % (2 * a_q):
                raise ConfigError("small factors do not divide p - 1 and q - 1.")
            self._ep, self._eq = 2 * a_p, 2 * a_q
            small_factors = (int(a_p), int(a_q))
        self.small_factors = small_factors
        self._kp = gmpy2.invert(self._ep * q, p)
        self._kq = gmpy2.invert(self._eq * p, q)
        self._p_inv_q = gmpy2.invert(p, q)
        self._qsq_inv_psq = gmpy2.invert(self._qsq, self._psq)
        self._crt_tables: tuple[FixedBaseTable, FixedBaseTable] | None = None
        # Secret exponents go through GMP's constant-time powmod_sec. Measured on
        # the CI machine (benchmarks/bench_paillier.py): 1.1-1.3x slower decryption
        # for 2048/3072-bit keys, about 1.6x for optimized keys. Set False
        # to trade that side-channel resistance for speed.
        self.constant_time = True
        # a context that would not load is never made: generate() checks it too
        problem = self._generator_problem()
        if problem is not None:
            raise ConfigError(problem)

    # -- copies --------------------------------------------------------------
    # The secret half caches no randomness of its own (CRT encryption draws a fresh
    # exponent each time); the pool lives in ``self.public``, whose copies start
    # empty. A shallow copy gets its own copy of the public half, so it never
    # draws from the original's pool either. The CRT tables (powers of ``hs``
    # modulo p^2 and q^2) are shared by shallow copies and left out of pickles
    # and deep copies, which rebuild them on first use.

    def __copy__(self) -> PaillierSecret:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.public = copy.copy(self.public)
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_crt_tables"] = None
        return state

    # -- storage -------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        width = (self.public.key_bits + 7) // 8
        out: dict[str, Any] = {
            "p": int(self._p).to_bytes(width, "big"),
            "q": int(self._q).to_bytes(width, "big"),
            "small_factors": None,
        }
        if self.small_factors is not None:
            out["small_factors"] = [int(a).to_bytes(width, "big") for a in self.small_factors]
        return out

    @classmethod
    def from_material(cls, body: Body, public: PublicBackend) -> PaillierSecret:
        if not isinstance(public, PaillierPublic):
            raise FormatError("Paillier secret material needs a Paillier public context.")
        p = int.from_bytes(body.blob("p", max_size=_MAX_KEY_BITS // 8), "big")
        q = int.from_bytes(body.blob("q", max_size=_MAX_KEY_BITS // 8), "big")
        if p < 3 or q < 3 or p == q or p * q != int(public.n):
            raise FormatError("Paillier secret factors do not match the public modulus.")
        if not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise FormatError("Paillier secret factors are not prime.")
        small: tuple[int, int] | None = None
        raw_small = body.optional("small_factors")
        if raw_small is not None:
            if not (isinstance(raw_small, list) and len(raw_small) == 2
                    and all(isinstance(a, bytes) and len(a) <= _MAX_KEY_BITS // 8 for a in raw_small)):
                raise FormatError("Paillier small factors must be two byte strings.")
            small = (int.from_bytes(raw_small[0], "big"), int.from_bytes(raw_small[1], "big"))
            if not all(a > 2 and gmpy2.is_prime(a) for a in small):
                raise FormatError("Paillier small factors are not primes.")
        try:
            secret = cls(phe.PaillierPrivateKey(public.public_key, p, q), public,
                         small_factors=small)
        except (ConfigError, ZeroDivisionError, ValueError, ArithmeticError) as exc:
            # the constructor also refuses a generator outside the key's subgroup
            raise FormatError(f"Paillier secret key is inconsistent: {exc}") from None
        return secret

    def _generator_problem(self) -> str | None:
        """Why ``hs`` does not fit this key (with its factors at hand), or ``None``.

        With ``P``, ``Q`` known, the exact subgroup is checkable. For each of
        ``(P, e) = (P, P - 1)`` (ordinary keys) or ``(P, 2·a_p)`` (Ma-Han-Lei keys),
        and likewise for ``Q``:

        - ``hs**e ≡ 1 (mod P**2)``: ``hs`` lies in the order-``e`` part of
          ``Z*_{P^2}``, i.e. it is an ``n``-th residue there (DJN 2010, §4.1),
          so ciphertexts decrypt; for Ma-Han-Lei keys its order divides ``2·a_p``;
        - ``hs**s ≢ 1 (mod P)`` where ``s`` is the ``2**16``-smooth part of
          ``P - 1``: the order of ``hs`` modulo ``P`` (equal to its order modulo
          ``P**2`` in that subgroup) has a prime factor of at least ``2**16``,
          so ``hs`` is not in a subgroup of smooth order, of any size. For
          Ma-Han-Lei keys ``P - 1 = 2·a_p·b_p`` gives ``s = 2`` and the order is
          then exactly ``a_p`` or ``2·a_p``: at least ``2**(ℓ/2 - 1)``.

        An honest ``hs`` fails the second test with probability about
        ``s / (P - 1)`` (negligible). For ordinary keys a lower bound beyond a
        prime factor of ``2**16`` would need the factorization of ``P - 1``.
        Secret exponents go through ``powmod_sec``.
        """
        hs = self.public.hs
        if hs is None:
            return None
        for prime, modsq, e in ((self._p, self._psq, self._ep), (self._q, self._qsq, self._eq)):
            if gmpy2.powmod_sec(hs % modsq, e, modsq) != 1:
                return "the public DJN generator hs does not match the secret key."
            if gmpy2.powmod_sec(hs % prime, _smooth_part(prime - 1), prime) == 1:
                return (
                    "the public DJN generator hs has smooth order modulo a factor of n (a small "
                    "subgroup): its randomness would take few values. Refusing it."
                )
        return None

    # -- decryption ----------------------------------------------------------
    def raw_decrypt_int(self, c: gmpy2.mpz) -> gmpy2.mpz:
        """CRT decryption of one ciphertext to its plaintext integer."""
        p, q = self._p, self._q
        powmod = gmpy2.powmod_sec if self.constant_time else gmpy2.powmod
        mp = (powmod(c % self._psq, self._ep, self._psq) - 1) // p * self._kp % p
        mq = (powmod(c % self._qsq, self._eq, self._qsq) - 1) // q * self._kq % q
        return mp + p * ((mq - mp) * self._p_inv_q % q)

    def _decrypt_chunk(self, cts: list[Any]) -> bytes:
        width = (self.public.key_bits + 7) // 8
        return b"".join(int(self.raw_decrypt_int(c)).to_bytes(width, "big") for c in cts)

    def raw_decrypt(
        self, cts: Sequence[Any], n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        if workers <= 1 or len(cts) < 2 * _MIN_PARALLEL_CTS:
            plain = [self.raw_decrypt_int(c) for c in _progress(cts, progress, "decrypt")]
        else:
            width = (self.public.key_bits + 7) // 8
            blob = b"".join(parallel.fork_map(self._decrypt_chunk, _chunks(list(cts), workers),
                                              workers))
            plain = [int.from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]
        return self.public.unpack_plaintexts(plain, n_slots, count, terms)

    # -- CRT encryption (the key holder, or clients sharing the key) ----------
    def _tables(self) -> tuple[FixedBaseTable, FixedBaseTable]:
        if self._crt_tables is None:
            hs = self.public.hs
            # exponents reduce modulo the order of hs mod p^2, which divides self._ep
            bits_p = int(self._ep.bit_length()) if self.small_factors else self.public.r_bits
            bits_q = int(self._eq.bit_length()) if self.small_factors else self.public.r_bits
            self._crt_tables = (FixedBaseTable(hs % self._psq, self._psq, bits_p),
                                FixedBaseTable(hs % self._qsq, self._qsq, bits_q))
        return self._crt_tables

    def raw_crt_obfuscator(self, exponent: int | None = None) -> gmpy2.mpz:
        """``hs**a mod n**2`` via CRT; the same value :class:`PaillierPublic` computes."""
        if exponent is None:
            exponent = self.public.random_exponent()
        tp, tq = self._tables()
        a = gmpy2.mpz(exponent)
        if self.small_factors:
            xp, xq = tp.pow(a % self._ep), tq.pow(a % self._eq)
        else:
            xp, xq = tp.pow(a), tq.pow(a)
        return xq + self._qsq * ((xp - xq) * self._qsq_inv_psq % self._psq)

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list[Any]:
        """Encrypt like the public half, with CRT randomness when the scheme allows it."""
        pub = self.public
        if pub.randomness != "djn" or pub.pool_size:
            return pub.raw_encrypt(slots, term=term, workers=workers, progress=progress)
        offset = pub.term_offset if term else pub.offset
        shifted = np.asarray(slots, dtype=np.int64) + np.int64(offset)
        packed = pub.layout.raw_pack(shifted.astype(np.uint64))
        self._tables()
        width = pub.ct_bytes

        def run(chunk: list[int]) -> bytes:
            return b"".join(
                pub.raw_encrypt_int(m, self.raw_crt_obfuscator()).to_bytes(width, "big")
                for m in _progress(chunk, progress and workers <= 1, "encrypt")
            )

        return pub.parse_ciphertexts(b"".join(parallel.fork_map(run, _chunks(packed, workers), workers)))
