"""The server-side strategy: Flower's FedAvg with the sum computed under encryption."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from logging import INFO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.aggregator import Aggregator
from secagg.context import PublicContext
from secagg.errors import ConfigError, SecAggError, public_reason
from secagg.integrations.flower._common import FedAvgMixin, built_once
from secagg.integrations.flower.keys import _public_only
from secagg.integrations.flower.records import (
    FINGERPRINT_KEY,
    REDUCE_KEY,
    REDUCES,
    _payload,
    _tree_to_arrays,
    aggregate_to_arrays,
    record_bytes,
)

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
    from flwr.serverapp import Grid

__all__ = ["strategy_class"]

_log = logging.getLogger("flwr")  # the logger of flwr.common.logger.log: in `flwr log`

def strategy_class() -> type:
    """``SecAggFedAvg``, built on first use (it subclasses flwr's FedAvg)."""
    return _strategy_class()


def _build_strategy_class() -> type:
    from flwr.common.logger import log as flwr_log
    from flwr.serverapp.strategy import FedAvg

    class SecAggFedAvg(FedAvgMixin, FedAvg):
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
            min_train_nodes: as in ``flwr.serverapp.strategy.FedAvg``; a warning
                says so when it is below the context's ``min_clients``.
            allow_insecure: accept an insecure test context (tests only).
            **fedavg_options: the other options of ``flwr.serverapp.strategy.FedAvg``
                (``fraction_train``, ``fraction_evaluate``, ``min_evaluate_nodes``,
                ``min_available_nodes``, ``weighted_by_key``, ``arrayrecord_key``,
                ``configrecord_key``, ``train_metrics_aggr_fn``,
                ``evaluate_metrics_aggr_fn``), passed on unchanged.

        A round completes with the replies that arrived: error replies and
        payloads that secagg refuses (corrupted, another key, another round,
        a second payload from the same node, past ``max_clients``) are logged
        and counted as failures, and the mean is over the updates actually
        summed. Fewer than the context's ``min_clients`` updates (which the key
        holder refuses to decrypt) keep the previous global model. Per-round
        counts, sizes and times are logged through Flower's logger (so they are
        in ``flwr log``) and kept in :attr:`history`; :meth:`save_history`
        writes them as JSON.
        """

        _forget_started = False  # a round's start time stays in _started after round_s

        def __init__(
            self,
            public_context: PublicContext | bytes,
            *,
            reduce: str = "weighted_mean",
            key_holder: Callable[[bytes], Any] | None = None,
            min_train_nodes: int = 2,
            allow_insecure: bool = False,
            **fedavg_options: Any,
        ) -> None:
            super().__init__(min_train_nodes=min_train_nodes, **fedavg_options)
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
            #: one dict per round: counts, failures, sizes (bytes) and seconds; keys:
            #: ``round``, ``results`` (replies without an error), ``summed``,
            #: ``refused`` / ``failed`` (payloads secagg refused / error replies),
            #: ``failures`` (both), ``error_nodes``, ``refused_nodes``,
            #: ``bytes_in`` (uploads summed, all nodes), ``upload_bytes`` (their mean),
            #: ``bytes_out`` (model bytes in this round's train and evaluate messages),
            #: ``aggregate_bytes``, ``aggregate_s`` (validating and summing),
            #: ``train_s`` (configure_train to the sum), ``round_s`` (to the evaluation)
            self.history: list[dict[str, Any]] = []
            self._started: dict[int, float] = {}
            self._bytes_out: dict[int, int] = {}
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

        def save_history(self, path: str | os.PathLike[str]) -> Path:
            """Write :attr:`history` as JSON to ``path`` (parent folders made); returns the path.

            Written to a temporary file and renamed, so a reader never sees half a file.
            """
            out = Path(path)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_text(json.dumps({"history": self.history}, indent=1) + "\n")
            tmp.replace(out)
            return out

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
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self._bytes_out[server_round] = record_bytes(arrays) * len(messages)
            return messages

        def configure_evaluate(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            """FedAvg's evaluate messages (the encrypted model), with secagg's settings."""
            self._secagg_config(config)
            messages = list(super().configure_evaluate(server_round, arrays, config, grid))
            sent = record_bytes(arrays) * len(messages)
            if self.history and self.history[-1]["round"] == server_round:
                self.history[-1]["bytes_out"] += sent
            else:
                self._bytes_out[server_round] = self._bytes_out.get(server_round, 0) + sent
            return messages

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
                    except Exception as exc:
                        _log.error("aggregate_train: the key holder refused the aggregate: "
                                   "%s; keeping the previous global model.",
                                   public_reason(exc))
            metrics = self._train_metrics(accepted)
            now = time.perf_counter()
            entry = {
                "round": server_round,
                "results": len(valid),
                "summed": len(agg),
                "refused": len(refused),
                "failed": len(errors),
                "failures": len(errors) + len(refused),
                "error_nodes": [m.metadata.src_node_id for m in errors],
                "refused_nodes": refused,
                "bytes_in": int(sum(sizes)),
                "upload_bytes": float(np.mean(sizes)) if sizes else 0.0,
                "bytes_out": self._bytes_out.pop(server_round, 0),
                "aggregate_bytes": total_bytes,
                "aggregate_s": now - t0,
                "train_s": now - self._started.get(server_round, t0),
                "round_s": None,
            }
            self.history.append(entry)
            flwr_log(INFO, "secagg round %d: %d update(s) summed, %d refused, %d failed; "
                     "%d bytes in, %d bytes out in train messages; %.3f s summing",
                     server_round, entry["summed"], entry["refused"], entry["failed"],
                     entry["bytes_in"], entry["bytes_out"], entry["aggregate_s"])
            return arrays, metrics


    SecAggFedAvg.__module__ = "secagg.integrations.flower"
    SecAggFedAvg.__qualname__ = "SecAggFedAvg"
    return SecAggFedAvg


_strategy_class = built_once(_build_strategy_class)
