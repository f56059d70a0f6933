"""What the three Flower strategies share (private): mixins over FedAvg, settings checks.

:class:`SecAggFedAvg`, :class:`MaskedFedAvg` and :class:`ThresholdFedAvg`
subclass flwr's FedAvg, so each is built on first use (:func:`built_once`).
What they share are mixins that come before FedAvg in their bases:
:class:`FedAvgMixin` (train metrics, the round's time in the history) and
:class:`StagedMixin` (strategies that run more exchanges through the grid in
``aggregate_train``). This module never imports flwr at run time: to mypy the
mixins subclass FedAvg, at run time :class:`object`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from secagg.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import FedAvg as _FedAvg
    from flwr.serverapp.strategy import Result
else:
    _FedAvg = object  # flwr is imported when a strategy class is built

__all__ = ["built_once", "FedAvgMixin", "StagedMixin", "check_stage_timeout"]

_log = logging.getLogger("flwr")  # Flower's own logger: these lines are in `flwr log`


def built_once(build: Callable[[], type]) -> Callable[[], type]:
    """A function returning the class ``build()`` makes, built on its first call only.

    Thread-safe: concurrent first calls build one class, and every call returns it.
    """
    lock = threading.Lock()
    made: list[type] = []

    def get() -> type:
        with lock:
            if not made:
                made.append(build())
        return made[0]

    return get


def check_stage_timeout(stage_timeout: object) -> None:
    """Refuse a ``stage_timeout`` that is neither ``None`` nor a positive number of seconds."""
    if stage_timeout is not None and not (
            isinstance(stage_timeout, (int, float)) and stage_timeout > 0):
        raise ConfigError(f"stage_timeout must be a positive number of seconds or None. "
                          f"Found {stage_timeout!r}.")


class FedAvgMixin(_FedAvg):
    """What secagg's strategies add to flwr's FedAvg (``class S(FedAvgMixin, FedAvg)``).

    A subclass sets, in ``__init__``, :attr:`history` (one dict per round,
    the last one's ``round_s`` set by :meth:`aggregate_evaluate`) and
    :attr:`_started` (a round's start time, set by its ``configure_train``).
    """

    #: drop a round's start time once its ``round_s`` is in the history
    _forget_started: bool = True
    history: list[dict[str, Any]]
    _started: dict[int, float]

    def _train_metrics(self, accepted: list[Message]) -> MetricRecord | None:
        """FedAvg's train-metric aggregation over the replies ``accepted`` into the sum.

        ``None`` when there is no reply, when a reply does not hold exactly one
        MetricRecord, or when ``train_metrics_aggr_fn`` fails on the clients'
        metrics (a warning; the round goes on).
        """
        contents = [m.content for m in accepted]
        if not contents or any(len(c.metric_records) != 1 for c in contents):
            return None
        try:
            out: MetricRecord = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            _log.warning("aggregate_train: client metrics not aggregated: %s", exc)
            return None
        return out

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """FedAvg's metric aggregation (every ``num-examples`` is 1: a plain mean)."""
        metrics = super().aggregate_evaluate(server_round, replies)
        if self.history and self.history[-1]["round"] == server_round:
            take = self._started.pop if self._forget_started else self._started.get
            self.history[-1]["round_s"] = time.perf_counter() - take(
                server_round, time.perf_counter())
        return metrics


class StagedMixin(FedAvgMixin):
    """:class:`FedAvgMixin` for strategies whose ``aggregate_train`` runs more exchanges (grid).

    A subclass sets, in ``__init__``, :attr:`stage_timeout` (checked by
    :func:`check_stage_timeout`), :attr:`_timeout` (what the later
    exchanges wait) and :attr:`_grid` (the grid they go through; also set
    by its ``configure_train``).
    """

    stage_timeout: float | None
    _timeout: float
    _grid: Grid | None

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """``FedAvg.start``; the later exchanges of a round wait ``stage_timeout`` (or ``timeout``)."""
        self._timeout = float(timeout if self.stage_timeout is None else self.stage_timeout)
        self._grid = grid
        result: Result = super().start(
            grid, initial_arrays, num_rounds=num_rounds, timeout=timeout,
            train_config=train_config, evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn)
        return result
