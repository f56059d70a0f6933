"""The ClientApp: the digits task's train and evaluate, behind secagg's client mod.

Node config (``flower-supernode --node-config '...'``):

- ``secagg-key``: path to this node's secret kit (``keygen --silos``' ``silo-NN.secagg``),
  or to the public context where a key holder decrypts; a sealed kit is opened with the
  passphrase in the environment variable ``SECAGG_PASSPHRASE``.
- ``partition-id``, ``num-partitions``: which shard of the digits split this node holds.
- ``slow-start-s`` (optional): seconds the node waits before training, a slow silo (the
  deployment test kills such a node in the middle of a round).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from logging import INFO
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from secagg import SecretContext
from secagg.errors import ConfigError
from secagg.flower import encrypted_fedavg_mod

from . import task

PASSPHRASE_ENV = "SECAGG_PASSPHRASE"


def node_key(context: Context) -> Any:
    """The node's secagg context: the file named by node config ``secagg-key``."""
    path = context.node_config.get("secagg-key")
    if not isinstance(path, str) or not path:
        raise ConfigError(
            "node config 'secagg-key' is not set; start the SuperNode with "
            "--node-config 'secagg-key=\"/path/to/silo-01.secagg\" partition-id=0 num-partitions=2'."
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"node config 'secagg-key' names {path!r}, which cannot be read "
                          f"({exc.strerror}).") from None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is not None:
        return SecretContext.from_bytes(data, passphrase=passphrase)
    return data


_secagg = encrypted_fedavg_mod(node_key)


def secagg_unless_plain(msg: Message, context: Context,
                        call_next: Callable[[Message, Context], Message]) -> Message:
    """secagg's mod, or nothing where the run config says ``mode = "plain"`` (the baseline)."""
    if context.run_config.get("mode") == "plain":
        return call_next(msg, context)
    return _secagg(msg, context, call_next)


app = ClientApp(mods=[secagg_unless_plain])


def _partition(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("node config needs integers 'partition-id' and 'num-partitions', e.g. "
                          "--node-config 'partition-id=0 num-partitions=2'.") from None


def _state(record: ArrayRecord) -> dict[str, Any]:
    return {k: a.numpy() for k, a in record.items()}


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local SGD from the (decrypted) global model; replies with the new weights."""
    s = task.Settings.from_run_config(context.run_config)
    pid, parts = _partition(context)
    rnd = int(msg.content["config"]["server-round"])
    log(INFO, "secagg-digits: partition %d round %d: training", pid, rnd)
    delay = float(context.node_config.get("slow-start-s", 0) or 0)
    if delay > 0:
        time.sleep(delay)
    x, y = task.partition(s, pid, parts)
    new, loss = task.train(_state(msg.content["arrays"]), x, y, s, server_round=rnd,
                           partition_id=pid)
    return Message(RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in new.items()}),
        "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss}),
    }), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Test accuracy of the (decrypted) global model."""
    s = task.Settings.from_run_config(context.run_config)
    acc, loss = task.evaluate(_state(msg.content["arrays"]), s)
    return Message(RecordDict({
        "metrics": MetricRecord({"num-examples": 1, "accuracy": acc, "loss": loss}),
    }), reply_to=msg)
