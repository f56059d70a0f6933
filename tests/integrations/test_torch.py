"""secagg.integrations.torch (alias secagg.nn): a real nn.Module with a frozen layer and a
BatchNorm buffer."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import secagg
from secagg.integrations import torch as snn


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )
    model[0].requires_grad_(False)  # a frozen layer
    return model


def local_step(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()


def test_gradients_round_trip_through_secure_aggregation(contexts):
    ctx = contexts["ckks"]
    model = make_model()
    grads = []
    for seed in range(3):
        local_step(model, seed)
        grads.append({k: v.clone() for k, v in snn.gradients(model).items()})
    assert "0.weight" not in grads[0] and "3.weight" in grads[0]  # frozen left out
    agg = secagg.Aggregator(ctx.public)
    for g in grads:
        agg.add(ctx.public.encrypt(g))
    mean = ctx.decrypt(agg.result(), reduce="mean")
    before = {k: v.clone() for k, v in snn.parameters(model).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    snn.apply_gradients(model, mean, torch.optim.SGD(trainable, lr=1.0))
    for k, p in snn.parameters(model).items():
        plain = sum(g[k] for g in grads) / 3
        assert torch.allclose(before[k] - p, plain, atol=ctx.codec.error_bound * 1.01)
    assert torch.equal(model[0].weight, make_model()[0].weight)  # the frozen layer never moves


def test_delta_with_buffers_round_trips(contexts):
    ctx = contexts["paillier"]
    model = make_model()
    start = snn.parameters(model, include_buffers=True)
    assert "1.running_mean" in start and "1.num_batches_tracked" not in start
    model.train()
    local_step(model, 7)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    d = snn.delta(model, start, include_buffers=True)
    agg = secagg.Aggregator(ctx.public)
    for _ in range(2):
        agg.add(ctx.public.encrypt(d))
    mean = ctx.decrypt(agg.result(), reduce="mean")
    fresh = make_model()
    snn.apply_delta(fresh, mean)
    for k, v in snn.parameters(model, include_buffers=True).items():
        named = dict(fresh.named_parameters()) | dict(fresh.named_buffers())
        assert torch.allclose(named[k], v, atol=ctx.codec.error_bound * 1.01)


def test_apply_checks_names_and_shapes():
    model = make_model()
    with pytest.raises(secagg.TreeMismatchError, match="nope"):
        snn.apply_delta(model, {"nope": torch.zeros(1)})
    with pytest.raises(secagg.TreeMismatchError, match="shape"):
        snn.apply_gradients(model, {"3.bias": torch.zeros(4)})
    with pytest.raises(secagg.TreeError):
        snn.apply_delta(model, [torch.zeros(1)])


def test_none_gradients_pass_through(contexts):
    ctx = contexts["paillier"]
    model = make_model()
    local_step(model, 1)
    model[3].bias.grad = None
    g = snn.gradients(model)
    agg = secagg.Aggregator(ctx.public)
    for _ in range(2):
        agg.add(ctx.public.encrypt(g))
    out = ctx.decrypt(agg.result())
    assert out["3.bias"] is None
    snn.apply_gradients(model, out)
    assert model[3].bias.grad is None


def test_secagg_nn_is_the_torch_integration():
    import secagg.nn

    assert secagg.nn is snn
    from secagg.nn import apply_delta  # the old import path keeps working

    assert apply_delta is snn.apply_delta


# -- numpy leaves, subsets of parameters, include= / exclude= (issue 12) -------------
def test_a_numpy_first_sum_applies_to_a_torch_model(contexts):
    """The sum of numpy gradients decodes to numpy; apply_gradients converts each leaf."""
    ctx = contexts["ckks"]
    model = make_model()
    local_step(model, 3)
    grads = {k: v.numpy().copy() for k, v in snn.gradients(model).items()}
    agg = secagg.Aggregator(ctx.public)
    for _ in range(2):
        agg.add(ctx.public.encrypt(grads))
    mean = ctx.decrypt(agg.result(), reduce="mean")
    assert all(isinstance(v, np.ndarray) for v in mean.values())
    snn.apply_gradients(model, mean)
    for k, p in dict(model.named_parameters()).items():
        if k in mean:
            assert p.grad.dtype == p.dtype and p.grad.device == p.device
            assert np.allclose(p.grad.numpy(), grads[k], atol=ctx.codec.error_bound * 1.01)


def test_numpy_leaves_are_converted_to_the_parameter_dtype_and_not_aliased():
    model = make_model().to(torch.float64)
    g = np.full((3,), 0.5, dtype=np.float32)
    snn.apply_gradients(model, {"3.bias": g})
    assert model[3].bias.grad.dtype == torch.float64
    g[:] = 9.0  # the caller's array is not the gradient
    assert torch.equal(model[3].bias.grad, torch.full((3,), 0.5, dtype=torch.float64))
    before = model[3].weight.detach().clone()
    snn.apply_delta(model, {"3.weight": np.ones((3, 8), dtype=np.float16)}, scale=0.5)
    assert torch.equal(model[3].weight.detach(), before + 0.5)


def test_non_tensor_leaves_are_refused_by_name():
    model = make_model()
    with pytest.raises(secagg.TreeError) as exc:
        snn.apply_delta(model, {"3.bias": [0.0, 0.0, 0.0]})
    assert str(exc.value) == "'3.bias' is a list; expected a torch tensor, a numpy array or None."
    with pytest.raises(secagg.TreeError, match=r"'3\.bias' is a numpy array of dtype <U1"):
        snn.apply_gradients(model, {"3.bias": np.array(["a", "b", "c"])})
    before = model[3].weight.detach().clone()
    with pytest.raises(secagg.TreeError):  # nothing applied before the bad leaf was found
        snn.apply_delta(model, {"3.weight": torch.ones(3, 8), "3.bias": "x"})
    assert torch.equal(model[3].weight, before)


def test_apply_touches_only_the_leaves_present():
    model, reference = make_model(), make_model()
    snn.apply_delta(model, {"3.bias": torch.ones(3)})
    for k, v in dict(model.named_parameters()).items():
        expected = dict(reference.named_parameters())[k] + (1 if k == "3.bias" else 0)
        assert torch.equal(v, expected), k
    local_step(model, 0)
    kept = model[3].weight.grad.clone()
    snn.apply_gradients(model, {"3.bias": torch.zeros(3)})
    assert torch.equal(model[3].weight.grad, kept)  # not in the tree: left alone
    with pytest.raises(secagg.TreeMismatchError) as exc:
        snn.apply_delta(model, {"head.weight": torch.zeros(1)})
    assert str(exc.value) == (
        "model has no parameter or buffer named 'head.weight'; its names are '0.weight', "
        "'0.bias', '1.weight', '1.bias', '3.weight', '3.bias', '1.running_mean', "
        "'1.running_var'."
    )


def test_include_and_exclude_filter_by_glob():
    model = make_model()
    local_step(model, 0)
    assert list(snn.gradients(model, exclude="3.*")) == ["1.weight", "1.bias"]
    assert list(snn.gradients(model, include=["3.*", "1.bias"])) == ["1.bias", "3.weight", "3.bias"]
    assert list(snn.parameters(model, include="*.bias", exclude=("1.*",))) == ["3.bias"]
    assert list(snn.parameters(model, include_buffers=True, include="1.*")) == [
        "1.weight", "1.bias", "1.running_mean", "1.running_var"]
    assert list(snn.parameters(model, include_frozen=True, include="0.*")) == ["0.weight", "0.bias"]
    start = snn.parameters(model)
    assert list(snn.delta(model, start, include="3.weight")) == ["3.weight"]


def test_a_pattern_that_matches_nothing_is_named_with_the_names():
    model = make_model()
    with pytest.raises(secagg.ConfigError) as exc:
        snn.parameters(model, exclude=["fc2.*"])
    assert str(exc.value) == (
        "exclude pattern 'fc2.*' matches no name; the names are '1.weight', '1.bias', "
        "'3.weight', '3.bias' (patterns are fnmatch globs such as 'fc2.*')."
    )
    with pytest.raises(secagg.ConfigError) as exc:
        snn.gradients(model, include="0.*")
    assert str(exc.value).endswith(
        "It matches frozen parameters ('0.weight', '0.bias'), left out unless include_frozen=True.")
    with pytest.raises(secagg.ConfigError, match=r"^include pattern 'x' matches no name"):
        snn.delta(model, snn.parameters(model), include=["3.*", "x"])
    with pytest.raises(secagg.ConfigError) as exc:
        snn.parameters(model, include=3)
    assert str(exc.value) == (
        "include must be a glob pattern such as 'fc2.*' or a list of them. Found 3.")
    with pytest.raises(secagg.ConfigError, match="leave nothing to share"):
        snn.parameters(model, include="3.*", exclude="3.*")


@given(st.sets(st.sampled_from(["1.weight", "1.bias", "3.weight", "3.bias"])),
       st.sets(st.sampled_from(["1.*", "3.*", "*.bias", "*.weight", "*"])))
def test_filters_keep_exactly_the_matching_names(names, patterns):
    model = make_model()
    inc = sorted(names) or None
    exc = sorted(patterns) or None
    all_names = ["1.weight", "1.bias", "3.weight", "3.bias"]
    expected = [n for n in all_names if (inc is None or n in inc)
                and not any(fnmatch.fnmatchcase(n, p) for p in exc or ())]
    if not expected:
        with pytest.raises(secagg.ConfigError):
            snn.parameters(model, include=inc, exclude=exc)
    else:
        assert list(snn.parameters(model, include=inc, exclude=exc)) == expected


def test_fedper_shares_the_body_and_keeps_each_head_local(contexts):
    """FedPer: the body's deltas are averaged under encryption, each client's head stays its own."""
    ctx = contexts["ckks"]
    global_model = make_model()
    clients = [make_model() for _ in range(2)]
    deltas = []
    for seed, model in enumerate(clients):
        start = snn.parameters(model, exclude="3.*")
        assert set(start) == {"1.weight", "1.bias"}
        local_step(model, seed)
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
        deltas.append(snn.delta(model, start))
    heads = [m[3].weight.detach().clone() for m in clients]
    agg = secagg.Aggregator(ctx.public)
    for d in deltas:
        agg.add(ctx.public.encrypt(d))
    mean = ctx.decrypt(agg.result(), reduce="mean")
    assert set(mean) == {"1.weight", "1.bias"}
    body_before = global_model[1].weight.detach().clone()
    snn.apply_delta(global_model, mean)
    plain = (deltas[0]["1.weight"] + deltas[1]["1.weight"]) / 2
    assert torch.allclose(global_model[1].weight - body_before, plain, atol=ctx.codec.error_bound * 1.01)
    for model, head in zip(clients, heads):
        snn.apply_delta(model, mean)
        assert torch.equal(model[3].weight, head)  # personalised: the head is untouched
