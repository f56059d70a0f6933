"""CKKS and BFV on SEAL ciphertexts through TenSEAL (the only folder importing it).

``seal`` (the shared SEAL layer: encryption, seeded uploads, validation, sums),
``ckks`` and ``bfv`` (the two schemes), ``planner`` (parameters that keep a sum
exact at a security level). Registered as ``"ckks"`` and ``"bfv"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from secagg.codec import FixedPointCodec
from secagg.schemes import Scheme, register
from secagg.schemes.base import PublicBackend, SecretBackend

if TYPE_CHECKING:  # pragma: no cover
    from secagg.schemes.lattice.seal import LatticeSecret

OPTIONS = frozenset({"security"})


def _scheme(name: str, module: str, secret: str, summary: str) -> Scheme:
    def secret_class() -> type[LatticeSecret]:
        found: type[LatticeSecret] = getattr(importlib.import_module(module), secret)
        return found

    def load() -> tuple[type[PublicBackend], type[SecretBackend]]:
        cls = secret_class()
        return cls.public_type, cls

    def generate(codec: FixedPointCodec, options: Mapping[str, Any]) -> SecretBackend:
        return secret_class().generate(codec, **options)

    return Scheme(name=name, options=OPTIONS, generate=generate, load=load, summary=summary)


register(_scheme("ckks", "secagg.schemes.lattice.ckks", "CkksSecret",
                 "CKKS on quantized integers (TenSEAL/SEAL): exact after rounding"))
register(_scheme("bfv", "secagg.schemes.lattice.bfv", "BfvSecret",
                 "BFV (TenSEAL/SEAL): exact integer sums, the smallest lattice payloads"))
