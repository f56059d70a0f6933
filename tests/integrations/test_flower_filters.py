"""Personalised FL in Flower: ``secagg_mod(include=/exclude=)`` shares some layers only.

The shared layers are encrypted and averaged; the others (a per-node head)
never leave the node: the mod keeps them in the node's ``Context.state`` and
puts them back into the model the train and evaluate functions receive.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
pytest.importorskip("flwr")

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

import secagg
from secagg.integrations import flower as sf
from secagg.integrations.flower.mod import LOCAL_STATE_KEY, ORDER_STATE_KEY
from tests.integrations.flower_helpers import (
    NODES,
    FakeGrid,
    N,
    assert_close,
    client_value,
    flower_context,
    num_examples,
    strategy_for,
    weighted_mean,
)

# the model: shared body layers around a per-node head (names in the model's order)
MODEL = {
    "body.w": np.zeros(3, np.float32),
    "head.w": np.full(2, -1.0, np.float32),
    "body.b": np.full((2, 2), 0.5, np.float32),
    "head.b": np.zeros(1, np.float32),
}
NAMES = list(MODEL)
SHARED = ["body.w", "body.b"]
HEAD = ["head.w", "head.b"]


def record_of(tree: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in tree.items()})


def head_step(pid: int, rnd: int) -> float:
    """What node ``pid`` adds to its own head in round ``rnd`` (far outside the codec's clip)."""
    return 10.0 * (pid + 1) + rnd


@pytest.fixture(scope="module")
def contexts() -> dict[str, secagg.SecretContext]:
    return {s: flower_context(s) for s in ("paillier", "ckks")}


class Nodes:
    """One persistent Flower Context per node (its state survives between rounds)."""

    def __init__(self) -> None:
        self.contexts = {
            node: Context(run_id=1, node_id=node,
                          node_config={"partition-id": pid, "num-partitions": N},
                          state=RecordDict(), run_config={})
            for node, pid in NODES.items()
        }

    def deliver(self, app: ClientApp, messages) -> list[Message]:
        return [app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]

    def own(self, pid: int) -> ArrayRecord:
        node = next(n for n, p in NODES.items() if p == pid)
        return self.contexts[node].state[LOCAL_STATE_KEY]


def make_app(context: bytes, seen: dict, **mod_options) -> ClientApp:
    """Train: body += client_value, head += head_step; records the model each call got."""
    mod_options.setdefault("allow_insecure", True)
    app = ClientApp(mods=[sf.secagg_mod(context, **mod_options)])

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        pid = int(ctx.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        record = msg.content["arrays"]
        got = {k: record[k].numpy() for k in record}
        seen[("train", pid, rnd)] = got
        out = {}
        for name, value in got.items():
            step = head_step(pid, rnd) if name.startswith("head") else client_value(pid, rnd)
            out[name] = (value + np.float32(step)).astype(value.dtype)
        return Message(RecordDict({
            "arrays": record_of({k: out[k] for k in record}),  # the model's order
            "metrics": MetricRecord({"num-examples": num_examples(pid)}),
        }), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, ctx: Context) -> Message:
        pid = int(ctx.node_config["partition-id"])
        record = msg.content["arrays"]
        seen[("evaluate", pid, int(msg.content["config"]["server-round"]))] = {
            k: record[k].numpy() for k in record}
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1})}),
                       reply_to=msg)

    return app


def train_round(strategy, app, nodes: Nodes, rnd: int, model: ArrayRecord):
    replies = nodes.deliver(app, strategy.configure_train(rnd, model, ConfigRecord(),
                                                          FakeGrid(NODES)))
    return replies, strategy.aggregate_train(rnd, replies)


def payload_leaves(reply: Message, ctx: secagg.SecretContext) -> tuple[str, ...]:
    update = secagg.EncryptedUpdate.from_bytes(sf._payload(reply), ctx.public)
    return update.spec.leaf_names


def expected_heads(pid: int, rounds: int) -> dict[str, np.ndarray]:
    return {n: MODEL[n] + np.float32(sum(head_step(pid, r) for r in range(1, rounds + 1)))
            for n in HEAD}


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
@pytest.mark.parametrize("filters", [{"exclude": ["head*"]}, {"include": "body.*"},
                                     {"include": ["body.w", "body.b"], "exclude": "head.*"}])
def test_only_the_shared_layers_are_encrypted_and_averaged(contexts, scheme, filters,
                                                           task_identity):
    ctx = contexts[scheme]
    seen: dict = {}
    app, nodes, strategy = make_app(ctx.to_bytes(), seen, **filters), Nodes(), strategy_for(ctx)

    # round 1: the server's initial model is plaintext and holds every array
    replies, (arrays, _) = train_round(strategy, app, nodes, 1, record_of(MODEL))
    for r in replies:
        assert not r.has_error(), r.error.reason if r.has_error() else ""
        assert set(r.content.keys()) == {"metrics", "secagg"}
        assert list(r.content.array_records) == ["secagg"]
        assert payload_leaves(r, ctx) == tuple(SHARED)  # the head is not in the payload
    for pid in range(N):
        got = seen[("train", pid, 1)]
        assert list(got) == NAMES
        for name in NAMES:
            np.testing.assert_array_equal(got[name], MODEL[name])
        own = nodes.own(pid)
        assert list(own.keys()) == HEAD
        for name, want in expected_heads(pid, 1).items():
            np.testing.assert_array_equal(own[name].numpy(), want)
    assert sf.aggregate_from_arrays(arrays) is not None
    g1 = sf.decrypt_arrays(arrays, ctx)
    assert list(g1.keys()) == SHARED  # the global model: the shared layers only
    g1_list = g1.to_numpy_ndarrays()
    assert_close(g1_list, weighted_mean([MODEL[n] for n in SHARED], list(range(N)), 1), ctx)

    # evaluate: the decrypted shared layers plus the node's own head, in the model's order
    nodes.deliver(app, strategy.configure_evaluate(1, arrays, ConfigRecord(), FakeGrid(NODES)))
    # round 2: the same, from the encrypted aggregate
    replies, (arrays2, _) = train_round(strategy, app, nodes, 2, arrays)
    assert all(not r.has_error() for r in replies)
    for pid in range(N):
        for what in ("evaluate", "train"):
            got = seen[(what, pid, 1 if what == "evaluate" else 2)]
            assert list(got) == NAMES
            assert_close([got[n] for n in SHARED], [a.astype(np.float64) for a in g1_list], ctx)
            for name, want in expected_heads(pid, 1).items():  # its own round-1 head, exactly
                np.testing.assert_array_equal(got[name], want)
        assert all(payload_leaves(r, ctx) == tuple(SHARED) for r in replies)
        for name, want in expected_heads(pid, 2).items():
            np.testing.assert_array_equal(nodes.own(pid)[name].numpy(), want)
        assert list(nodes.contexts[1000 + pid].state[ORDER_STATE_KEY]["names"]) == NAMES
    heads = [nodes.own(pid)["head.w"].numpy() for pid in range(N)]
    assert len({h.tobytes() for h in heads}) == N  # every node has its own head
    g2 = sf.decrypt_arrays(arrays2, ctx)
    assert list(g2.keys()) == SHARED
    assert_close(g2.to_numpy_ndarrays(), weighted_mean(g1_list, list(range(N)), 2), ctx)


def test_key_holder_mode_keeps_the_heads_too(contexts, task_identity):
    ctx = contexts["ckks"]
    seen: dict = {}
    strategy = strategy_for(ctx, key_holder=sf.KeyHolder(ctx.to_bytes(), allow_insecure=True,
                                                         allow_unverified_lattice=True))
    app, nodes = make_app(ctx.public.to_bytes(), seen, exclude="head.*"), Nodes()
    _, (arrays, _) = train_round(strategy, app, nodes, 1, record_of(MODEL))
    assert list(arrays.keys()) == SHARED  # the plaintext mean of the shared layers
    _, (arrays2, _) = train_round(strategy, app, nodes, 2, arrays)
    for pid in range(N):
        got = seen[("train", pid, 2)]
        assert list(got) == NAMES
        for name, want in expected_heads(pid, 1).items():
            np.testing.assert_array_equal(got[name], want)
    assert arrays2 is not None and list(arrays2.keys()) == SHARED


def test_local_arrays_may_be_integer_buffers(contexts, task_identity):
    ctx = contexts["ckks"]
    model = {"w": np.ones(3, np.float32), "bn.num_batches_tracked": np.array([7], np.int64)}
    strategy = strategy_for(ctx)
    app = ClientApp(mods=[sf.secagg_mod(ctx.to_bytes(), allow_insecure=True,
                                        exclude="*num_batches_tracked")])

    @app.train()
    def train(msg, c):
        record = msg.content["arrays"]
        return Message(RecordDict({"arrays": record,
                                   "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    nodes = Nodes()
    replies, (arrays, _) = train_round(strategy, app, nodes, 1, record_of(model))
    assert all(not r.has_error() for r in replies)
    assert all(payload_leaves(r, ctx) == ("w",) for r in replies)
    assert list(sf.decrypt_arrays(arrays, ctx).keys()) == ["w"]


def test_a_node_without_local_arrays_gets_the_shared_ones(contexts, task_identity, caplog):
    ctx = contexts["ckks"]
    seen: dict = {}
    strategy = strategy_for(ctx)
    app = make_app(ctx.to_bytes(), seen, exclude="head*")
    _, (arrays, _) = train_round(strategy, app, Nodes(), 1, record_of(MODEL))
    caplog.set_level("WARNING", logger="secagg.flower")
    fresh = Nodes()  # these nodes never trained: no head of their own
    replies = fresh.deliver(app, strategy.configure_evaluate(1, arrays, ConfigRecord(),
                                                             FakeGrid(NODES)))
    assert all(not r.has_error() for r in replies)
    assert list(seen[("evaluate", 0, 1)]) == SHARED
    assert "no local arrays yet" in caplog.text


def test_a_pattern_matching_nothing_is_an_error_reply(contexts, task_identity, caplog):
    ctx = contexts["ckks"]
    strategy = strategy_for(ctx)
    reason = f"secagg_mod {secagg.errors.public_reason(secagg.ConfigError())}"
    for filters, detail in (
            ({"exclude": ["head*", "classifier.*"]}, "exclude pattern 'classifier.*' matches no"),
            ({"include": "encoder.*"}, "include pattern 'encoder.*' matches no"),
            ({"include": "head*", "exclude": "head*"}, "leave no array to encrypt")):
        caplog.clear()
        nodes = Nodes()
        replies, _ = train_round(strategy, make_app(ctx.to_bytes(), {}, **filters), nodes, 1,
                                 record_of(MODEL))
        assert {r.error.code for r in replies if r.has_error()} == {
            ErrorCode.MOD_FAILED_PRECONDITION}
        assert all(r.has_error() and r.error.reason == reason for r in replies)
        assert detail in caplog.text  # the details: in the node's own log only
        assert all(detail not in r.error.reason for r in replies)
        assert strategy.history[-1]["failures"] == N and strategy.history[-1]["summed"] == 0


@pytest.mark.parametrize("bad", [5, [], [""], ["head*", 3], b"head*"])
def test_filters_are_checked_up_front(contexts, bad):
    ctx = contexts["ckks"]
    for option in ("include", "exclude"):
        with pytest.raises(secagg.ConfigError):
            sf.secagg_mod(ctx.to_bytes(), allow_insecure=True, **{option: bad})
    mod = sf.secagg_mod(ctx.to_bytes(), include="body.*", exclude=("head*",))
    assert mod.include == ("body.*",) and mod.exclude == ("head*",)
    assert "exclude=['head*']" in repr(mod)


def test_simulation_keeps_each_nodes_head(tmp_path, monkeypatch):
    """On Flower's simulation engine (Ray): the heads persist in Context.state across rounds."""
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ctx = flower_context("ckks")
    app = ClientApp(mods=[sf.secagg_mod(ctx.to_bytes(), allow_insecure=True, exclude="head*")])

    @app.train()
    def train(msg: Message, c: Context) -> Message:
        pid = int(c.node_config["partition-id"])
        record = msg.content["arrays"]
        head = record["head.w"].numpy()
        out = {"body.w": record["body.w"].numpy() + np.float32(0.1),
               "head.w": head + np.float32(10 * (pid + 1))}
        return Message(RecordDict({"arrays": record_of(out), "metrics": MetricRecord({
            "num-examples": 1, "pid": pid, "head-in": float(head[0]),
            "names": float(list(record.keys()) == ["body.w", "head.w"])})}), reply_to=msg)

    seen: dict = {}
    server = ServerApp()

    class Recording(sf.SecAggFedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            seen[server_round] = sorted(
                (m.content["metrics"]["pid"], m.content["metrics"]["head-in"],
                 m.content["metrics"]["names"]) for m in replies if m.has_content())
            return super().aggregate_train(server_round, replies)

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = Recording(ctx.public.to_bytes(), min_train_nodes=2, min_available_nodes=2,
                             fraction_evaluate=0.0, allow_insecure=True)
        seen["result"] = strategy.start(grid=grid, initial_arrays=record_of(
            {"body.w": np.zeros(3, np.float32), "head.w": np.zeros(2, np.float32)}),
            num_rounds=3, timeout=120)

    run_simulation(server_app=server, client_app=app, num_supernodes=2, backend_config={
        "init_args": {"num_cpus": 2, "num_gpus": 0, "include_dashboard": False},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    })
    for rnd in (1, 2, 3):  # each node gets back its own head of the previous round
        assert seen[rnd] == [(pid, 10.0 * (pid + 1) * (rnd - 1), 1.0) for pid in (0, 1)]
    final = sf.decrypt_arrays(seen["result"].arrays, ctx)
    assert list(final.keys()) == ["body.w"]
    np.testing.assert_allclose(final["body.w"].numpy(), 0.3, atol=1e-3)
