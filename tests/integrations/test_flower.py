"""secagg.integrations.flower (alias secagg.flower): the strategy and the client mod, in
process and on Flower's simulation engine."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections import deque
from pathlib import Path

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
from secagg.schemes.base import SecretBackend
from tests.integrations.flower_helpers import (
    INIT,
    NODES,
    FakeGrid,
    N,
    assert_close,
    client_value,
    deliver,
    flower_context,
    make_app,
    strategy_for,
    train_message,
    train_round,
    weighted_mean,
)

ROOT = Path(__file__).resolve().parents[2]  # tests/integrations/ -> the repository root


@pytest.fixture(scope="module")
def contexts() -> dict[str, secagg.SecretContext]:
    return {s: flower_context(s) for s in ("paillier", "ckks")}


def test_secagg_flower_is_the_flower_integration():
    import secagg.flower

    assert secagg.flower is sf
    from secagg.flower import SecAggFedAvg  # the old import path keeps working

    assert SecAggFedAvg is sf.SecAggFedAvg


def test_encrypted_fedavg_mod_is_secagg_mod(contexts, task_identity):
    from secagg.flower import encrypted_fedavg_mod, secagg_mod

    assert encrypted_fedavg_mod is secagg_mod is sf.encrypted_fedavg_mod
    assert "encrypted_fedavg_mod" in sf.__all__ and "secagg_mod" in sf.__all__
    ctx = contexts["ckks"]
    mod = encrypted_fedavg_mod(ctx.to_bytes(), allow_insecure=True)
    assert isinstance(mod, sf.SecAggMod)


# -- tests -------------------------------------------------------------------------------


def test_import_secagg_does_not_import_flwr():
    code = ("import sys, secagg, secagg.flower; "
            "assert 'flwr' not in sys.modules, 'flwr imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_strategy_takes_the_public_context_only(contexts):
    ctx = contexts["paillier"]
    for secret in (ctx, ctx.to_bytes(), ctx.to_sealed_bytes("pw", scrypt_n=2**10)):
        with pytest.raises(secagg.ConfigError):
            sf.SecAggFedAvg(secret)
    assert sf.SecAggFedAvg(ctx.public, allow_insecure=True).public_context.fingerprint == \
        ctx.fingerprint
    with pytest.raises(secagg.ConfigError):
        sf.SecAggFedAvg(ctx.public.to_bytes(), reduce="sum", allow_insecure=True)


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_two_rounds_in_process(contexts, scheme, task_identity):
    ctx = contexts[scheme]
    app = make_app(ctx.to_bytes())
    strategy = strategy_for(ctx)
    replies, (arrays, metrics) = train_round(strategy, app, 1, ArrayRecord(INIT))
    for r in replies:  # the payload replaces the weights; the count is not in clear
        assert not r.has_error(), r.error.reason if r.has_error() else ""
        assert set(r.content.keys()) == {"metrics", "secagg"}
        assert list(r.content.array_records) == ["secagg"]  # the payload, not the weights
        assert list(r.content["secagg"].keys()) == ["payload"]
        assert r.content["metrics"]["num-examples"] == 1
        arr = r.content["secagg"]["payload"].numpy()
        assert arr.dtype == np.uint8 and arr.ndim == 1 and arr.tobytes() == sf._payload(r)
    assert metrics["pid"] == pytest.approx(1.5)  # other metrics pass, unweighted
    data = sf.aggregate_from_arrays(arrays)
    assert data is not None and list(arrays.keys()) == [sf.AGGREGATE_KEY]
    g1 = sf.decrypt_arrays(arrays, ctx).to_numpy_ndarrays()
    assert_close(g1, weighted_mean(INIT, list(range(N)), 1), ctx)

    # evaluation runs on the clients, on the decrypted model; counts hidden there too
    evals = deliver(app, strategy.configure_evaluate(1, arrays, ConfigRecord(), FakeGrid(NODES)))
    for e in evals:
        assert e.content["metrics"]["num-examples"] == 1
        assert e.content["metrics"]["checksum"] == pytest.approx(sum(float(a.sum()) for a in g1),
                                                               abs=1e-5)
    strategy.aggregate_evaluate(1, evals)

    _, (arrays2, _) = train_round(strategy, app, 2, arrays)
    assert_close(sf.decrypt_arrays(arrays2, ctx).to_numpy_ndarrays(),
                 weighted_mean(g1, list(range(N)), 2), ctx)
    h = strategy.history
    assert [x["summed"] for x in h] == [N, N] and [x["failures"] for x in h] == [0, 0]
    assert h[0]["upload_bytes"] > 0 and h[0]["aggregate_bytes"] > 0
    assert h[0]["round_s"] is not None


def test_costs_are_logged_and_saved_as_json(contexts, task_identity, caplog, tmp_path):
    import json

    ctx = contexts["ckks"]
    app, strategy = make_app(ctx.to_bytes(), fail=frozenset({(1, 3)})), strategy_for(ctx)
    caplog.set_level("INFO", logger="flwr")
    replies, (arrays, _) = train_round(strategy, app, 1, ArrayRecord(INIT))
    evals = deliver(app, strategy.configure_evaluate(1, arrays, ConfigRecord(), FakeGrid(NODES)))
    strategy.aggregate_evaluate(1, evals)
    h = strategy.history[-1]
    sizes = [len(sf._payload(r)) for r in replies if not r.has_error()]
    assert (h["summed"], h["refused"], h["failed"]) == (N - 1, 0, 1)
    assert h["bytes_in"] == sum(sizes) and h["upload_bytes"] == pytest.approx(np.mean(sizes))
    init_bytes = sum(len(a.data) for a in ArrayRecord(INIT).values())
    agg_bytes = sum(len(a.data) for a in arrays.values())
    assert h["bytes_out"] == N * init_bytes + N * agg_bytes  # train round 1 + its evaluate
    assert (f"secagg round 1: {N - 1} update(s) summed, 0 refused, 1 failed; "
            f"{sum(sizes)} bytes in") in caplog.text
    assert "secagg_mod: train round 1: encrypted" in caplog.text
    assert "secagg_mod: evaluate round 1: decrypted the aggregate" in caplog.text
    path = strategy.save_history(tmp_path / "out" / "history.json")
    assert json.loads(path.read_text())["history"] == strategy.history


def test_unweighted_mean(contexts, task_identity):
    ctx = contexts["ckks"]
    strategy = strategy_for(ctx, reduce="mean")
    _, (arrays, _) = train_round(strategy, make_app(ctx.to_bytes()), 1, ArrayRecord(INIT))
    mean = np.mean([client_value(p, 1) for p in range(N)])
    assert_close(sf.decrypt_arrays(arrays, ctx).to_numpy_ndarrays(),
                 [a.astype(np.float64) + mean for a in INIT], ctx)


def test_refused_payloads_are_failures_not_crashes(contexts, task_identity, caplog):
    ctx = contexts["paillier"]
    app = make_app(ctx.to_bytes())
    strategy = strategy_for(ctx)
    grid = FakeGrid(NODES)
    msgs = list(strategy.configure_train(2, ArrayRecord(INIT), ConfigRecord(), grid))
    replies = deliver(app, msgs)
    by_pid = {NODES[r.metadata.src_node_id]: r for r in replies}

    # pid 0: corrupted in transit (one byte flipped)
    payload = bytearray(sf._payload(by_pid[0]))
    payload[len(payload) // 2] ^= 1
    by_pid[0].content["secagg"] = sf.payload_to_arrays(bytes(payload))
    # pid 1: made under another key
    other = flower_context("paillier")
    foreign = deliver(make_app(other.to_bytes()), [train_message(1001, 2, ArrayRecord(INIT))])[0]
    by_pid[1] = foreign
    # an extra, stale reply: pid 2's update for round 1 (replayed / late)
    stale = deliver(app, [train_message(1002, 1, ArrayRecord(INIT))])[0]
    # a reply without a secagg payload (a node without the mod)
    plain = Message(RecordDict({"arrays": ArrayRecord(INIT),
                                "metrics": MetricRecord({"num-examples": 3})}),
                    reply_to=next(m for m in msgs if m.metadata.dst_node_id == 1003))
    caplog.set_level("INFO", logger="flwr")
    arrays, _ = strategy.aggregate_train(2, [by_pid[0], by_pid[1], stale, by_pid[2], by_pid[3],
                                             plain, by_pid[3]])
    h = strategy.history[-1]
    # summed: pid 2 and pid 3 once; failures: corrupted, foreign, stale, plain, duplicate of 3
    assert h["summed"] == 2 and h["failures"] == 5 and h["results"] == 7
    assert_close(sf.decrypt_arrays(arrays, ctx).to_numpy_ndarrays(),
                 weighted_mean(INIT, [2, 3], 2), ctx)
    log = caplog.text
    for name in ("CorruptPayloadError", "ContextMismatchError", "RoundMismatchError",
                 "FormatError", "ReplayError"):
        assert name in log


def test_payloads_travel_as_chunkable_uint8_arrays(contexts, task_identity, monkeypatch):
    ctx = contexts["ckks"]
    strategy = strategy_for(ctx)
    replies, _ = train_round(strategy, make_app(ctx.to_bytes()), 1, ArrayRecord(INIT))
    data = sf._payload(replies[0])
    # Flower slices an Array into chunks of FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE bytes
    from flwr.app.message import array as flwr_array

    monkeypatch.setattr(flwr_array, "FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE", 1024)
    chunks = sf.payload_to_arrays(data)["payload"].slice_array()
    assert len(chunks) == -(-len(sf.payload_to_arrays(data)["payload"].data) // 1024) > 1
    # the server still reads the old ConfigRecord form (secagg 0.1 nodes) ...
    old = Message(RecordDict({"metrics": MetricRecord({"num-examples": 1}),
                              "secagg": ConfigRecord({"payload": data})}),
                  reply_to=train_message(1000, 1, ArrayRecord(INIT)))
    assert sf._payload(old) == data
    # ... and refuses an ArrayRecord that is not one 1-D uint8 array, saying what to do
    for name, bad in (("payload", np.zeros(4, np.float32)), ("payload", np.zeros((2, 2), np.uint8)),
                      ("x", np.zeros(4, np.uint8))):
        replies[0].content["secagg"] = ArrayRecord({name: Array(bad)})
        with pytest.raises(secagg.FormatError, match="update secagg on the node"):
            sf._payload(replies[0])


def test_too_few_updates_keep_the_previous_model(contexts, task_identity):
    ctx = contexts["ckks"]
    strategy = strategy_for(ctx)
    replies, _ = train_round(strategy, make_app(ctx.to_bytes()), 1, ArrayRecord(INIT))
    arrays, _ = strategy.aggregate_train(1, replies[:1])  # one update: never decrypted alone
    assert arrays is None and strategy.history[-1]["summed"] == 1


def test_client_mod_failures_are_error_replies(contexts, task_identity, caplog):
    ctx, other = contexts["ckks"], contexts["paillier"]
    strategy = strategy_for(ctx)
    _, (encrypted, _) = train_round(strategy, make_app(ctx.to_bytes()), 1, ArrayRecord(INIT))
    grid = FakeGrid(NODES)

    def codes(app, arrays=encrypted):
        replies = deliver(app, strategy.configure_train(2, arrays, ConfigRecord(), grid))
        return {r.error.code if r.has_error() else None for r in replies}, replies

    # a node holding another key: refused before training
    # (the server gets a fixed code and text; the details stay in the node's own log)
    got, replies = codes(make_app(other.to_bytes()))
    assert got == {ErrorCode.MOD_FAILED_PRECONDITION}
    reason = secagg.errors.public_reason(secagg.ContextMismatchError())
    assert replies[0].error.reason == f"secagg_mod {reason}"
    assert "does not match" in caplog.text
    # an encrypted model sent to a node with the public context only
    got, replies = codes(make_app(ctx.public.to_bytes()))
    assert got == {ErrorCode.MOD_FAILED_PRECONDITION}
    assert "SA-CONFIG" in replies[0].error.reason and "only the public" in caplog.text
    # insecure test keys are refused unless allowed
    caplog.clear()
    got, replies = codes(make_app(other.to_bytes(), allow_insecure=False),
                         arrays=ArrayRecord(INIT))
    assert got == {ErrorCode.MOD_FAILED_PRECONDITION} and "SA-" in replies[0].error.reason
    assert "insecure" in caplog.text
    # the server counts all of these as failures
    strategy.aggregate_train(2, replies)
    assert strategy.history[-1]["failures"] == N and strategy.history[-1]["summed"] == 0


def test_mod_caps_weight_and_needs_num_examples(contexts, task_identity, caplog):
    ctx = flower_context("ckks", max_weight=15)  # pids 1..3 have 20..40 samples: capped to 15
    strategy = strategy_for(ctx)
    caplog.set_level("WARNING", logger="flwr")
    _, (arrays, _) = train_round(strategy, make_app(ctx.to_bytes()), 1, ArrayRecord(INIT))
    w = np.array([10, 15, 15, 15.0])
    v = np.array([client_value(p, 1) for p in range(N)])
    assert_close(sf.decrypt_arrays(arrays, ctx).to_numpy_ndarrays(),
                 [a.astype(np.float64) + w @ v / w.sum() for a in INIT], ctx)
    assert "max_weight=15" in caplog.text

    app = ClientApp(mods=[sf.secagg_mod(ctx.to_bytes())])

    @app.train()
    def train(msg, c):
        return Message(RecordDict({"arrays": msg.content["arrays"]}), reply_to=msg)

    replies = deliver(app, strategy.configure_train(2, ArrayRecord(INIT), ConfigRecord(),
                                                    FakeGrid(NODES)))
    assert all(r.has_error() and "SA-CONFIG" in r.error.reason for r in replies)
    assert "num-examples" in caplog.text  # the details, in the node's own log


def test_key_holder_mode(contexts, task_identity):
    ctx = contexts["ckks"]
    strategy = strategy_for(ctx, key_holder=sf.KeyHolder(ctx.to_bytes(), allow_insecure=True,
                                                         allow_unverified_lattice=True))
    app = make_app(ctx.public.to_bytes())  # clients need only the public context
    _, (arrays, _) = train_round(strategy, app, 1, ArrayRecord(INIT))
    assert sf.aggregate_from_arrays(arrays) is None  # plaintext mean, broadcast as usual
    g1 = arrays.to_numpy_ndarrays()
    assert_close(g1, weighted_mean(INIT, list(range(N)), 1), ctx)
    _, (arrays2, _) = train_round(strategy, app, 2, arrays)
    assert_close(arrays2.to_numpy_ndarrays(), weighted_mean(g1, list(range(N)), 2), ctx)


# -- what the server holds -----------------------------------------------------------------


def reachable(root, limit: int = 500_000):
    """Every object reachable from ``root`` through attributes, containers and closures."""
    seen: set[int] = set()
    todo = deque([root])
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "object graph unexpectedly large"
        yield obj
        if isinstance(obj, (str, bytes, bytearray, memoryview, int, float, complex, bool,
                            type(None), np.ndarray, np.generic, types.ModuleType, type)):
            continue
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
            continue
        if isinstance(obj, types.FunctionType):
            todo.extend(c.cell_contents for c in (obj.__closure__ or ())
                        if c.cell_contents is not None)
            todo.extend(obj.__defaults__ or ())
            todo.extend((obj.__kwdefaults__ or {}).values())
            continue
        if isinstance(obj, types.MethodType):
            todo.extend([obj.__self__, obj.__func__])
            continue
        if hasattr(obj, "__dict__"):
            todo.extend(vars(obj).values())
        for klass in type(obj).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if isinstance(slot, str) and hasattr(obj, slot):
                    todo.append(getattr(obj, slot))


def secrets_in(root, ctx: secagg.SecretContext) -> list[str]:
    """Secret material of ``ctx`` reachable from ``root`` (an empty list if none)."""
    blobs = [ctx.to_bytes()]
    ints: set[int] = set()
    backend = ctx.secret_backend
    if ctx.scheme == "paillier":
        p, q = int(backend.private_key.p), int(backend.private_key.q)
        ints |= {p, q}
        width = (ctx.public.backend.key_bits + 7) // 8
        blobs += [p.to_bytes(width, "big"), q.to_bytes(width, "big")]
    else:
        blobs.append(backend.material()["seal"])
    found = []
    for obj in reachable(root):
        if isinstance(obj, (SecretBackend, secagg.SecretContext)):
            found.append(type(obj).__name__)
        elif isinstance(obj, (bytes, bytearray)) and any(b in obj for b in blobs):
            found.append("secret bytes")
        elif isinstance(obj, int) and not isinstance(obj, bool) and obj in ints:
            found.append("a secret factor")
        elif type(obj).__name__ == "mpz" and int(obj) in ints:
            found.append("a secret factor (mpz)")
        elif (callable(getattr(obj, "is_private", None)) and not isinstance(obj, type)
              and obj.is_private()):
            found.append("a private SEAL context")
    return found


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_server_side_objects_hold_no_secret(contexts, scheme, task_identity):
    ctx = contexts[scheme]
    app = make_app(ctx.to_bytes())
    strategy = strategy_for(ctx)
    _, (arrays, _) = train_round(strategy, app, 1, ArrayRecord(INIT))
    train_round(strategy, app, 2, arrays)
    assert secrets_in(strategy, ctx) == []
    assert secrets_in(strategy.public_state(), ctx) == []
    # the walker does find a secret where there is one (an in-process key holder)
    assert "SecretContext" in secrets_in(strategy_for(ctx, key_holder=sf.KeyHolder(
        ctx, allow_insecure=True, allow_unverified_lattice=True)), ctx)
    if scheme == "paillier":
        assert "a secret factor (mpz)" in secrets_in(ctx.secret_backend, ctx)


# -- Flower's simulation engine ------------------------------------------------------------


def test_simulation_with_a_dropout(tmp_path, monkeypatch):
    """4 SuperNodes on Ray, 2 rounds; partition 1 raises in round 2."""
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
    ctx = flower_context("paillier")
    app = make_app(ctx.to_bytes(), fail=frozenset({(2, 1)}))
    out: dict = {}
    server = ServerApp()

    class Recording(sf.SecAggFedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            out.setdefault("errors", {})[server_round] = [
                (m.error.code, m.error.reason) for m in replies if m.has_error()]
            arrays, metrics = super().aggregate_train(server_round, replies)
            out.setdefault("aggregates", {})[server_round] = arrays
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            out.setdefault("eval_counts", set()).update(
                m.content["metrics"]["num-examples"] for m in replies if m.has_content())
            return super().aggregate_evaluate(server_round, replies)

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = Recording(ctx.public.to_bytes(), min_train_nodes=N, min_evaluate_nodes=N,
                             min_available_nodes=N, allow_insecure=True)
        out["strategy"] = strategy
        out["result"] = strategy.start(grid=grid, initial_arrays=ArrayRecord(INIT), num_rounds=2,
                                       timeout=120)

    run_simulation(server_app=server, client_app=app, num_supernodes=N, backend_config={
        "init_args": {"num_cpus": 2, "num_gpus": 0, "include_dashboard": False},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    })
    strategy, result = out["strategy"], out["result"]
    g1 = sf.decrypt_arrays(out["aggregates"][1], ctx).to_numpy_ndarrays()
    assert_close(g1, weighted_mean(INIT, [0, 1, 2, 3], 1), ctx)
    g2 = sf.decrypt_arrays(out["aggregates"][2], ctx).to_numpy_ndarrays()
    assert_close(g2, weighted_mean(g1, [0, 2, 3], 2), ctx)  # the mean over the others
    assert [h["summed"] for h in strategy.history] == [4, 3]
    assert [h["failures"] for h in strategy.history] == [0, 1]
    assert out["errors"][2][0][0] == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    # the app's own exception text stays on the node (it ran on decrypted data)
    assert "SA-APP" in out["errors"][2][0][1]
    assert "dropout of partition 1" not in out["errors"][2][0][1]
    # the clients evaluated the decrypted models; no count reached the server in clear
    for rnd, g in ((1, g1), (2, g2)):
        assert result.evaluate_metrics_clientapp[rnd]["checksum"] == pytest.approx(
            sum(float(a.sum()) for a in g), abs=1e-5)
    assert out["eval_counts"] == {1}
    assert sf.aggregate_from_arrays(result.arrays) is not None  # the final model stays encrypted
    assert secrets_in(strategy, ctx) == [] and secrets_in(result, ctx) == []
