"""run_round: bit-exact sums over the included clients for every dropout pattern, weights, reductions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
from secagg import masking
from secagg.codec import FixedPointCodec
from secagg.dp import DistributedDP
from secagg.errors import ConfigError, InsecureThresholdError, TooFewSurvivorsError, WeightError
from tests.masking.util import assert_same_tree, exact
from tests.strategies import floats_around


@st.composite
def rounds(draw):
    n = draw(st.integers(3, 8), label="n")
    k = None
    if n >= 4 and draw(st.booleans(), label="secagg+"):
        k = draw(st.integers(2, n - 2).filter(lambda k: n % 2 == 0 or k % 2 == 0), label="k")
    holders = n if k is None else k + 1
    t = draw(st.integers(holders // 2 + 1, holders), label="threshold")
    dropped = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=holders - t),
                   label="dropped")
    dropouts: dict[str, list[int]] = {}
    for i in dropped:
        dropouts.setdefault(draw(st.sampled_from(masking.STAGES), label=f"stage of {i}"), []).append(i)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), label="shape")
    dtype = draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    width = 32 if dtype == np.float32 else 64
    trees = [{"x": draw(hnp.arrays(dtype, shape, elements=floats_around(1.0, width=width))),
              "y": [draw(hnp.arrays(np.float64, (2,), elements=floats_around(1.0)))]}
             for _ in range(n)]
    max_weight = draw(st.sampled_from([1, 7]), label="max_weight")
    weights = [draw(st.integers(1, max_weight)) for _ in range(n)]
    reduce = draw(st.sampled_from(["sum", "mean", "weighted_mean"]), label="reduce")
    return dict(trees=trees, threshold=t, neighbors=k, max_weight=max_weight, weights=weights,
                dropouts=dropouts, reduce=reduce)


@given(rounds())
def test_sum_is_exact_for_every_dropout_pattern(case):
    r = masking.run_round(**case)
    n = len(case["trees"])
    gone = {i for s in ("keys", "shares", "masked") for i in case["dropouts"].get(s, [])}
    assert r.included == sorted(set(range(n)) - gone)
    codec = FixedPointCodec(max_clients=n, max_weight=case["max_weight"])
    total, wsum, tree = exact(case["trees"], case["weights"], r.included, codec, case["reduce"])
    np.testing.assert_array_equal(r.raw.values, total)
    assert (r.raw.count, r.raw.weight_sum) == (len(r.included), wsum)
    assert_same_tree(r.tree, tree)


def test_timings_and_bytes_are_reported():
    trees = [{"w": np.full(10, 0.1 * i, np.float32)} for i in range(4)]
    r = masking.run_round(trees, threshold=3, dropouts={"masked": [1]})
    for side in ("server", "client"):
        assert set(masking.STAGES) <= set(r.timings[side]) and set(masking.STAGES) <= set(r.bytes[side])
        assert all(v >= 0 for v in r.timings[side].values())
    assert r.bytes["client"]["masked"] > 0 and r.bytes["server"]["keys"] > 0
    np.testing.assert_allclose(r.tree["w"], 0.1 * (0 + 2 + 3), atol=3 * 2**-17)


def test_same_numbers_as_a_homomorphic_scheme():
    from tests.helpers import make_context

    ctx = make_context("paillier", max_clients=4, max_weight=3)
    rng = np.random.default_rng(3)
    trees = [{"a": rng.uniform(-1.5, 1.5, (3, 2)).astype(np.float32)} for _ in range(4)]
    weights = [1, 3, 2, 2]
    agg = secagg.Aggregator(ctx.public)
    for tree, w in zip(trees, weights):
        agg.add(ctx.public.encrypt(tree, weight=w).to_bytes())
    for reduce in ("sum", "mean", "weighted_mean"):
        he = ctx.decrypt(agg.result(), reduce=reduce)
        mk = masking.run_round(trees, threshold=3, max_weight=3, weights=weights, reduce=reduce)
        assert_same_tree(mk.tree, he)


def test_torch_trees_keep_structure_and_dtype():
    import torch

    trees = [{"layer": [torch.full((2, 2), 0.25 * i), torch.zeros(3, dtype=torch.float64)],
              "frozen": None} for i in range(3)]
    r = masking.run_round(trees, threshold=2, reduce="mean")
    assert r.tree["frozen"] is None
    assert r.tree["layer"][0].dtype == torch.float32 and r.tree["layer"][1].dtype == torch.float64
    assert torch.equal(r.tree["layer"][0], torch.full((2, 2), 0.25))


@pytest.mark.parametrize("n, dropouts", [
    (5, {"keys": [0, 1, 2]}),
    (5, {"shares": [0, 1, 2]}),
    (5, {"masked": [0, 1, 2]}),
    (5, {"unmask": [0, 1, 2]}),
    (5, {"keys": [0], "masked": [1], "unmask": [2]}),
])
def test_fewer_than_threshold_survivors_is_refused(n, dropouts):
    trees = [{"w": np.ones(3)} for _ in range(n)]
    with pytest.raises(TooFewSurvivorsError):
        masking.run_round(trees, threshold=3, dropouts=dropouts)


def test_secagg_plus_neighbourhood_below_threshold_is_refused():
    n, k, t = 12, 4, 4
    trees = [{"w": np.ones(3)} for _ in range(n)]
    config = masking.MaskingConfig.create(n, t, neighbors=k)
    victim_hood = sorted(config.graph.neighbours(0))[:2]
    # run_round draws a fresh seed, so wipe a neighbourhood via the step-by-step classes
    server = masking.MaskingServer(config)
    clients = [masking.MaskingClient(config.to_bytes(), i) for i in range(n)]
    for i in range(n):
        if i not in victim_hood:
            server.receive(clients[i].advertise_keys())
    with pytest.raises(TooFewSurvivorsError):
        server.close_keys()  # client 0 keeps 3 of its 5 holders
    del trees


@pytest.mark.parametrize("n, t, k", [(4, 2, None), (6, 3, None), (10, 2, 4), (10, 3, 6), (10, 8, 6),
                                     (3, 4, None)])
def test_threshold_at_most_half_the_holders_is_refused(n, t, k):
    trees = [{"w": np.ones(2)} for _ in range(n)]
    with pytest.raises(InsecureThresholdError):
        masking.run_round(trees, threshold=t, neighbors=k)


def test_bad_arguments_are_refused():
    trees = [{"w": np.ones(2)} for _ in range(4)]
    with pytest.raises(WeightError):
        masking.run_round(trees, threshold=3, weights=[1, 2, 1, 1])  # max_weight 1
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, dropouts={"later": [1]})
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, dropouts={"keys": [1], "masked": [1]})
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, max_clients=3)
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, weights=[1, 1, 1])
    with pytest.raises(ConfigError):
        masking.run_round([*trees, trees[0]], threshold=2, neighbors=3)  # 5 * 3 is odd


def test_distributed_dp_noise_epsilon_and_refusals():
    dp = DistributedDP(l2_clip=1.0, noise_multiplier=0.5, min_clients=3)
    trees = [{"w": np.full(20, 0.05)} for _ in range(5)]
    r = masking.run_round(trees, threshold=3, dp=dp, dropouts={"masked": [4]})
    assert r.included == [0, 1, 2, 3]
    assert r.config.codec.noise_bound == dp.noise_bound(16) and r.config.width > 16 + 3
    # noise of 4 clients, each of standard deviation 0.5 / sqrt(3): far below the tolerance
    assert np.abs(r.tree["w"] - 0.2).max() < 6 * 0.5 * np.sqrt(4 / 3)
    assert not np.array_equal(r.tree["w"], np.full(20, 0.2))
    eps = r.epsilon(1, 1e-5)
    assert eps == dp.epsilon(1, 1e-5, frac_bits=16, dim=20, reporting_clients=4) > 0
    assert r.config.epsilon(1, 1e-5, dim=20) >= eps  # the threshold count is the worst case
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, dp=DistributedDP(1.0, 0.5, min_clients=4))
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3, dp=dp, max_weight=2)
    with pytest.raises(ConfigError):
        masking.run_round(trees, threshold=3).epsilon()


@pytest.mark.slow
def test_a_thousand_clients_with_the_recommended_degree():
    n = 1000
    k, t = masking.recommended_degree(n)
    rng = np.random.default_rng(11)
    trees = [{"w": rng.uniform(-1, 1, 1000).astype(np.float32)} for _ in range(n)]
    dropped = sorted(rng.choice(n, n // 10, replace=False).tolist())
    r = masking.run_round(trees, threshold=t, neighbors=k, dropouts={"masked": dropped})
    assert r.included == sorted(set(range(n)) - set(dropped))
    total, _, tree = exact(trees, [1] * n, r.included, FixedPointCodec(max_clients=n))
    np.testing.assert_array_equal(r.raw.values, total)
    assert_same_tree(r.tree, tree)


@given(st.integers(3, 7), st.data())
def test_more_dropouts_than_the_budget_are_always_refused(n, data):
    t = data.draw(st.integers(n // 2 + 1, n), label="threshold")
    dropped = data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=n - t + 1,
                                 max_size=n), label="dropped")
    dropouts: dict[str, list[int]] = {}
    for i in dropped:
        dropouts.setdefault(data.draw(st.sampled_from(masking.STAGES), label=f"stage of {i}"),
                            []).append(i)
    with pytest.raises(TooFewSurvivorsError):
        masking.run_round([{"w": np.ones(2)} for _ in range(n)], threshold=t, dropouts=dropouts)
