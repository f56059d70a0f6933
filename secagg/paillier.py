"""Packed Paillier: many fixed-point slots per ordinary ``phe`` Paillier ciphertext.

Keys are ``phe`` keys (``g = n + 1``). A client shifts each contribution by
``C = codec.contribution_bound`` so every slot is non-negative, packs
``slots = (bits(n) - 1) // slot_bits`` slots into one plaintext ``m < n`` and
encrypts ``c = (1 + n*m) * r**n mod n**2`` with fresh ``r`` from the OS. The
aggregator multiplies ciphertexts modulo ``n**2``, which adds plaintexts and
therefore slots; the codec guarantees that no slot sum reaches
``2**slot_bits``, so slots never carry into each other. ``phe``'s
``raw_decrypt`` of any of our ciphertexts gives the packed integer.

Worked numbers (2048-bit n, clip=1, frac_bits=16, max_clients=100): slots are
24 bits, 85 per ciphertext, 512 bytes per ciphertext, so about 6 bytes per value.
"""

from __future__ import annotations

import secrets
from typing import Any

import gmpy2
import numpy as np
import phe

from .backend import PublicBackend, SecretBackend
from .codec import FixedPointCodec
from .errors import CiphertextError, ConfigError, FormatError, SumOverflowError
from .packing import SlotLayout
from .wire import Body

__all__ = ["PaillierPublic", "PaillierSecret", "MIN_SECURE_KEY_BITS"]

MIN_SECURE_KEY_BITS = 2048
_MIN_KEY_BITS = 256  # test keys only; generate() refuses < 2048 unless insecure=True
_MAX_KEY_BITS = 16384


def _layout(n_bits: int, codec: FixedPointCodec) -> SlotLayout:
    # plaintexts stay below 2**(bits(n) - 1) <= n
    return SlotLayout(codec.slot_bits, (n_bits - 1) // codec.slot_bits)


class PaillierPublic(PublicBackend):
    """Public half: encrypts packed slots and sums ciphertexts modulo ``n**2``."""

    scheme = "paillier"

    def __init__(
        self, public_key: phe.PaillierPublicKey, codec: FixedPointCodec, *, insecure: bool = False
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
        self.layout = _layout(self.key_bits, codec)
        self.ct_bytes = (int(self.nsquare.bit_length()) + 7) // 8
        self.offset = codec.contribution_bound
        self.term_offset = codec.term_bound

    # -- wire ----------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        return {
            "n": int(self.n).to_bytes((self.key_bits + 7) // 8, "big"),
            "slot_bits": self.layout.slot_bits,
            "slots": self.layout.slots,
            "insecure": self.insecure,
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
        public = cls(phe.PaillierPublicKey(n), codec, insecure=True)
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
        return tag + int(self.n).to_bytes((self.key_bits + 7) // 8, "big")

    def describe(self) -> dict[str, Any]:
        return {
            "scheme": "paillier",
            "key_bits": self.key_bits,
            "slot_bits": self.layout.slot_bits,
            "slots_per_ciphertext": self.layout.slots,
            "ciphertext_bytes": self.ct_bytes,
            "bytes_per_value": self.ct_bytes / self.layout.slots,
        }

    # -- encryption ----------------------------------------------------------
    def num_ciphertexts(self, n_slots: int) -> int:
        return self.layout.num_plaintexts(n_slots)

    def raw_obfuscator(self) -> gmpy2.mpz:
        """A fresh ``r**n mod n**2`` with ``r`` uniform in ``Z_n*`` from the OS."""
        while True:
            r = gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1)
            if gmpy2.gcd(r, self.n) == 1:
                return gmpy2.powmod(r, self.n, self.nsquare)

    def raw_encrypt_int(self, m: int) -> gmpy2.mpz:
        """Encrypt one plaintext integer ``0 <= m < n``."""
        return (1 + self.n * m) * self.raw_obfuscator() % self.nsquare

    def raw_encrypt(self, slots: np.ndarray, *, term: bool = False) -> list:
        offset = self.term_offset if term else self.offset
        shifted = np.asarray(slots, dtype=np.int64) + np.int64(offset)
        packed = self.layout.raw_pack(shifted.astype(np.uint64))
        return [self.raw_encrypt_int(m) for m in packed]

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
        width = self.ct_bytes
        from_bytes = gmpy2.mpz.from_bytes
        cts = [from_bytes(obj[i : i + width], "big") for i in range(0, len(obj), width)]
        nsquare, n = self.nsquare, self.n
        product = gmpy2.mpz(1)
        for i, c in enumerate(cts):
            if not 0 < c < nsquare:
                raise CiphertextError(f"Paillier ciphertext {i} lies outside [1, n^2).")
            product = product * c % n
        # c is a unit mod n^2 iff gcd(c, n) == 1; one gcd of the product checks them all.
        if gmpy2.gcd(product, n) != 1:
            raise CiphertextError("a Paillier ciphertext shares a factor with n (not a unit).")
        return cts

    def raw_add(self, a: list, b: list) -> list:
        nsquare = self.nsquare
        return [x * y % nsquare for x, y in zip(a, b)]


class PaillierSecret(SecretBackend):
    """Secret half: CRT decryption with precomputed constants, then unpacking."""

    def __init__(self, private_key: phe.PaillierPrivateKey, public: PaillierPublic) -> None:
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
        g = public.n + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, p - 1, self._psq) - 1) // p, p)
        self._hq = gmpy2.invert((gmpy2.powmod(g, q - 1, self._qsq) - 1) // q, q)
        self._p_inv_q = gmpy2.invert(p, q)

    def material(self) -> dict[str, Any]:
        width = (self.public.key_bits + 7) // 8
        return {"p": int(self._p).to_bytes(width, "big"), "q": int(self._q).to_bytes(width, "big")}

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
        try:
            return cls(phe.PaillierPrivateKey(public.public_key, p, q), public)
        except (ZeroDivisionError, ValueError, ArithmeticError):
            raise FormatError("Paillier secret key is degenerate.") from None

    def raw_decrypt_int(self, c: gmpy2.mpz) -> gmpy2.mpz:
        """CRT decryption of one ciphertext to its plaintext integer."""
        p, q = self._p, self._q
        mp = (gmpy2.powmod(c, p - 1, self._psq) - 1) // p * self._hp % p
        mq = (gmpy2.powmod(c, q - 1, self._qsq) - 1) // q * self._hq % q
        return mp + p * ((mq - mp) * self._p_inv_q % q)

    def raw_decrypt(self, cts: list, n_slots: int, count: int, terms: int) -> np.ndarray:
        layout = self.public.layout
        plain = [self.raw_decrypt_int(c) for c in cts]
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
