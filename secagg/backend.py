"""What every encryption scheme provides, and the registry that names them.

A scheme is a pair of classes: a public half (encrypt, validate, add) that
clients and the aggregator hold, and a secret half (decrypt) that only the key
holder holds. Both work on *slot vectors*: int64 arrays of signed weighted
contributions ``w * q`` with the weight itself in the last slot. Schemes are
looked up by name, never passed around as objects.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .codec import FixedPointCodec
from .errors import ConfigError
from .wire import Body

__all__ = ["PublicBackend", "SecretBackend", "SCHEMES", "scheme_classes"]


class PublicBackend(ABC):
    """Public half of a scheme: encryption, ciphertext validation, homomorphic sum."""

    scheme: ClassVar[str]
    codec: FixedPointCodec
    #: a test-only context (e.g. a Paillier key below 2048 bits); loaders refuse it unless told
    insecure: bool = False
    #: whether decrypting ciphertexts chosen by an adversary can leak nothing of the secret
    #: key (Paillier: True; CKKS/BFV: False, decryption-oracle attacks recover the key)
    oracle_safe_key: ClassVar[bool] = False

    @abstractmethod
    def material(self) -> dict[str, Any]:
        """Public parameters and key for the wire (never secret material)."""

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
    ) -> list:
        """Encrypt an int64 slot vector bounded by the codec's contribution (or term) bound."""

    @abstractmethod
    def ciphertexts_to_wire(self, cts: list) -> Any:
        """Ciphertexts as MessagePack-able data."""

    @abstractmethod
    def precheck(self, obj: Any, n_slots: int) -> None:
        """Cheap check that wire data has the right number of ciphertexts, before parsing."""

    @abstractmethod
    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list:
        """Validate wire data holding ciphertexts of ``n_slots`` slots; raises ``CiphertextError``."""

    @abstractmethod
    def raw_add(self, a: list, b: list) -> list:
        """Homomorphic slot-wise sum of two ciphertext lists (inputs unchanged)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Human-readable parameters: sizes, slots, security."""


class SecretBackend(ABC):
    """Secret half of a scheme: decryption to exact integer slot sums."""

    public: PublicBackend

    @abstractmethod
    def material(self) -> dict[str, Any]:
        """Secret key material for the key holder's own storage."""

    @classmethod
    @abstractmethod
    def from_material(cls, body: Body, public: PublicBackend) -> SecretBackend:
        """Validate and rebuild from :meth:`material`; raises ``FormatError``."""

    @abstractmethod
    def raw_decrypt(
        self, cts: list, n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        """Decrypt to the int64 signed slot sums of ``count`` updates and ``terms`` terms."""

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list:
        """Encrypt with whatever the secret key speeds up (default: the public path)."""
        return self.public.raw_encrypt(slots, term=term, workers=workers, progress=progress)


# scheme name -> (module, public class, secret class); imported on first use so
# that a Paillier user never loads tenseal and vice versa.
SCHEMES: dict[str, tuple[str, str, str]] = {
    "paillier": ("secagg.paillier", "PaillierPublic", "PaillierSecret"),
    "ckks": ("secagg.ckks", "CkksPublic", "CkksSecret"),
    "bfv": ("secagg.bfv", "BfvPublic", "BfvSecret"),
}


def scheme_classes(scheme: object) -> tuple[type[PublicBackend], type[SecretBackend]]:
    """The public and secret classes of a scheme, by name."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; choose one of {sorted(SCHEMES)}.")
    module, pub, sec = SCHEMES[scheme]  # type: ignore[index]
    mod = importlib.import_module(module)
    return getattr(mod, pub), getattr(mod, sec)
