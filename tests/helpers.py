"""Test helpers: small contexts and aggregator state snapshots."""

from __future__ import annotations

import secagg

# One codec for both schemes so that their results can be compared bit for bit.
CODEC = dict(max_clients=6, clip=1.0, frac_bits=16, max_weight=4, min_clients=2)
SCHEMES = ["paillier", "ckks", "bfv"]


def make_context(scheme: str, **overrides) -> secagg.SecretContext:
    """A small, fast context (512-bit Paillier keys are for tests only)."""
    params = dict(CODEC)
    params.update(overrides)
    if scheme == "paillier":
        params.setdefault("key_bits", 512)
        params.setdefault("insecure", True)
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
        out.append(np.asarray(secret.public._encoder.decode_double(pt)))
    return np.concatenate(out)
