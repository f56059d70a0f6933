"""secagg.integrations.torch (alias secagg.nn): a real nn.Module with a frozen layer and a
BatchNorm buffer."""

from __future__ import annotations

import pytest
import torch

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
