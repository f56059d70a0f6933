"""CKKS planning: security bound respected, noise model checked against measured noise,
and sums at the extremes of the codec range decode exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import secagg
from secagg.schemes.lattice.planner import HE_STANDARD_MAX_LOGQ, plan_ckks
from tests.helpers import make_context
from tests.helpers import unrounded_ckks as _unrounded


@given(st.integers(1, 2**40), st.integers(1, 10**5), st.sampled_from([128, 192, 256]))
def test_plans_respect_security_and_exactness_conditions(sum_bound, summands, security):
    try:
        plan = plan_ckks(sum_bound, summands, security=security)
    except secagg.PlanningError as exc:
        assert "Lower" in str(exc)
        assume(False)  # no plan to check: hypothesis draws another example instead
    data, special = plan.coeff_mod_bit_sizes
    assert data + special <= HE_STANDARD_MAX_LOGQ[plan.poly_modulus_degree][security]
    assert data <= 60 and special <= 60
    assert 2 * (sum_bound + 1) * 2**plan.scale_bits < 2 ** (data - 1)
    assert plan.failure_log2 <= -60
    assert 0.5 / plan.sum_noise_std >= 29.4  # Laplace tail, see secagg.schemes.lattice.planner


def test_worked_example():
    plan = plan_ckks(6_553_600, 100)
    assert (plan.poly_modulus_degree, plan.coeff_mod_bit_sizes, plan.scale_bits) == (4096, (44, 60), 19)


def test_impossible_sums_are_refused_with_advice():
    with pytest.raises(secagg.PlanningError, match="frac_bits"):
        plan_ckks(2**50, 10**6)
    with pytest.raises(secagg.PlanningError):
        secagg.generate("ckks", frac_bits=24, clip=1e5, max_clients=10)


@pytest.mark.parametrize("seeded", [False, True])
def test_measured_noise_matches_the_model(seeded):
    ctx = secagg.generate("ckks", max_clients=100, clip=1.0, frac_bits=16)
    backend, secret = ctx.public.backend, ctx.secret_backend
    zeros = np.zeros(10 * backend.slots, dtype=np.int64)
    encrypt = secret.raw_encrypt if seeded else backend.raw_encrypt
    measured = _unrounded(secret, encrypt(zeros)).std()
    model = backend.plan.slot_noise_std
    # the planner relies on the model; it must not underestimate the real noise
    assert measured <= 1.1 * model, (measured, model)
    if not seeded:
        assert 0.8 * model <= measured, (measured, model)


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_sums_are_exact(scheme, sign):
    ctx = make_context(scheme, max_clients=12, max_weight=7, clip=2.0, frac_bits=20)
    agg = secagg.Aggregator(ctx.public)
    x = np.full(7, sign * 5.0)  # saturates at the clip
    for _ in range(12):
        agg.add(ctx.encrypt(x, weight=7))
    raw = ctx.decrypt_raw(agg.result())
    assert raw.values.tolist() == [sign * ctx.codec.sum_bound] * 7
    assert raw.weight_sum == 84
