"""The public side of a threshold key: verification keys and the threshold public context.

:class:`VerificationKeys` is what the dealer publishes besides the ordinary
public context: the parameters ``(parties, threshold, Δ = parties!)``, the
verification base ``v`` (a random square of ``Z*_{n²}`` that generates the
squares) and one key ``v_i = v**(Δ·s_i) mod n²`` per share holder. A combiner
needs them to check partial decryptions; they must reach it from the dealer
over a channel it trusts (like the public context itself): whoever substitutes
them can make ``combine`` accept wrong partials.

:class:`ThresholdPublicContext` is an ordinary :class:`secagg.PublicContext`
(same bytes, same fingerprint: clients and the aggregator see no difference)
that also carries the verification keys, so that ``threshold.combine(keys.public,
...)`` finds them.
"""

from __future__ import annotations

import math
from typing import Any

import gmpy2

from secagg._checks import check_int
from secagg.context import PublicContext, public_only
from secagg.errors import ConfigError, ContextMismatchError, FormatError
from secagg.schemes.paillier.backend import PaillierPublic
from secagg.threshold.proofs import randomness_bits, transcript
from secagg.wire import Kind, open_payload, seal

__all__ = ["VerificationKeys", "ThresholdPublicContext", "load_public", "MAX_PARTIES",
           "paillier_backend"]

#: the most share holders one key is split between (Δ = parties! grows every exponent)
MAX_PARTIES = 64


def paillier_backend(public: PublicContext) -> PaillierPublic:
    """The Paillier backend of ``public`` (a threshold key is a Paillier key)."""
    backend = public.backend
    if not isinstance(backend, PaillierPublic):
        raise ConfigError(
            f"threshold decryption is defined for the 'paillier' scheme; this context is "
            f"{public.scheme!r}."
        )
    return backend


def check_parties(parties: object, threshold: object) -> tuple[int, int]:
    """``(parties, threshold)`` with ``2 <= threshold <= parties <= MAX_PARTIES``."""
    n = check_int("parties", parties, 2)
    if n > MAX_PARTIES:
        raise ConfigError(f"parties must be at most {MAX_PARTIES}. Found {n}.")
    t = check_int("threshold", threshold, 2)
    if t > n:
        raise ConfigError(
            f"threshold={t} is above parties={n}: no set of share holders could decrypt."
        )
    return n, t


class VerificationKeys:
    """Public verification material of a dealt key (see the module docstring).

    Attributes:
        parties, threshold: ``n`` share holders, any ``threshold`` of whom decrypt.
        delta: ``parties!``.
        v: the verification base; ``keys[i - 1]`` is holder ``i``'s ``v_i``.
        keyset: 32 bytes naming this key set (SHA-256 of everything above and the
            public context's fingerprint); every share and partial carries it.
    """

    def __init__(self, public: PublicContext, parties: int, threshold: int, v: int,
                 keys: list[int]) -> None:
        backend = paillier_backend(public)
        self.parties, self.threshold = check_parties(parties, threshold)
        if len(keys) != self.parties:
            raise ConfigError(f"expected {self.parties} verification keys, got {len(keys)}.")
        self.fingerprint: bytes = public.fingerprint
        self.n: gmpy2.mpz = backend.n
        self.nsquare: gmpy2.mpz = backend.nsquare
        self.width: int = backend.ct_bytes
        self.delta: int = math.factorial(self.parties)
        self.v = gmpy2.mpz(v)
        self.keys: tuple[gmpy2.mpz, ...] = tuple(gmpy2.mpz(k) for k in keys)
        for value in (self.v, *self.keys):
            if not 1 < value < self.nsquare or gmpy2.gcd(value, self.n) != 1:
                raise ConfigError("a verification key is not a unit in (1, n^2).")
        #: bits of the prover's randomness and most bytes of a response ``z``
        self.r_bits: int = randomness_bits(int(self.nsquare.bit_length()),
                                           self.delta.bit_length())
        self.z_width: int = (self.r_bits + 1 + 7) // 8
        self.keyset: bytes = transcript(
            "keyset", self.fingerprint, self.parties.to_bytes(2, "big"),
            self.threshold.to_bytes(2, "big"), self._int(self.v),
            *(self._int(k) for k in self.keys))

    def _int(self, x: int) -> bytes:
        return int(x).to_bytes(self.width, "big")

    def __repr__(self) -> str:
        return (f"VerificationKeys(threshold={self.threshold}, parties={self.parties}, "
                f"keyset={self.keyset.hex()[:12]})")

    def key(self, holder: int) -> gmpy2.mpz:
        """``v_i`` of share holder ``holder`` (1-based)."""
        return self.keys[holder - 1]

    def to_bytes(self) -> bytes:
        """The verification keys as a payload (public: send to every combiner)."""
        return seal(Kind.THRESHOLD_PUBLIC, self._body())

    def _body(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "parties": self.parties,
            "threshold": self.threshold,
            "v": self._int(self.v),
            "keys": [self._int(k) for k in self.keys],
        }

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicContext) -> VerificationKeys:
        """Load and validate verification keys made for ``public``; raises a ``FormatError``."""
        _, body = open_payload(data, Kind.THRESHOLD_PUBLIC)
        return cls._from_body(body, public)

    @classmethod
    def _from_body(cls, body: Any, public: PublicContext) -> VerificationKeys:
        public = public_only(public, "VerificationKeys")
        try:
            backend = paillier_backend(public)
        except ConfigError as exc:
            raise FormatError(str(exc)) from None
        if body.blob("fingerprint", size=16) != public.fingerprint:
            raise ContextMismatchError("these verification keys belong to another public context.")
        parties = body.integer("parties", 2, MAX_PARTIES)
        threshold = body.integer("threshold", 2, parties)
        width = backend.ct_bytes
        v = int.from_bytes(body.blob("v", size=width), "big")
        raw = body.items("keys", max_len=parties)
        if len(raw) != parties or not all(isinstance(k, bytes) and len(k) == width for k in raw):
            raise FormatError(
                f"threshold public payload must hold {parties} verification keys of {width} bytes."
            )
        try:
            return cls(public, parties, threshold, v, [int.from_bytes(k, "big") for k in raw])
        except ConfigError as exc:
            raise FormatError(f"invalid verification keys: {exc}") from None


class ThresholdPublicContext(PublicContext):
    """A :class:`secagg.PublicContext` that also carries the :class:`VerificationKeys`.

    ``to_bytes()`` gives the ordinary public context (what clients and the
    aggregator load); ``verification.to_bytes()`` the verification keys. Load
    both with :func:`load_public`.
    """

    def __init__(self, public: PublicContext, verification: VerificationKeys) -> None:
        public = public_only(public, "ThresholdPublicContext")
        super().__init__(public.backend, min_clients=public.min_clients, dp=public.dp)
        if not isinstance(verification, VerificationKeys):
            raise ConfigError("verification must be secagg.threshold.VerificationKeys.")
        if verification.fingerprint != self.fingerprint:
            raise ContextMismatchError("the verification keys belong to another public context.")
        self.verification = verification

    def __repr__(self) -> str:
        v = self.verification
        return super().__repr__()[:-1] + f", threshold={v.threshold}-of-{v.parties})"


def load_public(public: bytes | PublicContext, verification: bytes, *,
                allow_insecure: bool = False) -> ThresholdPublicContext:
    """A combiner's context: the public context's bytes (or object) and the verification keys' bytes."""
    if isinstance(public, (bytes, bytearray, memoryview)):
        public = PublicContext.from_bytes(bytes(public), allow_insecure=allow_insecure)
    public = public_only(public, "load_public")
    return ThresholdPublicContext(public, VerificationKeys.from_bytes(bytes(verification), public))
