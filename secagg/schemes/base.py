"""What every encryption scheme provides (the registry is :mod:`secagg.schemes`).

A scheme is a pair of classes: a public half (encrypt, validate, add) that
clients and the aggregator hold, and a secret half (decrypt) that only the key
holder holds. Both work on *slot vectors*: int64 arrays of signed weighted
contributions ``w * q`` with the weight itself in the last slot. Schemes are
looked up by name, never passed around as objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from secagg.codec import FixedPointCodec
from secagg.errors import ConfigError
from secagg.wire import Body

__all__ = ["PublicBackend", "SecretBackend"]


class _Half(ABC):
    """What both halves do: store themselves as plain data, rebuilt by ``from_material``."""

    @abstractmethod
    def material(self) -> dict[str, Any]:
        """Plain data that ``from_material`` rebuilds this half from.

        The public half's parameters and key go on the wire (never secret
        material); the secret half's key material only to the key holder's own
        storage.
        """


class PublicBackend(_Half):
    """Public half of a scheme: encryption, ciphertext validation, homomorphic sum."""

    scheme: ClassVar[str]
    codec: FixedPointCodec
    #: a test-only context (e.g. a Paillier key below 2048 bits); loaders refuse it unless told
    insecure: bool = False
    #: optional capabilities: ``"precompute"`` (encryption randomness ahead of time)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: whether :meth:`ciphertexts_from_wire` takes read-only memoryviews where bytes of
    #: 64 KiB or more were sent (``open_payload(..., views=True)``: no copy of the payload)
    accepts_views: ClassVar[bool] = False

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Precompute encryption randomness (only schemes declaring ``"precompute"``)."""
        raise ConfigError(f"the {self.scheme!r} scheme has no randomness to precompute.")
    #: whether decrypting ciphertexts chosen by an adversary can leak nothing of the secret
    #: key (Paillier: True; CKKS/BFV: False, decryption-oracle attacks recover the key)
    oracle_safe_key: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_material(cls, body: Body, codec: FixedPointCodec) -> PublicBackend:
        """Validate and rebuild from :meth:`material`; raises ``FormatError``."""

    @abstractmethod
    def fingerprint_material(self) -> bytes:
        """Bytes that identify the public key and parameters."""

    @abstractmethod
    def num_ciphertexts(self, n_slots: int) -> int:
        """Ciphertexts needed for ``n_slots`` slots."""

    @abstractmethod
    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> Sequence[Any]:
        """Encrypt an int64 slot vector bounded by the codec's contribution (or term) bound."""

    @abstractmethod
    def ciphertexts_to_wire(self, cts: Sequence[Any]) -> Any:
        """Ciphertexts as MessagePack-able data."""

    @abstractmethod
    def precheck(self, obj: Any, n_slots: int) -> None:
        """Cheap check that wire data has the right number of ciphertexts, before parsing."""

    @abstractmethod
    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> Sequence[Any]:
        """Validate wire data holding ciphertexts of ``n_slots`` slots; raises ``CiphertextError``."""

    @abstractmethod
    def raw_add(self, a: Sequence[Any], b: Sequence[Any]) -> Sequence[Any]:
        """Homomorphic slot-wise sum of two ciphertext lists (inputs unchanged)."""

    def raw_copy(self, cts: Any) -> Any:
        """An independent copy of ``cts`` that :meth:`raw_accumulate` may add into."""
        return list(cts)

    def raw_accumulate(self, total: Any, cts: Any) -> Any:
        """``total + cts``, reusing ``total`` (a :meth:`raw_copy` result) where the scheme can."""
        return self.raw_add(total, cts)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Human-readable parameters: sizes, slots, security."""


class SecretBackend(_Half):
    """Secret half of a scheme: decryption to exact integer slot sums."""

    public: PublicBackend

    @classmethod
    @abstractmethod
    def from_material(cls, body: Body, public: PublicBackend) -> SecretBackend:
        """Validate and rebuild from :meth:`material`; raises ``FormatError``."""

    @abstractmethod
    def raw_decrypt(
        self, cts: Sequence[Any], n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        """Decrypt to the int64 signed slot sums of ``count`` updates and ``terms`` terms."""

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> Sequence[Any]:
        """Encrypt with whatever the secret key speeds up (default: the public path)."""
        return self.public.raw_encrypt(slots, term=term, workers=workers, progress=progress)
