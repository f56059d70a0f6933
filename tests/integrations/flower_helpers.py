"""Flower test helpers shared by tests/integrations/test_flower*.py and tests/adversary.

A deterministic ClientApp, and the strategy and the app driven in process (no
Ray). The ``task_identity`` fixture they need lives in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
pytest.importorskip("flwr")

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

import secagg
from secagg.integrations import flower as sf
from tests.helpers import make_context

CODEC = dict(max_clients=8, clip=4.0, frac_bits=16, max_weight=100, min_clients=2)
N = 4
INIT = [np.zeros(3, np.float32), np.full((2, 2), 0.5, np.float32)]


def flower_context(scheme: str, **overrides) -> secagg.SecretContext:
    """A context for the Flower tests' codec (small keys where the scheme has them)."""
    return make_context(scheme, **{**CODEC, **overrides})


# -- a deterministic ClientApp ------------------------------------------------------------


def client_value(pid: int, rnd: int) -> float:
    """What node ``pid`` adds to the global model in round ``rnd``."""
    return 0.1 * (pid + 1) + 0.01 * rnd


def num_examples(pid: int) -> int:
    return 10 * (pid + 1)


def add_train_evaluate(app: ClientApp, *, check: Callable[[Message, int, int], None] | None = None,
                       float32: bool = True) -> ClientApp:
    """Give ``app`` the deterministic train and evaluate functions; returns it.

    Train: ``check(msg, pid, rnd)`` first if given; with ``float32``, assert the
    received arrays are float32 (plaintext); reply global + client_value, weighted
    by num_examples. Evaluate: report the sum of the received model's values.
    """

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        pid = int(ctx.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        if check is not None:
            check(msg, pid, rnd)
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        if float32:
            assert all(a.dtype == np.float32 for a in arrays)  # plaintext, not a ciphertext
        out = [a + np.float32(client_value(pid, rnd)) for a in arrays]
        return Message(RecordDict({
            "arrays": ArrayRecord(out),
            "metrics": MetricRecord({"num-examples": num_examples(pid), "pid": pid}),
        }), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, ctx: Context) -> Message:
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        return Message(RecordDict({"metrics": MetricRecord({
            "num-examples": 5, "checksum": float(sum(float(a.sum()) for a in arrays)),
        })}), reply_to=msg)

    return app


def make_app(context: bytes, fail: frozenset = frozenset(), **mod_options) -> ClientApp:
    """Train: global + client_value, weighted by num_examples; raise for (round, pid) in fail.

    Evaluate: report the sum of the received model's values (which must be plaintext).
    """
    mod_options.setdefault("allow_insecure", True)

    def check(msg: Message, pid: int, rnd: int) -> None:
        if (rnd, pid) in fail:
            raise RuntimeError(f"dropout of partition {pid} in round {rnd}")

    return add_train_evaluate(ClientApp(mods=[sf.secagg_mod(context, **mod_options)]),
                              check=check)


def weighted_mean(global_model: list[np.ndarray], pids: list[int], rnd: int) -> list[np.ndarray]:
    w = np.array([num_examples(p) for p in pids], dtype=np.float64)
    v = np.array([client_value(p, rnd) for p in pids])
    return [g.astype(np.float64) + float(w @ v / w.sum()) for g in global_model]


def assert_close(got: list[np.ndarray], want: list[np.ndarray], ctx) -> None:
    bound = ctx.public.codec.error_bound + 1e-6  # the codec's bound plus float32 rounding
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=0, atol=bound)


# -- driving the strategy and the ClientApp in process (no Ray) --------------------------


class FakeGrid:
    """What FedAvg's configure_* use of a Grid: the connected node ids."""

    def __init__(self, node_ids):
        self.node_ids = list(node_ids)

    def get_node_ids(self):
        return list(self.node_ids)


class AppGrid:
    """A Grid routing messages to a ClientApp in process; each node keeps its Context.

    ``nodes``: node id -> partition id. :meth:`reply` turns an exception of the app
    into an error reply, as on Flower's engines.
    """

    def __init__(self, app: ClientApp, nodes: dict[int, int]):
        self.app = app
        self.nodes = dict(nodes)
        self.contexts = {nid: Context(run_id=1, node_id=nid,
                                      node_config={"partition-id": pid,
                                                   "num-partitions": len(self.nodes)},
                                      state=RecordDict(), run_config={})
                         for nid, pid in self.nodes.items()}

    def get_node_ids(self):
        return list(self.nodes)

    def reply(self, m: Message) -> Message:
        try:
            return self.app(m, self.contexts[m.metadata.dst_node_id])
        except Exception as exc:
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                 reason=type(exc).__name__), reply_to=m)


NODES = {1000 + pid: pid for pid in range(N)}


def node_context(node_id: int) -> Context:
    return Context(run_id=1, node_id=node_id,
                   node_config={"partition-id": NODES[node_id], "num-partitions": N},
                   state=RecordDict(), run_config={})


def deliver(app: ClientApp, messages) -> list[Message]:
    return [app(m, node_context(m.metadata.dst_node_id)) for m in messages]


def train_message(node_id: int, rnd: int, arrays: ArrayRecord) -> Message:
    return Message(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})}),
                   dst_node_id=node_id, message_type="train")


def train_round(strategy, app, rnd, arrays, grid=None):
    grid = grid or FakeGrid(NODES)
    replies = deliver(app, strategy.configure_train(rnd, arrays, ConfigRecord(), grid))
    return replies, strategy.aggregate_train(rnd, replies)


def strategy_for(ctx, **kw):
    kw.setdefault("min_train_nodes", N)
    kw.setdefault("min_available_nodes", N)
    kw.setdefault("allow_insecure", True)
    return sf.SecAggFedAvg(ctx.public.to_bytes(), **kw)
