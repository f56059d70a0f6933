"""Flower integration: encrypted FedAvg as a Flower strategy and a Flower client mod.

Written against the Message API of the pinned Flower release (``pip install
"secagg[flower]"``, flwr 1.41). flwr is imported only when these objects are
used, so ``import secagg`` and ``import secagg.flower`` never need it.

Server (holds the public context only)::

    from secagg.flower import SecAggFedAvg

    strategy = SecAggFedAvg(public_context_bytes, fraction_train=1.0, min_train_nodes=10)
    result = strategy.start(grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

Clients (an ordinary Flower ``ClientApp``; one mod added)::

    from secagg.flower import secagg_mod

    app = ClientApp(mods=[secagg_mod(secret_context_bytes)])

    @app.train()
    def train(msg, context):            # sees and returns plaintext, as usual
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        ...
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=msg)

One round, cross-silo (the default: the clients share the secret context, the
server never holds it):

1. The server sends each sampled node a ``train`` message whose ArrayRecord is
   the *encrypted* global model of the previous round (one uint8 array named
   ``"secagg-aggregate"``; round 1 sends the public initial model), plus the
   round, the reduction and the public context's fingerprint in the config.
2. ``secagg_mod`` decrypts it, hands the train function an ordinary plaintext
   ArrayRecord, then encrypts the returned **full model weights** with
   ``weight = num-examples`` (sample-weighted FedAvg; the count travels inside
   the encryption) and ``round_id = server-round``. The reply carries the
   payload as bytes (ConfigRecord ``"secagg"``, key ``"payload"``), no
   ArrayRecord, and ``num-examples = 1`` in its MetricRecord: the sample count
   is never sent in clear.
3. :class:`SecAggFedAvg` validates and sums the payloads with a
   :class:`secagg.Aggregator` (a refused payload counts as a failure, like an
   error reply) and returns the encrypted sum as the new global model.
4. ``evaluate`` messages carry the same encrypted model; the mod decrypts it for
   the evaluate function, so evaluation runs on the clients.

Full weights rather than deltas make every round's aggregate self-contained: a
client that missed rounds simply loads the latest aggregate, with no state to
catch up on. The codec's ``clip`` must then cover the weights themselves (not
just their change in one round).

With a separate trusted key holder, pass ``key_holder=`` to the strategy: a
callable that receives the encrypted aggregate's bytes and returns the
decrypted tree; the server then broadcasts plaintext weights as in plain
FedAvg, and the clients need only the public context.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .aggregator import Aggregator
from .context import PublicContext, SecretContext
from .errors import (
    AggregateRefusedError,
    AppFailedError,
    ConfigError,
    ContextMismatchError,
    FormatError,
    SecAggError,
    public_reason,
)
from .guard import DEFAULT_MAX_REFUSALS, DecryptionGuard
from .update import EncryptedUpdate
from .wire import Kind, peek_kind

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.serverapp import Grid

__all__ = [  # noqa: F822  (SecAggFedAvg is built on first access, see __getattr__)
    "SecAggFedAvg",
    "SecAggMod",
    "secagg_mod",
    "KeyHolder",
    "aggregate_to_arrays",
    "aggregate_from_arrays",
    "decrypt_arrays",
    "RECORD_KEY",
    "PAYLOAD_KEY",
    "AGGREGATE_KEY",
    "REDUCE_KEY",
    "FINGERPRINT_KEY",
]

#: name of the ConfigRecord that carries a client's encrypted update in a train reply
RECORD_KEY = "secagg"
#: its bytes entry
PAYLOAD_KEY = "payload"
#: the single uint8 array of an ArrayRecord that holds an encrypted aggregate
AGGREGATE_KEY = "secagg-aggregate"
#: config entry telling clients how to weight their update ("weighted_mean" or "mean")
REDUCE_KEY = "secagg-reduce"
#: config entry with the public context's fingerprint, checked by every client
FINGERPRINT_KEY = "secagg-fingerprint"

REDUCES = ("weighted_mean", "mean")
_SERVER_ROUND = "server-round"
_log = logging.getLogger("flwr")  # Flower's own logger, so messages appear in its log
_node_log = logging.getLogger("secagg.flower")  # a node's local details, never sent


# -- records <-> bytes and trees -------------------------------------------------------


def aggregate_to_arrays(data: bytes) -> ArrayRecord:
    """Wrap an encrypted aggregate's bytes as an ArrayRecord (one uint8 array).

    This is what :class:`SecAggFedAvg` returns as the global model, so that it
    travels in the next ``train`` and ``evaluate`` messages and ends up in
    ``Result.arrays``. Flower chunks Arrays for transport, so large models are fine.
    """
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({AGGREGATE_KEY: Array(np.frombuffer(bytes(data), dtype=np.uint8))})


def aggregate_from_arrays(record: Any) -> bytes | None:
    """The encrypted aggregate's bytes if ``record`` holds one, else ``None`` (plain weights)."""
    from flwr.app import ArrayRecord

    if not isinstance(record, ArrayRecord) or list(record.keys()) != [AGGREGATE_KEY]:
        return None
    arr = record[AGGREGATE_KEY].numpy()
    if arr.dtype != np.uint8 or arr.ndim != 1:
        return None
    return arr.tobytes()


def _tree_to_arrays(tree: Mapping[str, Any]) -> ArrayRecord:
    from flwr.app import Array, ArrayRecord

    if not isinstance(tree, Mapping):
        raise FormatError(f"expected a dict of name -> array. Found {type(tree).__name__}.")
    out = {}
    for name, value in tree.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        out[name] = Array(np.ascontiguousarray(np.asarray(value)))
    return ArrayRecord(out)


def _arrays_to_tree(record: ArrayRecord) -> dict[str, np.ndarray]:
    tree = {}
    for name, arr in record.items():
        value = arr.numpy()
        if not np.issubdtype(value.dtype, np.floating):
            raise FormatError(
                f"array {name!r} has dtype {value.dtype}; only floating arrays can be "
                f"averaged. Leave integer buffers (e.g. num_batches_tracked) out of the "
                f"ArrayRecord."
            )
        tree[name] = value
    return tree


def decrypt_arrays(record: Any, secret_context: SecretContext | bytes) -> ArrayRecord:
    """Decrypt an encrypted global model (e.g. ``Result.arrays``) into plain weights.

    For a client or key holder that holds the secret context; a plain
    ArrayRecord is returned unchanged.
    """
    data = aggregate_from_arrays(record)
    if data is None:
        return record
    ctx = secret_context if isinstance(secret_context, SecretContext) else _load_context(
        bytes(secret_context))
    if not isinstance(ctx, SecretContext):
        raise ConfigError("decrypting needs the secret context, not the public one.")
    return _tree_to_arrays(ctx.decrypt(data, reduce="weighted_mean"))


# -- contexts --------------------------------------------------------------------------

# Contexts loaded in this process, by digest of their bytes. Flower ships the
# ClientApp (and so this mod) to its workers with every message; caching here
# loads each key once per worker process instead of once per message.
_CACHE: OrderedDict[bytes, PublicContext] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _load_context(data: bytes, *, allow_insecure: bool = False) -> PublicContext:
    key = hashlib.blake2b(data + bytes([allow_insecure]), digest_size=16).digest()
    with _CACHE_LOCK:
        ctx = _CACHE.get(key)
    if ctx is not None:
        return ctx
    kind = peek_kind(data)
    if kind == Kind.PUBLIC_CONTEXT:
        ctx = PublicContext.from_bytes(data, allow_insecure=allow_insecure)
    elif kind == Kind.SECRET_CONTEXT:
        ctx = SecretContext.from_bytes(data, allow_insecure=allow_insecure)
    else:
        raise ConfigError(
            f"expected a secagg context, got a {kind.name.lower()} payload (a passphrase-sealed "
            f"secret context is loaded by a function: secagg_mod(lambda context: "
            f"SecretContext.load(path, passphrase=...)))."
        )
    with _CACHE_LOCK:
        _CACHE[key] = ctx
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return ctx


# The latest decrypted aggregates, by key and digest: a node decrypts the same
# aggregate for ``evaluate`` in round r and for ``train`` in round r + 1, and the
# nodes that a simulation runs in one worker process share it.
_DECRYPTED: OrderedDict[tuple[bytes, bytes], Any] = OrderedDict()
_DECRYPTED_SIZE = 2


def _decrypt_cached(ctx: SecretContext, data: bytes, guard: DecryptionGuard | None = None,
                    round_key: str = "") -> Any:
    digest = hashlib.blake2b(data, digest_size=32).digest()
    key = (ctx.fingerprint, digest)
    with _CACHE_LOCK:
        tree = _DECRYPTED.get(key)
    if tree is None:
        # weighted_mean is right for both reductions: with every weight 1 it is the mean
        def run() -> Any:
            return ctx.decrypt(data, reduce="weighted_mean")

        tree = run() if guard is None else guard.decrypt(run, digest=digest, round_key=round_key)
        with _CACHE_LOCK:
            _DECRYPTED[key] = tree
            while len(_DECRYPTED) > _DECRYPTED_SIZE:
                _DECRYPTED.popitem(last=False)
    return tree


def _public_only(context: Any, *, allow_insecure: bool = False) -> PublicContext:
    """The server's context: public material only, never a secret context."""
    if isinstance(context, PublicContext) and context.backend.insecure and not allow_insecure:
        raise ConfigError(
            "this public context is an insecure test context; pass allow_insecure=True in "
            "tests only."
        )
    if isinstance(context, SecretContext):
        raise ConfigError(
            "the server-side strategy takes the public context only; pass "
            "ctx.public.to_bytes(), never the secret context."
        )
    if isinstance(context, PublicContext):
        return context
    if isinstance(context, (bytes, bytearray, memoryview)):
        data = bytes(context)
        kind = peek_kind(data)
        if kind != Kind.PUBLIC_CONTEXT:
            raise ConfigError(
                f"the server-side strategy takes public context bytes "
                f"(ctx.public.to_bytes()); got a {kind.name.lower()} payload."
            )
        return PublicContext.from_bytes(data, allow_insecure=allow_insecure)
    raise ConfigError(
        f"expected a secagg.PublicContext or its bytes. Found {type(context).__name__}."
    )


def _config_value(content: RecordDict, key: str) -> Any:
    for record in content.config_records.values():
        if key in record:
            return record[key]
    return None


# -- client side -----------------------------------------------------------------------

#: the ConfigRecord in a node's ``Context.state`` that keeps its decryption guard
GUARD_STATE_KEY = "secagg-guard"


class _ModError(SecAggError):
    code = "SA-CONFIG"  # the node's own set-up or its train function: details stay local


class SecAggMod:
    """A Flower client mod that decrypts the global model and encrypts the trained one.

    Use :func:`secagg_mod` to make one. On ``train`` and ``evaluate`` messages
    it replaces an encrypted global model (an ArrayRecord made by
    :func:`aggregate_to_arrays`) by the decrypted weights before the wrapped
    function runs. A ``train`` reply must hold exactly one ArrayRecord (the
    trained model, floating arrays) and, for sample-weighted FedAvg, one
    MetricRecord with ``num-examples``; the mod encrypts the weights with
    ``weight=num-examples`` (capped at the context's ``max_weight``, with a
    warning) and the round id, and replies with the payload's bytes in
    ConfigRecord ``"secagg"`` instead of the ArrayRecord. In every reply it
    sets ``num-examples`` to 1, so no sample count is sent in clear (other
    metrics are sent as the function returns them, in clear).

    Anything wrong (another key, a corrupted aggregate, a missing record) is
    answered with a Flower error reply (``MOD_FAILED_PRECONDITION``), which the
    server counts as a failure. Other message types pass through untouched.
    """

    def __init__(
        self,
        context: bytes | Callable[[Context], Any],
        *,
        weighted_by_key: str = "num-examples",
        allow_insecure: bool = False,
        max_refusals: int | None = DEFAULT_MAX_REFUSALS,
        guard_path: str | None = None,
        send_metrics: bool = True,
    ) -> None:
        DecryptionGuard(max_refusals)  # validates it
        if not isinstance(send_metrics, bool):
            raise ConfigError(f"send_metrics must be True or False. Found {send_metrics!r}.")
        if isinstance(context, (bytearray, memoryview)):
            context = bytes(context)
        if isinstance(context, PublicContext):
            raise ConfigError(
                "pass the context's bytes (ctx.to_bytes() or ctx.public.to_bytes()) or a "
                "function returning them: Flower ships the ClientApp to its workers by pickling."
            )
        if not isinstance(context, bytes) and not callable(context):
            raise ConfigError(
                f"context must be bytes or a function of the node's Context. Found "
                f"{type(context).__name__}."
            )
        if isinstance(context, bytes):
            peek_kind(context)  # fail early on garbage
        self._source = context
        self.weighted_by_key = weighted_by_key
        self.allow_insecure = allow_insecure
        self.max_refusals = max_refusals
        self.guard_path = guard_path
        self.send_metrics = send_metrics
        # guards of the nodes this mod serves, for Contexts whose state does not persist
        self._guards: dict[tuple[int, bytes], DecryptionGuard] = {}

    def __repr__(self) -> str:
        return f"SecAggMod(weighted_by_key={self.weighted_by_key!r})"

    # -- helpers -------------------------------------------------------------
    def _context(self, node_context: Context) -> PublicContext:
        source = self._source
        if callable(source):
            source = source(node_context)
        if isinstance(source, (bytes, bytearray, memoryview)):
            ctx = _load_context(bytes(source), allow_insecure=self.allow_insecure)
        elif isinstance(source, PublicContext):
            ctx = source
        else:
            raise _ModError(f"the context function returned a {type(source).__name__}.")
        if getattr(ctx.backend, "insecure", False) and not self.allow_insecure:
            raise _ModError(
                "the secagg context is an insecure test context (Paillier key below 2048 "
                "bits); refusing it. Pass allow_insecure=True in tests only."
            )
        return ctx

    @staticmethod
    def _error(msg: Message, exc: BaseException | None, *, app: bool = False,
               reason: str = "") -> Message:
        """An error reply with a fixed code and text; the details stay in the node's log.

        ``app``: the user's train/evaluate function failed (it ran on decrypted
        data, so its exception text stays local too).
        """
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        # Local only (the node's own log, not Flower's): no decrypted quantity in any case.
        if exc is not None:
            _node_log.warning("secagg_mod: %s: %s", type(exc).__name__, exc)
        else:
            _node_log.warning("secagg_mod: the app replied with an error: %s", reason)
        if app:
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                      reason=f"secagg_mod {public_reason(AppFailedError())}"),
                reply_to=msg,
            )
        return Message(
            Error(code=ErrorCode.MOD_FAILED_PRECONDITION,
                  reason=f"secagg_mod {public_reason(exc or SecAggError())}"),
            reply_to=msg,
        )

    def _guard(self, node_context: Context, ctx: PublicContext) -> DecryptionGuard:
        """This node's guard: from its Context's state if kept there, else this process's."""
        key = (int(getattr(node_context, "node_id", 0) or 0), ctx.fingerprint)
        guard = self._guards.get(key)
        if guard is None:
            path = None if self.guard_path is None else (
                f"{self.guard_path}.{ctx.fingerprint.hex()[:16]}")
            guard = self._guards[key] = DecryptionGuard(self.max_refusals, path=path)
        state = getattr(node_context, "state", None)
        if state is not None and GUARD_STATE_KEY in state.config_records:
            guard.load_state(state.config_records[GUARD_STATE_KEY])
        return guard

    @staticmethod
    def _keep_guard(node_context: Context, guard: DecryptionGuard) -> None:
        from flwr.app import ConfigRecord

        state = getattr(node_context, "state", None)
        if state is not None:
            state[GUARD_STATE_KEY] = ConfigRecord(guard.to_state())

    def _hide_counts(self, content: RecordDict) -> RecordDict:
        from flwr.app import MetricRecord, RecordDict

        out = RecordDict()
        for key, record in content.items():
            if isinstance(record, MetricRecord) and not self.send_metrics:
                # metrics computed on a decrypted (possibly crafted) model are an oracle
                record = MetricRecord({self.weighted_by_key: 1})
            elif isinstance(record, MetricRecord) and self.weighted_by_key in record:
                record = MetricRecord({**dict(record), self.weighted_by_key: 1})
            out[key] = record
        return out

    def _decrypt_incoming(self, msg: Message, ctx: PublicContext, node_context: Context) -> None:
        from flwr.app import RecordDict

        content = msg.content
        round_key = str(_config_value(content, _SERVER_ROUND))[:64]
        replaced = {}
        for key, record in content.array_records.items():
            data = aggregate_from_arrays(record)
            if data is None:
                continue
            if not isinstance(ctx, SecretContext):
                raise _ModError(
                    "received an encrypted global model but this node holds only the public "
                    "context; give it the shared secret context, or use a key holder on the "
                    "server (SecAggFedAvg(key_holder=...))."
                )
            guard = self._guard(node_context, ctx)
            try:
                tree = _decrypt_cached(ctx, data, guard, round_key)
            finally:
                self._keep_guard(node_context, guard)
            replaced[key] = _tree_to_arrays(tree)
        if replaced:
            # a new RecordDict: the incoming one may be shared with other messages
            msg.content = RecordDict({k: replaced.get(k, v) for k, v in content.items()})

    def _encrypt_reply(self, msg: Message, reply: Message, ctx: PublicContext) -> Message:
        from flwr.app import ConfigRecord

        content = reply.content
        arrays = content.array_records
        if len(arrays) != 1:
            raise _ModError(
                f"a train reply must hold exactly one ArrayRecord (the trained model); "
                f"found {len(arrays)}."
            )
        if RECORD_KEY in content:
            raise _ModError(f"the train reply already has a record named {RECORD_KEY!r}.")
        (array_key, record), = arrays.items()
        reduce = _config_value(msg.content, REDUCE_KEY) or "weighted_mean"
        if reduce not in REDUCES:
            raise _ModError(f"unknown {REDUCE_KEY} {reduce!r}; expected one of {REDUCES}.")
        weight = 1
        # Under distributed DP every update has weight 1: the noise is calibrated for that.
        if reduce == "weighted_mean" and ctx.dp is None:
            counts = [m[self.weighted_by_key] for m in content.metric_records.values()
                      if self.weighted_by_key in m]
            if len(counts) != 1:
                raise _ModError(
                    f"sample-weighted FedAvg needs one MetricRecord with "
                    f"{self.weighted_by_key!r} in the train reply; found {len(counts)}."
                )
            n = counts[0]
            if isinstance(n, float) and n.is_integer():
                n = int(n)
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise _ModError(f"{self.weighted_by_key!r} must be a positive integer; got {n!r}.")
            weight = min(n, ctx.codec.max_weight)
            if weight < n:
                _log.warning(
                    "secagg_mod: %s=%d exceeds the context's max_weight=%d; the update is "
                    "weighted by %d.", self.weighted_by_key, n, ctx.codec.max_weight, weight,
                )
        server_round = _config_value(msg.content, _SERVER_ROUND)
        update = ctx.encrypt(_arrays_to_tree(record), weight=weight, round_id=server_round)
        if update.num_clipped:
            _log.warning(
                "secagg_mod: %d value(s) exceeded clip=%s and were clipped; raise clip in "
                "secagg.generate() so that it covers the model's weights.",
                update.num_clipped, ctx.codec.clip,
            )
        payload = update.to_bytes()
        out = self._hide_counts(content)
        del out[array_key]
        out[RECORD_KEY] = ConfigRecord({PAYLOAD_KEY: payload})
        reply.content = out
        return reply

    # -- the mod -------------------------------------------------------------
    def __call__(self, msg: Message, context: Context, call_next: Callable) -> Message:
        """Flower's mod signature: ``(message, context, call_next) -> reply``."""
        mtype = msg.metadata.message_type
        if mtype not in ("train", "evaluate") or not msg.has_content():
            return call_next(msg, context)
        try:
            ctx = self._context(context)
            fingerprint = _config_value(msg.content, FINGERPRINT_KEY)
            if fingerprint is not None and fingerprint != ctx.fingerprint:
                raise ContextMismatchError(
                    "this node's secagg context does not match the server's public context "
                    "(another key or codec)."
                )
            self._decrypt_incoming(msg, ctx, context)
        except Exception as exc:  # noqa: BLE001  (no exception text may reach the server)
            return self._error(msg, exc)
        try:
            reply = call_next(msg, context)
        except Exception as exc:  # noqa: BLE001  (the app ran on decrypted data: no text leaves)
            return self._error(msg, exc, app=True)
        if reply.has_error():
            return self._error(msg, None, app=True, reason=reply.error.reason)
        if mtype == "evaluate":
            reply.content = self._hide_counts(reply.content)
            return reply
        try:
            return self._encrypt_reply(msg, reply, ctx)
        except Exception as exc:  # noqa: BLE001
            return self._error(msg, exc)


def secagg_mod(
    context: bytes | Callable[[Context], Any],
    *,
    weighted_by_key: str = "num-examples",
    allow_insecure: bool = False,
    max_refusals: int | None = DEFAULT_MAX_REFUSALS,
    guard_path: str | None = None,
    send_metrics: bool = True,
) -> SecAggMod:
    """A Flower client mod for :class:`SecAggFedAvg`: ``ClientApp(mods=[secagg_mod(key)])``.

    Args:
        context: the bytes of the shared secret context (cross-silo: the node
            decrypts the global model itself) or of the public context (a key
            holder decrypts on the server's behalf); or a function of the
            node's Flower ``Context`` returning such bytes (or a loaded context),
            e.g. ``lambda c: open(c.node_config["secagg-key"], "rb").read()``.
            Bytes are shipped with the ClientApp; loaded contexts are cached per
            worker process.
        weighted_by_key: the MetricRecord key holding the sample count.
        allow_insecure: accept an insecure test context (small Paillier keys).
        max_refusals: aggregates refused (failed consistency checks after
            decryption) after which the node decrypts nothing more; see
            :class:`secagg.guard.DecryptionGuard`.
        guard_path: a file prefix where the node keeps its refusal count (one
            file per key), so that ``max_refusals`` holds across runs and
            restarts; without it the count lives in the run's ``Context.state``.
        send_metrics: ``False`` replaces every metric in train and evaluate
            replies by ``num-examples = 1``: metrics computed on a decrypted
            model are a channel to the server (SECURITY.md).

    See :class:`SecAggMod` for what it does to each message. Exceptions of the
    wrapped train/evaluate functions are answered with a fixed text too (they
    ran on decrypted data); their details are in the node's own log.
    """
    return SecAggMod(context, weighted_by_key=weighted_by_key, allow_insecure=allow_insecure,
                     max_refusals=max_refusals, guard_path=guard_path,
                     send_metrics=send_metrics)


class KeyHolder:
    """An in-process key holder for ``SecAggFedAvg(key_holder=...)``.

    It holds the secret context, so **the process that calls it holds the
    key**: use it in simulations and tests. In a deployment the callback
    forwards the aggregate's bytes to the key holder's own service (which can
    run exactly this) and returns its answer; the server then learns the
    aggregate, never an individual update or weight.
    """

    def __init__(self, secret_context: SecretContext | bytes, *,
                 max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                 allow_insecure: bool = False, guard_path: str | None = None,
                 allow_unverified_lattice: bool = False) -> None:
        if isinstance(secret_context, (bytes, bytearray, memoryview)):
            secret_context = SecretContext.from_bytes(bytes(secret_context),
                                                      allow_insecure=allow_insecure)
        if not isinstance(secret_context, SecretContext):
            raise ConfigError("KeyHolder needs the secret context.")
        if not secret_context.public.backend.oracle_safe_key and not allow_unverified_lattice:
            raise ConfigError(
                f"a key holder that decrypts {secret_context.scheme.upper()} aggregates a server "
                f"assembled can be made to decrypt functions of its secret key and hand the key "
                f"to that server (decryption-oracle attacks; SECURITY.md). Use the 'paillier' "
                f"scheme for key-holder mode, or pass allow_unverified_lattice=True only if the "
                f"server is trusted to forward real sums."
            )
        self._secret = secret_context
        self._guard = DecryptionGuard(max_refusals, path=guard_path)

    def __call__(self, data: bytes) -> dict[str, Any]:
        """Decrypt an aggregate to the (sample-weighted) mean model.

        Raises ``AggregateRefusedError`` whose text is one fixed line from
        :data:`secagg.errors.PUBLIC_REASONS` (it goes back to the server); the
        details are logged here, never a decrypted number. A refused aggregate
        locks its round (see :class:`secagg.guard.DecryptionGuard`).
        """
        try:
            data = bytes(data)
            total = EncryptedUpdate.from_bytes(data, self._secret.public)
            digest = hashlib.blake2b(data, digest_size=32).digest()
            return self._guard.decrypt(
                lambda: self._secret.decrypt(total, reduce="weighted_mean"),
                digest=digest, round_key=str(total.round_id)[:64])
        except Exception as exc:  # noqa: BLE001  (only the fixed text leaves the key holder)
            logging.getLogger("secagg").warning("KeyHolder: %s: %s", type(exc).__name__, exc)
            code = exc.code if isinstance(exc, SecAggError) else "SA-INTERNAL"
            raise AggregateRefusedError(code) from None


# -- server side -----------------------------------------------------------------------

_STRATEGY: type | None = None
_STRATEGY_LOCK = threading.Lock()


def __getattr__(name: str) -> Any:
    # The strategy subclasses flwr's FedAvg, so it is built on first access.
    if name == "SecAggFedAvg":
        return _strategy_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _strategy_class() -> type:
    global _STRATEGY
    with _STRATEGY_LOCK:
        if _STRATEGY is None:
            _STRATEGY = _build_strategy_class()
    return _STRATEGY


def _build_strategy_class() -> type:
    from flwr.serverapp.strategy import FedAvg

    class SecAggFedAvg(FedAvg):
        """Flower's FedAvg with the sum computed under encryption by secagg.

        The strategy holds the **public context only** (it refuses a secret
        one). Each round it sums the clients' encrypted full-weight updates
        with :class:`secagg.Aggregator` and returns the encrypted sum as the
        global model; clients running :func:`secagg_mod` decrypt it (cross-silo)
        or, with ``key_holder``, a trusted key holder decrypts it and the
        plaintext mean is broadcast.

        Args:
            public_context: ``ctx.public.to_bytes()`` (or a ``PublicContext``).
            reduce: ``"weighted_mean"`` (clients weight by ``num-examples``,
                inside the encryption) or ``"mean"`` (every client weight 1).
            key_holder: optional callable ``bytes -> tree``: receives the
                encrypted aggregate and returns the decrypted mean model (e.g.
                :class:`KeyHolder`, or a call to a remote key holder).
            fraction_train, fraction_evaluate, min_train_nodes,
            min_evaluate_nodes, min_available_nodes, weighted_by_key,
            arrayrecord_key, configrecord_key, train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn: as in ``flwr.serverapp.strategy.FedAvg``.
            allow_insecure: accept an insecure test context (tests only).

        A round completes with the replies that arrived: error replies and
        payloads that secagg refuses (corrupted, another key, another round,
        a second payload from the same node, past ``max_clients``) are logged
        and counted as failures, and the mean is over the updates actually
        summed. Fewer than the context's ``min_clients`` updates (which the key
        holder refuses to decrypt) keep the previous global model. Per-round
        counts, sizes and times are kept in :attr:`history`.
        """

        def __init__(
            self,
            public_context: PublicContext | bytes,
            *,
            reduce: str = "weighted_mean",
            key_holder: Callable[[bytes], Any] | None = None,
            fraction_train: float = 1.0,
            fraction_evaluate: float = 1.0,
            min_train_nodes: int = 2,
            min_evaluate_nodes: int = 2,
            min_available_nodes: int = 2,
            weighted_by_key: str = "num-examples",
            arrayrecord_key: str = "arrays",
            configrecord_key: str = "config",
            train_metrics_aggr_fn: Callable | None = None,
            evaluate_metrics_aggr_fn: Callable | None = None,
            allow_insecure: bool = False,
        ) -> None:
            super().__init__(
                fraction_train=fraction_train,
                fraction_evaluate=fraction_evaluate,
                min_train_nodes=min_train_nodes,
                min_evaluate_nodes=min_evaluate_nodes,
                min_available_nodes=min_available_nodes,
                weighted_by_key=weighted_by_key,
                arrayrecord_key=arrayrecord_key,
                configrecord_key=configrecord_key,
                train_metrics_aggr_fn=train_metrics_aggr_fn,
                evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
            )
            if reduce not in REDUCES:
                raise ConfigError(f"reduce must be one of {REDUCES}. Found {reduce!r}.")
            if key_holder is not None and not callable(key_holder):
                raise ConfigError("key_holder must be a callable (aggregate bytes -> tree).")
            self.public_context: PublicContext = _public_only(public_context,
                                                              allow_insecure=allow_insecure)
            if self.public_context.dp is not None and reduce == "weighted_mean":
                # DP contexts have max_weight 1: every update is weighted 1, the plain mean
                _log.info("SecAggFedAvg: distributed DP is on, so updates are averaged "
                          "unweighted (reduce='mean'); DP noise is calibrated for weight 1.")
                reduce = "mean"
            self.reduce = reduce
            self.key_holder = key_holder
            #: one dict per round: counts, failures, sizes (bytes) and seconds
            self.history: list[dict[str, Any]] = []
            self._started: dict[int, float] = {}
            pub = self.public_context
            if 0 < min_train_nodes < pub.min_clients:
                _log.warning(
                    "SecAggFedAvg: min_train_nodes=%d is below the context's min_clients=%d; "
                    "rounds with fewer updates keep the previous model.",
                    min_train_nodes, pub.min_clients,
                )

        # -- public material only ------------------------------------------
        def public_state(self) -> dict[str, Any]:
            """What this strategy holds besides Flower's settings: public material only."""
            return {
                "public_context": self.public_context.to_bytes(),
                "reduce": self.reduce,
                "key_holder": self.key_holder is not None,
                "history": list(self.history),
            }

        def summary(self) -> None:
            """Log Flower's FedAvg summary plus secagg's settings."""
            super().summary()
            pub = self.public_context
            _log.info("\t└──> secagg:")
            _log.info("\t\t├── scheme %s, fingerprint %s", pub.scheme, pub.fingerprint.hex()[:16])
            _log.info("\t\t├── reduce '%s', clip %s, max_clients %d, min_clients %d",
                      self.reduce, pub.codec.clip, pub.codec.max_clients, pub.min_clients)
            _log.info("\t\t└── decrypted by %s",
                      "a key holder" if self.key_holder else "the clients (cross-silo)")

        # -- rounds ----------------------------------------------------------
        def _secagg_config(self, config: ConfigRecord) -> None:
            config[REDUCE_KEY] = self.reduce
            config[FINGERPRINT_KEY] = self.public_context.fingerprint

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's sampling and messages, with secagg's settings in the config."""
            self._started[server_round] = time.perf_counter()
            self._secagg_config(config)
            return super().configure_train(server_round, arrays, config, grid)

        def configure_evaluate(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's evaluate messages (the encrypted model), with secagg's settings."""
            self._secagg_config(config)
            return super().configure_evaluate(server_round, arrays, config, grid)

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            """Sum the encrypted updates; return the encrypted (or key-holder decrypted) model."""
            t0 = time.perf_counter()
            replies = list(replies)
            valid, errors = self._check_and_log_replies(replies, is_train=True, validate=False)
            pub = self.public_context
            # one update per node: a node's aggregate-kind payload is never summed
            agg = Aggregator(pub, round_id=server_round, accept_aggregates=False)
            accepted: list[Message] = []
            refused: list[int] = []
            sizes: list[int] = []
            for msg in valid:
                node = msg.metadata.src_node_id
                try:
                    data = _payload(msg)
                    agg.add(data, client_id=str(node))
                except SecAggError as exc:
                    refused.append(node)
                    _log.info("\t> Refused secagg payload from node %d: %s (%s)",
                              node, public_reason(exc), type(exc).__name__)
                    continue
                accepted.append(msg)
                sizes.append(len(data))
            _log.info("aggregate_train: summed %d encrypted updates, %d failures",
                      len(agg), len(errors) + len(refused))
            arrays: ArrayRecord | None = None
            total_bytes = 0
            if len(agg) < pub.min_clients:
                _log.warning(
                    "aggregate_train: %d encrypted update(s) is below min_clients=%d, the "
                    "smallest sum the key holder decrypts; keeping the previous global model.",
                    len(agg), pub.min_clients,
                )
            else:
                total = agg.result().to_bytes()
                total_bytes = len(total)
                if self.key_holder is None:
                    arrays = aggregate_to_arrays(total)
                else:
                    try:
                        arrays = _tree_to_arrays(self.key_holder(total))
                    except Exception as exc:  # noqa: BLE001  (log the fixed text only)
                        _log.error("aggregate_train: the key holder refused the aggregate: "
                                   "%s; keeping the previous global model.",
                                   public_reason(exc))
            metrics = self._aggregate_train_metrics(accepted)
            now = time.perf_counter()
            self.history.append({
                "round": server_round,
                "results": len(valid),
                "failures": len(errors) + len(refused),
                "error_nodes": [m.metadata.src_node_id for m in errors],
                "refused_nodes": refused,
                "summed": len(agg),
                "upload_bytes": float(np.mean(sizes)) if sizes else 0.0,
                "aggregate_bytes": total_bytes,
                "aggregate_s": now - t0,
                "train_s": now - self._started.get(server_round, t0),
                "round_s": None,
            })
            return arrays, metrics

        def _aggregate_train_metrics(self, accepted: list[Message]) -> MetricRecord | None:
            contents = [m.content for m in accepted]
            if not contents or any(len(c.metric_records) != 1 for c in contents):
                return None
            try:
                return self.train_metrics_aggr_fn(contents, self.weighted_by_key)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                _log.warning("aggregate_train: client metrics not aggregated: %s", exc)
                return None

        def aggregate_evaluate(
            self, server_round: int, replies: Iterable[Message]
        ) -> MetricRecord | None:
            """FedAvg's metric aggregation (every ``num-examples`` is 1: a plain mean)."""
            metrics = super().aggregate_evaluate(server_round, replies)
            if self.history and self.history[-1]["round"] == server_round:
                self.history[-1]["round_s"] = time.perf_counter() - self._started.get(
                    server_round, time.perf_counter())
            return metrics

    SecAggFedAvg.__module__ = __name__
    SecAggFedAvg.__qualname__ = "SecAggFedAvg"
    return SecAggFedAvg


def _payload(msg: Message) -> bytes:
    record = msg.content.config_records.get(RECORD_KEY)
    data = None if record is None else record.get(PAYLOAD_KEY)
    if not isinstance(data, bytes):
        raise FormatError(
            f"the reply carries no secagg payload (ConfigRecord {RECORD_KEY!r} with bytes "
            f"{PAYLOAD_KEY!r}); is secagg_mod installed in the node's ClientApp?"
        )
    return data
