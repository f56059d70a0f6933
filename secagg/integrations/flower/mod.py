"""The Flower client mod: decrypts the global model, encrypts the trained one."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from secagg.context import PublicContext, SecretContext
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    MissingSecretKeyError,
    SecAggError,
)
from secagg.guard import DEFAULT_MAX_REFUSALS, DecryptionGuard
from secagg.integrations.flower.keys import AnyContext, _decrypt_cached, _load_context
from secagg.integrations.flower.records import (
    _SERVER_ROUND,
    FINGERPRINT_KEY,
    RECORD_KEY,
    REDUCE_KEY,
    REDUCES,
    _arrays_to_tree,
    _config_value,
    _tree_to_arrays,
    aggregate_from_arrays,
    app_reply,
    error_reply,
    hide_counts,
    payload_to_arrays,
    sample_weight,
    trained_record,
)
from secagg.wire import peek_kind

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, Context, Message, RecordDict

__all__ = ["SecAggMod", "secagg_mod", "encrypted_fedavg_mod", "GUARD_STATE_KEY",
           "LOCAL_STATE_KEY", "ORDER_STATE_KEY"]

_log = logging.getLogger("flwr")  # Flower's own logger, so messages appear in its log
_node_log = logging.getLogger("secagg.flower")  # a node's local details, never sent

#: the ConfigRecord in a node's ``Context.state`` that keeps its decryption guard
GUARD_STATE_KEY = "secagg-guard"
#: the ArrayRecord in a node's ``Context.state`` with the arrays it keeps to itself
#: (those left out by ``include=`` / ``exclude=``); never sent
LOCAL_STATE_KEY = "secagg-local"
#: the ConfigRecord in a node's ``Context.state`` with the model's array names, in order
ORDER_STATE_KEY = "secagg-local-order"

#: a context's bytes, or a function of the node's Flower ``Context`` returning them
ContextSource = bytes | bytearray | memoryview | Callable[["Context"], Any]


#: a node's last decrypted global model and its aggregate's digest, in ``Context.state``:
#: Flower's isolated ClientApp processes do not share memory, but they share the state,
#: so the same aggregate is decrypted once per node (evaluate in round r, train in r + 1)
LAST_MODEL_KEY = "secagg-last-model"
LAST_DIGEST_KEY = "secagg-last-digest"


def _aggregate_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _last_model(node_context: Context, data: bytes) -> ArrayRecord | None:
    """The decrypted model of ``data`` if this node decrypted exactly that aggregate last."""
    state = getattr(node_context, "state", None)
    if state is None or LAST_DIGEST_KEY not in state.config_records:
        return None
    if state.config_records[LAST_DIGEST_KEY].get("digest") != _aggregate_digest(data):
        return None
    return cast("ArrayRecord | None", state.array_records.get(LAST_MODEL_KEY))


def _keep_last_model(node_context: Context, data: bytes, arrays: ArrayRecord) -> None:
    from flwr.app import ConfigRecord

    state = getattr(node_context, "state", None)
    if state is not None:
        state[LAST_MODEL_KEY] = arrays
        state[LAST_DIGEST_KEY] = ConfigRecord({"digest": _aggregate_digest(data)})


class _ModError(SecAggError, code="SA-CONFIG"):
    """The node's own set-up or its train function is wrong: the details stay local."""


def _patterns(value: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    """``include=`` / ``exclude=`` as a tuple of glob patterns (``None``: not given)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(x, str) and x for x in items):
        raise ConfigError(
            f"{what} must be a glob pattern or a list of them (non-empty strings); "
            f"found {value!r}."
        )
    if not items:
        raise ConfigError(f"{what} is an empty list; pass None to leave it out.")
    return tuple(items)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


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
    ArrayRecord ``"secagg"`` (one uint8 array ``"payload"``, which Flower
    chunks) instead of the trained model's ArrayRecord. In every reply it
    sets ``num-examples`` to 1, so no sample count is sent in clear (other
    metrics are sent as the function returns them, in clear).

    Anything wrong (another key, a corrupted aggregate, a missing record) is
    answered with a Flower error reply (``MOD_FAILED_PRECONDITION``), which the
    server counts as a failure. Exceptions of the wrapped train/evaluate
    functions are answered with a fixed text too (they ran on decrypted data);
    their details are in the node's own log. Other message types pass through
    untouched.

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
        include: personalised FL: a glob pattern (``fnmatch``, case-sensitive)
            or a list of them on the ArrayRecord's array names; only the arrays
            matching one are encrypted and averaged (the shared layers).
        exclude: patterns of arrays never encrypted nor sent, even if they
            match ``include`` (e.g. ``exclude=["head.*"]``).

    With ``include`` or ``exclude``, the other arrays of a train reply stay on
    the node: the mod keeps them in its ``Context.state`` (ArrayRecord
    :data:`LOCAL_STATE_KEY`, with the model's array order in
    :data:`ORDER_STATE_KEY`), and rebuilds the full model for the train and
    evaluate functions: the shared arrays from the server, the node's own
    arrays from its state, in the model's order. Before the node has trained
    (round 1) its local arrays are those of the model the server sent, when
    it sent a full one (a plaintext initial model); a node that has neither
    gets the shared arrays only (a warning in its log). Every node must use
    the same filters: the server refuses updates of another shape. A pattern
    that matches no array name, or filters that leave no array to share, are
    answered with an error reply (the details in the node's own log).
    Integer buffers (e.g. ``num_batches_tracked``) may stay local.
    """

    def __init__(
        self,
        context: ContextSource,
        *,
        weighted_by_key: str = "num-examples",
        allow_insecure: bool = False,
        max_refusals: int | None = DEFAULT_MAX_REFUSALS,
        guard_path: str | None = None,
        send_metrics: bool = True,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
    ) -> None:
        DecryptionGuard(max_refusals)  # validates it
        self.include = _patterns(include, "include")
        self.exclude = _patterns(exclude, "exclude")
        if not isinstance(send_metrics, bool):
            raise ConfigError(f"send_metrics must be True or False. Found {send_metrics!r}.")
        if isinstance(context, (bytearray, memoryview)):
            context = bytes(context)
        if isinstance(context, (PublicContext, SecretContext)):
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
        filters = "".join(f", {k}={list(v)!r}" for k, v in
                          (("include", self.include), ("exclude", self.exclude)) if v)
        return f"SecAggMod(weighted_by_key={self.weighted_by_key!r}{filters})"

    @property
    def _filtered(self) -> bool:
        return self.include is not None or self.exclude is not None

    # -- helpers -------------------------------------------------------------
    def _context(self, node_context: Context) -> AnyContext:
        source = self._source
        if callable(source):
            source = source(node_context)
        if isinstance(source, (bytes, bytearray, memoryview)):
            ctx = _load_context(bytes(source), allow_insecure=self.allow_insecure)
        elif isinstance(source, (PublicContext, SecretContext)):
            ctx = source
        else:
            raise _ModError(f"the context function returned a {type(source).__name__}.")
        if ctx.public.backend.insecure and not self.allow_insecure:
            raise _ModError(
                "the secagg context is an insecure test context (Paillier key below 2048 "
                "bits); refusing it. Pass allow_insecure=True in tests only."
            )
        return ctx

    @staticmethod
    def _error(msg: Message, exc: BaseException | None, *, app: bool = False,
               reason: str | None = "") -> Message:
        """An error reply with a fixed code and text; the details stay in the node's log."""
        return error_reply("secagg_mod", msg, exc, app=app, reason=reason)

    def _guard(self, node_context: Context, ctx: AnyContext) -> DecryptionGuard:
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
        return hide_counts(content, self.weighted_by_key, self.send_metrics)

    # -- personalised FL: shared and local arrays ----------------------------
    def _split(self, names: list[str], *, check: bool = True) -> tuple[list[str], list[str]]:
        """The shared (encrypted) and the local names, in order; checks every pattern."""
        include, exclude = self.include, self.exclude
        if check:
            for what, patterns in (("include", include), ("exclude", exclude)):
                for pattern in patterns or ():
                    if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                        raise _ModError(
                            f"{what} pattern {pattern!r} matches no array name of the model "
                            f"(names: {_names(names)})."
                        )
        shared = [n for n in names if (include is None or _matches(n, include))
                  and not _matches(n, exclude or ())]
        if check and not shared:
            raise _ModError(
                f"include={list(include or ())!r}, exclude={list(exclude or ())!r} leave no "
                f"array to encrypt and average (names: {_names(names)})."
            )
        shared_set = set(shared)
        return shared, [n for n in names if n not in shared_set]

    @staticmethod
    def _state(node_context: Context) -> RecordDict:
        state: RecordDict | None = getattr(node_context, "state", None)
        if state is None:
            raise _ModError("include= / exclude= keep the local arrays in the node's "
                            "Context.state, and this Context has none.")
        return state

    def _keep_local(self, node_context: Context, local: dict[str, Any],
                    order: list[str]) -> None:
        from flwr.app import ArrayRecord, ConfigRecord

        state = self._state(node_context)
        state[LOCAL_STATE_KEY] = ArrayRecord(local)
        state[ORDER_STATE_KEY] = ConfigRecord({"names": list(order)})

    def _with_local(self, record: ArrayRecord, node_context: Context, *,
                    decrypted: bool) -> ArrayRecord:
        """The full model: the server's (shared) arrays and the node's own, in the model's order.

        The node's own arrays replace the server's copy. With no own arrays yet,
        a full model from the server (plaintext, round 1) provides them.
        """
        from flwr.app import ArrayRecord

        state = self._state(node_context)
        own = state.array_records.get(LOCAL_STATE_KEY)
        names = list(record.keys())
        if own is None:
            _, kept = self._split(names, check=False)
            if decrypted or not kept:
                _node_log.warning(
                    "secagg_mod: this node keeps no local arrays yet (it has not trained in "
                    "this run): its function gets the %d shared array(s) only.", len(names))
                return record
            # round 1: the server's full (plaintext) model gives the node its first local arrays
            self._keep_local(node_context, {n: record[n] for n in kept}, names)
            return record
        order_record = state.config_records.get(ORDER_STATE_KEY)
        stored = order_record.get("names") if order_record is not None else None
        order = [str(n) for n in stored] if isinstance(stored, list) else []
        known = set(order)
        order += [n for n in dict.fromkeys([*names, *own.keys()]) if n not in known]
        merged = {}
        for name in order:
            if name in own:
                merged[name] = own[name]
            elif name in record:
                merged[name] = record[name]
        return ArrayRecord(merged)

    def _decrypt_incoming(self, msg: Message, ctx: AnyContext, node_context: Context) -> None:
        from flwr.app import RecordDict

        content = msg.content
        round_key = str(_config_value(content, _SERVER_ROUND))[:64]
        replaced = {}
        for key, record in content.array_records.items():
            data = aggregate_from_arrays(record)
            if data is None:
                continue
            if not isinstance(ctx, SecretContext):
                raise MissingSecretKeyError(
                    "received an encrypted global model but this node holds only the public "
                    "context; give it the shared secret context, or use a key holder on the "
                    "server (SecAggFedAvg(key_holder=...))."
                )
            kept = _last_model(node_context, data)
            if kept is not None:  # decrypted before on this node (e.g. evaluate, then train)
                replaced[key] = kept
                _log.info("secagg_mod: %s round %s: aggregate of %d bytes already decrypted "
                          "on this node; 0 s decrypting", msg.metadata.message_type,
                          round_key, len(data))
                continue
            guard = self._guard(node_context, ctx)
            t0 = time.perf_counter()
            try:
                tree = _decrypt_cached(ctx, data, guard, round_key)
            finally:
                self._keep_guard(node_context, guard)
            replaced[key] = _tree_to_arrays(tree)
            _log.info("secagg_mod: %s round %s: decrypted the aggregate (%d bytes) in %.3f s",
                      msg.metadata.message_type, round_key, len(data),
                      time.perf_counter() - t0)
            _keep_last_model(node_context, data, replaced[key])
        if self._filtered:
            for key, record in content.array_records.items():
                replaced[key] = self._with_local(replaced.get(key, record), node_context,
                                                 decrypted=key in replaced)
        if replaced:
            # a new RecordDict: the incoming one may be shared with other messages
            msg.content = RecordDict({k: replaced.get(k, v) for k, v in content.items()})

    def _encrypt_reply(self, msg: Message, reply: Message, ctx: AnyContext,
                       node_context: Context) -> Message:
        content = reply.content
        array_key, record = trained_record(content, RECORD_KEY, _ModError)
        reduce = _config_value(msg.content, REDUCE_KEY) or "weighted_mean"
        if reduce not in REDUCES:
            raise _ModError(f"unknown {REDUCE_KEY} {reduce!r}; expected one of {REDUCES}.")
        weight = 1
        # Under distributed DP every update has weight 1: the noise is calibrated for that.
        if reduce == "weighted_mean" and ctx.dp is None:
            weight = sample_weight(content, self.weighted_by_key, ctx.codec.max_weight,
                                   who="secagg_mod", whose="the context's", error=_ModError)
        server_round = _config_value(msg.content, _SERVER_ROUND)
        local: dict[str, Any] = {}
        order = list(record.keys())
        if self._filtered:
            shared, kept = self._split(order)
            local = {n: record[n] for n in kept}
            record = _subrecord(record, shared)
        t0 = time.perf_counter()
        update = ctx.encrypt(_arrays_to_tree(record), weight=weight, round_id=server_round)
        if update.num_clipped:
            _log.warning(
                "secagg_mod: %d value(s) exceeded clip=%s and were clipped; raise clip in "
                "secagg.generate() so that it covers the model's weights.",
                update.num_clipped, ctx.codec.clip,
            )
        payload = update.to_bytes()
        _log.info("secagg_mod: train round %s: encrypted %d values in %.3f s; upload %d bytes",
                  server_round, update.spec.num_values, time.perf_counter() - t0, len(payload))
        if self._filtered:
            self._keep_local(node_context, local, order)
        out = self._hide_counts(content)
        del out[array_key]
        out[RECORD_KEY] = payload_to_arrays(payload)
        reply.content = out
        return reply

    # -- the mod -------------------------------------------------------------
    def __call__(self, msg: Message, context: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
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
        except Exception as exc:
            return self._error(msg, exc)
        return app_reply("secagg_mod", msg, context, call_next, self._hide_counts,
                         lambda reply: self._encrypt_reply(msg, reply, ctx, context))


def secagg_mod(context: ContextSource, **options: Any) -> SecAggMod:
    """A Flower client mod for :class:`SecAggFedAvg`: ``ClientApp(mods=[secagg_mod(key)])``.

    Takes the arguments of :class:`SecAggMod`, which says what it does to each message.
    """
    return SecAggMod(context, **options)


#: The same mod under a name that says what it does and cannot be mistaken for Flower's
#: own ``secaggplus_mod`` (SecAgg+: pairwise masks, no key; here: homomorphic encryption
#: under a shared key, for :class:`SecAggFedAvg`). ``secagg_mod`` stays (pinned API).
encrypted_fedavg_mod = secagg_mod


def _subrecord(record: ArrayRecord, names: list[str]) -> ArrayRecord:
    from flwr.app import ArrayRecord

    return ArrayRecord({n: record[n] for n in names})


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
