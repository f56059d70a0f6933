"""How secagg payloads travel in Flower records: names, and bytes <-> ArrayRecords and trees."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.errors import AppFailedError, FormatError, SecAggError, public_reason

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, Context, Message, RecordDict

__all__ = ["RECORD_KEY", "PAYLOAD_KEY", "AGGREGATE_KEY", "REDUCE_KEY", "FINGERPRINT_KEY",
           "REDUCES", "aggregate_to_arrays", "aggregate_from_arrays", "payload_to_arrays",
           "record_bytes"]

#: name of the ArrayRecord that carries a client's encrypted update in a train reply
#: (before 0.2: a ConfigRecord of that name, still read by the server)
RECORD_KEY = "secagg"
#: its single uint8 array (in the old ConfigRecord form: its bytes entry)
PAYLOAD_KEY = "payload"
#: the single uint8 array of an ArrayRecord that holds an encrypted aggregate
AGGREGATE_KEY = "secagg-aggregate"
#: config entry telling clients how to weight their update ("weighted_mean" or "mean")
REDUCE_KEY = "secagg-reduce"
#: config entry with the public context's fingerprint, checked by every client
FINGERPRINT_KEY = "secagg-fingerprint"

REDUCES = ("weighted_mean", "mean")
_SERVER_ROUND = "server-round"
_log = logging.getLogger("flwr")  # Flower's own logger
_node_log = logging.getLogger("secagg.flower")  # a node's local details, never sent


# -- what a client mod sends back ------------------------------------------------------
def error_reply(who: str, msg: Message, exc: BaseException | None, *, app: bool = False,
                reason: str | None = "") -> Message:
    """An error reply from mod ``who`` with a fixed code and text; the details stay in the node's log.

    ``app``: the user's train/evaluate function failed (it ran on decrypted
    data, so its exception text stays local too).
    """
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode

    # Local only (the node's own log, not Flower's): no decrypted quantity in any case.
    if exc is not None:
        _node_log.warning("%s: %s: %s", who, type(exc).__name__, exc)
    else:
        _node_log.warning("%s: the app replied with an error: %s", who, reason)
    if app:
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                             reason=f"{who} {public_reason(AppFailedError())}"),
                       reply_to=msg)
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION,
                         reason=f"{who} {public_reason(exc or SecAggError())}"),
                   reply_to=msg)


def call_app(who: str, msg: Message, context: Context,
             call_next: Callable[[Message, Context], Message]) -> tuple[Message, bool]:
    """The app's reply and True, or an :func:`error_reply` and False if it raised or replied with an error."""
    try:
        reply = call_next(msg, context)
    except Exception as exc:
        return error_reply(who, msg, exc, app=True), False
    if reply.has_error():
        return error_reply(who, msg, None, app=True, reason=reply.error.reason), False
    return reply, True


def hide_counts(content: RecordDict, weighted_by_key: str, send_metrics: bool) -> RecordDict:
    """``content`` with every metric record cut to the count 1 under ``weighted_by_key``
    (all of it unless ``send_metrics``): metrics computed on a decrypted (possibly
    crafted) model are an oracle."""
    from flwr.app import MetricRecord, RecordDict

    out = RecordDict()
    for key, record in content.items():
        if isinstance(record, MetricRecord) and not send_metrics:
            record = MetricRecord({weighted_by_key: 1})
        elif isinstance(record, MetricRecord) and weighted_by_key in record:
            record = MetricRecord({**dict(record), weighted_by_key: 1})
        out[key] = record
    return out


def app_reply(who: str, msg: Message, context: Context,
              call_next: Callable[[Message, Context], Message],
              hide: Callable[[RecordDict], RecordDict],
              train: Callable[[Message], Message]) -> Message:
    """Run the app on ``msg``: its evaluate reply with ``hide`` applied to the content, its
    train reply through ``train``; :func:`error_reply` if the app fails or ``train`` raises."""
    reply, ok = call_app(who, msg, context, call_next)
    if not ok:
        return reply
    if msg.metadata.message_type == "evaluate":
        reply.content = hide(reply.content)
        return reply
    try:
        return train(reply)
    except Exception as exc:
        return error_reply(who, msg, exc)


def trained_record(content: RecordDict, record_key: str,
                   error: type[SecAggError]) -> tuple[str, ArrayRecord]:
    """The name and the ArrayRecord of a train reply's model, its only ArrayRecord.

    Raises ``error`` if the reply holds another number of ArrayRecords, or already
    a record named ``record_key`` (the one the mod is to add).
    """
    arrays = content.array_records
    if len(arrays) != 1:
        raise error(f"a train reply must hold exactly one ArrayRecord (the trained model); "
                    f"found {len(arrays)}.")
    if record_key in content:
        raise error(f"the train reply already has a record named {record_key!r}.")
    ((array_key, record),) = arrays.items()
    return array_key, record


def sample_weight(content: RecordDict, weighted_by_key: str, max_weight: int, *, who: str,
                  whose: str, error: type[SecAggError]) -> int:
    """A train reply's sample count (sample-weighted FedAvg), capped at ``max_weight``.

    The count is the entry ``weighted_by_key`` of the reply's one MetricRecord
    that has it, a positive integer (or an integral float); ``error`` is raised
    otherwise. A count above ``max_weight`` (``whose`` it is, e.g. "the key's")
    is capped, with a warning from mod ``who``.
    """
    counts = [m[weighted_by_key] for m in content.metric_records.values()
              if weighted_by_key in m]
    if len(counts) != 1:
        raise error(f"sample-weighted FedAvg needs one MetricRecord with "
                    f"{weighted_by_key!r} in the train reply; found {len(counts)}.")
    n = counts[0]
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise error(f"{weighted_by_key!r} must be a positive integer; got {n!r}.")
    if n > max_weight:
        _log.warning("%s: %s=%d exceeds %s max_weight=%d; the update is weighted by %d.",
                     who, weighted_by_key, n, whose, max_weight, max_weight)
    return min(n, max_weight)


# -- records <-> bytes and trees -------------------------------------------------------


def aggregate_to_arrays(data: bytes) -> ArrayRecord:
    """Wrap an encrypted aggregate's bytes as an ArrayRecord (one uint8 array).

    This is what :class:`SecAggFedAvg` returns as the global model, so that it
    travels in the next ``train`` and ``evaluate`` messages and ends up in
    ``Result.arrays``. Flower sends an Array in chunks of
    ``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`` bytes (5 MiB unless that environment
    variable says otherwise); see the package docstring for the limits that remain.
    """
    return _uint8_record(AGGREGATE_KEY, data)


def payload_to_arrays(data: bytes) -> ArrayRecord:
    """Wrap a client's encrypted update as the ArrayRecord of a train reply (one uint8 array).

    The reply holds it under :data:`RECORD_KEY`, its array under :data:`PAYLOAD_KEY`.
    An ArrayRecord rather than bytes in a ConfigRecord, because Flower chunks
    Arrays (5 MiB pieces) and sends a ConfigRecord whole, in one request.
    """
    return _uint8_record(PAYLOAD_KEY, data)


def _uint8_record(name: str, data: bytes) -> ArrayRecord:
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({name: Array(np.frombuffer(bytes(data), dtype=np.uint8))})


def record_bytes(record: Any) -> int:
    """The bytes an ArrayRecord's arrays take on the wire (their serialised data), else 0."""
    from flwr.app import ArrayRecord

    if not isinstance(record, ArrayRecord):
        return 0
    return sum(len(arr.data) for arr in record.values())


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


def _config_value(content: RecordDict, key: str) -> Any:
    for record in content.config_records.values():
        if key in record:
            return record[key]
    return None


def _payload(msg: Message) -> bytes:
    """A train reply's encrypted update: the uint8 ArrayRecord, or the old ConfigRecord form."""
    content = msg.content
    arrays = content.array_records.get(RECORD_KEY)
    if arrays is not None:
        arr = arrays.get(PAYLOAD_KEY) if list(arrays.keys()) == [PAYLOAD_KEY] else None
        try:
            value = None if arr is None else arr.numpy()
        except (TypeError, ValueError) as exc:
            raise FormatError(
                f"ArrayRecord {RECORD_KEY!r} of the reply is not a numpy array ({exc}); "
                f"update secagg on the node."
            ) from None
        if value is None or value.dtype != np.uint8 or value.ndim != 1:
            raise FormatError(
                f"ArrayRecord {RECORD_KEY!r} of the reply must hold one 1-D uint8 array "
                f"{PAYLOAD_KEY!r}; update secagg on the node."
            )
        return value.tobytes()
    # secagg 0.1 nodes sent the payload as bytes in a ConfigRecord (sent whole, unchunked)
    record = content.config_records.get(RECORD_KEY)
    data = None if record is None else record.get(PAYLOAD_KEY)
    if not isinstance(data, bytes):
        raise FormatError(
            f"the reply carries no secagg payload (ArrayRecord {RECORD_KEY!r} with the uint8 "
            f"array {PAYLOAD_KEY!r}); is secagg_mod installed in the node's ClientApp?"
        )
    return data
