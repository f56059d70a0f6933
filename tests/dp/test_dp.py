"""Distributed DP: the exact discrete Gaussian / Laplace samplers, clipping, bounds, accounting.

Statistical checks use 5-standard-error tolerances and chi-square thresholds at
the 1 - 1e-6 quantile, so a correct sampler fails a run with the secure source
(not reproducible by design) with probability around 1e-5 in total; the seeded
runs are deterministic.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
import secagg.dp.accounting as dpacc
import secagg.dp.mechanism as dpmech
import secagg.dp.sampler as dpmod
from secagg.dp import DistributedDP, sample_discrete_gaussian, sample_discrete_laplace
from tests.helpers import make_context

try:
    from scipy import stats as _stats
except ImportError:  # pragma: no cover - scipy comes with dp-accounting
    _stats = None

Z_TOL = 5.0  # standard errors
CHI2_ALPHA = 1e-6


# ---------------------------------------------------------------------------
# exact reference distributions
# ---------------------------------------------------------------------------
def dgauss_pmf(sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and exact pmf of N_Z(0, sigma2), truncated at 15 sigma (mass beyond < 1e-48)."""
    L = int(15 * math.sqrt(sigma2)) + 20
    x = np.arange(-L, L + 1)
    w = np.exp(-(x.astype(np.float64) ** 2) / (2.0 * sigma2))
    return x, w / w.sum()


def moments(x: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Variance and fourth central moment of a symmetric pmf."""
    xf = x.astype(np.float64)
    return float(np.sum(p * xf**2)), float(np.sum(p * xf**4))


def chi2_threshold(df: int) -> float:
    if _stats is not None:
        return float(_stats.chi2.ppf(1.0 - CHI2_ALPHA, df))
    # Wilson-Hilferty with z(1 - 1e-6) = 4.7534
    z = 4.7534
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2_stat(samples: np.ndarray, x: np.ndarray, p: np.ndarray, bins: int = 40
              ) -> tuple[float, int]:
    """Chi-square statistic over consecutive-integer bins of mass >= 1/bins (tails merged)."""
    uppers, masses, acc = [], [], 0.0
    for xi, pi in zip(x, p):
        acc += pi
        if acc >= 1.0 / bins:
            uppers.append(xi)
            masses.append(acc)
            acc = 0.0
    masses[-1] += acc  # leftover upper tail joins the last bin
    uppers[-1] = np.iinfo(np.int64).max
    idx = np.searchsorted(np.array(uppers), samples, side="left")
    observed = np.bincount(idx, minlength=len(uppers)).astype(np.float64)
    expected = samples.size * np.array(masses)
    return float(np.sum((observed - expected) ** 2 / expected)), len(uppers) - 1


def check_discrete_gaussian(samples: np.ndarray, sigma2: float) -> None:
    n = samples.size
    x, p = dgauss_pmf(sigma2)
    var, mu4 = moments(x, p)
    if sigma2 <= 1:
        assert var < sigma2  # the discrete Gaussian's variance is below sigma2
    s = samples.astype(np.float64)
    assert abs(s.mean()) <= Z_TOL * math.sqrt(var / n)
    assert abs(np.mean(s**2) - var) <= Z_TOL * math.sqrt((mu4 - var**2) / n)
    stat, df = chi2_stat(samples, x, p)
    assert stat <= chi2_threshold(df), (stat, df)
    # tail beyond 3 sigma
    cut = 3 * math.sqrt(sigma2)
    mass = float(p[np.abs(x) > cut].sum())
    count = int(np.count_nonzero(np.abs(s) > cut))
    if _stats is not None:  # exact binomial two-sided p-value (the count can be ~5)
        p_value = 2 * min(_stats.binom.cdf(count, n, mass), _stats.binom.sf(count - 1, n, mass))
        assert p_value > CHI2_ALPHA / 10, (count, n * mass)
    else:
        assert abs(count - n * mass) <= 6 * math.sqrt(n * mass * (1 - mass)) + 3


def dlap_moments(t: Fraction) -> tuple[float, float]:
    """Variance and fourth moment of P[x] ∝ exp(-|x|/t), lambda = e^{-1/t}."""
    lam = math.exp(-1 / float(t))
    one_minus = -math.expm1(-1 / float(t))
    var = 2 * lam / one_minus**2
    mu4 = 2 * lam * (1 + 10 * lam + lam**2) / one_minus**4
    return var, mu4


# ---------------------------------------------------------------------------
# the discrete Gaussian sampler
# ---------------------------------------------------------------------------
SIGMA2S = [0.5, 4, 100, 10**4]


@pytest.mark.parametrize("sigma2", SIGMA2S)
def test_discrete_gaussian_seeded(sigma2):
    rng = random.Random(20_240_000 + int(sigma2 * 2))
    samples = sample_discrete_gaussian(sigma2, 40_000, _rng=rng)
    assert samples.dtype == np.int64 and samples.shape == (40_000,)
    check_discrete_gaussian(samples, float(sigma2))


@pytest.mark.parametrize("sigma2", SIGMA2S)
def test_discrete_gaussian_secure_source(sigma2):
    samples = sample_discrete_gaussian(Fraction(sigma2), 40_000)
    check_discrete_gaussian(samples, float(sigma2))


def test_discrete_gaussian_rational_sigma2_with_denominator():
    # the fast path with q > 1 (the shape client_sigma2 produces)
    sigma2 = Fraction(123_457, 2**10)  # ~120.6
    check_discrete_gaussian(sample_discrete_gaussian(sigma2, 40_000, _rng=random.Random(7)),
                            float(sigma2))


def test_reference_path_for_huge_denominators():
    # 1/3 + 2**-70 does not fit the 64-bit plan: the literal CKS20 transcription runs
    sigma2 = Fraction(1, 3) + Fraction(1, 2**70)
    assert dpmod._gauss_plan(sigma2.numerator, sigma2.denominator) is None
    samples = sample_discrete_gaussian(sigma2, 6_000, _rng=random.Random(3))
    check_discrete_gaussian(samples, float(sigma2))


def test_reference_sampler_matches_the_pmf():
    src = dpmod._Source(random.Random(11))
    samples = np.array([dpmod._gaussian_ref(src, Fraction(9, 2)) for _ in range(6_000)])
    check_discrete_gaussian(samples, 4.5)


def test_large_proposals_take_the_python_integer_path():
    # force ymax tiny so that most proposals go through the exact big-integer branch
    base = dpmod._gauss_plan(25, 1)
    plan = dpmod._GaussPlan(base.p, base.q, base.c, base.lap_t, base.lap_s, ymax=3,
                            accept=base.accept)
    src = dpmod._Source(random.Random(5))
    parts, have = [], 0
    while have < 8_000:
        got = dpmod._gaussian_batch(src, plan, 4_000)
        parts.append(got)
        have += got.size
    check_discrete_gaussian(np.concatenate(parts)[:8_000], 25.0)


def test_seed_seam_is_reproducible_and_default_is_the_os_csprng():
    a = sample_discrete_gaussian(1000, 500, _rng=random.Random(42))
    b = sample_discrete_gaussian(1000, 500, _rng=random.Random(42))
    assert np.array_equal(a, b)
    assert isinstance(dpmod._Source(None)._rng, random.SystemRandom)
    state = np.random.get_state()
    c = sample_discrete_gaussian(1000, 500)
    d = sample_discrete_gaussian(1000, 500)
    assert not np.array_equal(c, d)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])  # numpy's RNG untouched


def test_sampler_refuses_numpy_generators_and_bad_parameters():
    with pytest.raises(secagg.ConfigError):
        sample_discrete_gaussian(4, 10, _rng=np.random.default_rng(0))
    for bad in (0, -1, 0.0, float("nan"), float("inf"), "4", True, None, 2.0**80):
        with pytest.raises(secagg.ConfigError):
            sample_discrete_gaussian(bad, 10)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(secagg.ConfigError):
            sample_discrete_gaussian(4, bad)
    assert sample_discrete_gaussian(4, 0).shape == (0,)


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------
def test_uniform_below_is_uniform():
    src = dpmod._Source(random.Random(1))
    for m in (3, 7, 10, 2**63 + 5):
        u = src.below(m, 60_000)
        assert u.dtype == np.uint64 and int(u.max()) < m
        if m < 100:
            counts = np.bincount(u.astype(np.int64), minlength=m)
            expected = u.size / m
            assert np.sum((counts - expected) ** 2 / expected) <= chi2_threshold(m - 1)
        else:  # top half vs bottom half
            frac = float(np.mean(u >= np.uint64(m // 2)))
            assert abs(frac - 0.5) <= Z_TOL * math.sqrt(0.25 / u.size)


@pytest.mark.parametrize(
    "num,den",
    # the last one makes den * K pass 2**64 at K = 5: the product-of-coins branch
    [(0, 1), (1, 1), (1, 3), (2, 3), (99, 100), (2**62 - 58, 2**62 - 57)],
)
def test_bernoulli_exp_fraction(num, den):
    src = dpmod._Source(random.Random(num % 1000 + den % 1000))
    n = 60_000
    coins = dpmod._bern_exp_frac(src, np.full(n, num, dtype=np.int64), den)
    p = math.exp(-num / den)
    assert abs(coins.mean() - p) <= Z_TOL * math.sqrt(p * (1 - p) / n) + 1e-12


def test_bernoulli_exp_minus_one_and_geometric():
    src = dpmod._Source(random.Random(9))
    n = 100_000
    coins = dpmod._bern_exp1(src, n)
    p = math.exp(-1)
    assert abs(coins.mean() - p) <= Z_TOL * math.sqrt(p * (1 - p) / n)
    v = dpmod._geometric_exp1(src, n)
    for k in (1, 2, 3, 5):  # P[V >= k] = e^{-k}
        pk = math.exp(-k)
        assert abs(np.mean(v >= k) - pk) <= Z_TOL * math.sqrt(pk * (1 - pk) / n)
    cap = np.full(n, 2, dtype=np.int64)
    capped = dpmod._geometric_exp1(src, n, cap=cap)
    assert capped.max() <= 2
    p2 = math.exp(-2)
    assert abs(np.mean(capped == 2) - p2) <= Z_TOL * math.sqrt(p2 * (1 - p2) / n)


# ---------------------------------------------------------------------------
# the discrete Laplace sampler
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "t", [Fraction(1, 2), 1, Fraction(7, 3), 100, Fraction(2**61, 2**40)],
    ids=["1/2", "1", "7/3", "100", "2^21-via-overflow-branch"],
)
@pytest.mark.parametrize("seeded", [True, False])
def test_discrete_laplace_moments(t, seeded):
    n = 40_000
    rng = random.Random(17) if seeded else None
    s = sample_discrete_laplace(t, n, _rng=rng).astype(np.float64)
    var, mu4 = dlap_moments(Fraction(t))
    assert abs(s.mean()) <= Z_TOL * math.sqrt(var / n)
    assert abs(np.mean(s**2) - var) <= Z_TOL * math.sqrt((mu4 - var**2) / n)


def test_discrete_laplace_pmf_and_bad_scales():
    t = Fraction(5, 2)
    samples = sample_discrete_laplace(t, 40_000, _rng=random.Random(23))
    x = np.arange(-200, 201)
    w = np.exp(-np.abs(x) / float(t))
    stat, df = chi2_stat(samples, x, w / w.sum())
    assert stat <= chi2_threshold(df)
    for bad in (0, -1, float("nan"), "2", True, 2**40):
        with pytest.raises(secagg.ConfigError):
            sample_discrete_laplace(bad, 10)


# ---------------------------------------------------------------------------
# the mechanism: parameters, clipping, noise bound
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(l2_clip=-1.0, noise_multiplier=1.0, min_clients=2),
        dict(l2_clip=0.0, noise_multiplier=1.0, min_clients=2),
        dict(l2_clip=float("nan"), noise_multiplier=1.0, min_clients=2),
        dict(l2_clip=float("inf"), noise_multiplier=1.0, min_clients=2),
        dict(l2_clip="1", noise_multiplier=1.0, min_clients=2),
        dict(l2_clip=1.0, noise_multiplier=0.0, min_clients=2),
        dict(l2_clip=1.0, noise_multiplier=-0.5, min_clients=2),
        dict(l2_clip=1.0, noise_multiplier=True, min_clients=2),
        dict(l2_clip=1.0, noise_multiplier=1.0, min_clients=0),
        dict(l2_clip=1.0, noise_multiplier=1.0, min_clients=-3),
        dict(l2_clip=1.0, noise_multiplier=1.0, min_clients=2.0),
        dict(l2_clip=1.0, noise_multiplier=1.0, min_clients=True),
    ],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(secagg.ConfigError):
        DistributedDP(**kwargs)


def test_method_arguments_are_validated():
    dp = DistributedDP(1.0, 1.0, 10)
    with pytest.raises(secagg.ConfigError):
        dp.client_sigma2(-1)
    with pytest.raises(secagg.ConfigError):
        dp.noise_bound(16, overflow_log2=0)
    with pytest.raises(secagg.ConfigError):
        dp.noise_bound(16, max_values=0)
    with pytest.raises(secagg.ConfigError):
        dp.sensitivity(16, 0)
    with pytest.raises(secagg.ConfigError):
        dp.rho(16, 10, 0)
    for rounds, delta, clients in [(0, 1e-5, 10), (3, 0.0, 10), (3, 1.0, 10), (3, 1e-5, [10, 10]),
                                   (3, 1e-5, 0), (3, 1e-5, "10")]:
        with pytest.raises(secagg.ConfigError):
            dp.epsilon(rounds, delta, frac_bits=16, dim=10, reporting_clients=clients)
    with pytest.raises(secagg.ConfigError):
        dp.sample_noise(-1, 16)


def test_client_sigma2_meets_the_target_from_above():
    cases = [(1.0, 1.0, 10, 16), (0.7, 0.1, 3, 8), (3.3, 2.5, 1000, 0), (1e-3, 1e-3, 7, 4)]
    for nm, clip, m, f in cases:
        dp = DistributedDP(clip, nm, m)
        s2 = dp.client_sigma2(f)
        assert isinstance(s2, Fraction)
        target = (Fraction(nm) * Fraction(clip) * 2**f) ** 2 / m
        assert target <= s2 <= target * (1 + Fraction(1, 2**23)) + Fraction(1, 2**40)
        assert dpmod._gauss_plan(s2.numerator, s2.denominator) is not None  # fast path


float_arrays = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=30),
    elements=st.floats(-1e150, 1e150, allow_nan=False, allow_infinity=False),
)


@given(float_arrays, st.sampled_from([1e-3, 0.5, 1.0, 7.0, 1e6]))
def test_clip_update_bounds_the_norm(x, clip):
    dp = DistributedDP(clip, 1.0, 2)
    y, norm = dp.clip_update(x)
    assert y.dtype == np.float64 and y.shape == (x.size,)
    true_norm = math.hypot(*x.ravel().tolist())
    assert norm == pytest.approx(true_norm, rel=1e-12, abs=1e-300)
    assert dpmech._l2_norm(y) <= clip * (1 + 1e-12)
    if norm <= clip:
        assert np.array_equal(y, x.ravel())  # unchanged inside the ball
    else:
        # same direction, scaled down
        assert np.allclose(y * (norm / clip), x.ravel(), rtol=1e-9, atol=1e-12 * norm)


def test_clip_update_refuses_non_finite():
    with pytest.raises(secagg.EncodingError):
        DistributedDP(1.0, 1.0, 2).clip_update(np.array([0.0, np.nan]))


def test_noise_bound_formula_and_monotonicity():
    dp = DistributedDP(1.0, 1.0, 10)
    for f in (0, 8, 16):
        for ol in (-20, -40, -80):
            for m in (1, 1000, 2**32):
                b = dp.noise_bound(f, overflow_log2=ol, max_values=m)
                s2 = float(dp.client_sigma2(f))
                # union bound over m coordinates of P[|X| >= B+1] <= 2 exp(-(B+1)^2 / (2 sigma2))
                log2_fail = (math.log(2 * m) - (b + 1) ** 2 / (2 * s2)) / math.log(2)
                assert log2_fail <= ol
                # and B is within one of the smallest such integer
                assert b <= 1 or (math.log(2 * m) - (b - 1) ** 2 / (2 * s2)) / math.log(2) > ol
    assert dp.noise_bound(16, overflow_log2=-80) > dp.noise_bound(16, overflow_log2=-40)
    assert dp.noise_bound(16, max_values=2**40) > dp.noise_bound(16, max_values=2**10)
    assert DistributedDP(1.0, 2.0, 10).noise_bound(16) > dp.noise_bound(16)
    assert DistributedDP(1.0, 1.0, 20).noise_bound(16) < dp.noise_bound(16)


def test_sampled_noise_never_exceeds_the_bound():
    dp = DistributedDP(1.0, 1.0, 10)
    bound = dp.noise_bound(8)
    z = dp.sample_noise(300_000, 8)
    assert z.dtype == np.int64 and z.shape == (300_000,)
    assert int(np.abs(z).max()) <= bound
    assert np.std(z) == pytest.approx(math.sqrt(float(dp.client_sigma2(8))), rel=0.02)


def test_sample_noise_redraws_the_whole_vector(monkeypatch):
    calls = []
    real = dpmech.sample_discrete_gaussian

    def counting(sigma2, size, *, _rng=None):
        out = real(sigma2, size, _rng=_rng)
        calls.append(out)
        return out

    monkeypatch.setattr(dpmech, "sample_discrete_gaussian", counting)
    dp = DistributedDP(1.0, 1.0, 1)  # sigma2 = 1 at frac_bits = 0
    assert dp.client_sigma2(0) == 1
    rng = random.Random(99)
    for _ in range(20):
        before = len(calls)
        z = dp.sample_noise(5, 0, _rng=rng, _bound=1)
        assert int(np.abs(z).max()) <= 1
        assert np.array_equal(z, calls[-1])  # the returned vector is one whole draw
        for rejected in calls[before:-1]:
            assert int(np.abs(rejected).max()) > 1  # only out-of-bound vectors were redrawn
    assert len(calls) > 20  # P[all 5 within +-1] ~ 0.54: some vectors were redrawn
    with pytest.raises(secagg.ConfigError):
        DistributedDP(1.0, 1.0, 1).sample_noise(50, 8, _rng=random.Random(1), _bound=0)


# ---------------------------------------------------------------------------
# accounting
# ---------------------------------------------------------------------------
def test_sensitivity_formula():
    dp = DistributedDP(0.5, 1.0, 4)
    assert dp.sensitivity(10, 100) == 0.5 * 1024 + 5.0
    assert dp.sensitivity(10, 100, max_weight=3) == 3 * (0.5 * 1024 + 5.0)


def test_rho_approaches_the_continuous_gaussian():
    n = 1000
    dp = DistributedDP(1.0, 1.0, n)
    d = 2410
    delta2 = dp.sensitivity(16, d)
    s2 = float(dp.client_sigma2(16))
    continuous = delta2**2 / (2 * n * s2)
    assert dp.rho(16, d, n) == pytest.approx(continuous, rel=1e-12)
    # more reporting clients -> more noise -> smaller rho; fewer -> larger
    assert dp.rho(16, d, 2 * n) < dp.rho(16, d, n) < dp.rho(16, d, n // 2)


def test_rho_pays_for_small_sigma():
    # sigma = 1/2: tau of KLS21 is large, rho well above the continuous value
    dp = DistributedDP(1.0, 1.0, 4)
    assert dp.client_sigma2(0) == Fraction(1, 4)
    delta2 = dp.sensitivity(0, 10)
    continuous = delta2**2 / (2 * 4 * 0.25)
    assert dp.rho(0, 10, 4) > continuous
    tau = dpacc.kls21_tau(0.25, 4)
    expected = 10 * sum(math.exp(-2 * math.pi**2 * 0.25 * k / (k + 1)) for k in (1, 2, 3))
    assert tau == pytest.approx(expected)
    with pytest.raises(secagg.ConfigError):
        DistributedDP(1.0, 1.0, 5).rho(0, 10, 5)  # sigma2 = 1/5 < 1/4


def test_epsilon_monotonicity():
    pytest.importorskip("dp_accounting")
    kw = dict(frac_bits=16, dim=2410)
    base = DistributedDP(1.0, 1.0, 10)
    e = base.epsilon(30, 1e-5, reporting_clients=10, **kw)
    assert 0 < e < math.inf
    assert DistributedDP(1.0, 2.0, 10).epsilon(30, 1e-5, reporting_clients=10, **kw) < e
    assert DistributedDP(1.0, 0.5, 10).epsilon(30, 1e-5, reporting_clients=10, **kw) > e
    assert base.epsilon(60, 1e-5, reporting_clients=10, **kw) > e
    assert base.epsilon(10, 1e-5, reporting_clients=10, **kw) < e
    assert base.epsilon(30, 1e-5, reporting_clients=7, **kw) > e  # dropouts cost privacy
    assert base.epsilon(30, 1e-5, reporting_clients=15, **kw) < e  # extra clients add noise
    assert base.epsilon(30, 1e-7, reporting_clients=10, **kw) > e
    # per-round counts: a constant list equals the integer form
    assert base.epsilon(30, 1e-5, reporting_clients=[10] * 30, **kw) == pytest.approx(e)
    mixed = base.epsilon(30, 1e-5, reporting_clients=[10] * 29 + [8], **kw)
    assert mixed > e


def test_epsilon_matches_a_gaussian_mechanism():
    # with n clients and negligible tau, each round is the Gaussian mechanism with
    # noise multiplier sqrt(n sigma2) / Delta2; compare with dp_accounting directly
    dp_accounting = pytest.importorskip("dp_accounting")
    from dp_accounting import rdp

    dp = DistributedDP(1.0, 1.3, 10)
    z = math.sqrt(10 * float(dp.client_sigma2(16))) / dp.sensitivity(16, 2410)
    acc = rdp.RdpAccountant(orders=dpacc._RDP_ORDERS)
    acc.compose(dp_accounting.GaussianDpEvent(z), 30)
    expected = acc.get_epsilon(1e-5)
    got = dp.epsilon(30, 1e-5, frac_bits=16, dim=2410, reporting_clients=10)
    assert got == pytest.approx(expected, rel=1e-9)


# -- integration with the contexts -----------------------------------------------------


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_decrypted_sum_carries_every_clients_noise(scheme):
    dp = DistributedDP(l2_clip=1.0, noise_multiplier=0.5, min_clients=3)
    ctx = make_context(scheme, max_clients=6, max_weight=1, min_clients=3, dp=dp)
    pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes(), allow_insecure=True)
    assert pub.dp == dp and pub.fingerprint == ctx.fingerprint
    assert pub.codec.noise_bound == dp.noise_bound(pub.codec.frac_bits) > 0
    x = np.full(4000, 0.01)  # L2 norm 0.63 < l2_clip: not rescaled
    agg = secagg.Aggregator(pub)
    for _ in range(3):
        agg.add(pub.encrypt(x).to_bytes())
    total = ctx.decrypt(agg.result(), reduce="sum")
    noise = total - 3 * 0.01
    # three clients' discrete Gaussians: std 0.5 * l2_clip in the decoded domain
    assert abs(noise.std() - 0.5) < 0.05
    assert abs(noise.mean()) < 0.05


def test_dp_clips_the_whole_update_in_l2():
    dp = DistributedDP(l2_clip=0.5, noise_multiplier=1e-3, min_clients=2)
    ctx = make_context("ckks", dp=dp, max_weight=1)
    agg = secagg.Aggregator(ctx.public)
    for _ in range(2):
        agg.add(ctx.public.encrypt({"a": np.full(3, 0.9), "b": np.full(1, 0.9)}))
    out = ctx.decrypt(agg.result(), reduce="mean")
    flat = np.concatenate([out["a"], out["b"]])
    assert abs(np.linalg.norm(flat) - 0.5) < 0.01


def test_dp_configuration_is_checked():
    dp = DistributedDP(l2_clip=1.0, noise_multiplier=1.0, min_clients=5)
    with pytest.raises(secagg.ConfigError, match="min_clients"):
        make_context("ckks", min_clients=2, dp=dp)
    with pytest.raises(secagg.ConfigError, match="nearest"):
        make_context("ckks", min_clients=5, dp=dp, rounding="stochastic")
    with pytest.raises(secagg.ConfigError, match="DistributedDP"):
        make_context("ckks", dp={"l2_clip": 1})
