"""The central invariant: decode(sum of encryptions) is the exact sum of the quantized inputs."""

from __future__ import annotations

import numpy as np
import phe
import pytest
import torch
from hypothesis import given, settings

import secagg
from tests.helpers import CODEC, SCHEMES
from tests.strategies import client_batches

BATCHES = client_batches(max_clients=CODEC["max_clients"], max_weight=CODEC["max_weight"])
# Batches the key holder decrypts (at least min_clients updates).
DECRYPTABLE = client_batches(max_clients=CODEC["max_clients"], max_weight=CODEC["max_weight"],
                             min_clients=CODEC["min_clients"])


def encrypt_all(pub, xs, ws):
    agg = secagg.Aggregator(pub)
    for x, w in zip(xs, ws):
        agg.add(pub.encrypt({"x": x}, weight=w).to_bytes())
    return agg.result()


@given(BATCHES)
def test_decrypted_sum_is_exact_integer_sum(ctx, pub, batch):
    xs, ws = batch
    total = encrypt_all(pub, xs, ws)
    codec = pub.codec
    expected = sum(w * codec.encode(x.ravel()) for x, w in zip(xs, ws))
    if len(xs) < ctx.min_clients:  # decrypt_raw applies min_clients
        with pytest.raises(secagg.InsufficientClientsError):
            ctx.decrypt_raw(total)
    else:
        raw = ctx.decrypt_raw(total)
        assert raw.count == len(xs) and raw.weight_sum == sum(ws)
        assert np.array_equal(raw.values, expected)
        # float decoding is that integer sum divided exactly (float64, before the final cast)
        out = ctx.decrypt(total, reduce="sum")["x"]
        np.testing.assert_array_equal(out.ravel(), expected / codec.scale)


@given(DECRYPTABLE)
def test_reductions_match_their_definitions(ctx, pub, batch):
    xs, ws = batch
    assert len(xs) >= ctx.min_clients
    total = encrypt_all(pub, xs, ws)
    codec = pub.codec
    clamp = [np.clip(x, -codec.clip_value, codec.clip_value) for x in xs]
    wsum = sum(w * c for w, c in zip(ws, clamp))
    bound = codec.error_bound
    mean = ctx.decrypt(total, reduce="mean")["x"]
    wmean = ctx.decrypt(total, reduce="weighted_mean")["x"]
    assert np.abs(mean - wsum / len(xs)).max() <= bound * sum(ws) / len(xs) + 1e-15
    assert np.abs(wmean - wsum / sum(ws)).max() <= bound + 1e-15


@settings(max_examples=10)
@given(BATCHES)
def test_all_schemes_agree_exactly(contexts, batch):
    xs, ws = batch
    if len(xs) < 2:
        xs, ws = xs * 2, ws * 2
    outs = []
    for scheme in SCHEMES:
        ctx = contexts[scheme]
        outs.append(ctx.decrypt(encrypt_all(ctx.public, xs, ws), reduce="weighted_mean")["x"])
    assert len(outs) >= 3  # paillier, ckks, bfv at least
    assert all(o.dtype == np.float64 for o in outs)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_torch_tree_of_every_dtype(ctx, pub):
    grads = [
        {"w": torch.full((3, 2), 0.25, dtype=dt), "b": torch.full((2,), -0.5, dtype=dt), "skip": None}
        for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    ]
    agg = secagg.Aggregator(pub)
    for _ in range(2):
        agg.add(pub.encrypt(grads))
    out = ctx.decrypt(agg.result(), reduce="mean")
    for got, sent in zip(out, grads):
        assert got["skip"] is None
        for k in ("w", "b"):
            assert got[k].dtype == sent[k].dtype and got[k].device == sent[k].device
            assert torch.equal(got[k], sent[k])


def test_paillier_ciphertexts_are_ordinary_phe_ciphertexts(contexts):
    ctx = contexts["paillier"]
    backend = ctx.public.backend
    x = np.array([0.5, -0.25, 1.0, -1.0])
    upd = ctx.public.encrypt(x, weight=3)
    q = ctx.codec.encode(x)
    slots = np.append(3 * q, [3, 1]) + backend.offset  # values, weight, count
    expected = backend.layout.raw_pack(slots.astype(np.uint64))
    sk = ctx.secret_backend.private_key
    assert isinstance(sk, phe.PaillierPrivateKey)
    assert [sk.raw_decrypt(int(c)) for c in upd.ciphertexts] == expected
    # and phe's EncryptedNumber can carry it: a phe user can add our ciphertexts
    num = phe.EncryptedNumber(sk.public_key, int(upd.ciphertexts[0]))
    assert sk.raw_decrypt((num + num).ciphertext(be_secure=False)) == 2 * expected[0]


def test_own_phe_keypair_is_used(contexts):
    pk, sk = phe.generate_paillier_keypair(n_length=512)
    ctx = secagg.generate("paillier", keypair=(pk, sk), max_clients=4, insecure=True)
    assert ctx.public.backend.public_key.n == pk.n
    agg = secagg.Aggregator(ctx.public)
    for v in (0.25, 0.75):
        agg.add(ctx.encrypt(np.array([v])))  # a secret context encrypts like a public one
    assert ctx.decrypt(agg.result(), reduce="mean")[0] == 0.5


def test_clipping_is_reported_not_refused(pub):
    upd = pub.encrypt(np.array([3.0, -7.0, 0.5]))
    assert upd.num_clipped == 2


@pytest.mark.parametrize("weight", [0, -1, 5, 2.5, True, "3", None])
def test_weight_out_of_range_is_refused(pub, weight):
    with pytest.raises(secagg.WeightError):
        pub.encrypt(np.zeros(3), weight=weight)


def test_min_clients_and_empty_aggregate(ctx, pub):
    agg = secagg.Aggregator(pub)
    with pytest.raises(secagg.EmptyAggregateError):
        agg.result()
    agg.add(pub.encrypt(np.zeros(2)))
    with pytest.raises(secagg.InsufficientClientsError, match="min_clients"):
        ctx.decrypt(agg.result())
    agg.add(pub.encrypt(np.ones(2)))
    assert ctx.decrypt(agg.result(), reduce="mean").tolist() == [0.5, 0.5]
    with pytest.raises(secagg.ConfigError, match="reduce"):
        ctx.decrypt(agg.result(), reduce="median")


def test_dropouts_divide_by_the_actual_count(ctx, pub):
    agg = secagg.Aggregator(pub)
    for v in (0.1, 0.2, 0.6):  # 3 of max_clients=6 report; the rest dropped out
        agg.add(pub.encrypt(np.array([v])))
    assert len(agg) == 3
    assert abs(ctx.decrypt(agg.result(), reduce="mean")[0] - 0.3) <= pub.codec.error_bound


def test_hierarchical_aggregation(ctx, pub):
    leaves = [secagg.Aggregator(pub) for _ in range(2)]
    for i, agg in enumerate(leaves):
        for v in (0.125 * i, 0.25):
            agg.add(pub.encrypt(np.array([v])))
    root = secagg.Aggregator(pub)
    for agg in leaves:
        root.add(agg.result().to_bytes())
    assert len(root) == 4
    assert ctx.decrypt(root.result(), reduce="sum")[0] == 0.625
