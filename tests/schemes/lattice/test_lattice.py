"""Lattice backends: seeded symmetric uploads, BFV noise budget, heavy-tailed CKKS noise."""

from __future__ import annotations

import numpy as np
import pytest

import secagg
from secagg.schemes.lattice.planner import bfv_fresh_noise_bound, plan_bfv
from tests.helpers import make_context
from tests.helpers import unrounded_ckks as _unrounded


@pytest.fixture(scope="module", params=["ckks", "bfv"])
def lctx(request):
    return make_context(request.param, max_clients=6, max_weight=4)


def test_seeded_symmetric_upload_is_half_and_sums_exactly(lctx):
    x = np.linspace(-1, 1, 5000)
    public_upd = lctx.public.encrypt(x).to_bytes()
    seeded_upd = lctx.encrypt(x).to_bytes()  # the secret context encrypts symmetrically, seeded
    assert len(seeded_upd) < 0.6 * len(public_upd)
    agg = secagg.Aggregator(lctx.public)
    agg.add(public_upd)
    agg.add(seeded_upd)  # the aggregator expands the seed when it loads the ciphertext
    agg.add(lctx.encrypt(x))  # and as an object
    raw = lctx.decrypt_raw(agg.result().to_bytes())
    assert np.array_equal(raw.values, 3 * lctx.codec.encode(x))


def test_bfv_noise_budget_left_after_a_full_sum():
    ctx = secagg.generate("bfv", max_clients=30, max_weight=4)
    backend, secret = ctx.public.backend, ctx.secret_backend
    plan = backend.plan
    x = np.full(backend.slots, -1.0)
    agg = secagg.Aggregator(ctx.public)
    for _ in range(30):
        agg.add(ctx.public.encrypt(x, weight=4))
    total = agg.result()
    budget = min(secret._decryptor.invariant_noise_budget(c.ct) for c in total.ciphertexts)
    # SEAL's measured budget must leave at least the planner's margin (minus rounding)
    assert budget >= plan.margin_bits - 2, (budget, plan)
    assert ctx.decrypt_raw(total).values.tolist() == [-ctx.codec.sum_bound] * backend.slots


def test_bfv_plan_fields():
    plan = plan_bfv(6_553_600, 100)
    t = plan.plain_modulus
    assert t > 2 * 6_553_600 and t % (2 * plan.poly_modulus_degree) == 1
    assert plan.margin_bits >= 7
    assert bfv_fresh_noise_bound(4096) > 12 * 15


def test_ckks_noise_tail_is_within_the_laplace_model():
    ctx = secagg.generate("ckks", max_clients=6)
    backend, secret = ctx.public.backend, ctx.secret_backend
    err = _unrounded(secret, backend.raw_encrypt(np.zeros(20 * backend.slots, dtype=np.int64)))
    z = np.abs(err) / backend.plan.slot_noise_std
    for k in (4, 5):
        laplace = np.exp(-np.sqrt(2) * k)
        assert np.mean(z > k) <= 3 * laplace, (k, np.mean(z > k), laplace)
