"""The digits task of ``secagg.demo.fedavg`` as the App's ServerApp and ClientApp use it.

Everything here is a function of the run config and the node's partition, so a test can
recompute in its own process what the deployed nodes computed (plain FedAvg's reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from secagg.demo import fedavg as fl
from secagg.errors import ConfigError

PAD = "pad"  # the name of the padding array of large-model runs


@dataclass(frozen=True)
class Settings:
    """The run config's task options (``[tool.flwr.app.config]`` of the App)."""

    seed: int = 0
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 0.1
    hidden: int = 32
    alpha: float = 0.5
    pad_values: int = 0

    @classmethod
    def from_run_config(cls, cfg: Mapping[str, Any]) -> Settings:
        """The settings of a Flower ``Context.run_config``; a wrong value raises ConfigError."""
        out = {}
        for name, kind in (("seed", int), ("local-epochs", int), ("batch-size", int),
                           ("lr", float), ("hidden", int), ("alpha", float),
                           ("pad-values", int)):
            value = cfg.get(name, getattr(cls, name.replace("-", "_")))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"run config {name!r} must be a number >= 0. Found {value!r}.")
            out[name.replace("-", "_")] = kind(value)
        return cls(**out)


def initial_state(s: Settings) -> dict[str, np.ndarray]:
    """The seeded initial model (the MLP's weights, then ``pad`` zeros if asked)."""
    torch.manual_seed(s.seed)
    state = {k: v.detach().numpy().copy() for k, v in fl.MLP(hidden=s.hidden).state_dict().items()}
    if s.pad_values:
        state[PAD] = np.zeros(s.pad_values, np.float32)
    return state


def partition(s: Settings, partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node ``partition_id``'s training data: the demo's seeded Dirichlet split."""
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(f"partition-id must be in [0, num-partitions={num_partitions}). "
                          f"Found {partition_id}.")
    data = fl.load_digits_data(seed=s.seed)
    split = fl.dirichlet_split(data.y_train.numpy(), num_partitions, s.alpha,
                               rng=np.random.default_rng(s.seed), min_samples=10)
    idx = torch.from_numpy(split[partition_id])
    return data.x_train[idx], data.y_train[idx]


def test_set(s: Settings) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out digits every node evaluates on."""
    data = fl.load_digits_data(seed=s.seed)
    return data.x_test, data.y_test


def _model(state: Mapping[str, np.ndarray], s: Settings) -> nn.Module:
    return fl.load_mlp({k: v for k, v in state.items() if k != PAD}, s.hidden)


def train(state: Mapping[str, np.ndarray], x: torch.Tensor, y: torch.Tensor, s: Settings,
          *, server_round: int, partition_id: int) -> tuple[dict[str, np.ndarray], float]:
    """Minibatch SGD from ``state``, seeded by (seed, round, partition); the new state and loss.

    ``pad`` is returned unchanged (it stands for the rest of a large model).
    """
    torch.set_num_threads(1)
    torch.manual_seed(fl._seed(s.seed, server_round, partition_id))
    model = _model(state, s)
    loss = fl.sgd_epochs(model, x, y, epochs=s.local_epochs, batch_size=s.batch_size, lr=s.lr)
    out = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    if PAD in state:
        out[PAD] = np.asarray(state[PAD], np.float32)
    return out, loss


def evaluate(state: Mapping[str, np.ndarray], s: Settings) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy of ``state``."""
    torch.set_num_threads(1)
    x, y = test_set(s)
    return fl.accuracy_and_loss(_model(state, s), x, y)


def plain_fedavg_round(s: Settings, num_partitions: int, server_round: int = 1,
                       state: Mapping[str, np.ndarray] | None = None,
                       partitions: list[int] | None = None) -> dict[str, np.ndarray]:
    """What plain FedAvg computes in one round (float64, weighted by sample count): the reference."""
    state = initial_state(s) if state is None else state
    total: dict[str, np.ndarray] = {}
    count = 0
    for pid in range(num_partitions) if partitions is None else partitions:
        x, y = partition(s, pid, num_partitions)
        new, _ = train(state, x, y, s, server_round=server_round, partition_id=pid)
        for k, v in new.items():
            total[k] = total.get(k, 0) + len(y) * v.astype(np.float64)
        count += len(y)
    return {k: v / count for k, v in total.items()}
