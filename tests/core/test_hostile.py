"""Regression tests for hostile payloads found in review: each raises a SecAggError."""

from __future__ import annotations

import numpy as np
import pytest

import secagg
from secagg import wire
from secagg.wire import Kind
from tests.helpers import make_context, snapshot

TREE = {"w": np.full(4, 0.5)}


def reseal(data: bytes, kind: Kind | None = None, **changes) -> bytes:
    k, body = wire.open_payload(data)
    raw = dict(body.raw())
    raw.update(changes)
    return wire.seal(kind or k, raw)


def deep_list(depth: int) -> list:
    root = node = []
    for _ in range(depth):
        child: list = []
        node.append(child)
        node = child
    return root


@pytest.fixture(scope="module")
def P():
    return make_context("paillier", max_terms=2)


@pytest.fixture(scope="module")
def K():
    return make_context("ckks", max_terms=2)


def test_huge_value_count_with_one_ciphertext_is_refused_before_allocating(K, P):
    for ctx in (K, P):
        big = reseal(ctx.public.encrypt(TREE).to_bytes(), values=2**40,
                     spec=[["leaf", 0], [["w", [2**20, 2**20], "float64", "numpy", "cpu"]]])
        with pytest.raises(secagg.CiphertextError):
            secagg.EncryptedUpdate.from_bytes(big, ctx.public)


def test_client_update_claiming_terms_is_refused(K, P):
    for ctx in (K, P):
        agg = secagg.Aggregator(ctx.public)
        before = snapshot(agg)
        with pytest.raises(secagg.FormatError, match="terms 0"):
            agg.add(reseal(ctx.public.encrypt(TREE).to_bytes(), terms=2))
        assert snapshot(agg) == before


def test_relabelled_single_update_is_not_decrypted(K, P):
    for ctx in (K, P):
        fake = reseal(ctx.public.encrypt(TREE, weight=3).to_bytes(), Kind.AGGREGATE, count=2)
        with pytest.raises(secagg.SecAggError):
            ctx.decrypt(fake)


def test_deeply_nested_fields_do_not_recurse(K, P):
    deep = deep_list(1010)
    pb = P.public.to_bytes()
    with pytest.raises(secagg.FormatError):
        secagg.PublicContext.from_bytes(reseal(pb, min_clients=deep), allow_insecure=True)
    for ctx in (K, P):
        with pytest.raises(secagg.FormatError):
            secagg.EncryptedUpdate.from_bytes(reseal(ctx.public.encrypt(TREE).to_bytes(), round=deep),
                                              ctx.public)


@pytest.mark.parametrize("field", ["clip", "term_clip"])
def test_absurd_clip_is_refused(P, field):
    pb = P.public.to_bytes()
    _, body = wire.open_payload(pb)
    codec = {**body.raw()["codec"], field: 1e308}
    with pytest.raises(secagg.FormatError):
        secagg.PublicContext.from_bytes(reseal(pb, codec=codec), allow_insecure=True)
    with pytest.raises(secagg.ConfigError):
        secagg.generate("ckks", clip=1e308)


def test_degenerate_secret_factors_are_refused(P):
    import gmpy2

    m = int(gmpy2.next_prime(2**300))
    n = 9 * m
    width = (n.bit_length() + 7) // 8
    _, body = wire.open_payload(P.to_bytes())
    raw = body.raw()
    public = {**raw["public"], "backend": {**raw["public"]["backend"],
                                          "n": n.to_bytes(width, "big")}}
    secret = {"p": (3).to_bytes(width, "big"), "q": (3 * m).to_bytes(width, "big")}
    with pytest.raises(secagg.FormatError):
        secagg.SecretContext.from_bytes(
            wire.seal(Kind.SECRET_CONTEXT, {"public": public, "secret": secret}), allow_insecure=True)


@pytest.mark.parametrize("value", [1e308, 1e-300])
def test_absurd_dp_parameters_are_refused(value):
    from secagg.dp import DistributedDP

    ctx = make_context("paillier", dp=DistributedDP(1.0, 1.0, 2), max_weight=1)
    pb = ctx.public.to_bytes()
    _, body = wire.open_payload(pb)
    for field in ("l2_clip", "noise_multiplier"):
        dp = {**body.raw()["dp"], field: value}
        with pytest.raises(secagg.FormatError):
            secagg.PublicContext.from_bytes(reseal(pb, dp=dp), allow_insecure=True)


def test_small_paillier_key_needs_the_insecure_mark(P):
    pb = P.public.to_bytes()
    _, body = wire.open_payload(pb)
    backend = {**body.raw()["backend"], "insecure": False}
    with pytest.raises(secagg.FormatError, match="insecure"):
        secagg.PublicContext.from_bytes(reseal(pb, backend=backend), allow_insecure=True)
    assert secagg.PublicContext.from_bytes(pb, allow_insecure=True).backend.insecure


def test_zero_size_leaves_are_refused(P):
    with pytest.raises(secagg.TreeError, match="no values"):
        P.public.encrypt({"w": np.zeros((0, 3)), "b": np.ones(2)})
    bad = reseal(P.public.encrypt(TREE).to_bytes(),
                 spec=[["list", [["leaf", 0], ["leaf", 1]]],
                       [["a", [4], "float64", "numpy", "cpu"], ["b", [0], "float64", "numpy", "cpu"]]])
    with pytest.raises(secagg.FormatError):
        secagg.EncryptedUpdate.from_bytes(bad, P.public)


def test_stochastic_rounding_never_exceeds_qmax():
    codec = secagg.FixedPointCodec(clip=512.0, frac_bits=40, max_clients=1, rounding="stochastic")
    q, _ = codec.raw_encode(np.full(100_000, 1e6), np.random.default_rng(0))
    assert np.abs(q).max() <= codec.qmax
