"""secagg.flower's threshold option (ThresholdFedAvg + threshold_mod): t-of-n threshold Paillier
held by the silos, in process (a fake grid routing messages to a ClientApp), both combiners,
and a server that deviates."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
pytest.importorskip("flwr")

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp

import secagg
from secagg import threshold
from secagg.errors import PUBLIC_REASONS, RelayAuthenticationError
from secagg.integrations import flower as sf
from secagg.threshold.relay import open_partial, route
from secagg.wire import Kind, open_payload, peek_kind, seal
from tests.integrations.flower_helpers import (
    INIT,
    AppGrid,
    add_train_evaluate,
    weighted_mean,
)
from tests.integrations.test_flower import reachable

pytestmark = pytest.mark.usefixtures("task_identity")  # Flower messages need a run id

N, T = 5, 3
CODEC = dict(key_bits=512, insecure=True, max_clients=8, clip=4.0, frac_bits=16, max_weight=100,
             min_clients=2)


@pytest.fixture(scope="module")
def feds() -> dict[str, tuple[threshold.Federation, dict[str, threshold.SiloKit]]]:
    return {c: threshold.deal_silos(N, threshold=T, combine=c, **CODEC)
            for c in ("server", "silos")}


def bound(fed: threshold.Federation) -> float:
    return fed.public.codec.error_bound + 1e-6  # the codec's bound plus float32 rounding


def close(got: list[np.ndarray], want: list[np.ndarray], fed: threshold.Federation) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=0, atol=bound(fed))


# -- silos running threshold_mod, and a grid that routes (and can tamper with) messages ------


def stage_of(msg: Message) -> str | None:
    if not msg.has_content():
        return None
    record = msg.content.config_records.get(sf.THRESHOLD_RECORD_KEY)
    return None if record is None else str(record["stage"])


def silo_app(kits: dict[str, threshold.SiloKit]) -> ClientApp:
    """Silo ``pid`` holds kit ``silo-{pid+1}``; train adds client_value, weighted by num_examples."""
    blobs = {int(s.split("-")[1]) - 1: k.to_bytes() for s, k in kits.items()}
    return add_train_evaluate(ClientApp(mods=[sf.threshold_mod(
        lambda c: blobs[int(c.node_config["partition-id"])], allow_insecure=True)]))


class Grid(AppGrid):
    """Routes messages to the ClientApp in process; each node keeps its Context.

    ``outgoing(stage, messages)`` and ``incoming(stage, replies)`` may rewrite what the
    server sends and receives (a deviating server, or a lossy network).
    """

    def __init__(self, app: ClientApp, outgoing=None, incoming=None):
        super().__init__(app, {3000 + 11 * pid: pid for pid in range(N)})
        self.outgoing, self.incoming = outgoing, incoming
        self.log: list[tuple[str | None, list[Message]]] = []

    def deliver(self, messages) -> list[Message]:
        return [self.reply(m) for m in messages]

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        stage = stage_of(messages[0]) if messages else None
        if self.outgoing is not None:
            messages = self.outgoing(stage, messages)
        replies = self.deliver(messages)
        if self.incoming is not None:
            replies = self.incoming(stage, replies)
        self.log.append((stage, replies))
        return replies

    def state(self, pid: int) -> RecordDict:
        return self.contexts[3000 + 11 * pid].state


def strategy_for(fed: threshold.Federation, **kw):
    for key in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
        kw.setdefault(key, N)
    return sf.ThresholdFedAvg(fed.to_bytes(), allow_insecure=True, **kw)


def train_round(strategy, grid: Grid, rnd: int, arrays: ArrayRecord):
    replies = grid.deliver(strategy.configure_train(rnd, arrays, ConfigRecord(), grid))
    return replies, strategy.aggregate_train(rnd, replies)


def silo_model(grid: Grid, pid: int) -> list[np.ndarray]:
    return grid.state(pid).array_records[sf.THRESHOLD_MODEL_KEY].to_numpy_ndarrays()


def error_codes(replies: list[Message]) -> set[str]:
    """The SA- code of each error reply (the fixed public line only)."""
    codes = set()
    for r in replies:
        assert r.has_error()
        prefix, _, rest = r.error.reason.partition(" ")
        code, _, text = rest.partition(": ")
        assert prefix == "threshold_mod" and PUBLIC_REASONS[code] == text  # nothing else leaves
        codes.add(code)
    return codes


ALL = list(range(N))


# -- honest rounds --------------------------------------------------------------------------


def test_server_combines_two_rounds_equal_fedavg(feds):
    fed, kits = feds["server"]
    grid = Grid(silo_app(kits))
    strategy = strategy_for(fed)
    replies, (arrays, metrics) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    for r in replies:  # a signed envelope replaces the weights; no count in clear
        assert not r.has_error() and not r.content.array_records
        assert r.content["metrics"]["num-examples"] == 1
        assert peek_kind(r.content[sf.THRESHOLD_RECORD_KEY]["envelope"]) == Kind.SIGNED_UPDATE
    assert sf.aggregate_from_arrays(arrays) is None  # the server combined: plaintext mean
    g1 = arrays.to_numpy_ndarrays()
    close(g1, weighted_mean(INIT, ALL, 1), fed)
    h = strategy.history[-1]
    assert h["summed"] == N and h["used"] == [1, 2, 3] and h["rejected"] == []
    assert h["stages"]["partial"]["ok"] == [1, 2, 3, 4, 5] and h["stopped"] is None
    assert metrics["pid"] == pytest.approx(2.0)

    evals = grid.deliver(strategy.configure_evaluate(1, arrays, ConfigRecord(), grid))
    assert [e.content["metrics"]["checksum"] for e in evals] == [
        pytest.approx(sum(float(a.sum()) for a in g1), abs=1e-5)] * N
    strategy.aggregate_evaluate(1, evals)

    _, (arrays2, _) = train_round(strategy, grid, 2, arrays)
    close(arrays2.to_numpy_ndarrays(), weighted_mean(g1, ALL, 2), fed)


def test_silos_combine_and_the_server_never_sees_a_partial(feds):
    fed, kits = feds["silos"]
    grid = Grid(silo_app(kits))
    strategy = strategy_for(fed)
    _, (arrays, _) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    assert sf.aggregate_from_arrays(arrays) is not None  # the server holds the ciphertext only
    want = weighted_mean(INIT, ALL, 1)
    for pid in ALL:
        close(silo_model(grid, pid), want, fed)
    h = strategy.history[-1]
    assert h["combined_by"] == [1, 2, 3, 4, 5] and h["rejected"] == [] and h["stopped"] is None
    # what reached the server in the partial stage: ciphertexts addressed to other silos
    (stage, partial_replies), _ = grid.log
    assert stage == "partial"
    for r in partial_replies:
        record = r.content[sf.THRESHOLD_RECORD_KEY]
        assert "partial" not in record and len(record["relay"]) == N - 1
        assert {peek_kind(b) for b in record["relay"]} == {Kind.THRESHOLD_RELAY}
        assert {route(b)[0] for b in record["relay"]} == {record["holder"]}

    # evaluation and the next round run on the model each silo combined itself
    g1 = silo_model(grid, 0)
    evals = grid.deliver(strategy.configure_evaluate(1, arrays, ConfigRecord(), grid))
    assert [e.content["metrics"]["checksum"] for e in evals] == [
        pytest.approx(sum(float(a.sum()) for a in g1), abs=1e-5)] * N
    _, (arrays2, _) = train_round(strategy, grid, 2, arrays)
    assert sf.aggregate_from_arrays(arrays2) is not None
    for pid in ALL:
        close(silo_model(grid, pid), weighted_mean(g1, ALL, 2), fed)

    # a rollback to round 1's aggregate: no silo holds that model any more
    msgs = strategy.configure_train(3, arrays, ConfigRecord(), grid)
    assert error_codes(grid.deliver(msgs)) == {"SA-ROUND"}


def test_the_server_holds_public_material_only(feds):
    fed, kits = feds["silos"]
    grid = Grid(silo_app(kits))
    strategy = strategy_for(fed)
    train_round(strategy, grid, 1, ArrayRecord(INIT))
    shares = {int(k.holder._share) for k in kits.values()}
    found = []
    for obj in reachable(strategy):
        if isinstance(obj, (threshold.ShareHolder, threshold.SiloKit, Ed25519PrivateKey,
                            X25519PrivateKey, secagg.SecretContext)):
            found.append(type(obj).__name__)
        elif type(obj).__name__ == "mpz" and int(obj) in shares:
            found.append("a share")
    assert found == []
    # and it refuses a silo's kit in place of the federation
    with pytest.raises(secagg.ConfigError):
        sf.ThresholdFedAvg(kits["silo-1"], allow_insecure=True)
    with pytest.raises(secagg.errors.InsecureContextError):
        sf.ThresholdFedAvg(fed.to_bytes())  # an insecure test key, not allowed


# -- a server that deviates -------------------------------------------------------------------


def signed_round(fed, kits, grid: Grid, strategy, rnd: int) -> list[bytes]:
    """The signed envelopes of one honest train exchange (no decryption requested)."""
    replies = grid.deliver(strategy.configure_train(rnd, ArrayRecord(INIT), ConfigRecord(), grid))
    return [r.content[sf.THRESHOLD_RECORD_KEY]["envelope"] for r in replies]


def ask_partial(grid: Grid, fed, pid: int, rnd: int, aggregate: bytes, updates: list[bytes],
                combine: str | None = None) -> Message:
    record = ConfigRecord({"stage": "partial", "round": rnd, "aggregate": aggregate,
                           "fingerprint": fed.public.fingerprint,
                           "combine": combine or fed.combine, "updates": updates})
    msg = Message(RecordDict({sf.THRESHOLD_RECORD_KEY: record}),
                  dst_node_id=3000 + 11 * pid, message_type="train")
    return grid.deliver([msg])[0]


def test_share_holders_refuse_what_they_cannot_verify(feds):
    fed, kits = feds["server"]
    grid = Grid(silo_app(kits))
    strategy = strategy_for(fed)
    envs = signed_round(fed, kits, grid, strategy, 4)
    pub = fed.public
    honest = threshold.sum_signed(pub, envs, round_id=4).to_bytes()
    subset = threshold.sum_signed(pub, envs[:2], round_id=4).to_bytes()

    # an aggregate that is not the sum of the updates it came with (here: a subset of them)
    assert error_codes([ask_partial(grid, fed, 0, 4, subset, envs)]) == {"SA-FORMAT"}
    # ... which locks that round on that silo, even for the honest request
    assert error_codes([ask_partial(grid, fed, 0, 4, honest, envs)]) == {"SA-LOCKED"}

    # another silo decrypts the honest sum, then refuses a second sum of the same round
    ok = ask_partial(grid, fed, 1, 4, honest, envs)
    assert peek_kind(ok.content[sf.THRESHOLD_RECORD_KEY]["partial"]) == Kind.PARTIAL_DECRYPTION
    # the same sum again: the same answer, nothing new
    again = ask_partial(grid, fed, 1, 4, honest, envs)
    assert again.content[sf.THRESHOLD_RECORD_KEY]["holder"] == 2 and not again.has_error()
    assert error_codes([ask_partial(grid, fed, 1, 4, subset, envs[:2])]) == {"SA-REPLAY"}

    # round 4's signed updates replayed as round 5's
    assert error_codes([ask_partial(grid, fed, 2, 5, honest, envs)]) == {"SA-ROUND"}
    # one victim's update padded with the server's own encryptions (count >= min_clients)
    agg = secagg.Aggregator(pub, round_id=4)
    agg.add(open_payload(envs[0], Kind.SIGNED_UPDATE)[1].blob("payload"))
    agg.add(pub.encrypt({"0": np.zeros(3, np.float32), "1": np.zeros((2, 2), np.float32)},
                        round_id=4))
    padded = agg.result().to_bytes()
    assert error_codes([ask_partial(grid, fed, 2, 4, padded, envs[:1])]) == {"SA-CLIENTS"}
    # no signed updates at all (an unverified request)
    assert error_codes([ask_partial(grid, fed, 3, 4, honest, [])]) == {"SA-FORMAT"}
    # a silos-combine silo never sends its partial in clear, whatever the server says
    sfed, skits = feds["silos"]
    sgrid = Grid(silo_app(skits))
    senvs = signed_round(sfed, skits, sgrid, strategy_for(sfed), 4)
    stotal = threshold.sum_signed(sfed.public, senvs, round_id=4).to_bytes()
    reply = ask_partial(sgrid, sfed, 0, 4, stotal, senvs, combine="server")
    assert error_codes([reply]) == {"SA-CONTEXT"}


def test_dropped_partials_keep_the_previous_model(feds):
    fed, kits = feds["server"]

    def keep_two(stage, replies):
        return replies[:T - 1] if stage == "partial" else replies

    grid = Grid(silo_app(kits), incoming=keep_two)
    strategy = strategy_for(fed)
    _, (arrays, _) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    assert arrays is None  # FedAvg.start keeps the previous global model
    h = strategy.history[-1]
    assert "NotEnoughPartialsError" in h["stopped"] and "got 2 valid" in h["stopped"]


def test_a_wrong_partial_is_named_and_the_others_decrypt(feds):
    fed, kits = feds["server"]

    def corrupt_holder_2(stage, replies):
        if stage != "partial":
            return replies
        out = []
        for r in replies:
            record = r.content[sf.THRESHOLD_RECORD_KEY]
            if record["holder"] == 2:
                _, body = open_payload(record["partial"], Kind.PARTIAL_DECRYPTION)
                fields = dict(body.raw())
                fields["partials"] = list(reversed(fields["partials"]))  # well-formed, wrong
                record = ConfigRecord({**dict(record),
                                       "partial": seal(Kind.PARTIAL_DECRYPTION, fields)})
                r = Message(RecordDict({sf.THRESHOLD_RECORD_KEY: record}), reply_to=Message(
                    RecordDict(), dst_node_id=r.metadata.src_node_id, message_type="train"))
            out.append(r)
        return out

    grid = Grid(silo_app(kits), incoming=corrupt_holder_2)
    strategy = strategy_for(fed)
    _, (arrays, _) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    close(arrays.to_numpy_ndarrays(), weighted_mean(INIT, ALL, 1), fed)
    h = strategy.history[-1]
    assert h["used"] == [1, 3, 4] and [holder for holder, _ in h["rejected"]] == [2]


def relay_of(record: ConfigRecord) -> list[bytes]:
    return list(record.get("relay", []))


def reseal(blob: bytes, **changes) -> bytes:
    _, body = open_payload(blob, Kind.THRESHOLD_RELAY)
    return seal(Kind.THRESHOLD_RELAY, {**body.raw(), **changes})


def with_relay(msg: Message, relay: list[bytes]) -> Message:
    record = dict(msg.content[sf.THRESHOLD_RECORD_KEY])
    record["relay"] = relay
    return Message(RecordDict({sf.THRESHOLD_RECORD_KEY: ConfigRecord(record)}),
                   dst_node_id=msg.metadata.dst_node_id, message_type="train",
                   group_id=msg.metadata.group_id)


def test_a_tampered_relayed_partial_is_rejected_by_aes_gcm_and_named(feds):
    fed, kits = feds["silos"]

    def tamper(stage, messages):
        if stage != "combine":
            return messages
        out = []
        for m in messages:
            relay = relay_of(m.content[sf.THRESHOLD_RECORD_KEY])
            for i, blob in enumerate(relay):
                if route(blob)[0] == 1:  # what holder 1 sent: one bit of the ciphertext flipped
                    ct = bytearray(open_payload(blob, Kind.THRESHOLD_RELAY)[1].blob("ciphertext"))
                    ct[len(ct) // 2] ^= 1
                    relay[i] = reseal(blob, ciphertext=bytes(ct))
            out.append(with_relay(m, relay))
        return out

    grid = Grid(silo_app(kits), outgoing=tamper)
    strategy = strategy_for(fed)
    _, (arrays, _) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    assert sf.aggregate_from_arrays(arrays) is not None  # the round went ahead
    h = strategy.history[-1]
    # holders 2..5 each set holder 1's partial aside and still combined with 3 others
    assert h["combined_by"] == [1, 2, 3, 4, 5] and [x for x, _ in h["rejected"]] == [1]
    for pid in ALL:
        close(silo_model(grid, pid), weighted_mean(INIT, ALL, 1), fed)


def test_replayed_misdirected_or_dropped_relays_combine_nothing(feds):
    fed, kits = feds["silos"]
    kept: dict[str, list[Message]] = {}

    def keep(stage, messages):
        kept.setdefault(stage, messages)
        return messages

    grid = Grid(silo_app(kits), outgoing=keep)
    strategy = strategy_for(fed)
    _, (arrays1, _) = train_round(strategy, grid, 1, ArrayRecord(INIT))
    g1 = silo_model(grid, 0)
    old = {m.metadata.dst_node_id: relay_of(m.content[sf.THRESHOLD_RECORD_KEY])
           for m in kept["combine"]}

    # round 2: the server drops every relayed partial but one (t - 1 = 2 needed) and
    # replays round 1's ciphertexts and a misdirected one in their place
    def deviate(stage, messages):
        if stage != "combine":
            return messages
        nodes = [m.metadata.dst_node_id for m in messages]
        out = []
        for k, m in enumerate(messages):
            relay = relay_of(m.content[sf.THRESHOLD_RECORD_KEY])
            other = relay_of(messages[(k + 1) % len(messages)].content[sf.THRESHOLD_RECORD_KEY])
            out.append(with_relay(m, relay[:1] + old[nodes[k]] + other[:1]))
        return out

    grid.outgoing = deviate
    _, (arrays2, _) = train_round(strategy, grid, 2, arrays1)
    assert arrays2 is None  # no silo combined: the previous model stays
    h = strategy.history[-1]
    assert h["combined_by"] == [] and "NotEnoughPartialsError" in h["stopped"]
    assert error_codes(grid.log[-1][1]) == {"SA-INTERNAL"}
    for pid in ALL:  # every silo keeps round 1's model, which the server still sends
        close(silo_model(grid, pid), [g.astype(np.float64) for g in g1], fed)
    msgs = strategy.configure_train(3, arrays1, ConfigRecord(), grid)
    assert not any(r.has_error() for r in grid.deliver(msgs))


def test_relay_binds_round_aggregate_sender_and_recipient(feds):
    fed, kits = feds["silos"]
    a, b, c = kits["silo-1"], kits["silo-2"], kits["silo-3"]
    agg = bytes(range(32))
    blob = next(x for x in a.seal_partials(b"partial", round_id=7, aggregate=agg)
                if route(x) == (1, 2))
    opened, rejected = b.open_partials([blob, blob], round_id=7, aggregate=agg)
    assert opened == {1: b"partial"} and [h for h, _ in rejected] == [1]  # a duplicate
    for kit, rnd, aid in ((b, 8, agg), (b, 7, bytes(32)), (c, 7, agg)):
        opened, rejected = kit.open_partials([blob], round_id=rnd, aggregate=aid)
        assert opened == {} and [h for h, _ in rejected] == [1]
    # relabelled with another sender: another key and other associated data
    opened, rejected = b.open_partials([reseal(blob, **{"from": 3})], round_id=7, aggregate=agg)
    assert opened == {} and [h for h, _ in rejected] == [3]
    with pytest.raises(RelayAuthenticationError) as info:
        open_partial(blob, recipient=2, recipient_key=X25519PrivateKey.generate(),
                     sender_publics=fed.exchange_keys, keyset=fed.verification.keyset,
                     fingerprint=fed.public.fingerprint, round_id=7, aggregate=agg)
    assert info.value.holder == 1


def test_kits_and_federations_round_trip_and_validate(feds):
    fed, kits = feds["silos"]
    kit = kits["silo-4"]
    sealed = kit.to_sealed_bytes("pw", scrypt_n=2**10)
    back = threshold.SiloKit.from_bytes(sealed, passphrase="pw", allow_insecure=True)
    assert (back.silo_id, back.index, back.combine) == ("silo-4", 4, "silos")
    assert "pw" not in repr(back) and str(int(kit.holder._share)) not in repr(back)
    with pytest.raises(secagg.SecAggError):
        threshold.SiloKit.from_bytes(sealed, passphrase="wrong", allow_insecure=True)
    with pytest.raises(secagg.FormatError):
        threshold.SiloKit.from_bytes(sealed, allow_insecure=True)  # sealed: needs the passphrase
    with pytest.raises(secagg.FormatError):  # an insecure key, not allowed
        threshold.Federation.from_bytes(fed.to_bytes())
    assert threshold.Federation.from_bytes(fed.to_bytes(), allow_insecure=True).digest == fed.digest
    # a kit whose share is another silo's
    with pytest.raises(secagg.ConfigError):
        threshold.SiloKit(fed, kits["silo-1"].holder, "silo-4", Ed25519PrivateKey.generate(),
                          X25519PrivateKey.generate())
    with pytest.raises(secagg.ConfigError):
        threshold.deal_silos(["a", "a"], threshold=2, **CODEC)
    with pytest.raises(secagg.ConfigError):
        threshold.deal_silos(3, threshold=2, combine="nobody", **CODEC)


def test_cli_deal_writes_sealed_kits_and_the_federation(tmp_path, capsys):
    from secagg.cli import main

    pw = tmp_path / "pw.txt"
    pw.write_text("a passphrase\n")
    pw.chmod(0o600)
    argv = ["deal", "--silos", "a,b,c", "--threshold", "2", "--combine", "server",
            "--out-dir", str(tmp_path / "kits"), "--key-bits", "512", "--insecure",
            "--max-clients", "6", "--passphrase-file", str(pw)]
    assert main(argv) == 0
    kits = tmp_path / "kits"
    assert sorted(p.name for p in kits.iterdir()) == ["a.kit", "b.kit", "c.kit", "federation.pub"]
    assert (kits / "b.kit").stat().st_mode & 0o777 == 0o600
    fed = threshold.Federation.from_bytes((kits / "federation.pub").read_bytes(),
                                          allow_insecure=True)
    kit = threshold.SiloKit.load(kits / "b.kit", passphrase="a passphrase", allow_insecure=True)
    assert (kit.index, kit.combine, kit.federation.digest) == (2, "server", fed.digest)
    assert "a passphrase" not in capsys.readouterr().out
    assert main(argv) == 1  # the kits exist: nothing is overwritten without --force
    assert main([*argv[:2], "a,b/../x", *argv[3:], "--force"]) == 1  # ids name files
