"""A server that deviates, holding the public context and real client payloads only.

Each test plays the attacker of issue 10: it crafts "aggregates" from a victim's
ciphertexts and its own encryptions (padding, scalar multiples, out-of-range
offsets, relabelled counts, random bytes) and sends them where a secret holder
decrypts: the Flower client mod (train and evaluate), the key holder, and
``SecretContext.decrypt`` itself. What it may see back is one of the fixed
public reasons; nothing it sees depends on a decrypted number.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg.errors import PUBLIC_REASONS, SUM_OUT_OF_RANGE, public_reason
from secagg.update import EXTRA_SLOTS, EncryptedUpdate
from secagg.wire import Kind
from tests.helpers import SCHEMES, make_context

TREE = {"w": np.linspace(-0.5, 0.5, 12), "b": np.full(3, 0.25)}
FIXED_REPLIES = {f"secagg_mod {code}: {text}" for code, text in PUBLIC_REASONS.items()}


@pytest.fixture(scope="module", params=SCHEMES)
def sctx(request) -> secagg.SecretContext:
    return make_context(request.param, max_clients=6, max_weight=4, min_clients=2)


# -- the attacker's tools: public material only --------------------------------------


def own_encryption(pub, n_values: int, offsets=None, weight: int = 1, count: int = 1) -> list:
    """The server's own ciphertexts of chosen slots (it holds the public key)."""
    slots = np.zeros(n_values + EXTRA_SLOTS, dtype=np.int64)
    if offsets is not None:
        slots[:n_values] = offsets
    slots[n_values:] = (weight, count)
    return pub.backend.raw_encrypt(slots)


def forge(pub, victim: bytes, extra: list | None = None, *, count: int = 2,
          times: int = 1) -> bytes:
    """An "aggregate": the victim's ciphertexts (added ``times`` times) plus the server's own."""
    upd = EncryptedUpdate.from_bytes(victim, pub)
    cts = list(upd.ciphertexts)
    for _ in range(times - 1):
        cts = pub.backend.raw_add(cts, upd.ciphertexts)
    if extra is not None:
        cts = pub.backend.raw_add(cts, extra)
    return EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.AGGREGATE, count, upd.spec,
                           upd.round_id, cts, pub.backend).to_bytes()


def out_of_range(pub, n: int) -> np.ndarray:
    offsets = np.zeros(n, dtype=np.int64)
    offsets[0] = 3 * pub.codec.contribution_bound
    return offsets


# -- core: errors after decryption name no decrypted quantity ------------------------


@settings(max_examples=15)
@given(data=st.data())
def test_errors_after_decryption_do_not_depend_on_the_decrypted_values(sctx, data):
    pub = sctx.public
    n = 15
    victim = pub.encrypt(TREE, weight=data.draw(st.integers(1, 4))).to_bytes()
    bound = pub.codec.contribution_bound
    offsets = np.array(data.draw(st.lists(st.integers(-4 * bound, 4 * bound), min_size=n,
                                          max_size=n)), dtype=np.int64)
    weight = data.draw(st.integers(-3, 12))
    count = data.draw(st.integers(0, 3))
    header_count = data.draw(st.integers(2, 6))
    crafted = forge(pub, victim, own_encryption(pub, n, offsets, weight, count),
                    count=header_count)
    try:
        sctx.decrypt(crafted)
    except secagg.DecryptionCheckError as exc:
        # the same few fixed texts whatever the offsets, weights and counts were
        assert str(exc) in {SUM_OUT_OF_RANGE, *_count_messages()}
        assert not re.search(r"\d", str(exc))
    except secagg.SecAggError as exc:
        pytest.fail(f"unexpected refusal before decryption: {type(exc).__name__}")


def _count_messages() -> set[str]:
    return {
        "the encrypted count does not match the count in the payload's header: the payload "
        "was relabelled or crafted. It is refused.",
        "the encrypted weight sum is impossible for the payload's count and the context's "
        "max_weight: the aggregate was crafted. It is refused.",
    }


def test_relabelled_count_is_refused_without_numbers(sctx):
    pub = sctx.public
    victim = pub.encrypt(TREE, weight=3).to_bytes()
    with pytest.raises(secagg.CountMismatchError) as info:
        sctx.decrypt(forge(pub, victim, count=2))  # one update claiming to be two
    assert not re.search(r"\d", str(info.value))


def test_scalar_relabelling_is_not_caught_as_documented(sctx):
    """Adding a victim's update to itself k times also multiplies its count slot by k.

    SECURITY.md says so: the encrypted count stops a header relabelled alone,
    not a scalar multiple, and not padding with the server's own encryptions.
    This test pins the limitation so that the docs stay true.
    """
    pub = sctx.public
    victim = pub.encrypt(TREE, weight=2).to_bytes()
    mean = sctx.decrypt(forge(pub, victim, count=2, times=2), reduce="weighted_mean")
    alone = secagg.flatten(TREE)[1]
    got = secagg.flatten(mean)[1]
    assert np.max(np.abs(got - alone)) <= pub.codec.error_bound
    padded = forge(pub, victim, own_encryption(pub, 15))  # victim + the server's zeros
    assert np.max(np.abs(secagg.flatten(sctx.decrypt(padded, reduce="sum"))[1]
                         - alone * 2)) <= 2 * pub.codec.error_bound


# -- core: one client is one update ---------------------------------------------------


def test_a_client_payload_that_is_an_aggregate_is_never_summed(sctx):
    pub = sctx.public
    sub = secagg.Aggregator(pub)
    for _ in range(3):
        sub.add(pub.encrypt(TREE))
    claimed = sub.result().to_bytes()  # one sender claiming to be three clients
    agg = secagg.Aggregator(pub, accept_aggregates=False)
    with pytest.raises(secagg.FormatError, match="aggregate"):
        agg.add(claimed)
    keyed = secagg.Aggregator(pub)
    with pytest.raises(secagg.FormatError, match="aggregate"):
        keyed.add(claimed, client_id="node-7")
    assert len(agg) == len(keyed) == 0
    # trusted hierarchical sums stay possible, explicitly
    keyed.merge(claimed)
    keyed.add(pub.encrypt(TREE), client_id="node-8")
    assert len(keyed) == 4


# -- DP and insecure contexts ---------------------------------------------------------


def test_dp_with_weights_is_refused_and_epsilon_follows_the_context():
    from secagg.dp import DistributedDP

    dp = DistributedDP(l2_clip=0.5, noise_multiplier=1.0, min_clients=3)
    with pytest.raises(secagg.ConfigError, match="max_weight"):
        secagg.generate("ckks", max_clients=10, min_clients=3, max_weight=100, dp=dp)
    ctx = secagg.generate("ckks", max_clients=10, min_clients=3, max_weight=1, dp=dp)
    pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes())
    eps = pub.epsilon(5, 1e-5, dim=100)
    assert eps == dp.epsilon(5, 1e-5, frac_bits=16, dim=100, reporting_clients=3)
    assert pub.epsilon(5, 1e-5, dim=100, reporting_clients=6) < eps  # more noise, less eps
    with pytest.raises(secagg.ConfigError, match="no distributed DP"):
        make_context("ckks").public.epsilon(1, 1e-5, dim=10)


def test_insecure_contexts_need_an_explicit_opt_in():
    ctx = make_context("paillier")
    for load, data in ((secagg.PublicContext.from_bytes, ctx.public.to_bytes()),
                       (secagg.SecretContext.from_bytes, ctx.to_bytes())):
        with pytest.raises(secagg.InsecureContextError):
            load(data)
        assert load(data, allow_insecure=True).fingerprint == ctx.fingerprint


# -- Flower: the client mod and the key holder ---------------------------------------

flwr = pytest.importorskip("flwr")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from flwr.app import ArrayRecord, ConfigRecord  # noqa: E402

from secagg.integrations import flower as sf  # noqa: E402
from tests.integrations.flower_helpers import (  # noqa: E402
    INIT,
    NODES,
    FakeGrid,
    deliver,
    flower_context,
    make_app,
    train_round,
)


@pytest.fixture(scope="module", params=SCHEMES)
def fctx(request) -> secagg.SecretContext:
    return flower_context(request.param)


class Server:
    """A deviating server: an honest first round, then crafted aggregates to every node."""

    def __init__(self, ctx, **mod_options):
        self.ctx = ctx
        self.pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes(), allow_insecure=True)
        self.strategy = sf.SecAggFedAvg(ctx.public.to_bytes(), min_train_nodes=len(NODES),
                                        min_available_nodes=len(NODES), allow_insecure=True)
        self.app = make_app(ctx.to_bytes(), **mod_options)
        replies, _ = train_round(self.strategy, self.app, 1, ArrayRecord(INIT))
        self.victim = sf._payload(replies[0])  # a real client payload, as the server saw it
        self.n = EncryptedUpdate.from_bytes(self.victim, self.pub).spec.num_values

    def send(self, data: bytes, rnd: int, mtype: str = "train") -> list[str | None]:
        arrays = sf.aggregate_to_arrays(data)
        grid = FakeGrid(NODES)
        if mtype == "train":
            msgs = self.strategy.configure_train(rnd, arrays, ConfigRecord(), grid)
        else:
            msgs = self.strategy.configure_evaluate(rnd, arrays, ConfigRecord(), grid)
        return [r.error.reason if r.has_error() else None for r in deliver(self.app, msgs)]

    def crafted(self, marker: int = 0, **kw) -> bytes:
        """Victim + the server's out-of-range offsets (``marker`` makes a fresh ciphertext)."""
        offsets = out_of_range(self.pub, self.n)
        offsets[1] = marker
        return forge(self.pub, self.victim, own_encryption(self.pub, self.n, offsets), **kw)


def test_crafted_aggregates_get_fixed_replies_and_lock_the_round(fctx, task_identity,
                                                                count_decryptions):
    server = Server(fctx)
    refused = {f"secagg_mod {public_reason(secagg.SumOverflowError())}"}
    locked = {f"secagg_mod {public_reason(secagg.errors.AggregateRefusedError('SA-LOCKED'))}"}
    sent = {}
    for rnd, mtype in ((2, "train"), (3, "evaluate")):
        before = len(count_decryptions)
        sent[rnd] = server.crafted(rnd)
        assert set(server.send(sent[rnd], rnd, mtype)) == refused
        assert len(count_decryptions) - before == len(NODES)  # each node decrypted once
        # a second crafted query in the same round: no node decrypts anything
        before = len(count_decryptions)
        assert set(server.send(server.crafted(100 + rnd), rnd, mtype)) == locked
        assert len(count_decryptions) == before
    # the first crafted aggregate again, in a new round: refused without a decryption
    before = len(count_decryptions)
    assert set(server.send(sent[2], 4)) == refused
    assert len(count_decryptions) == before


def test_after_max_refusals_a_node_decrypts_nothing(fctx, task_identity, count_decryptions):
    server = Server(fctx, max_refusals=2)
    for rnd in (2, 3):  # two refusals, in two rounds
        assert all(r and "SA-REFUSED" in r for r in server.send(server.crafted(rnd), rnd))
    # now even an honest aggregate is refused, and nothing is decrypted
    honest = secagg.Aggregator(server.pub, round_id=4)
    for node in range(2):
        honest.add(server.pub.encrypt(INIT, round_id=4), client_id=str(node))
    before = len(count_decryptions)
    assert all(r and "SA-LOCKED" in r for r in server.send(honest.result().to_bytes(), 5))
    assert len(count_decryptions) == before


@settings(max_examples=10)
@given(junk=st.binary(min_size=0, max_size=300), mode=st.sampled_from(["train", "evaluate"]))
def test_every_reply_is_a_fixed_code(fctx, task_identity, junk, mode):
    """Random bytes, truncations and foreign payloads: each reply is one fixed line."""
    server = _server_for(fctx)
    pick = junk[:1]
    if pick == b"\x00":
        data = server.victim[: len(junk)]  # a truncated real payload
    elif pick == b"\x01":
        data = server.victim  # an update-kind payload sent as the global model
    else:
        data = junk
    replies = server.send(data, 7, mode)
    assert len(replies) == len(NODES)
    for reply in replies:  # never accepted (None), always refused with one fixed line
        assert reply in FIXED_REPLIES


_SERVERS: dict[bytes, Server] = {}


def _server_for(ctx) -> Server:
    if ctx.fingerprint not in _SERVERS:
        _SERVERS[ctx.fingerprint] = Server(ctx, max_refusals=None)
    return _SERVERS[ctx.fingerprint]


def test_a_node_claiming_to_be_several_clients_is_counted_once(fctx, task_identity):
    server = Server(fctx)
    replies, _ = train_round(server.strategy, server.app, 2, ArrayRecord(INIT))
    sub = secagg.Aggregator(server.pub, round_id=2)
    for node in range(3):
        sub.add(server.pub.encrypt(INIT, round_id=2), client_id=str(node))
    replies[0].content["secagg"] = sf.payload_to_arrays(sub.result().to_bytes())  # a Sybil reply
    server.strategy.aggregate_train(2, replies)
    h = server.strategy.history[-1]
    assert h["summed"] == len(NODES) - 1 and h["failures"] == 1


def test_key_holder_answers_and_server_logs_hold_fixed_texts(fctx, task_identity, caplog):
    holder = sf.KeyHolder(fctx.to_bytes(), allow_insecure=True, allow_unverified_lattice=True)
    server = Server(fctx)
    with pytest.raises(secagg.errors.AggregateRefusedError) as info:
        holder(server.crafted(1))
    assert str(info.value) == public_reason(secagg.SumOverflowError())
    with pytest.raises(secagg.errors.AggregateRefusedError, match="SA-LOCKED"):
        holder(server.crafted(2))  # same round (the victim's): nothing more is decrypted
    # the strategy logs the fixed text only
    strategy = sf.SecAggFedAvg(fctx.public.to_bytes(), key_holder=holder, allow_insecure=True,
                               min_train_nodes=len(NODES), min_available_nodes=len(NODES))
    caplog.set_level(logging.INFO, logger="flwr")
    _, (arrays, _) = train_round(strategy, make_app(fctx.public.to_bytes()), 2,
                                 ArrayRecord(INIT))
    assert arrays is not None  # an honest round still decrypts
    flwr_lines = [r.getMessage() for r in caplog.records if r.name == "flwr"]
    assert not any("Traceback" in line for line in flwr_lines)


def test_a_lattice_key_holder_must_be_told_it_trusts_the_server(fctx):
    """A key holder decrypting server-assembled CKKS/BFV ciphertexts would leak its key."""
    if fctx.public.backend.oracle_safe_key:
        holder = sf.KeyHolder(fctx, allow_insecure=True)  # Paillier: no opt-in needed
    else:
        with pytest.raises(secagg.ConfigError, match="secret key"):
            sf.KeyHolder(fctx.to_bytes(), allow_insecure=True)
        holder = sf.KeyHolder(fctx, allow_unverified_lattice=True)
    # the holder it made works: it decrypts an honest aggregate to the weighted mean
    pub = fctx.public
    agg = secagg.Aggregator(pub)
    for value, weight in ((0.25, 1), (1.0, 3)):
        agg.add(pub.encrypt({"w": np.full(3, value)}, weight=weight))
    mean = holder(agg.result().to_bytes())
    np.testing.assert_allclose(mean["w"], 0.8125, atol=pub.codec.error_bound)


def test_metrics_can_be_kept_on_the_node(fctx, task_identity):
    strategy = sf.SecAggFedAvg(fctx.public.to_bytes(), min_train_nodes=len(NODES),
                               min_available_nodes=len(NODES), allow_insecure=True)
    app = make_app(fctx.to_bytes(), send_metrics=False)
    replies, (arrays, _) = train_round(strategy, app, 1, ArrayRecord(INIT))
    assert arrays is not None
    for reply in replies:
        assert {k: dict(v) for k, v in reply.content.metric_records.items()} == {
            "metrics": {"num-examples": 1}}
    evaluated = deliver(app, strategy.configure_evaluate(1, arrays, ConfigRecord(),
                                                         FakeGrid(NODES)))
    for reply in evaluated:  # the checksum of the decrypted model stays on the node
        assert dict(reply.content["metrics"]) == {"num-examples": 1}


def test_app_exceptions_reach_the_server_as_a_fixed_text(fctx, task_identity, caplog):
    strategy = sf.SecAggFedAvg(fctx.public.to_bytes(), min_train_nodes=len(NODES),
                               min_available_nodes=len(NODES), allow_insecure=True)
    app = make_app(fctx.to_bytes(), fail=frozenset({(1, p) for p in range(len(NODES))}))
    replies = deliver(app, strategy.configure_train(1, ArrayRecord(INIT), ConfigRecord(),
                                                    FakeGrid(NODES)))
    assert {r.error.reason for r in replies} == {
        f"secagg_mod {public_reason(secagg.errors.AppFailedError())}"}
    assert "dropout of partition" in caplog.text  # the details, in the node's own log


def test_the_refusal_cap_survives_new_runs_with_a_guard_file(fctx, task_identity, tmp_path,
                                                             count_decryptions):
    path = str(tmp_path / "guard")
    server = Server(fctx, max_refusals=1, guard_path=path)
    assert all(r and "SA-REFUSED" in r for r in server.send(server.crafted(1), 2))
    # a new run (fresh Context.state) and a new mod instance: still exhausted
    again = Server(fctx, max_refusals=1, guard_path=path)
    before = len(count_decryptions)
    assert all(r and "SA-LOCKED" in r for r in again.send(again.crafted(2), 2))
    assert len(count_decryptions) == before
