"""Test helpers: small contexts and aggregator state snapshots."""

from __future__ import annotations

import secagg
from secagg import schemes

# One codec for every scheme so that their results can be compared bit for bit.
CODEC = dict(max_clients=6, clip=1.0, frac_bits=16, max_weight=4, min_clients=2)

# The registered schemes, read once when the tests are collected: the built-ins
# (and any installed plug-in), never a throwaway scheme a test registers later.
SCHEMES: tuple[str, ...] = tuple(schemes.available())

# Options that make a scheme's keys small and fast; a scheme takes them when it
# declares both (Paillier: 512-bit keys, marked insecure, for tests only).
SMALL_KEYS = dict(key_bits=512, insecure=True)


def small_key_options(scheme: str) -> dict:
    """``SMALL_KEYS`` if ``scheme``'s registered options include them, else nothing."""
    return dict(SMALL_KEYS) if set(SMALL_KEYS) <= schemes.get(scheme).options else {}


def make_context(scheme: str, **overrides) -> secagg.SecretContext:
    """A small, fast context (small keys are for tests only)."""
    params = {**CODEC, **small_key_options(scheme)}
    params.update(overrides)
    return secagg.generate(scheme, **params)


def snapshot(agg: secagg.Aggregator) -> tuple:
    """Everything an aggregator's state consists of, as comparable plain data."""
    backend = agg.public.backend
    cts = None if agg._sum is None else backend.ciphertexts_to_wire(agg._sum)
    return (len(agg), agg.terms, agg.spec, frozenset(agg._seen), frozenset(agg._clients), cts)


def unrounded_ckks(secret, cts):
    """Raw CKKS decryptions (tests only: the library never exposes them)."""
    import numpy as np
    import tenseal.sealapi as sa

    out = []
    for c in cts:
        pt = sa.Plaintext()
        secret._decryptor.decrypt(c.ct, pt)
        out.append(np.asarray(secret.public.encoder.decode_double(pt)))
    return np.concatenate(out)
