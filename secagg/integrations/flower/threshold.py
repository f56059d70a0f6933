"""Threshold FedAvg on Flower: no single key holder; at least ``t`` silos partially decrypt each round.

Cross-silo, every silo is a client and a share holder of a t-of-n threshold
Paillier key (:mod:`secagg.threshold`; Damgård–Jurik PKC 2001, Fouque–Poupard–
Stern FC 2000). The ceremony, once::

    from secagg.threshold import deal_silos

    federation, kits = deal_silos(["a", "b", "c", "d", "e"], threshold=3, combine="silos")
    # federation.to_bytes() -> the server; kits["a"].save(path, passphrase=...) -> silo "a" only

Server (public material only: the public context, the verification keys, the
silos' public signing and exchange keys)::

    from secagg.flower import ThresholdFedAvg

    strategy = ThresholdFedAvg(federation_bytes, fraction_train=1.0, min_train_nodes=5)
    result = strategy.start(grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

Silos (an ordinary ``ClientApp``; one mod added; train/evaluate functions unchanged)::

    from secagg.flower import threshold_mod

    app = ClientApp(mods=[threshold_mod(lambda c: SiloKit.load(c.node_config["kit"],
                                                                 passphrase=...))])

One round (all exchanges are ``train`` messages; the mod tells them apart by
the ``"stage"`` entry of ConfigRecord :data:`THRESHOLD_RECORD_KEY`):

1. ``train``: the global model (plaintext in round 1 and when the server
   combines; otherwise the previous round's *encrypted* aggregate, which each
   silo replaces by the model it combined itself). The silo trains, encrypts its
   full weights (``weight = num-examples``, ``round_id = server-round``) and
   signs them with its Ed25519 key for that round (``"update"``).
2. The server checks each signature against the federation's directory and
   sums the updates with a :class:`secagg.Aggregator` (a bad one is a failure
   of that node only).
3. ``"partial"``: the server sends every connected silo the aggregate and, in
   verified mode (the default), every signed update of the round. Each silo runs
   its :class:`~secagg.threshold.ShareHolder`'s checks (fingerprint, round,
   ``count >= min_clients``, the sum recomputed from the signed updates of
   registered silos, one sum per round, the decryption guard) and answers with
   its partial decryption (combine ``"server"``) or with that partial encrypted
   to each other silo (combine ``"silos"``; X25519 + HKDF + AES-GCM with the keys
   registered at the ceremony, :mod:`secagg.threshold.relay`), or with a
   fixed-code refusal.
4. Combine ``"server"``: the server verifies every partial's proof, names the
   holders whose partials fail, combines any ``t`` valid ones and broadcasts the
   plaintext mean next round. Combine ``"silos"``: ``"combine"``: the server
   relays each silo the ciphertexts addressed to it; each silo authenticates
   them, verifies their proofs, combines with its own partial and keeps the
   mean in its ``Context.state``; the server's global model is the encrypted
   aggregate.

**Who learns the mean.** Combine ``"server"``: the server and every silo (as
in key-holder mode). Combine ``"silos"``: the silos only; the server holds
ciphertexts (updates, aggregates, relayed partials) and public material.
In both modes nobody learns one silo's update unless ``t`` silos collude
(they hold the key and, in verified mode, every silo's encrypted update).
What the server also sees, in both modes: which silos took part and when,
message sizes and timings, the count of summed updates, and any metric the
train and evaluate functions return (``num-examples`` is sent as 1;
``send_metrics=False`` hides the rest; metrics computed on the decrypted model
are a channel to the server).

**What a deviating server can do** (and what it gets):

- Send a crafted aggregate (padded, scaled, a subset relabelled) or one that
  is not the sum of the signed updates it sends: verified silos recompute the
  sum and refuse (``SA-FORMAT``); the refusal locks that round on the silo.
- Ask for a second, different sum in one round (a subset): refused
  (``SA-REPLAY``: one sum per round). Replay another round's signed updates:
  refused (``SA-ROUND``; signatures bind the round). Ask again for the same
  sum: the silo answers with the same partial (nothing new).
- Choose which silos' updates go into a round's sum (at least ``min_clients``);
  with colluding silos this narrows the sum (``require_all=True`` at the
  ceremony forbids omissions). Across rounds it can compare sums over different
  subsets, as in any FL with dropouts.
- Combine ``"silos"``: drop, delay, reorder or duplicate relayed partials:
  a silo with fewer than ``t`` authentic partials combines nothing and answers
  with an error (``SA-INTERNAL``); the server keeps the previous model.
  Alter, misdirect, relabel or replay one (from another round or aggregate):
  AES-GCM authentication fails, the silo names the sender in its answer and
  combines with the others if ``t`` remain. It cannot switch a silo to sending
  its partial in clear: who combines is fixed at the ceremony, in every kit.
  Send a silo an older encrypted model (rollback): the silo holds only the model
  it combined last and refuses (``SA-ROUND``). Send a plaintext model of its
  choice: the silos train on it (poisoning, not a leak; as in plain FedAvg).
- Combine ``"server"``: a holder that sends a wrong partial is named (its proof
  fails) and the other ``t`` valid partials still decrypt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg._checks import check_int
from secagg.aggregator import Aggregator
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    FormatError,
    NotEnoughPartialsError,
    RoundMismatchError,
    SecAggError,
    UnknownSignerError,
    UnverifiedAggregateError,
    public_reason,
)
from secagg.guard import DEFAULT_MAX_REFUSALS, DecryptionGuard, state_from_json, state_to_json
from secagg.integrations.flower._common import StagedMixin, built_once, check_stage_timeout
from secagg.integrations.flower.records import (
    _SERVER_ROUND,
    FINGERPRINT_KEY,
    REDUCE_KEY,
    REDUCES,
    _arrays_to_tree,
    _config_value,
    _tree_to_arrays,
    aggregate_from_arrays,
    aggregate_to_arrays,
    app_reply,
    error_reply,
    hide_counts,
    sample_weight,
    trained_record,
)
from secagg.threshold.combine import combine
from secagg.threshold.federation import Federation, SiloKit
from secagg.threshold.holder import ShareHolder
from secagg.threshold.partial import aggregate_id
from secagg.threshold.relay import route
from secagg.threshold.signed import SignedUpdate
from secagg.update import EncryptedUpdate

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.serverapp import Grid

__all__ = [
    "ThresholdMod",
    "threshold_mod",
    "threshold_strategy_class",
    "THRESHOLD_RECORD_KEY",
    "THRESHOLD_STATE_KEY",
    "THRESHOLD_MODEL_KEY",
    "COMBINE_KEY",
]

_log = logging.getLogger("flwr")  # Flower's own logger
_node_log = logging.getLogger("secagg.flower")  # a node's local details, never sent

#: the ConfigRecord of every threshold exchange (both directions), with its ``"stage"``
THRESHOLD_RECORD_KEY = "secagg-threshold"
#: the ConfigRecord in a silo's ``Context.state``: its share holder's state (guard, decrypted
#: rounds), its partial of the round in progress (combine "silos"), the id of its last model
THRESHOLD_STATE_KEY = "secagg-threshold-state"
#: the ArrayRecord in a silo's ``Context.state`` with the last model it combined (combine "silos")
THRESHOLD_MODEL_KEY = "secagg-threshold-model"
#: config entry naming who combines (checked by every silo against its kit)
COMBINE_KEY = "secagg-threshold-combine"

_STAGE = "stage"
_WORKERS_MAX = 64


class _ModError(SecAggError, code="SA-CONFIG"):
    """The silo's own set-up or its train function is wrong: the details stay local."""


def _bytes_entry(record: Any, key: str) -> bytes:
    value = record.get(key)
    if not isinstance(value, bytes):
        raise FormatError(f"the threshold record carries no bytes {key!r}.")
    return value


def _bytes_list(record: Any, key: str) -> list[bytes]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise FormatError(f"the threshold record's {key!r} must be a list of bytes.")
    return list(value)


def _round(record: Any) -> int:
    return check_int("the threshold record's round", record.get("round"), 0, None,
                     error=FormatError)


# -- kits, cached per process --------------------------------------------------------------
_KITS: OrderedDict[bytes, SiloKit] = OrderedDict()
_KITS_LOCK = threading.Lock()
_KITS_SIZE = 8


def _load_kit(data: bytes, allow_insecure: bool) -> SiloKit:
    key = hashlib.blake2b(data + bytes([allow_insecure]), digest_size=16).digest()
    with _KITS_LOCK:
        kit = _KITS.get(key)
    if kit is None:
        kit = SiloKit.from_bytes(data, allow_insecure=allow_insecure)
        with _KITS_LOCK:
            _KITS[key] = kit
            while len(_KITS) > _KITS_SIZE:
                _KITS.popitem(last=False)
    return kit


# ---------------------------------------------------------------------------
# the client mod
# ---------------------------------------------------------------------------
class ThresholdMod:
    """A Flower client mod running a silo's side of :class:`ThresholdFedAvg` (see the module docs).

    Use :func:`threshold_mod` to make one. It answers ``train`` messages (the
    global model in; a signed encrypted update out), the ``"partial"`` and
    ``"combine"`` stages, and ``evaluate`` messages (the global model in; the
    reply's ``num-examples`` set to 1). Anything wrong is answered with a Flower
    error reply carrying one fixed line (:func:`secagg.errors.public_reason`);
    the details are in the silo's own log (logger ``"secagg.flower"``).

    Args:
        kit: the bytes of this silo's :class:`~secagg.threshold.SiloKit`
            (unsealed), or a function of the node's Flower ``Context``
            returning such bytes or a loaded kit (a sealed kit is loaded this
            way: ``lambda c: SiloKit.load(path, passphrase=...)``).
        weighted_by_key: the MetricRecord key holding the sample count.
        allow_insecure: accept an insecure test key (small Paillier keys).
        send_metrics: ``False`` replaces every metric of train and evaluate
            replies by ``num-examples = 1``.
        workers: forked processes for partial decryption and combining.
        max_refusals: the share holder's guard (:class:`secagg.guard.DecryptionGuard`):
            hostile requests after which the silo decrypts nothing more.
        state_path: a file keeping the share holder's refusals and decrypted
            rounds across runs and restarts (without it they live in the run's
            ``Context.state``).
    """

    def __init__(self, kit: Any, *, weighted_by_key: str = "num-examples",
                 allow_insecure: bool = False, send_metrics: bool = True, workers: int = 1,
                 max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                 state_path: str | None = None) -> None:
        if isinstance(kit, (bytearray, memoryview)):
            kit = bytes(kit)
        if isinstance(kit, SiloKit):
            raise ConfigError("pass the kit's bytes (kit.to_bytes()) or a function returning "
                              "it: Flower ships the ClientApp to its workers by pickling.")
        if not isinstance(kit, bytes) and not callable(kit):
            raise ConfigError(f"kit must be bytes or a function of the node's Context. Found "
                              f"{type(kit).__name__}.")
        for name, value in (("send_metrics", send_metrics), ("allow_insecure", allow_insecure)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False. Found {value!r}.")
        if not isinstance(weighted_by_key, str) or not weighted_by_key:
            raise ConfigError("weighted_by_key must be a non-empty string.")
        self.workers = check_int("workers", workers, 1, _WORKERS_MAX)
        DecryptionGuard(max_refusals)  # validates it
        self._source = kit
        self.weighted_by_key = weighted_by_key
        self.allow_insecure = allow_insecure
        self.send_metrics = send_metrics
        self.max_refusals = max_refusals
        self.state_path = state_path

    def __repr__(self) -> str:
        return f"ThresholdMod(weighted_by_key={self.weighted_by_key!r})"

    # -- helpers -------------------------------------------------------------------
    def _kit(self, node_context: Context) -> SiloKit:
        source = self._source
        if callable(source):
            source = source(node_context)
        if isinstance(source, (bytes, bytearray, memoryview)):
            kit = _load_kit(bytes(source), self.allow_insecure)
        elif isinstance(source, SiloKit):
            kit = source
        else:
            raise _ModError(f"the kit function returned a {type(source).__name__}.")
        if kit.public.backend.insecure and not self.allow_insecure:
            raise _ModError("the silo kit holds an insecure test key (Paillier below 2048 bits); "
                            "refusing it. Pass allow_insecure=True in tests only.")
        return kit

    @staticmethod
    def _error(msg: Message, exc: BaseException | None, *, app: bool = False,
               reason: str | None = "") -> Message:
        return error_reply("threshold_mod", msg, exc, app=app, reason=reason)

    @staticmethod
    def _state(node_context: Context) -> RecordDict:
        state: RecordDict | None = getattr(node_context, "state", None)
        if state is None:
            raise _ModError("threshold rounds keep the silo's state in its Context.state, and "
                            "this Context has none.")
        return state

    def _hide_counts(self, content: RecordDict) -> RecordDict:
        return hide_counts(content, self.weighted_by_key, self.send_metrics)

    def _kept(self, node_context: Context) -> dict[str, Any]:
        record = self._state(node_context).config_records.get(THRESHOLD_STATE_KEY)
        return {} if record is None else dict(record)

    def _keep(self, node_context: Context, **changes: Any) -> None:
        from flwr.app import ConfigRecord

        kept = self._kept(node_context)
        kept.update(changes)
        self._state(node_context)[THRESHOLD_STATE_KEY] = ConfigRecord(
            {k: v for k, v in kept.items() if v is not None})

    def _holder(self, kit: SiloKit, node_context: Context) -> ShareHolder:
        """The kit's share holder with this silo's state (Context.state, and the file if any)."""
        holder = kit.holder.fresh(max_refusals=self.max_refusals, state_path=self.state_path)
        raw = self._kept(node_context).get("holder")
        if isinstance(raw, str):
            try:
                data = json.loads(raw)
                holder.load_state({"guard": state_from_json(data["guard"]),
                                   "rounds": data["rounds"]})
            except (ValueError, KeyError, TypeError, AttributeError):
                holder.load_state(None)  # unreadable state stops all decryption (fail safe)
        return holder

    def _keep_holder(self, node_context: Context, holder: ShareHolder) -> None:
        state = holder.to_state()
        self._keep(node_context, holder=json.dumps(
            {"guard": state_to_json(state["guard"]), "rounds": state["rounds"]}))

    def _check_config(self, content: RecordDict, kit: SiloKit) -> None:
        fingerprint = _config_value(content, FINGERPRINT_KEY)
        if fingerprint is not None and fingerprint != kit.public.fingerprint:
            raise ContextMismatchError("this silo's threshold key does not match the server's "
                                       "public context (another key or codec).")
        combine_by = _config_value(content, COMBINE_KEY)
        if combine_by is not None and combine_by != kit.combine:
            raise ContextMismatchError(
                f"the server runs combine={combine_by!r:.20} but this silo's kit says "
                f"combine={kit.combine!r} (fixed at the ceremony).")

    # -- train / evaluate: the model in ---------------------------------------------
    def _model_in(self, msg: Message, kit: SiloKit, node_context: Context) -> None:
        from flwr.app import RecordDict

        content = msg.content
        replaced: dict[str, ArrayRecord] = {}
        for key, record in content.array_records.items():
            data = aggregate_from_arrays(record)
            if data is None:
                continue
            if kit.combine == "server":
                raise FormatError("received an encrypted global model, but in this federation the "
                                  "server combines and sends plaintext weights.")
            aid = aggregate_id(EncryptedUpdate.from_bytes(data, kit.public))
            state = self._state(node_context)
            model = state.array_records.get(THRESHOLD_MODEL_KEY)
            if model is None or self._kept(node_context).get("model") != aid:
                raise RoundMismatchError(
                    "the encrypted global model is not the aggregate this silo combined last "
                    "(it missed that round's combine stage, or the server sent an older model).")
            replaced[key] = model
        if replaced:
            msg.content = RecordDict({k: replaced.get(k, v) for k, v in content.items()})

    def _weight(self, content: RecordDict, reduce: str, max_weight: int) -> int:
        if reduce == "mean":
            return 1
        return sample_weight(content, self.weighted_by_key, max_weight, who="threshold_mod",
                             whose="the key's", error=_ModError)

    def _update_reply(self, msg: Message, reply: Message, kit: SiloKit) -> Message:
        from flwr.app import ConfigRecord

        content = reply.content
        array_key, record = trained_record(content, THRESHOLD_RECORD_KEY, _ModError)
        reduce = _config_value(msg.content, REDUCE_KEY) or "weighted_mean"
        if reduce not in REDUCES:
            raise _ModError(f"unknown {REDUCE_KEY} {reduce!r:.40}; expected one of {REDUCES}.")
        pub = kit.public
        weight = 1 if pub.dp is not None else self._weight(content, reduce, pub.codec.max_weight)
        server_round = check_int("server-round", _config_value(msg.content, _SERVER_ROUND), 0,
                                 None, error=FormatError)
        update = pub.encrypt(_arrays_to_tree(record), weight=weight, round_id=server_round)
        if update.num_clipped:
            _log.warning("threshold_mod: %d value(s) exceeded clip=%s and were clipped; raise "
                         "clip at the ceremony so that it covers the model's weights.",
                         update.num_clipped, pub.codec.clip)
        envelope = kit.sign(update, server_round)
        out = self._hide_counts(content)
        del out[array_key]
        out[THRESHOLD_RECORD_KEY] = ConfigRecord({_STAGE: "update", "envelope": envelope})
        reply.content = out
        return reply

    # -- the partial and combine stages -----------------------------------------------
    def _partial(self, record: ConfigRecord, kit: SiloKit, node_context: Context) -> dict[str, Any]:
        round_id = _round(record)
        if record.get("fingerprint") != kit.public.fingerprint:
            raise ContextMismatchError("the partial-decryption request names another key.")
        if record.get("combine") != kit.combine:
            raise ContextMismatchError(
                f"the server asks for combine={record.get('combine')!r:.20}; this silo's kit "
                f"says combine={kit.combine!r} (fixed at the ceremony): refused.")
        aggregate = _bytes_entry(record, "aggregate")
        updates = _bytes_list(record, "updates")
        holder = self._holder(kit, node_context)
        try:
            part = holder.partial_decrypt(
                aggregate, signed_payloads=(updates or None) if holder.mode == "verified" else None,
                round_id=round_id, workers=self.workers)
        finally:
            self._keep_holder(node_context, holder)
        if kit.combine == "server":
            return {"holder": kit.index, "partial": part}
        aid = aggregate_id(EncryptedUpdate.from_bytes(aggregate, kit.public))
        relay = kit.seal_partials(part, round_id=round_id, aggregate=aid)
        # kept until the combine stage: this round's own partial and what it decrypts
        self._keep(node_context, round=round_id, aggregate=aid, partial=part)
        return {"holder": kit.index, "relay": relay}

    def _combine(self, record: ConfigRecord, kit: SiloKit, node_context: Context) -> dict[str, Any]:
        if kit.combine != "silos":
            raise ContextMismatchError("a combine request, but in this federation the server "
                                       "combines: refused.")
        round_id = _round(record)
        total = EncryptedUpdate.from_bytes(_bytes_entry(record, "aggregate"), kit.public)
        aid = aggregate_id(total)
        kept = self._kept(node_context)
        own = kept.get("partial")
        if kept.get("round") != round_id or not isinstance(own, bytes):
            raise RoundMismatchError("a combine request for a round this silo holds no partial "
                                     "decryption of.")
        if kept.get("aggregate") != aid:
            raise UnverifiedAggregateError("the aggregate to combine is not the one this silo "
                                           "partially decrypted in that round: refused.")
        opened, rejected = kit.open_partials(_bytes_list(record, "relay"), round_id=round_id,
                                             aggregate=aid)
        for holder_index, reason in rejected:
            _node_log.warning("threshold_mod: set aside a relayed partial (holder %s): %s",
                              holder_index, reason)
        parts = {kit.index: own, **opened}
        holder = self._holder(kit, node_context)
        try:
            result = holder.guard.decrypt(
                lambda: combine(kit.public, total, parts, reduce="weighted_mean", report=True,
                                workers=self.workers),
                digest=aid, round_key=repr(round_id))
        finally:
            self._keep_holder(node_context, holder)
        for r in result.rejected:
            _node_log.warning("threshold_mod: rejected the partial of holder %s: %s",
                              r.holder, r.reason)
        self._state(node_context)[THRESHOLD_MODEL_KEY] = _tree_to_arrays(result.value)
        self._keep(node_context, model=aid, round=None, aggregate=None, partial=None)
        named = sorted({h for h, _ in rejected if h is not None}
                       | {r.holder for r in result.rejected if r.holder is not None})
        out: dict[str, Any] = {"holder": kit.index, "used": list(result.used)}
        if named:
            out["rejected"] = named
        return out

    # -- the mod -------------------------------------------------------------------
    def __call__(self, msg: Message, context: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
        """Flower's mod signature: ``(message, context, call_next) -> reply``."""
        from flwr.app import ConfigRecord, Message, RecordDict

        mtype = msg.metadata.message_type
        if mtype not in ("train", "evaluate") or not msg.has_content():
            return call_next(msg, context)
        record = msg.content.config_records.get(THRESHOLD_RECORD_KEY)
        if mtype == "train" and record is not None:
            stage = record.get(_STAGE)
            try:
                kit = self._kit(context)
                if stage == "partial":
                    out = self._partial(record, kit, context)
                elif stage == "combine":
                    out = self._combine(record, kit, context)
                else:
                    raise FormatError(f"unknown threshold stage {stage!r:.40}.")
            except Exception as exc:
                return self._error(msg, exc)
            return Message(RecordDict({THRESHOLD_RECORD_KEY: ConfigRecord(
                {_STAGE: stage, **out})}), reply_to=msg)
        try:
            kit = self._kit(context)
            self._check_config(msg.content, kit)
            self._model_in(msg, kit, context)
        except Exception as exc:
            return self._error(msg, exc)
        return app_reply("threshold_mod", msg, context, call_next, self._hide_counts,
                         lambda reply: self._update_reply(msg, reply, kit))


def threshold_mod(kit: Any, **options: Any) -> ThresholdMod:
    """A Flower client mod for :class:`ThresholdFedAvg`: ``ClientApp(mods=[threshold_mod(kit)])``.

    Takes the arguments of :class:`ThresholdMod`, which says what it does to each message.
    """
    return ThresholdMod(kit, **options)


# ---------------------------------------------------------------------------
# the strategy
# ---------------------------------------------------------------------------
def threshold_strategy_class() -> type:
    """``ThresholdFedAvg``, built on first use (it subclasses flwr's FedAvg)."""
    return _strategy_class()


def _stage_record(msg: Message, stage: str) -> Any:
    record = msg.content.config_records.get(THRESHOLD_RECORD_KEY)
    if record is None or record.get(_STAGE) != stage:
        raise FormatError(f"the reply carries no {stage!r} threshold record; is threshold_mod "
                          f"installed in the node's ClientApp?")
    return record


def _build_strategy_class() -> type:
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.serverapp.strategy import FedAvg

    class ThresholdFedAvg(StagedMixin, FedAvg):
        """Flower's FedAvg over a t-of-n threshold Paillier key held by the silos (module docs).

        The strategy holds **public material only**: the
        :class:`~secagg.threshold.Federation` (public context, verification
        keys, the silos' public signing and exchange keys). Who combines the
        partial decryptions, and so who learns the mean, is the federation's
        ``combine``, fixed at the ceremony: ``"server"`` (the server, and every
        silo; plaintext weights are broadcast) or ``"silos"`` (the silos only;
        the global model the server holds is the encrypted aggregate).

        Args:
            federation: ``federation.to_bytes()`` (or the object).
            reduce: ``"weighted_mean"`` (weight = ``num-examples``, inside the
                encryption) or ``"mean"``.
            verified: send the round's signed updates with each partial
                decryption request (default; verified share holders refuse
                without them).
            stage_timeout: seconds to wait for the partial and combine
                exchanges; default: :meth:`start`'s ``timeout`` (3600 s when
                driven without ``start``).
            min_train_nodes: as in ``flwr.serverapp.strategy.FedAvg``.
            allow_insecure: accept an insecure test key (tests only).
            **fedavg_options: the other options of ``flwr.serverapp.strategy.FedAvg``.

        The partial-decryption request goes to every node the grid lists (all
        silos hold a share, sampled for training or not). A round keeps the
        previous global model when fewer than ``min_clients`` updates verify,
        when fewer than ``threshold`` valid partials arrive (combine
        ``"server"``), or when no silo combines (``"silos"``); :attr:`history`
        says which, per round, with the holders named whose partials failed.
        """

        def __init__(
            self,
            federation: Federation | bytes | Any,
            *,
            reduce: str = "weighted_mean",
            verified: bool = True,
            stage_timeout: float | None = None,
            min_train_nodes: int = 2,
            allow_insecure: bool = False,
            **fedavg_options: Any,
        ) -> None:
            super().__init__(min_train_nodes=min_train_nodes, **fedavg_options)
            if reduce not in REDUCES:
                raise ConfigError(f"reduce must be one of {REDUCES}. Found {reduce!r}.")
            if not isinstance(verified, bool):
                raise ConfigError(f"verified must be True or False. Found {verified!r}.")
            if isinstance(federation, (bytearray, memoryview)):
                federation = bytes(federation)
            if isinstance(federation, SiloKit):
                raise ConfigError("the server takes the federation's public bytes "
                                  "(federation.to_bytes()), never a silo's kit.")
            fed = Federation.from_bytes(federation, allow_insecure=allow_insecure)
            if fed.public.backend.insecure and not allow_insecure:
                raise ConfigError("this federation's key is an insecure test key; pass "
                                  "allow_insecure=True in tests only.")
            check_stage_timeout(stage_timeout)
            self.federation = fed
            self.public_context = fed.public
            self.combine = fed.combine
            if fed.public.dp is not None and reduce == "weighted_mean":
                reduce = "mean"  # DP keys have max_weight 1: the noise is calibrated for that
            self.reduce = reduce
            self.verified = verified
            self.stage_timeout = stage_timeout
            self._timeout = 3600.0 if stage_timeout is None else float(stage_timeout)
            self._by_key = {e.signing_key: e.silo_id for e in fed.silos}
            self._grid: Grid | None = None
            self._order: list[str] = []
            self._started: dict[int, float] = {}
            #: one dict per round: counts, stages, used and rejected holders, sizes, seconds
            self.history: list[dict[str, Any]] = []

        # -- settings ------------------------------------------------------------------
        def public_state(self) -> dict[str, Any]:
            """What this strategy holds besides Flower's settings: public material only."""
            return {"federation": self.federation.to_bytes(), "reduce": self.reduce,
                    "combine": self.combine, "history": list(self.history)}

        def summary(self) -> None:
            """Log Flower's FedAvg summary plus the threshold settings."""
            super().summary()
            vk = self.federation.verification
            _log.info("\t└──> secagg threshold Paillier (no single key holder):")
            _log.info("\t\t├── %d-of-%d silos, fingerprint %s", vk.threshold, vk.parties,
                      self.public_context.fingerprint.hex()[:16])
            _log.info("\t\t└── combined by %s; reduce '%s'",
                      "the server (it learns the mean)" if self.combine == "server"
                      else "the silos (the server never learns the model)", self.reduce)

        def _config(self, config: ConfigRecord) -> None:
            config[REDUCE_KEY] = self.reduce
            config[FINGERPRINT_KEY] = self.public_context.fingerprint
            config[COMBINE_KEY] = self.combine

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's sampling and train messages, with the threshold settings in the config."""
            self._started[server_round] = time.perf_counter()
            self._grid = grid
            if aggregate_from_arrays(arrays) is None:
                self._order = list(arrays.keys())
            self._config(config)
            return super().configure_train(server_round, arrays, config, grid)

        def configure_evaluate(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's evaluate messages, with the threshold settings in the config."""
            self._config(config)
            return super().configure_evaluate(server_round, arrays, config, grid)

        # -- the exchanges ---------------------------------------------------------------
        def _send(self, server_round: int, outgoing: dict[int, dict[str, Any]]
                  ) -> list[Message]:
            grid = self._grid
            if grid is None:
                raise ConfigError("ThresholdFedAvg needs the grid of configure_train.")
            messages = [
                Message(RecordDict({THRESHOLD_RECORD_KEY: ConfigRecord(fields)}),
                        dst_node_id=nid, message_type=MessageType.TRAIN,
                        group_id=str(server_round))
                for nid, fields in sorted(outgoing.items())
            ]
            return list(grid.send_and_receive(messages, timeout=self._timeout))

        def _answers(self, stage: str, sent: set[int], replies: list[Message],
                     log: dict[str, Any]) -> dict[int, tuple[int, Any]]:
            """``{holder: (node, record)}`` of a stage's well-formed answers; the rest logged."""
            out: dict[int, tuple[int, Any]] = {}
            seen: set[int] = set()
            errors, refused = [], []
            for msg in replies:
                nid = msg.metadata.src_node_id
                if nid not in sent or nid in seen:
                    continue
                seen.add(nid)
                if msg.has_error():
                    errors.append(nid)
                    _log.info("\t> %s stage: error reply from node %d: %s", stage, nid,
                              msg.error.reason)
                    continue
                try:
                    record = _stage_record(msg, stage)
                    holder = check_int("holder", record.get("holder"), 1,
                                       self.federation.verification.parties, error=FormatError)
                    if holder in out:
                        raise FormatError(f"a second {stage} answer claims holder {holder}.")
                except SecAggError as exc:
                    refused.append(nid)
                    _log.info("\t> %s stage: refused the answer of node %d: %s (%s)", stage, nid,
                              public_reason(exc), type(exc).__name__)
                    continue
                out[holder] = (nid, record)
            log[stage] = {"sent": len(sent), "ok": sorted(out), "error_nodes": sorted(errors),
                          "refused_nodes": sorted(refused), "missing": len(sent - seen)}
            return out

        def _sum(self, server_round: int, valid: list[Message]
                 ) -> tuple[Aggregator, list[bytes], list[Message], list[int], list[int]]:
            agg = Aggregator(self.public_context, round_id=server_round, accept_aggregates=False)
            envelopes: list[bytes] = []
            accepted: list[Message] = []
            refused: list[int] = []
            sizes: list[int] = []
            for msg in valid:
                node = msg.metadata.src_node_id
                try:
                    data = _bytes_entry(_stage_record(msg, "update"), "envelope")
                    env = SignedUpdate.from_bytes(data)
                    env.verify()
                    silo = self._by_key.get(env.signer)
                    if silo is None:
                        raise UnknownSignerError("the update is signed by a key that is not a "
                                                 "silo of this federation.")
                    if env.round_id != server_round:
                        raise RoundMismatchError(f"the update is signed for round "
                                                 f"{env.round_id!r:.20}, not {server_round}.")
                    agg.add(env.payload, client_id=silo)
                except SecAggError as exc:
                    refused.append(node)
                    _log.info("\t> Refused the signed update of node %d: %s (%s)", node,
                              public_reason(exc), type(exc).__name__)
                    continue
                envelopes.append(data)
                accepted.append(msg)
                sizes.append(len(data))
            return agg, envelopes, accepted, refused, sizes

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            """Sum the signed updates, collect partial decryptions, combine (or relay)."""
            t0 = time.perf_counter()
            replies = list(replies)
            valid, errors = self._check_and_log_replies(replies, is_train=True, validate=False)
            pub = self.public_context
            agg, envelopes, accepted, refused, sizes = self._sum(server_round, valid)
            stages: dict[str, Any] = {}
            entry: dict[str, Any] = {
                "round": server_round, "combine": self.combine, "results": len(valid),
                "failures": len(errors) + len(refused),
                "error_nodes": [m.metadata.src_node_id for m in errors],
                "refused_nodes": refused, "summed": len(agg), "stages": stages,
                "used": [], "rejected": [], "combined_by": [], "stopped": None,
                "upload_bytes": float(np.mean(sizes)) if sizes else 0.0, "aggregate_bytes": 0,
            }
            arrays: ArrayRecord | None = None
            if len(agg) < pub.min_clients:
                entry["stopped"] = (f"train: {len(agg)} verified update(s), below "
                                    f"min_clients={pub.min_clients}")
            else:
                total = agg.result()
                total_bytes = total.to_bytes()
                entry["aggregate_bytes"] = len(total_bytes)
                try:
                    arrays = self._decrypt(server_round, total, total_bytes, envelopes, entry)
                except SecAggError as exc:  # the server's own checks: no decrypted value
                    entry["stopped"] = f"{type(exc).__name__}: {exc}"
            if entry["stopped"]:
                _log.warning("aggregate_train: threshold round %d stopped: %s; keeping the "
                             "previous global model.", server_round, entry["stopped"])
            metrics = self._train_metrics(accepted)
            now = time.perf_counter()
            entry.update(aggregate_s=now - t0,
                         train_s=now - self._started.get(server_round, t0), round_s=None)
            self.history.append(entry)
            return arrays, metrics

        def _decrypt(self, server_round: int, total: EncryptedUpdate, total_bytes: bytes,
                     envelopes: list[bytes], entry: dict[str, Any]) -> ArrayRecord | None:
            grid = self._grid
            if grid is None:
                raise ConfigError("ThresholdFedAvg needs the grid of configure_train.")
            nodes = set(grid.get_node_ids())
            request: dict[str, Any] = {
                _STAGE: "partial", "round": server_round, "aggregate": total_bytes,
                "fingerprint": self.public_context.fingerprint, "combine": self.combine}
            if self.verified and envelopes:
                request["updates"] = envelopes
            answers = self._answers("partial", nodes,
                                    self._send(server_round, {n: request for n in nodes}),
                                    entry["stages"])
            if self.combine == "server":
                return self._server_combines(total, answers, entry)
            return self._silos_combine(server_round, total, total_bytes, answers, entry)

        def _server_combines(self, total: EncryptedUpdate, answers: dict[int, tuple[int, Any]],
                             entry: dict[str, Any]) -> ArrayRecord:
            parts = {h: rec.get("partial") for h, (_, rec) in answers.items()}
            try:
                result = combine(self.public_context, total, parts, reduce="weighted_mean",
                                 report=True)
            except NotEnoughPartialsError as exc:
                entry["rejected"] = [(r.holder, r.reason) for r in exc.rejected]
                raise
            entry["used"] = list(result.used)
            entry["rejected"] = [(r.holder, r.reason) for r in result.rejected]
            for holder, reason in entry["rejected"]:
                _log.warning("aggregate_train: the partial of holder %s was rejected: %s",
                             holder, reason)
            tree = result.value
            names = self._order if sorted(self._order) == sorted(tree) else list(tree)
            return _tree_to_arrays({k: tree[k] for k in names})

        def _silos_combine(self, server_round: int, total: EncryptedUpdate, total_bytes: bytes,
                           answers: dict[int, tuple[int, Any]],
                           entry: dict[str, Any]) -> ArrayRecord | None:
            relayed: dict[int, list[bytes]] = {h: [] for h in answers}
            for holder, (_nid, record) in answers.items():
                try:
                    blobs = _bytes_list(record, "relay")
                except FormatError:
                    blobs = []
                for blob in blobs:
                    try:
                        sender, recipient = route(blob)
                    except FormatError:
                        continue
                    if sender != holder or recipient not in relayed:
                        continue  # relabelled by its node, or for a silo that gave no partial
                    relayed[recipient].append(blob)
            outgoing = {}
            for holder, (nid, _) in answers.items():
                fields: dict[str, Any] = {_STAGE: "combine", "round": server_round,
                                          "aggregate": total_bytes}
                if relayed[holder]:
                    fields["relay"] = relayed[holder]
                outgoing[nid] = fields
            acks = self._answers("combine", set(outgoing), self._send(server_round, outgoing),
                                 entry["stages"])
            entry["combined_by"] = sorted(acks)
            named = sorted({int(h) for _, rec in acks.values() for h in rec.get("rejected", [])})
            entry["rejected"] = [(h, "named by a silo that combined") for h in named]
            if named:
                _log.warning("aggregate_train: silos set aside the partials of holders %s",
                             named)
            if not acks:
                raise NotEnoughPartialsError("no silo combined the aggregate")
            _log.info("aggregate_train: %d silo(s) combined round %d's aggregate", len(acks),
                      server_round)
            return aggregate_to_arrays(total_bytes)


    ThresholdFedAvg.__module__ = "secagg.integrations.flower"
    ThresholdFedAvg.__qualname__ = "ThresholdFedAvg"
    return ThresholdFedAvg


_strategy_class = built_once(_build_strategy_class)
