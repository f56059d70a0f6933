"""The pinned public API of issue #2, exactly as written there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import secagg


def run_pinned_snippet(ctx, tree):
    blob = ctx.public.to_bytes()
    pub = secagg.PublicContext.from_bytes(blob, allow_insecure=True)
    agg = secagg.Aggregator(pub)
    for _ in range(2):
        upd = pub.encrypt(tree, weight=1.0)
        assert isinstance(upd, secagg.EncryptedUpdate)
        data = upd.to_bytes()
        upd = secagg.EncryptedUpdate.from_bytes(data, pub)
        agg.add(upd)
    assert len(agg) == 2
    total = agg.result()
    out = ctx.decrypt(total, reduce="mean")
    blob = ctx.to_bytes()
    ctx = secagg.SecretContext.from_bytes(blob, allow_insecure=True)
    assert isinstance(ctx.public, secagg.PublicContext)
    return out, ctx.decrypt(total, reduce="mean", device="cpu")


TREE = {"fc.weight": torch.full((4, 3), 0.5), "fc.bias": torch.full((3,), -0.25)}


def test_pinned_api_fast_keys():
    for ctx in (
        secagg.generate("paillier", key_bits=512, max_clients=100, clip=1.0, frac_bits=16, insecure=True),
        secagg.generate("ckks", max_clients=100, clip=1.0, frac_bits=16),
    ):
        out, again = run_pinned_snippet(ctx, TREE)
        for k in TREE:
            assert torch.equal(out[k], TREE[k]) and torch.equal(again[k], TREE[k])


def test_small_keys_need_explicit_insecure():
    with pytest.raises(secagg.ConfigError, match="insecure"):
        secagg.generate("paillier", key_bits=512)
    with pytest.raises(secagg.ConfigError, match="scheme"):
        secagg.generate("rsa")


@pytest.mark.slow
@pytest.mark.parametrize("key_bits", [2048, 3072])
def test_pinned_api_real_keys(key_bits):
    ctx = secagg.generate("paillier", key_bits=key_bits, max_clients=100, clip=1.0, frac_bits=16)
    out, _ = run_pinned_snippet(ctx, TREE)
    assert torch.equal(out["fc.weight"], TREE["fc.weight"])
    assert ctx.public.backend.key_bits == key_bits


@pytest.mark.slow
def test_user_keypair_2048():
    import phe

    pk, sk = phe.generate_paillier_keypair(n_length=2048)
    ctx = secagg.generate("paillier", keypair=(pk, sk), max_clients=100, clip=1.0, frac_bits=16)
    out, _ = run_pinned_snippet(ctx, [np.ones(5) * 0.125])
    assert out[0].tolist() == [0.125] * 5
