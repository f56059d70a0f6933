"""Masked FedAvg on Flower: :mod:`secagg.masking` (no key holder) inside a Flower round.

Server::

    from secagg.flower import MaskedFedAvg

    strategy = MaskedFedAvg(threshold=0.6, clip=4.0, max_weight=1000, min_train_nodes=10)
    result = strategy.start(grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

Clients (an ordinary Flower ``ClientApp``; one mod added, no key to distribute)::

    from secagg.flower import masked_mod

    app = ClientApp(mods=[masked_mod()])
    # @app.train() / @app.evaluate() unchanged: plaintext ArrayRecords, "num-examples"

With masking the server learns the (weighted) mean of the round's included
models and nothing about any one of them, so it holds and broadcasts the plain
global model, as plain FedAvg does. One round is four message exchanges, all of
``message_type="train"`` (as in Flower's own SecAgg+; the mod tells them apart
by the ``"stage"`` entry of ConfigRecord :data:`MASK_RECORD_KEY`), each carrying
one wire-format message of :mod:`secagg.masking` as bytes:

========  =========================================  ==========================================
stage     server -> node                              node -> server
========  =========================================  ==========================================
keys      global model, config, ``MASK_CONFIG``,      ``MASK_KEYS`` (the train function has run;
          the node's index in the round                the weights stay on the node)
shares    ``MASK_KEY_LIST``                           ``MASK_SHARES``
masked    ``MASK_SHARE_LIST``                         ``MASK_INPUT``: the trained weights times
                                                       ``num-examples``, plus weight and count, masked
unmask    ``MASK_UNMASK_REQUEST``                     ``MASK_UNMASK``
========  =========================================  ==========================================

The first exchange is the one Flower's ``FedAvg.start`` sends
(``configure_train``); :meth:`MaskedFedAvg.aggregate_train` runs the other
three through the same ``Grid`` (``grid.send_and_receive``), unmasks, and
returns the mean as the new global model, so ``start``'s loop, federated
evaluation and ``evaluate_fn`` work unchanged. Between exchanges a node keeps
its :class:`MaskingClient` (private keys, shares) and its trained weights in its
``Context.state`` (:data:`MASK_STATE_KEY`, :data:`MASK_MODEL_KEY`), which Flower
keeps per node on the simulation engine and on a SuperNode.

Dropouts: a node whose reply is an error, is refused, or does not arrive
within the timeout at any stage is a dropout at that stage and the protocol
carries on without it (up to ``holders - threshold``; see :mod:`secagg.masking`).
A node that drops before the masked stage is not in the mean; one that drops
at the unmask stage is (its self mask is rebuilt from the others' shares).

**What the server learns**: the mean model of the included nodes (it
broadcasts it), their count and total ``num-examples`` (the weight sum is
unmasked with the values), which nodes answered, failed or were refused at
each stage, message sizes and timings, and any *other* metrics the train and
evaluate functions return (in clear; ``num-examples`` itself is sent as 1).
Never one node's weights or sample count. The security notes of
:mod:`secagg.masking` apply, with one restriction: this integration does not
use long-term signing keys yet, so the server is trusted to relay the
advertised keys faithfully (honest-but-curious); a server that substitutes
keys can recover inputs. A node's private masking keys and Shamir shares live
in its ``Context.state`` between the exchanges of a round and are deleted
after its unmask answer. Not offered here: personalised layers
(``secagg_mod``'s ``include`` / ``exclude``) and distributed DP (its L2 clip is
meant for updates, and this integration averages full weights).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from secagg._checks import check_int
from secagg.errors import (
    ConfigError,
    FormatError,
    PeerSetError,
    SecAggError,
    StageError,
    TreeError,
    public_reason,
)
from secagg.integrations.flower._common import StagedMixin, built_once, check_stage_timeout
from secagg.integrations.flower.records import (
    _arrays_to_tree,
    _tree_to_arrays,
    call_app,
    error_reply,
    hide_counts,
    sample_weight,
    trained_record,
)
from secagg.masking import shamir
from secagg.masking.protocol import (
    MaskingClient,
    MaskingConfig,
    MaskingServer,
    Stage,
    check_weight,
)
from secagg.tree import flatten
from secagg.wire import Kind, open_payload

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.serverapp import Grid

__all__ = [
    "MaskedMod",
    "masked_mod",
    "masked_strategy_class",
    "MASK_RECORD_KEY",
    "MASK_STATE_KEY",
    "MASK_MODEL_KEY",
]

_log = logging.getLogger("flwr")  # Flower's own logger
_node_log = logging.getLogger("secagg.flower")  # a node's local details, never sent

#: the ConfigRecord of every masked-round message (both directions): ``"stage"``, ``"data"``
#: (the stage's wire-format bytes) and, in the first exchange, ``"config"``, ``"index"``, ``"reduce"``
MASK_RECORD_KEY = "secagg-mask"
#: the ConfigRecord in a node's ``Context.state`` with its round state (private keys, shares)
MASK_STATE_KEY = "secagg-mask-state"
#: the ArrayRecord in a node's ``Context.state`` with its trained weights until the masked stage
MASK_MODEL_KEY = "secagg-mask-model"

_STAGE = "stage"
_DATA = "data"
_CONFIG = "config"
_INDEX = "index"
_REDUCE = "reduce"
_REDUCES = ("weighted_mean", "mean")
_REPLY_KINDS: dict[str, Kind] = {"keys": Kind.MASK_KEYS, "shares": Kind.MASK_SHARES,
                                 "masked": Kind.MASK_INPUT, "unmask": Kind.MASK_UNMASK}
_LATER: tuple[Stage, ...] = ("shares", "masked", "unmask")


class _ModError(SecAggError, code="SA-CONFIG"):
    """The node's own set-up or its train function's reply is wrong: the details stay local."""


# ---------------------------------------------------------------------------
# a MaskingClient in a node's Context.state (it must survive between messages:
# on Ray every message may run in another worker process)
# ---------------------------------------------------------------------------
#: every attribute of a MaskingClient; _freeze refuses a client with others, so that a
#: change to MaskingClient's state cannot be lost silently between two messages
_CLIENT_FIELDS = frozenset({
    "config", "index", "_signing_key", "_peer_keys", "neighbours", "stage", "_c_sk", "_s_sk",
    "_pair_seeds", "_share_keys", "_self_seed", "_own_share", "_view", "_held",
    "_revealed_self", "_revealed_key", "_signed_u3",
})
_STATE_VERSION = 1


def _limbs(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4").astype(np.int64).reshape(2, shamir.LIMBS)


def _blob(limbs: np.ndarray) -> bytes:
    return np.ascontiguousarray(limbs, dtype="<u4").tobytes()


def _freeze(client: MaskingClient, config_bytes: bytes) -> bytes:
    """The client's whole state as bytes (private keys included: it stays on the node)."""
    fields = set(vars(client))
    if fields != _CLIENT_FIELDS:
        raise _ModError(
            f"secagg.masking.MaskingClient holds other attributes than this integration keeps "
            f"between messages ({sorted(fields ^ _CLIENT_FIELDS)}); update "
            f"secagg/integrations/flower/masking.py."
        )
    c = cast(Any, client)  # its private state, by design: this module is its persistence
    if c._signing_key is not None or c._peer_keys is not None:
        raise _ModError("signed masking keys are not supported by the Flower integration yet.")
    body = {
        "v": _STATE_VERSION,
        "config": config_bytes,
        "index": client.index,
        "stage": client.stage,
        "c_sk": c._c_sk.private_bytes_raw(),
        "s_sk": c._s_sk.private_bytes_raw(),
        "pair_seeds": sorted([v, s] for v, s in c._pair_seeds.items()),
        "share_keys": sorted([v, s] for v, s in c._share_keys.items()),
        "self_seed": c._self_seed,
        "own_share": _blob(c._own_share),
        "view": sorted(c._view),
        "held": sorted([v, _blob(s)] for v, s in c._held.items()),
        "revealed_self": sorted(c._revealed_self),
        "revealed_key": sorted(c._revealed_key),
    }
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _thaw(data: object) -> tuple[MaskingClient, bytes]:
    """A client from :func:`_freeze`'s bytes, and the configuration bytes it was made from."""
    if not isinstance(data, bytes):
        raise StageError("this node's masking state is missing or damaged.")
    try:
        b = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(b, dict) or b.get("v") != _STATE_VERSION:
            raise ValueError("version")
        client = MaskingClient(b["config"], b["index"])
        c = cast(Any, client)
        c.stage = b["stage"]
        c._c_sk = X25519PrivateKey.from_private_bytes(b["c_sk"])
        c._s_sk = X25519PrivateKey.from_private_bytes(b["s_sk"])
        c._pair_seeds = {int(v): bytes(s) for v, s in b["pair_seeds"]}
        c._share_keys = {int(v): bytes(s) for v, s in b["share_keys"]}
        c._self_seed = bytes(b["self_seed"])
        c._own_share = _limbs(b["own_share"])
        c._view = frozenset(int(v) for v in b["view"])
        c._held = {int(v): _limbs(s) for v, s in b["held"]}
        c._revealed_self = {int(v) for v in b["revealed_self"]}
        c._revealed_key = {int(v) for v in b["revealed_key"]}
        config_bytes = bytes(b["config"])
    except SecAggError:
        raise
    except Exception:
        raise StageError("this node's masking state is missing or damaged.") from None
    return client, config_bytes


# ---------------------------------------------------------------------------
# the client mod
# ---------------------------------------------------------------------------
def _bytes_entry(record: ConfigRecord, key: str) -> bytes:
    value = record.get(key)
    if not isinstance(value, bytes):
        raise FormatError(f"the masking record carries no bytes {key!r}.")
    return value


class MaskedMod:
    """A Flower client mod running a node's side of :class:`MaskedFedAvg`'s masked rounds.

    Use :func:`masked_mod` to make one. On a ``train`` message of the first
    stage (``"keys"``) it runs the wrapped train function on the plaintext
    global model, keeps the returned weights in the node's ``Context.state``
    and answers with its masking public keys; on the later stages it answers
    from its state alone (the train function runs once a round). The weights
    leave the node only masked, in the ``"masked"`` stage, multiplied by
    ``num-examples`` (capped at the round's ``max_weight``, with a warning; 1
    for ``reduce="mean"``), the count masked with them. A train reply must hold
    exactly one ArrayRecord (floating arrays: the full model) and, for
    sample-weighted FedAvg, one MetricRecord with ``num-examples``; its other
    records go to the server as returned, with ``num-examples`` set to 1.

    ``evaluate`` messages carry the plaintext global model and pass through;
    the reply's ``num-examples`` is set to 1 as well. A ``train`` message
    without a masking record (a server that is not ``MaskedFedAvg``) is
    refused unless ``allow_plain=True``: a node set up for masking never sends
    its weights in clear by mistake. Other message types pass through.

    Anything wrong (a malformed or out-of-order stage, a configuration with an
    insecure threshold, a missing record) is answered with a Flower error reply
    (``MOD_FAILED_PRECONDITION``) carrying one fixed line
    (``secagg.errors.public_reason``); an exception of the train or evaluate
    function with ``CLIENT_APP_RAISED_EXCEPTION`` and the fixed ``SA-APP``
    line. The details are in the node's own log (logger ``"secagg.flower"``).
    The server counts the node as a dropout of that stage.

    Args:
        weighted_by_key: the MetricRecord key holding the sample count.
        send_metrics: ``False`` replaces every metric of train and evaluate
            replies by ``num-examples = 1``.
        allow_plain: pass plain (unmasked) train messages to the train function.
    """

    def __init__(self, *, weighted_by_key: str = "num-examples", send_metrics: bool = True,
                 allow_plain: bool = False) -> None:
        if not isinstance(weighted_by_key, str) or not weighted_by_key:
            raise ConfigError("weighted_by_key must be a non-empty string.")
        for name, value in (("send_metrics", send_metrics), ("allow_plain", allow_plain)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False. Found {value!r}.")
        self.weighted_by_key = weighted_by_key
        self.send_metrics = send_metrics
        self.allow_plain = allow_plain

    def __repr__(self) -> str:
        return f"MaskedMod(weighted_by_key={self.weighted_by_key!r})"

    # -- replies -----------------------------------------------------------------
    @staticmethod
    def _error(msg: Message, exc: BaseException | None, *, app: bool = False,
               reason: str | None = "") -> Message:
        """An error reply with a fixed code and text; the details stay in the node's log."""
        return error_reply("masked_mod", msg, exc, app=app, reason=reason)

    @staticmethod
    def _stage_reply(msg: Message, stage: str, data: bytes,
                     content: RecordDict | None = None) -> Message:
        from flwr.app import ConfigRecord, Message, RecordDict

        out = RecordDict() if content is None else content
        out[MASK_RECORD_KEY] = ConfigRecord({_STAGE: stage, _DATA: data})
        return Message(out, reply_to=msg)

    def _hide_counts(self, content: RecordDict) -> RecordDict:
        return hide_counts(content, self.weighted_by_key, self.send_metrics)

    # -- the first stage: train, keep the weights, advertise keys ------------------
    def _weight(self, content: RecordDict, reduce: str, config: MaskingConfig) -> int:
        if reduce == "mean":
            return 1
        max_weight = config.codec.max_weight
        return check_weight(sample_weight(content, self.weighted_by_key, max_weight,
                                          who="masked_mod", whose="the round's",
                                          error=_ModError), max_weight)

    def _keys(self, msg: Message, record: ConfigRecord, context: Context,
              call_next: Callable[[Message, Context], Message]) -> Message:
        from flwr.app import ConfigRecord, RecordDict

        try:
            state = _state(context)
            config_bytes = _bytes_entry(record, _CONFIG)
            index = check_int("masking index", record.get(_INDEX), 0, None, error=FormatError)
            reduce = record.get(_REDUCE, "weighted_mean")
            if reduce not in _REDUCES:
                raise FormatError(f"unknown reduction {reduce!r:.40}; expected one of {_REDUCES}.")
            client = MaskingClient(config_bytes, index)  # refuses an insecure threshold
        except Exception as exc:
            return self._error(msg, exc)
        # the train function sees the message without the masking record
        msg.content = RecordDict({k: v for k, v in msg.content.items() if k != MASK_RECORD_KEY})
        reply, ok = call_app("masked_mod", msg, context, call_next)
        if not ok:
            return reply
        try:
            content = reply.content
            array_key, trained = trained_record(content, MASK_RECORD_KEY, _ModError)
            tree = _arrays_to_tree(trained)
            spec, flat = flatten(tree)
            if spec.num_values == 0:
                raise TreeError("the trained model has no floating values to aggregate.")
            codec = client.config.codec
            clipped = int(np.count_nonzero(np.abs(flat) > codec.clip))
            if clipped:
                _log.warning("masked_mod: %d value(s) exceeded clip=%s and were clipped; raise the "
                             "strategy's clip so that it covers the model's weights.",
                             clipped, codec.clip)
            weight = self._weight(content, reduce, client.config)
            keys = client.advertise_keys()
            state[MASK_STATE_KEY] = ConfigRecord({"client": _freeze(client, config_bytes),
                                                  "weight": weight})
            state[MASK_MODEL_KEY] = _tree_to_arrays(tree)
            out = self._hide_counts(content)
            del out[array_key]
        except Exception as exc:
            return self._error(msg, exc)
        return self._stage_reply(msg, "keys", keys, out)

    # -- the later stages: from the node's state alone ------------------------------
    def _later(self, stage: str, data: bytes, context: Context) -> bytes:
        from flwr.app import ConfigRecord

        state = _state(context)
        kept = state.config_records.get(MASK_STATE_KEY)
        if kept is None:
            raise StageError(f"a {stage!r} message arrived but this node has no masking round in "
                             f"progress (it missed the key stage, or its state was lost).")
        client, config_bytes = _thaw(kept.get("client"))
        weight = kept.get("weight")
        if stage == "shares":
            out = client.share_keys(data)
        elif stage == "masked":
            model = state.array_records.get(MASK_MODEL_KEY)
            if model is None:
                raise StageError("this node kept no trained weights for the masked stage.")
            out = client.masked_input(data, _arrays_to_tree(model), cast(int, weight))
        else:
            out = client.unmask(data)
        # commit: the stage succeeded
        if stage == "unmask":
            del state[MASK_STATE_KEY]  # the round is over for this node: drop its secrets
        else:
            state[MASK_STATE_KEY] = ConfigRecord({"client": _freeze(client, config_bytes),
                                                  "weight": cast(int, weight)})
        if stage == "masked":
            del state[MASK_MODEL_KEY]
        return out

    # -- the mod -------------------------------------------------------------------
    def __call__(self, msg: Message, context: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
        """Flower's mod signature: ``(message, context, call_next) -> reply``."""
        mtype = msg.metadata.message_type
        if not msg.has_content() or mtype not in ("train", "evaluate"):
            return call_next(msg, context)
        if mtype == "evaluate":
            reply, ok = call_app("masked_mod", msg, context, call_next)
            if not ok:
                return reply
            reply.content = self._hide_counts(reply.content)
            return reply
        record = msg.content.config_records.get(MASK_RECORD_KEY)
        if record is None:
            if self.allow_plain:
                return call_next(msg, context)
            return self._error(msg, _ModError(
                "a train message without a masking stage: the server is not running "
                "MaskedFedAvg; this node sends its weights masked only (allow_plain=True "
                "changes that)."))
        stage = record.get(_STAGE)
        if stage == "keys":
            return self._keys(msg, record, context, call_next)
        try:
            if stage not in _LATER:
                raise FormatError(f"unknown masking stage {stage!r:.40}.")
            out = self._later(cast(str, stage), _bytes_entry(record, _DATA), context)
        except Exception as exc:
            return self._error(msg, exc)
        return self._stage_reply(msg, cast(str, stage), out)


def _state(context: Context) -> RecordDict:
    state: RecordDict | None = getattr(context, "state", None)
    if state is None:
        raise _ModError("masked rounds keep the node's round state in its Context.state, and "
                        "this Context has none.")
    return state


def masked_mod(**options: Any) -> MaskedMod:
    """A Flower client mod for :class:`MaskedFedAvg`: ``ClientApp(mods=[masked_mod()])``.

    Takes the arguments of :class:`MaskedMod`, which says what it does to each message.
    """
    return MaskedMod(**options)


# ---------------------------------------------------------------------------
# the strategy
# ---------------------------------------------------------------------------
@dataclass
class _Round:
    """The server's state during one masked round."""

    server_round: int
    server: MaskingServer
    index: dict[int, int]  # node id -> client index
    node: dict[int, int]  # client index -> node id
    order: list[str]  # the global model's array names, in order
    started: float
    train_replies: dict[int, Any] = field(default_factory=dict)  # node id -> keys-stage reply
    stages: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    upload: dict[str, float] = field(default_factory=dict)  # mean bytes per replying node
    download: dict[str, float] = field(default_factory=dict)  # mean bytes per addressed node


def _sender(data: bytes, stage: str) -> int | None:
    """The client index a stage reply claims to come from (checked against its node)."""
    _, body = open_payload(data, _REPLY_KINDS[stage])
    sender = body.optional("from")
    return sender if type(sender) is int else None


def masked_strategy_class() -> type:
    """``MaskedFedAvg``, built on first use (it subclasses flwr's FedAvg)."""
    return _strategy_class()


def _check_threshold(threshold: object) -> int | float:
    if isinstance(threshold, float) and not isinstance(threshold, bool):
        if not (math.isfinite(threshold) and 0 < threshold <= 1):
            raise ConfigError(f"a fractional threshold must be in (0, 1]. Found {threshold!r}.")
        return threshold
    return check_int("threshold", threshold, 2, None)


def _build_strategy_class() -> type:
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.serverapp.strategy import FedAvg

    class MaskedFedAvg(StagedMixin, FedAvg):
        """Flower's FedAvg with the mean computed by pairwise masking (:mod:`secagg.masking`).

        No party holds a decryption key: each round the sampled nodes (running
        :func:`masked_mod`) train on the plaintext global model, then mask their
        weights so that only the sum of the round's inputs can be unmasked; the
        strategy unmasks it and broadcasts the mean as the new global model. The
        round runs four message exchanges (see :mod:`secagg.integrations.flower.masking`):
        ``configure_train`` sends the first, ``aggregate_train`` the other three
        through the grid passed to ``configure_train``.

        Args:
            threshold: ``t``, the shares needed to rebuild a client's secret: an
                int, or a fraction of the holders (each client's neighbourhood
                and itself: the round's node count, or ``neighbors + 1``), rounded
                up and never below ``holders // 2 + 1``. A round survives up to
                ``holders - t`` dropouts; fewer than ``t`` live holders stop it and
                keep the previous model. An int at most half the holders (or
                above them) is refused when the round is configured
                (``InsecureThresholdError``).
            neighbors: ``None`` (every node masks with every other: SecAgg) or
                an even degree ``k`` (SecAgg+: each node talks to ``k`` others;
                the complete graph when the round has ``k + 1`` nodes or fewer).
            clip: the codec's clip; it must cover the model's **weights** (full
                weights are averaged, not deltas). A node logs a warning when it
                clips a value.
            frac_bits: the codec's fractional bits (error at most ``2**-(frac_bits+1)``
                per value of the mean).
            max_weight: the largest ``num-examples`` a node's weights are
                multiplied by (larger counts are capped, with a warning on the
                node); it and the node count set the masking group's width.
            reduce: ``"weighted_mean"`` (weights times ``num-examples``, the
                count masked with them) or ``"mean"`` (every node weight 1).
            stage_timeout: seconds to wait for each of the three later exchanges;
                default: the ``timeout`` given to :meth:`start` (3600 s when the
                strategy is driven without ``start``).
            min_train_nodes: as in ``flwr.serverapp.strategy.FedAvg``.
            **fedavg_options: the other options of ``flwr.serverapp.strategy.FedAvg``.

        Per-round outcomes (nodes per stage, dropouts, bytes, seconds) are in
        :attr:`history`. The strategy holds no secret: its ``MaskingServer``
        holds public keys, encrypted shares and masked inputs only.
        """

        def __init__(
            self,
            *,
            threshold: int | float = 0.6,
            neighbors: int | None = None,
            clip: float = 1.0,
            frac_bits: int = 16,
            max_weight: int = 1000,
            reduce: str = "weighted_mean",
            stage_timeout: float | None = None,
            min_train_nodes: int = 2,
            **fedavg_options: Any,
        ) -> None:
            super().__init__(min_train_nodes=min_train_nodes, **fedavg_options)
            if reduce not in _REDUCES:
                raise ConfigError(f"reduce must be one of {_REDUCES}. Found {reduce!r}.")
            self.threshold = _check_threshold(threshold)
            if neighbors is not None:
                neighbors = check_int("neighbors", neighbors, 2, None)
                if neighbors % 2:
                    raise ConfigError(f"neighbors must be even (a {neighbors}-regular graph "
                                      f"needs an even node count). Found {neighbors}.")
            self.neighbors = neighbors
            self.reduce = reduce
            self.max_weight = 1 if reduce == "mean" else check_int("max_weight", max_weight, 1)
            # the codec's own checks, once, before any round
            MaskingConfig.create(2, 2, clip=clip, frac_bits=frac_bits, max_weight=self.max_weight)
            self.clip = float(clip)
            self.frac_bits = int(frac_bits)
            check_stage_timeout(stage_timeout)
            self.stage_timeout = stage_timeout
            #: one dict per round: nodes per stage, dropouts, the included count, bytes, seconds
            self.history: list[dict[str, Any]] = []
            self._timeout: float = 3600.0 if stage_timeout is None else float(stage_timeout)
            self._grid: Grid | None = None
            self._round: _Round | None = None
            self._started: dict[int, float] = {}

        # -- settings ----------------------------------------------------------
        def summary(self) -> None:
            """Log Flower's FedAvg summary plus the masking settings."""
            super().summary()
            _log.info("\t└──> secagg masking (no key holder):")
            _log.info("\t\t├── threshold %s, graph %s", self.threshold,
                      "complete (SecAgg)" if self.neighbors is None
                      else f"{self.neighbors}-regular (SecAgg+)")
            _log.info("\t\t└── reduce '%s', clip %s, frac_bits %d, max_weight %d",
                      self.reduce, self.clip, self.frac_bits, self.max_weight)

        def round_config(self, server_round: int, num_nodes: int) -> MaskingConfig:
            """The masking configuration of a round of ``num_nodes`` nodes (a fresh seed)."""
            n = check_int("num_nodes", num_nodes, 2, None)
            k = self.neighbors if self.neighbors is not None and self.neighbors < n - 1 else None
            holders = n if k is None else k + 1
            t = self.threshold
            if isinstance(t, float):
                t = min(holders, max(holders // 2 + 1, math.ceil(t * holders - 1e-9)))
            return MaskingConfig.create(n, t, neighbors=k, clip=self.clip,
                                        frac_bits=self.frac_bits, max_weight=self.max_weight,
                                        round_id=server_round)

        # -- the first exchange ------------------------------------------------
        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's sampling and train messages, each with the round's masking record."""
            started = self._started[server_round] = time.perf_counter()
            self._grid = grid
            self._round = None
            sampled = list(super().configure_train(server_round, arrays, config, grid))
            if not sampled:
                return []
            nodes = sorted({m.metadata.dst_node_id for m in sampled})
            if len(nodes) < 2:
                _log.warning("configure_train: a masked round needs at least 2 nodes; %d "
                             "sampled, skipping the round.", len(nodes))
                return []
            mconfig = self.round_config(server_round, len(nodes))
            server = MaskingServer(mconfig)
            blob = server.config_bytes()
            content = sampled[0].content
            messages = []
            for i, nid in enumerate(nodes):
                record = RecordDict({k: v for k, v in content.items()})
                record[MASK_RECORD_KEY] = ConfigRecord({
                    _STAGE: "keys", _CONFIG: blob, _INDEX: i, _REDUCE: self.reduce})
                messages.append(Message(record, dst_node_id=nid, message_type=MessageType.TRAIN,
                                        group_id=str(server_round)))
            self._round = _Round(server_round, server, {nid: i for i, nid in enumerate(nodes)},
                                 dict(enumerate(nodes)), list(arrays.keys()), started)
            self._round.download["keys"] = float(len(blob))
            _log.info("configure_train: masked round %d over %d nodes, threshold %d of %d "
                      "holders, %d-bit masking group", server_round, len(nodes),
                      mconfig.threshold, mconfig.holders, mconfig.width)
            return messages

        # -- the later exchanges -------------------------------------------------
        def _take(self, rs: _Round, stage: str, sent: set[int],
                  replies: Iterable[Message]) -> None:
            """Feed a stage's replies to the MaskingServer; record who answered, failed, was refused."""
            ok: list[int] = []
            errors: list[int] = []
            refused: list[int] = []
            seen: set[int] = set()
            sizes: list[int] = []
            for msg in replies:
                nid = msg.metadata.src_node_id
                if nid not in sent or nid in seen:
                    _log.info("\t> Ignored a second or unexpected %s reply from node %d",
                              stage, nid)
                    continue
                seen.add(nid)
                if msg.has_error():
                    errors.append(nid)
                    if stage != "keys":  # FedAvg logs the first stage's errors itself
                        _log.info("\t> Received error in %s reply from node %d: %s",
                                  stage, nid, msg.error.reason)
                    continue
                try:
                    record = msg.content.config_records.get(MASK_RECORD_KEY)
                    if record is None or record.get(_STAGE) != stage:
                        raise FormatError(f"the reply carries no {stage!r} masking record; is "
                                          f"masked_mod installed in the node's ClientApp?")
                    data = _bytes_entry(record, _DATA)
                    claimed = _sender(data, stage)
                    if claimed != rs.index[nid]:
                        raise PeerSetError(f"node {nid} answered as client {claimed}, its index "
                                           f"is {rs.index[nid]}.")
                    rs.server.receive(data)
                except SecAggError as exc:
                    refused.append(nid)
                    _log.info("\t> Refused %s reply from node %d: %s (%s)", stage, nid,
                              public_reason(exc), type(exc).__name__)
                    continue
                ok.append(nid)
                sizes.append(len(data))
                if stage == "keys":
                    rs.train_replies[nid] = msg
            rs.stages[stage] = {"sent": sorted(sent), "ok": sorted(ok), "errors": sorted(errors),
                                "refused": sorted(refused), "missing": sorted(sent - seen)}
            rs.upload[stage] = float(np.mean(sizes)) if sizes else 0.0

        def _exchange(self, rs: _Round, stage: str, outgoing: dict[int, bytes]) -> None:
            grid = self._grid
            if grid is None:
                raise ConfigError("MaskedFedAvg needs the grid of configure_train.")
            messages = [
                Message(RecordDict({MASK_RECORD_KEY: ConfigRecord({_STAGE: stage, _DATA: blob})}),
                        dst_node_id=rs.node[i], message_type=MessageType.TRAIN,
                        group_id=str(rs.server_round))
                for i, blob in sorted(outgoing.items())
            ]
            rs.download[stage] = float(np.mean([len(b) for b in outgoing.values()]))
            replies = list(grid.send_and_receive(messages, timeout=self._timeout))
            self._take(rs, stage, {rs.node[i] for i in outgoing}, replies)
            st = rs.stages[stage]
            _log.info("masked stage '%s': %d of %d nodes answered, %d failures, %d refused, %d "
                      "missing", stage, len(st["ok"]), len(st["sent"]), len(st["errors"]),
                      len(st["refused"]), len(st["missing"]))

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            """Run the shares, masked and unmask exchanges; return the unmasked mean model."""

            t0 = time.perf_counter()
            rs, self._round = self._round, None
            replies = list(replies)
            self._check_and_log_replies(replies, is_train=True, validate=False)
            if rs is None or rs.server_round != server_round:
                _log.error("aggregate_train: round %d was not configured by this strategy's "
                           "configure_train; keeping the previous global model.", server_round)
                return None, None
            self._take(rs, "keys", set(rs.index), replies)
            stage = "keys"
            arrays: ArrayRecord | None = None
            included: list[int] = []
            stopped: str | None = None
            try:
                key_lists = rs.server.close_keys()
                stage = "shares"
                self._exchange(rs, stage, key_lists)
                share_lists = rs.server.close_shares()
                stage = "masked"
                self._exchange(rs, stage, share_lists)
                requests = rs.server.close_masked()
                stage = "unmask"
                self._exchange(rs, stage, requests)
                agg = rs.server.finish(cast(Any, self.reduce))
            except SecAggError as exc:
                stopped = f"{stage}: {public_reason(exc)}"
                _log.warning("aggregate_train: masked round %d stopped after the %s stage: %s "
                             "(%s); keeping the previous global model.", server_round, stage,
                             public_reason(exc), type(exc).__name__)
            else:
                tree = agg.tree
                names = list(tree)
                if sorted(names) == sorted(rs.order):
                    names = rs.order
                arrays = _tree_to_arrays({k: tree[k] for k in names})
                included = [rs.node[i] for i in agg.included]
                _log.info("aggregate_train: unmasked the mean of %d of %d nodes",
                          len(included), len(rs.index))
            metrics = self._train_metrics([rs.train_replies[n] for n in included
                                           if n in rs.train_replies])
            now = time.perf_counter()
            dropped = {s: sorted(set(v["sent"]) - set(v["ok"])) for s, v in rs.stages.items()}
            failures = sorted({n for v in dropped.values() for n in v})
            self.history.append({
                "round": server_round,
                "nodes": len(rs.index),
                "threshold": rs.server.config.threshold,
                "holders": rs.server.config.holders,
                "width": rs.server.config.width,
                "stages": rs.stages,
                "dropped": dropped,
                "failures": len(failures),
                "included_nodes": sorted(included),
                "summed": len(included),
                "stopped": stopped,
                "upload_bytes": rs.upload,
                "download_bytes": rs.download,
                "aggregate_s": now - t0,
                "train_s": now - rs.started,
                "round_s": None,
            })
            return arrays, metrics


    MaskedFedAvg.__module__ = "secagg.integrations.flower"
    MaskedFedAvg.__qualname__ = "MaskedFedAvg"
    return MaskedFedAvg


_strategy_class = built_once(_build_strategy_class)
