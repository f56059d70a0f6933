"""secagg.flower's masked FedAvg (MaskedFedAvg + masked_mod): secagg.masking inside a Flower
round, in process (a fake grid that routes messages to a ClientApp) and on the simulation engine."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
pytest.importorskip("flwr")

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

import secagg
from secagg.codec import FixedPointCodec
from secagg.integrations import flower as sf
from secagg.integrations.flower import masking as fm
from secagg.masking import MaskingClient, MaskingConfig
from tests.integrations.flower_helpers import (
    INIT,
    AppGrid,
    add_train_evaluate,
    client_value,
    weighted_mean,
)

CLIP, FRAC = 4.0, 16
BOUND = FixedPointCodec(clip=CLIP, frac_bits=FRAC, max_clients=8).error_bound + 1e-6


# -- a ClientApp with the masking mod, and nodes that vanish at a chosen stage -------------


def stage_of(msg: Message) -> str | None:
    if not msg.has_content():
        return None
    record = msg.content.config_records.get(sf.MASK_RECORD_KEY)
    return None if record is None else str(record["stage"])


def dropper(fail: frozenset):
    """A mod (outside masked_mod) that raises for (round, stage, pid) in ``fail``."""

    def mod(msg: Message, ctx: Context, call_next):
        stage = stage_of(msg)
        if stage is not None:
            key = (int(msg.metadata.group_id), stage, int(ctx.node_config["partition-id"]))
            if key in fail:
                raise RuntimeError(f"node vanishes: {key}")
        return call_next(msg, ctx)

    return mod


def masked_app(fail: frozenset = frozenset(), **mod_options) -> ClientApp:
    """Train: global + client_value, weighted by num_examples (flower_helpers' app, unchanged).

    Evaluate: report the checksum of the received (plaintext) model.
    """
    def check(msg: Message, pid: int, rnd: int) -> None:
        assert sf.MASK_RECORD_KEY not in msg.content  # the function sees a plain train message

    return add_train_evaluate(ClientApp(mods=[dropper(fail), sf.masked_mod(**mod_options)]),
                              check=check, float32=False)


class MaskGrid(AppGrid):
    """A Grid routing messages to a ClientApp in process; each node keeps its Context.

    ``vanish``: (round, stage, pid) whose message is never answered (a node gone silent).
    An exception of the app becomes an error reply, as on Flower's engines.
    """

    def __init__(self, app: ClientApp, n: int, vanish: frozenset = frozenset(), tamper=None):
        super().__init__(app, {2000 + 7 * pid: pid for pid in range(n)})
        self.vanish = vanish
        self.tamper = tamper  # fn(stage, replies) -> replies
        self.sent: list[tuple[str | None, int]] = []

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        stage = None
        for m in messages:
            nid = m.metadata.dst_node_id
            stage = stage_of(m)
            self.sent.append((stage, nid))
            if stage is not None and (int(m.metadata.group_id), stage, self.nodes[nid]) in self.vanish:
                continue
            replies.append(self.reply(m))
        if self.tamper is not None:
            replies = self.tamper(stage, replies)
        return replies


def strategy(n: int, **kw):
    kw.setdefault("clip", CLIP)
    kw.setdefault("frac_bits", FRAC)
    kw.setdefault("max_weight", 100)
    for key in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
        kw.setdefault(key, n)
    return sf.MaskedFedAvg(**kw)


def close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=0, atol=BOUND)


def run(grid: MaskGrid, s, rounds: int = 2):
    return s.start(grid=grid, initial_arrays=ArrayRecord(INIT), num_rounds=rounds, timeout=30)


# -- tests -------------------------------------------------------------------------------


def test_names_are_exported():
    from flwr.serverapp.strategy import FedAvg

    import secagg.flower

    assert secagg.flower.MaskedFedAvg is sf.MaskedFedAvg and issubclass(sf.MaskedFedAvg, FedAvg)
    assert sf.MaskedFedAvg.__name__ == "MaskedFedAvg"
    assert isinstance(sf.masked_mod(), sf.MaskedMod)
    for name in ("MaskedFedAvg", "MaskedMod", "masked_mod", "MASK_RECORD_KEY"):
        assert name in sf.__all__


def test_masking_client_state_is_all_kept():
    """Every attribute of MaskingClient travels in Context.state between messages."""
    config = MaskingConfig.create(3, 2)
    assert set(vars(MaskingClient(config.to_bytes(), 0))) == fm._CLIENT_FIELDS


def test_two_rounds_with_dropouts_at_the_share_and_masked_stages(task_identity):
    """Round 1: pid 1 fails at the share stage, pid 4 goes silent at the masked stage."""
    n = 6
    grid = MaskGrid(masked_app(fail=frozenset({(1, "shares", 1)})), n,
                    vanish=frozenset({(1, "masked", 4)}))
    s = strategy(n)  # threshold 0.6 of 6 holders: 4, so two dropouts are fine
    result = run(grid, s)
    h1, h2 = s.history
    pid = {nid: p for nid, p in grid.nodes.items()}
    assert (h1["threshold"], h1["holders"], h1["nodes"]) == (4, 6, 6)
    assert [pid[x] for x in h1["dropped"]["shares"]] == [1]
    assert [pid[x] for x in h1["dropped"]["masked"]] == [4]
    assert h1["dropped"]["keys"] == h1["dropped"]["unmask"] == []
    assert sorted(pid[x] for x in h1["included_nodes"]) == [0, 2, 3, 5]
    assert h1["failures"] == 2 and h1["stopped"] is None
    assert h2["summed"] == n and h2["failures"] == 0
    # the new global model is plain FedAvg's over the included nodes, within the codec's bound
    g1 = weighted_mean(INIT, [0, 2, 3, 5], 1)
    g2 = weighted_mean(g1, list(range(n)), 2)
    close(result.arrays.to_numpy_ndarrays(), g2)
    assert list(result.arrays.keys()) == list(ArrayRecord(INIT).keys())
    assert all(a.dtype == np.float32 for a in result.arrays.to_numpy_ndarrays())
    # evaluation ran on the plaintext models; every count reached the server as 1
    for rnd, g in ((1, g1), (2, g2)):
        assert result.evaluate_metrics_clientapp[rnd]["checksum"] == pytest.approx(
            sum(float(a.sum()) for a in g), abs=1e-4)
    assert result.train_metrics_clientapp[1]["pid"] == pytest.approx(np.mean([0, 2, 3, 5]))
    # four train exchanges a round (each node once per stage it reached), then evaluate
    stages = [st for st, _ in grid.sent if st is not None]
    assert stages.count("keys") == 2 * n and stages.count("unmask") == (n - 2) + n
    # the nodes dropped their secrets when the round ended; pid 4 keeps its stale state
    # until the next round's key stage replaces it
    assert all(fm.MASK_STATE_KEY not in c.state for c in grid.contexts.values())
    assert h1["upload_bytes"]["masked"] > 0 and h1["download_bytes"]["masked"] > 0


@pytest.mark.parametrize("stage", ["keys", "shares", "masked", "unmask"])
def test_one_dropout_at_each_stage(stage, task_identity):
    """A node lost before the masked stage is left out; one lost at unmask stays in the sum."""
    n = 5
    app = masked_app(fail=frozenset({(1, stage, 2)}))
    s = strategy(n)
    result = run(MaskGrid(app, n), s, rounds=1)
    pids = [0, 1, 3, 4] if stage != "unmask" else list(range(n))
    close(result.arrays.to_numpy_ndarrays(), weighted_mean(INIT, pids, 1))
    assert s.history[0]["summed"] == len(pids) and s.history[0]["failures"] == 1


def test_unweighted_mean_and_secagg_plus_graph(task_identity):
    n = 8
    s = strategy(n, reduce="mean", neighbors=4, threshold=0.5)
    result = run(MaskGrid(masked_app(), n), s, rounds=1)
    h = s.history[0]
    assert (h["holders"], h["threshold"]) == (5, 3)
    mean = np.mean([client_value(p, 1) for p in range(n)])
    close(result.arrays.to_numpy_ndarrays(), [a.astype(np.float64) + mean for a in INIT])


def test_too_few_survivors_keep_the_previous_model(task_identity, caplog):
    n = 4  # threshold 3 of 4: two dropouts stop the round
    app = masked_app(fail=frozenset({(1, "shares", 0), (1, "shares", 3)}))
    s = strategy(n)
    caplog.set_level("INFO", logger="flwr")
    result = run(MaskGrid(app, n), s, rounds=1)
    h = s.history[0]
    assert h["stopped"].startswith("shares: SA-CLIENTS") and h["summed"] == 0
    assert len(result.arrays) == 0  # Flower's Result: no round produced a model
    # the nodes evaluated the previous (initial) model
    assert result.evaluate_metrics_clientapp[1]["checksum"] == pytest.approx(
        sum(float(a.sum()) for a in INIT))
    assert "TooFewSurvivorsError" in caplog.text


def test_refused_replies_are_dropouts(task_identity, caplog):
    """A reply claiming another node's index, a corrupted one and a duplicate: refused."""
    n = 6

    def tamper(stage, replies):
        by_pid = {grid.nodes[r.metadata.src_node_id]: r for r in replies}
        if stage == "shares":  # node 0 relays node 1's shares as its own
            a, b = by_pid[0], by_pid[1]
            a.content[sf.MASK_RECORD_KEY] = ConfigRecord(dict(b.content[sf.MASK_RECORD_KEY]))
            return [*replies, by_pid[5]]  # and node 5's reply arrives twice
        if stage == "masked":  # one flipped byte in transit
            rec = by_pid[2].content[sf.MASK_RECORD_KEY]
            data = bytearray(rec["data"])
            data[len(data) // 2] ^= 1
            rec["data"] = bytes(data)
        return replies

    grid = MaskGrid(masked_app(), n, tamper=tamper)
    s = strategy(n)
    caplog.set_level("INFO", logger="flwr")
    result = run(grid, s, rounds=1)
    pid = grid.nodes
    h = s.history[0]
    assert [pid[x] for x in h["stages"]["shares"]["refused"]] == [0]
    assert [pid[x] for x in h["stages"]["masked"]["refused"]] == [2]
    assert sorted(pid[x] for x in h["included_nodes"]) == [1, 3, 4, 5]
    close(result.arrays.to_numpy_ndarrays(), weighted_mean(INIT, [1, 3, 4, 5], 1))
    log = caplog.text
    assert "PeerSetError" in log and "CorruptPayloadError" in log and "Ignored a second" in log


def test_mod_errors_are_fixed_codes(task_identity, caplog):
    app = masked_app()
    ctx = Context(run_id=1, node_id=5, node_config={"partition-id": 0, "num-partitions": 2},
                  state=RecordDict(), run_config={})

    def send(content, mtype="train"):
        return app(Message(content, dst_node_id=5, message_type=mtype, group_id="1"), ctx)

    def stage_msg(stage, data=b"x"):
        return RecordDict({sf.MASK_RECORD_KEY: ConfigRecord({"stage": stage, "data": data})})

    plain = RecordDict({"arrays": ArrayRecord(INIT), "config": ConfigRecord({"server-round": 1})})
    reason = secagg.errors.public_reason
    # a plain train message (the server is not MaskedFedAvg): weights are never sent in clear
    r = send(plain)
    assert r.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    assert r.error.reason == f"masked_mod {reason(secagg.ConfigError())}"
    # a later stage with no round in progress, an unknown stage, garbage bytes
    assert send(stage_msg("shares")).error.reason.startswith("masked_mod SA-FORMAT")
    assert send(stage_msg("coffee")).error.reason.startswith("masked_mod SA-FORMAT")
    # an insecure configuration (threshold at most half the holders) is refused before training
    config = MaskingConfig.create(4, 3)
    body = {**config._body(), "t": 2}
    insecure = secagg.wire.seal(secagg.wire.Kind.MASK_CONFIG, body)
    keys = RecordDict({**plain, sf.MASK_RECORD_KEY: ConfigRecord(
        {"stage": "keys", "config": insecure, "index": 0})})
    r = send(keys)
    assert r.error.reason == f"masked_mod {reason(secagg.errors.InsecureThresholdError())}"
    assert "threshold=2" in caplog.text  # the details: in the node's own log only
    # the train function raising: a fixed SA-APP line, never the exception text
    boom = ClientApp(mods=[sf.masked_mod()])

    @boom.train()
    def train(msg, c):
        raise RuntimeError("secret detail")

    good = RecordDict({**plain, sf.MASK_RECORD_KEY: ConfigRecord(
        {"stage": "keys", "config": config.to_bytes(), "index": 0})})
    r = boom(Message(good, dst_node_id=5, message_type="train", group_id="1"), ctx)
    assert r.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "SA-APP" in r.error.reason and "secret detail" not in r.error.reason
    # a good key stage, then the shares stage with a foreign key list: refused, state kept
    r = send(good)
    assert not r.has_error() and set(r.content.keys()) == {"metrics", sf.MASK_RECORD_KEY}
    assert r.content["metrics"]["num-examples"] == 1
    assert sf.MASK_STATE_KEY in ctx.state and sf.MASK_MODEL_KEY in ctx.state
    other = MaskingConfig.create(4, 3)
    foreign = secagg.wire.seal(secagg.wire.Kind.MASK_KEY_LIST,
                               {"round": 0, "cfg": other.fingerprint, "to": 0, "peers": []})
    assert send(stage_msg("shares", foreign)).error.reason.startswith("masked_mod SA-CONTEXT")
    assert sf.MASK_STATE_KEY in ctx.state
    # allow_plain=True passes plain train messages through
    open_app = masked_app(allow_plain=True)
    r = open_app(Message(plain, dst_node_id=5, message_type="train", group_id="1"), ctx)
    assert not r.has_error() and "arrays" in r.content


def test_strategy_options_are_checked():
    for bad in (dict(threshold=1), dict(threshold=0.0), dict(threshold=True),
                dict(neighbors=3), dict(reduce="sum"), dict(stage_timeout=0),
                dict(clip=-1.0)):
        with pytest.raises(secagg.ConfigError):
            sf.MaskedFedAvg(**bad)
    s = sf.MaskedFedAvg(threshold=3)
    with pytest.raises(secagg.errors.InsecureThresholdError):
        s.round_config(1, 6)  # 3 of 6 holders is at most half
    assert s.round_config(1, 4).threshold == 3
    assert sf.MaskedFedAvg(reduce="mean").max_weight == 1


# -- Flower's simulation engine ------------------------------------------------------------


def test_simulation_with_a_dropout(tmp_path, monkeypatch):
    """4 SuperNodes on Ray, 2 rounds; partition 1 fails at the masked stage of round 2."""
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
    n = 4
    app = masked_app(fail=frozenset({(2, "masked", 1)}))
    out: dict = {}
    server = ServerApp()

    class Recording(sf.MaskedFedAvg):
        def aggregate_train(self, server_round, replies):
            arrays, metrics = super().aggregate_train(server_round, replies)
            out.setdefault("aggregates", {})[server_round] = arrays
            return arrays, metrics

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = Recording(clip=CLIP, frac_bits=FRAC, max_weight=100, min_train_nodes=n,
                             min_evaluate_nodes=n, min_available_nodes=n)
        out["strategy"] = strategy
        out["result"] = strategy.start(grid=grid, initial_arrays=ArrayRecord(INIT), num_rounds=2,
                                       timeout=120)

    run_simulation(server_app=server, client_app=app, num_supernodes=n, backend_config={
        "init_args": {"num_cpus": 2, "num_gpus": 0, "include_dashboard": False},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    })
    strategy, result = out["strategy"], out["result"]
    g1 = out["aggregates"][1].to_numpy_ndarrays()
    close(g1, weighted_mean(INIT, [0, 1, 2, 3], 1))
    g2 = out["aggregates"][2].to_numpy_ndarrays()
    close(g2, weighted_mean(g1, [0, 2, 3], 2))  # pid 1 dropped before sending its masked input
    assert [h["summed"] for h in strategy.history] == [4, 3]
    h2 = strategy.history[1]
    assert len(h2["dropped"]["masked"]) == 1 and h2["failures"] == 1
    for rnd, g in ((1, g1), (2, g2)):
        assert result.evaluate_metrics_clientapp[rnd]["checksum"] == pytest.approx(
            sum(float(a.sum()) for a in g), abs=1e-4)
    close(result.arrays.to_numpy_ndarrays(), g2)
