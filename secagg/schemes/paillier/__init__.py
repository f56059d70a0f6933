"""Packed Paillier on ``phe`` keys with ``gmpy2`` arithmetic (the only folder importing them).

``backend`` (the public and secret halves: packing, DJN randomness, CRT
decryption), ``keys`` (DJN generators, Ma–Han–Lei optimized keys, key
generation), ``fixedbase`` (fixed-base exponentiation tables), ``packing``
(slot layout). Registered as ``"paillier"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secagg.codec import FixedPointCodec
from secagg.schemes import Scheme, register
from secagg.schemes.base import PublicBackend, SecretBackend

OPTIONS = frozenset({"key_bits", "keypair", "insecure", "randomness", "optimized_keys"})


def _generate(codec: FixedPointCodec, options: Mapping[str, Any]) -> SecretBackend:
    from secagg.schemes.paillier.keys import generate_backend

    return generate_backend(codec, **options)


def _load() -> tuple[type[PublicBackend], type[SecretBackend]]:
    from secagg.schemes.paillier.backend import PaillierPublic, PaillierSecret

    return PaillierPublic, PaillierSecret


register(Scheme(name="paillier", options=OPTIONS, generate=_generate, load=_load,
                summary="packed Paillier (phe keys): exact sums, any key holder"))
