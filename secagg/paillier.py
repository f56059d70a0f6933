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
encryption is one modular product per ciphertext. Pools are never serialized
and are dropped in forked children, so a value is never used twice.

Worked numbers (2048-bit n, clip=1, frac_bits=16, max_clients=100): slots are
24 bits, 85 per ciphertext, 512 bytes per ciphertext, about 6 bytes per value.
"""

from __future__ import annotations

import secrets
import weakref
from typing import Any

import gmpy2
import numpy as np
import phe

from . import parallel
from .backend import PublicBackend, SecretBackend
from .codec import FixedPointCodec
from .errors import CiphertextError, ConfigError, FormatError, SumOverflowError
from .fixedbase import FixedBaseTable
from .packing import SlotLayout
from .wire import Body

__all__ = ["PaillierPublic", "PaillierSecret", "MIN_SECURE_KEY_BITS", "RANDOMNESS"]

MIN_SECURE_KEY_BITS = 2048
RANDOMNESS = ("djn", "standard")
_MIN_KEY_BITS = 256  # test keys only; generate() refuses < 2048 unless insecure=True
_MAX_KEY_BITS = 16384
_MIN_PARALLEL_CTS = 16  # below this, forking costs more than it saves

_LIVE: weakref.WeakSet = weakref.WeakSet()


def _drop_pools_in_child() -> None:
    for backend in list(_LIVE):
        backend._pool.clear()


parallel.on_fork_child(_drop_pools_in_child)


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


def _chunks(items: list, workers: int) -> list[list]:
    k = max(1, min(workers, len(items) // _MIN_PARALLEL_CTS))
    size = -(-len(items) // k)
    return [items[i : i + size] for i in range(0, len(items), size)]


class PaillierPublic(PublicBackend):
    """Public half: encrypts packed slots and sums ciphertexts modulo ``n**2``."""

    scheme = "paillier"

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
            self.hs = gmpy2.mpz(hs)
            self.r_bits = int(r_bits) if r_bits is not None else (self.key_bits + 1) // 2
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
        raw_n = body.bytes("n", max_size=_MAX_KEY_BITS // 8)
        n = int.from_bytes(raw_n, "big")
        if not _MIN_KEY_BITS <= n.bit_length() <= _MAX_KEY_BITS or n % 2 == 0:
            raise FormatError(f"Paillier modulus has an invalid size ({n.bit_length()} bits).")
        insecure = body.optional("insecure")
        if n.bit_length() < MIN_SECURE_KEY_BITS and insecure is not True:
            raise FormatError(
                f"Paillier modulus of {n.bit_length()} bits is below {MIN_SECURE_KEY_BITS} and the "
                f"context is not marked as an insecure test context; refusing it."
            )
        randomness = body.str("randomness", choices=RANDOMNESS)
        hs = r_bits = None
        if randomness == "djn":
            raw_hs = body.bytes("hs", size=(2 * n.bit_length() + 7) // 8)
            hs = int.from_bytes(raw_hs, "big")
            if not 1 < hs < n * n or gmpy2.gcd(hs, n) != 1:
                raise FormatError("the DJN generator hs is not a unit modulo n^2.")
            # at least 2λ bits for λ-bit security; never longer than the modulus
            r_bits = body.int("r_bits", min(160, n.bit_length()), n.bit_length())
        public = cls(phe.PaillierPublicKey(n), codec, insecure=True, randomness=randomness,
                     hs=hs, r_bits=r_bits)
        slot_bits = body.int("slot_bits", 1, 64)
        slots = body.int("slots", 1, _MAX_KEY_BITS)
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

    def _random_exponent(self) -> int:
        return secrets.randbits(self.r_bits)

    def raw_fresh_obfuscator(self) -> gmpy2.mpz:
        """A fresh ``R`` (``hs**a`` or ``r**n``), never from the pool."""
        if self.randomness == "djn":
            return self.table().pow(self._random_exponent())
        while True:
            r = gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1)
            if gmpy2.gcd(r, self.n) == 1:
                return gmpy2.powmod(r, self.n, self.nsquare)

    def raw_obfuscator(self) -> gmpy2.mpz:
        """The next ``R``: from the precomputed pool if it has one, else fresh."""
        if self._pool:
            return self._pool.pop()
        return self.raw_fresh_obfuscator()

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Add ``count`` fresh ``R`` values to the pool (between rounds, off the critical path).

        The pool lives in this process only: it is never serialized and is
        emptied in forked children, so no value is ever used twice.
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
    ) -> list:
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
        return self._parse(b"".join(blobs))

    def _parse(self, blob: bytes) -> list:
        width = self.ct_bytes
        from_bytes = gmpy2.mpz.from_bytes
        return [from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]

    # -- wire ciphertexts ----------------------------------------------------
    def ciphertexts_to_wire(self, cts: list) -> bytes:
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

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list:
        self.precheck(obj, n_slots)
        cts = self._parse(obj)
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

    def raw_add(self, a: list, b: list) -> list:
        nsquare = self.nsquare
        return [x * y % nsquare for x, y in zip(a, b)]


class PaillierSecret(SecretBackend):
    """Secret half: CRT decryption with precomputed constants, then unpacking.

    With the factors of ``n`` at hand, also CRT encryption (cross-silo clients
    sharing the key): ``hs**a`` is computed modulo ``P**2`` and ``Q**2``, where
    for optimized keys the exponent shrinks to ``a mod 2·a_p``.
    """

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
        p = int.from_bytes(body.bytes("p", max_size=_MAX_KEY_BITS // 8), "big")
        q = int.from_bytes(body.bytes("q", max_size=_MAX_KEY_BITS // 8), "big")
        if p < 3 or q < 3 or p == q or p * q != int(public.n):
            raise FormatError("Paillier secret factors do not match the public modulus.")
        if not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise FormatError("Paillier secret factors are not prime.")
        small = None
        raw_small = body.optional("small_factors")
        if raw_small is not None:
            if not (isinstance(raw_small, list) and len(raw_small) == 2
                    and all(isinstance(a, bytes) and len(a) <= _MAX_KEY_BITS // 8 for a in raw_small)):
                raise FormatError("Paillier small factors must be two byte strings.")
            small = tuple(int.from_bytes(a, "big") for a in raw_small)
            if not all(a > 2 and gmpy2.is_prime(a) for a in small):
                raise FormatError("Paillier small factors are not primes.")
        try:
            secret = cls(phe.PaillierPrivateKey(public.public_key, p, q), public,
                         small_factors=small)  # type: ignore[arg-type]
        except (ConfigError, ZeroDivisionError, ValueError, ArithmeticError) as exc:
            raise FormatError(f"Paillier secret key is inconsistent: {exc}") from None
        secret._check_generator()
        return secret

    def _check_generator(self) -> None:
        """``hs`` must be an n-th residue of the expected order, or encryption would leak."""
        hs = self.public.hs
        if hs is None:
            return
        for modsq, e in ((self._psq, self._ep), (self._qsq, self._eq)):
            if gmpy2.powmod(hs, e, modsq) != 1:
                raise FormatError("the public DJN generator hs does not match the secret key.")

    # -- decryption ----------------------------------------------------------
    def raw_decrypt_int(self, c: gmpy2.mpz) -> gmpy2.mpz:
        """CRT decryption of one ciphertext to its plaintext integer."""
        p, q = self._p, self._q
        powmod = gmpy2.powmod_sec if self.constant_time else gmpy2.powmod
        mp = (powmod(c % self._psq, self._ep, self._psq) - 1) // p * self._kp % p
        mq = (powmod(c % self._qsq, self._eq, self._qsq) - 1) // q * self._kq % q
        return mp + p * ((mq - mp) * self._p_inv_q % q)

    def _decrypt_chunk(self, cts: list) -> bytes:
        width = (self.public.key_bits + 7) // 8
        return b"".join(int(self.raw_decrypt_int(c)).to_bytes(width, "big") for c in cts)

    def raw_decrypt(
        self, cts: list, n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        layout = self.public.layout
        if workers <= 1 or len(cts) < 2 * _MIN_PARALLEL_CTS:
            plain = [self.raw_decrypt_int(c) for c in _progress(cts, progress, "decrypt")]
        else:
            width = (self.public.key_bits + 7) // 8
            blob = b"".join(parallel.fork_map(self._decrypt_chunk, _chunks(list(cts), workers),
                                              workers))
            plain = [int.from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]
        for i, m in enumerate(plain):
            if m >> layout.plaintext_bits:
                raise SumOverflowError(
                    f"plaintext {i} has bits above its {layout.slots} slots: a contribution "
                    f"exceeded the codec range or the ciphertext was not made by secagg."
                )
        sums = layout.raw_unpack(plain, n_slots)
        offset = count * self.public.offset + terms * self.public.term_offset
        bad = np.flatnonzero(sums > np.uint64(2 * offset))
        if bad.size:
            raise SumOverflowError(
                f"{bad.size} slot sums exceed the range of {count} honest updates and {terms} "
                f"terms (first positions {bad[:8].tolist()}); some client encoded out of range."
            )
        return sums.astype(np.int64) - np.int64(offset)

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
            exponent = self.public._random_exponent()
        tp, tq = self._tables()
        a = gmpy2.mpz(exponent)
        if self.small_factors:
            xp, xq = tp.pow(a % self._ep), tq.pow(a % self._eq)
        else:
            xp, xq = tp.pow(a), tq.pow(a)
        return xq + self._qsq * ((xp - xq) * self._qsq_inv_psq % self._psq)

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list:
        """Encrypt like the public half, with CRT randomness when the scheme allows it."""
        pub = self.public
        if pub.randomness != "djn" or pub._pool:
            return pub.raw_encrypt(slots, term=term, workers=workers, progress=progress)
        offset = pub.term_offset if term else pub.offset
        shifted = np.asarray(slots, dtype=np.int64) + np.int64(offset)
        packed = pub.layout.raw_pack(shifted.astype(np.uint64))
        self._tables()
        width = pub.ct_bytes

        def run(chunk: list) -> bytes:
            return b"".join(
                pub.raw_encrypt_int(m, self.raw_crt_obfuscator()).to_bytes(width, "big")
                for m in _progress(chunk, progress and workers <= 1, "encrypt")
            )

        return pub._parse(b"".join(parallel.fork_map(run, _chunks(packed, workers), workers)))
