"""What the two Flower simulation examples share: Ray's resources, metrics, one simulation.

``flower_simulation.py`` (encrypted FedAvg) and ``flower_masking.py`` (pairwise
masks) run the same digits task twice on Flower's simulation engine, plain and
protected; this module holds the server-side scaffolding both use. The
ClientApps' training and evaluation are ``secagg.demo.fedavg``'s
(``sgd_epochs``, ``accuracy_and_loss``, ``load_mlp``), so that Ray's workers
import them from the installed package.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from secagg.demo import fedavg as fl

__all__ = ["BACKEND_CONFIG", "make_client_app", "eval_metrics", "simulate", "kib"]

BACKEND_CONFIG = {
    "init_args": {"num_cpus": 2, "num_gpus": 0},  # ray.init(...)
    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},  # two ClientApps at a time
}


def make_client_app(data: fl.Dataset, split: list[np.ndarray], args: argparse.Namespace,
                    drop: set[tuple[int, int]], mods: list[Any]) -> ClientApp:
    """A Flower ClientApp training the digits MLP on partition ``partition-id``.

    The same for the plain and the protected run (which only add ``mods``);
    ``drop``: the (round, partition) pairs whose train function raises. Its
    functions are closures, so Ray ships them by value: the workers import only
    Flower, torch and the installed secagg.
    """
    shards = [(data.x_train[torch.from_numpy(s)], data.y_train[torch.from_numpy(s)])
              for s in split]
    x_test, y_test = data.x_test, data.y_test
    epochs, batch_size, lr, hidden, seed = (args.local_epochs, args.batch_size, args.lr,
                                            args.hidden, args.seed)
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        if (rnd, pid) in drop:
            raise RuntimeError(f"simulated dropout of partition {pid} in round {rnd}")
        model = fl.load_mlp(msg.content["arrays"].to_torch_state_dict(), hidden)
        x, y = shards[pid]
        torch.manual_seed(fl._seed(seed, rnd, pid))
        loss = fl.sgd_epochs(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr)
        return Message(RecordDict({
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss}),
        }), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        model = fl.load_mlp(msg.content["arrays"].to_torch_state_dict(), hidden)
        acc, loss = fl.accuracy_and_loss(model, x_test, y_test)
        return Message(RecordDict({
            "metrics": MetricRecord({"num-examples": len(y_test), "accuracy": acc, "loss": loss}),
        }), reply_to=msg)

    return app


def eval_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Mean accuracy and loss over the clients, with the accuracy's min and max."""
    ms = [next(iter(r.metric_records.values())) for r in records]
    accs = [float(m["accuracy"]) for m in ms]
    return MetricRecord({
        "accuracy": float(np.mean(accs)), "accuracy-min": min(accs), "accuracy-max": max(accs),
        "loss": float(np.mean([float(m["loss"]) for m in ms])), "clients": len(ms),
    })


def simulate(client_app: ClientApp, make_strategy: Callable[[], Any],
             init: dict[str, torch.Tensor], args: argparse.Namespace) -> dict[str, Any]:
    """Run Flower's simulation engine once; return the strategy, its Result and the wall time."""
    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = make_strategy()
        out["strategy"] = strategy
        out["result"] = strategy.start(grid=grid, initial_arrays=ArrayRecord(init),
                                       num_rounds=args.rounds, timeout=args.timeout)

    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client_app, num_supernodes=args.clients,
                   backend_config=BACKEND_CONFIG)
    out["wall_s"] = time.perf_counter() - t0
    if "result" not in out:
        raise RuntimeError("the ServerApp did not finish; see Flower's log above.")
    return out


def kib(n: float) -> str:
    """``n`` bytes in KiB, one decimal."""
    return f"{n / 1024:.1f} KiB"
