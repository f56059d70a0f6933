#!/usr/bin/env python3
"""Masking benchmark: secagg's pairwise-masked aggregation (``secagg.masking``) against Flower's SecAgg+.

One run puts the same workload (float32 update trees of the ``bench_core`` MLP,
N(0, 0.1) clipped to ±1; clip=1, frac_bits=16, max_weight=1, every client
weight 1; 10 % of the clients vanish after the share stage, i.e. they shared
their secrets but never send a masked input) through:

* ``secagg masking``: ``masking.run_round(trees, threshold=t, neighbors=k,
  dropouts={"masked": dropped}, reduce="mean")``, one in-process round between
  real ``MaskingClient`` and ``MaskingServer`` objects exchanging bytes; its
  own per-stage timings and byte counts (``result.timings``, ``result.bytes``).
* ``Flower SecAgg+ (in-process)``: Flower 1.41's own code, unmodified: the
  server runs ``flwr.server.workflow.SecAggPlusWorkflow`` (its four stages,
  FedAvg's ``configure_fit``), every client runs ``flwr.client.mod.secaggplus_mod``
  (SECP384R1 key pairs as PEM, ``crypto.shamir.create_shares`` of the mask
  seed and of the mask private key, Fernet-encrypted shares,
  ``quantize``, ``pseudo_rand_gen`` masks from ``numpy.random.RandomState``,
  the masked vector as int64; the server's ``combine_shares`` of every
  survivor's seed and every dropped client's key, mask regeneration, sums).
  A small in-process grid carries the messages (a protobuf round trip per
  message, like a transport; its time is neither the server's nor a client's),
  drops the dropped clients' masked-vector replies, and times each client's
  call of the mod (its ``fit``, which only returns the tree, excluded); server
  time is each workflow stage's time minus the time spent in the grid. Upload
  bytes are the serialized (protobuf) size of each reply's content. The
  strategy's ``aggregate_fit`` is replaced by one that keeps the unmasked sum
  (FedAvg would average n identical copies of it).
* ``Flower SecAgg+ (model)``: a cost model from Flower's primitives timed on
  the workload (``create_shares``, ``combine_shares``, ``generate_shared_key``,
  Fernet ``encrypt`` / ``decrypt``, ``pseudo_rand_gen``, ``quantize``, the
  ndarray arithmetic, key generation): the per-client and server work counted
  operation by operation as the code above does it. At workload (a) it checks
  itself against the measured run; at (b), where Flower would need about half
  an hour, it is the only Flower figure (an estimate, not a run).
* ``Flower SecAgg+ (Ray simulation)``: the same ServerApp and ClientApp
  (``mods=[secaggplus_mod]``) in ``flwr.simulation.run_simulation`` (Ray), for a
  small workload, in a child process with a timeout; the dropped clients raise
  in the masked-vector stage. A timing mod reports each client's time in its
  reply; server time is stage time minus the time spent in the grid.

Workloads:

* (a) ``--clients`` x ``--values`` (50 x 100,000): the largest size Flower's code
  finishes in about a minute or two here; complete graph (every client masks with
  every other: Flower ``num_shares = n``, secagg ``neighbors=None``), threshold
  ``n // 2 + 1`` for both. The >= 50x targets are taken here.
* (b) ``--big-clients`` x ``--big-values`` (1,000 x 100,000): secagg alone with
  SecAgg+ degree and threshold from ``masking.recommended_degree`` (documented
  default: ``k = 48, t = 25`` for 1,000 clients and 10 % dropout), and the Flower
  model at the same degree (``num_shares = k + 1``).
* (c) ``--sim-clients`` x ``--sim-values`` (10 x 10,000): secagg, Flower
  in-process and Flower in a Ray simulation, complete graph.

Figures: server time (all stages), client time (mean per client, and the sum
over stages of the slowest client at each stage), upload bytes per client (all
stages; the mean over the clients that sent each stage's message), bytes per
value and against float32, the whole round's wall time, and the max abs error
of the aggregate (the mean of the survivors) against the exact float64 mean;
for secagg also whether the unmasked integer sum equals ``sum_i
codec.encode(x_i)`` over the included clients. secagg rounds at (a) and (c) are
the median of ``--repeats``; Flower runs once (a round at (a) takes over a
minute), as does secagg at (b). The run ends with PASS/MISS lines.

Usage::

    python benchmarks/bench_masks.py                 # (a) 50 x 100k, (b) 1000 x 100k, (c) + Ray (~4 min)
    python benchmarks/bench_masks.py --quick         # 20 x 20k, 200 x 20k, no Ray (< ~30 s)
    python benchmarks/bench_masks.py --sim-clients 0 --out /tmp/masks.json
    python benchmarks/bench_masks.py --out benchmarks/results   # what `make bench` commits

The tables go to stdout; nothing is written unless ``--out`` names a folder
(``masks.json``, ``masks.md`` and ``masks.png`` go there) or a ``.json`` path.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import secagg
from common import (
    CLIP,
    FRAC_BITS,
    MAX_WEIGHT,
    MEAN_ERROR_BOUND,
    STD,
    Problems,
    Shapes,
    Tree,
    exact_mean,
    fmt_bytes,
    fmt_seconds,
    make_client_trees,
    max_abs_error,
    model_shapes,
    timed,
)
from secagg import masking

FULL = {"clients": 50, "values": 100_000, "big_clients": 1000, "big_values": 100_000,
        "sim_clients": 10, "sim_values": 10_000, "repeats": 3}
QUICK = {"clients": 20, "values": 20_000, "big_clients": 200, "big_values": 20_000,
         "sim_clients": 0, "sim_values": 2_000, "repeats": 2}
SMOKE = {"clients": 3, "values": 200, "big_clients": 5, "big_values": 200,
         "sim_clients": 0, "sim_values": 200, "repeats": 1}

# the targets (issue 13)
TARGET_A = (50, 100_000)        # the >= 50x comparison with Flower
TARGET_B = (1000, 100_000)      # secagg alone
SERVER_TARGET_S = 5.0
WHOLE_TARGET_S = 90.0
SPEEDUP_TARGET = 50.0
UPLOAD_TARGET = 0.75            # upload bytes per value / 4 (float32)

STAGES = ("keys", "shares", "masked", "unmask")
# Flower's stage names -> ours
FLOWER_STAGES = {"setup": "keys", "share_keys": "shares", "collect_masked_vectors": "masked",
                 "unmask": "unmask"}
FLOWER_STAGE_METHODS = ("setup_stage", "share_keys_stage", "collect_masked_vectors_stage",
                        "unmask_stage")
# Flower's quantization: its defaults (2**22 levels, masks mod 2**32), clipped at secagg's clip
FLOWER_QUANTIZATION_RANGE = 2**22
FLOWER_MODULUS_RANGE = 2**32
FLOWER_NODE_BASE = 1000  # node id of client i is FLOWER_NODE_BASE + i (1 is the SuperLink)

SYSTEMS = {
    "secagg": "secagg masking",
    "flower": "Flower SecAgg+ (in-process)",
    "flower_model": "Flower SecAgg+ (model from its primitives)",
    "flower_ray": "Flower SecAgg+ (Ray simulation)",
}


# -- workloads and results -------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Who takes part, how they mask, who drops."""

    key: str
    clients: int
    values: int
    neighbors: int | None  # None: complete graph
    threshold: int
    dropped: tuple[int, ...]  # vanish after the share stage

    @property
    def degree(self) -> int:
        """Neighbours per client."""
        return self.clients - 1 if self.neighbors is None else self.neighbors

    @property
    def survivors(self) -> list[int]:
        gone = set(self.dropped)
        return [i for i in range(self.clients) if i not in gone]

    def describe(self) -> str:
        graph = "complete graph" if self.neighbors is None else f"SecAgg+ k={self.neighbors}"
        return (f"({self.key}) {self.clients:,} clients x {self.values:,} values, {graph}, "
                f"t={self.threshold}, {len(self.dropped)} drop after shares")

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "clients": self.clients, "values": self.values,
                "neighbors": self.neighbors, "degree": self.degree, "threshold": self.threshold,
                "dropped": list(self.dropped), "description": self.describe()}


def dropped_clients(n: int, fraction: float, threshold: int) -> tuple[int, ...]:
    """``round(fraction * n)`` evenly spaced clients (at least one if ``fraction > 0``), leaving ``>= t``."""
    d = round(fraction * n)
    if fraction > 0:
        d = max(d, 1)
    d = max(0, min(d, n - threshold))
    return tuple(sorted({math.floor(i * n / d) for i in range(d)})) if d else ()


def complete_workload(key: str, n: int, values: int, dropout: float) -> Workload:
    t = n // 2 + 1
    return Workload(key, n, values, None, t, dropped_clients(n, dropout, t))


def secaggplus_workload(key: str, n: int, values: int, dropout: float) -> Workload:
    """secagg's documented SecAgg+ degree for ``n`` (``masking.recommended_degree``)."""
    k, t = masking.recommended_degree(n, dropout=dropout)
    if k >= n - 1:
        return complete_workload(key, n, values, dropout)
    return Workload(key, n, values, k, t, dropped_clients(n, dropout, t))


@dataclass
class Cell:
    """One system on one workload: seconds and bytes per stage."""

    system: str
    workload: Workload
    server_s: dict[str, float] = field(default_factory=dict)
    client_mean_s: dict[str, float] = field(default_factory=dict)
    client_max_s: dict[str, float] | None = None
    upload: dict[str, float] = field(default_factory=dict)  # mean bytes per client, per stage
    whole_s: float | None = None
    max_abs_error: float | None = None
    exact: bool | None = None
    note: str = ""
    failed: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def server_total(self) -> float | None:
        return sum(self.server_s.values()) if self.server_s else None

    @property
    def client_mean_total(self) -> float | None:
        return sum(self.client_mean_s.values()) if self.client_mean_s else None

    @property
    def client_max_total(self) -> float | None:
        return sum(self.client_max_s.values()) if self.client_max_s else None

    @property
    def upload_total(self) -> float | None:
        return sum(self.upload.values()) if self.upload else None

    @property
    def bytes_per_value(self) -> float | None:
        up = self.upload_total
        return None if up is None else up / self.workload.values

    def as_dict(self) -> dict[str, Any]:
        bpv = self.bytes_per_value
        return {
            "system": self.system, "label": SYSTEMS[self.system],
            "workload": self.workload.as_dict(),
            "server_s": self.server_total, "client_mean_s": self.client_mean_total,
            "client_max_s": self.client_max_total, "upload_bytes_per_client": self.upload_total,
            "bytes_per_value": bpv, "vs_float32": None if bpv is None else bpv / 4,
            "whole_round_s": self.whole_s, "max_abs_error": self.max_abs_error,
            "exact_integer_sum": self.exact, "note": self.note or None, "failed": self.failed,
            "stages": {"server_s": self.server_s, "client_mean_s": self.client_mean_s,
                       "client_max_s": self.client_max_s, "upload_bytes": self.upload},
            **self.extra,
        }


def _median_dicts(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in dicts[0]]
    return {k: statistics.median(d.get(k, 0.0) for d in dicts) for k in keys}


# -- secagg ------------------------------------------------------------------------


def run_secagg(trees: Sequence[Tree], w: Workload, repeats: int, problems: Problems) -> Cell:
    """``masking.run_round`` ``repeats`` times; stage figures are medians over the rounds."""
    cell = Cell("secagg", w)
    walls: list[float] = []
    cpus: list[float] = []
    servers: list[dict[str, float]] = []
    means: list[dict[str, float]] = []
    maxes: list[dict[str, float]] = []
    result: Any = None
    for r in range(repeats):
        cpu0 = time.process_time()
        wall, result = timed(lambda r=r: masking.run_round(
            trees, threshold=w.threshold, neighbors=w.neighbors, clip=CLIP, frac_bits=FRAC_BITS,
            max_weight=MAX_WEIGHT, dropouts={"masked": list(w.dropped)}, round_id=r,
            reduce="mean"))
        cpus.append(time.process_time() - cpu0)
        walls.append(wall)
        servers.append(dict(result.timings["server"]))
        means.append({s: result.timings["client"].get(s, 0.0) for s in STAGES})
        client_max = result.timings.get("client_max")
        if client_max is not None:
            maxes.append({s: client_max.get(s, 0.0) for s in STAGES})
    cell.whole_s = statistics.median(walls)
    cell.server_s = _median_dicts(servers)
    cell.client_mean_s = _median_dicts(means)
    cell.client_max_s = _median_dicts(maxes) if maxes else None
    cell.upload = {s: float(result.bytes["client"].get(s, 0.0)) for s in STAGES}
    survivors = w.survivors
    problems.check(list(result.included) == survivors,
                   f"{w.describe()}: included {len(result.included)} clients, expected the "
                   f"{len(survivors)} survivors")
    included = [trees[i] for i in result.included]
    cell.max_abs_error = max_abs_error(result.tree, exact_mean(included))
    problems.check(cell.max_abs_error <= MEAN_ERROR_BOUND,
                   f"{w.describe()}: max abs error {cell.max_abs_error:.3g} of the mean above "
                   f"2^-{FRAC_BITS + 1}")
    cell.exact = _exact_sum(result, included, w, problems)
    config = result.config
    cell.extra = {
        "samples_s": walls, "cpu_s": cpus,
        "cores_used": statistics.median(c / t for c, t in zip(cpus, walls) if t > 0),
        "mask_bits": getattr(config, "width", None), "holders": getattr(config, "holders", None),
        "server_bytes": dict(result.bytes["server"]),
    }
    return cell


def _exact_sum(result: Any, included: Sequence[Tree], w: Workload, problems: Problems) -> bool:
    """The unmasked integer sum against ``sum_i codec.encode(flatten(x_i))``, in the clear."""
    codec = result.config.codec
    expected = np.zeros(w.values, dtype=np.int64)
    for tree in included:
        expected += codec.encode(secagg.flatten(tree)[1]).astype(np.int64)
    raw = result.raw
    values = np.asarray(raw.values, dtype=np.int64).reshape(-1)
    ok = (values.shape == expected.shape and bool(np.array_equal(values, expected))
          and raw.count == len(included))
    problems.check(ok, f"{w.describe()}: the unmasked integer sum differs from the sum of the "
                       f"encoded inputs (count {raw.count}, expected {len(included)})")
    return ok


# -- Flower: shared pieces ---------------------------------------------------------


def flower_version() -> str | None:
    return common._version("flwr")


def _flower_ready() -> None:
    """Quiet Flower's INFO logs; give this process a task identity (the ServerApp runtime sets one)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("run_id", 0), ("node_id", SUPERLINK_NODE_ID), ("task_id", 0)):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:
            setattr(TaskIdentity, name, value)


def _flower_strategy(n: int, initial: Any = None) -> Any:
    """FedAvg sampling all ``n`` clients, whose ``aggregate_fit`` keeps the unmasked aggregate."""
    from flwr.server.strategy import FedAvg

    class KeepAggregate(FedAvg):  # type: ignore[misc]
        aggregate: Any = None
        configure_s = 0.0  # sampling (in the Ray simulation: waiting for the nodes to register)

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            start = time.perf_counter()
            out = super().configure_fit(server_round, parameters, client_manager)
            self.configure_s += time.perf_counter() - start
            return out

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            self.aggregate = results[0][1].parameters if results else None
            return None, {}

    return KeepAggregate(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n,
                         fraction_evaluate=0.0, min_evaluate_clients=0,
                         initial_parameters=initial)


def _flower_workflow(w: Workload) -> Any:
    from flwr.server.workflow import SecAggPlusWorkflow

    num_shares = w.clients if w.neighbors is None else w.neighbors + 1
    return SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=w.threshold,
                              max_weight=1.0, clipping_range=CLIP,
                              quantization_range=FLOWER_QUANTIZATION_RANGE,
                              modulus_range=FLOWER_MODULUS_RANGE)


def _time_stages(workflow: Any, grid_time: Callable[[], float], strategy: Any,
                 server: dict[str, float], walls: dict[str, float]) -> None:
    """Wrap the workflow's four stage methods: server time = stage time - time in the grid
    - the strategy's ``configure_fit`` (client sampling, which waits for the nodes)."""
    for name, stage in zip(FLOWER_STAGE_METHODS, STAGES):
        orig = getattr(workflow, name)

        def wrapped(grid: Any, context: Any, state: Any, orig: Any = orig,
                    stage: str = stage) -> Any:
            before, sampling = grid_time(), strategy.configure_s
            start = time.perf_counter()
            ok = orig(grid, context, state)
            total = time.perf_counter() - start
            server[stage] = total - (grid_time() - before) - (strategy.configure_s - sampling)
            walls[stage] = total
            return ok

        setattr(workflow, name, wrapped)


def _flower_error(w: Workload, shapes: Shapes, trees: Sequence[Tree], aggregate: Any) -> float | None:
    if aggregate is None:
        return None
    from flwr.common import parameters_to_ndarrays

    arrays = parameters_to_ndarrays(aggregate)
    names = [name for name, _ in shapes]
    reference = exact_mean([trees[i] for i in w.survivors])
    return max_abs_error(dict(zip(names, arrays)), reference)


def _per_stage(records: dict[int, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and max over the clients that ran each stage."""
    mean, top = {}, {}
    for s in STAGES:
        xs = [r[s] for r in records.values() if s in r]
        mean[s] = float(np.mean(xs)) if xs else 0.0
        top[s] = float(max(xs)) if xs else 0.0
    return mean, top


# -- Flower in-process ---------------------------------------------------------------


def run_flower_inprocess(trees: Sequence[Tree], shapes: Shapes, w: Workload) -> Cell:
    """Flower's SecAggPlusWorkflow and secaggplus_mod, unmodified, on an in-process grid."""
    _flower_ready()
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.client.mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
    from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.server_config import ServerConfig
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    n = w.clients
    nids = [FLOWER_NODE_BASE + i for i in range(n)]
    dropped = {FLOWER_NODE_BASE + i for i in w.dropped}
    client_s: dict[int, dict[str, float]] = {nid: {} for nid in nids}
    client_b: dict[int, dict[str, float]] = {nid: {} for nid in nids}
    leaves = {FLOWER_NODE_BASE + i: list(t.values()) for i, t in enumerate(trees)}

    class InProcessGrid:
        """Carries each message to its client's mod (a protobuf round trip, as a transport)."""

        def __init__(self) -> None:
            self.contexts = {nid: Context(run_id=0, node_id=nid, node_config={}, state=RecordDict(),
                                          run_config={}) for nid in nids}
            self.inside = 0.0

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
            start = time.perf_counter()
            replies = []
            for msg in messages:
                nid = msg.metadata.dst_node_id
                stage = FLOWER_STAGES[msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]]
                if stage == "masked" and nid in dropped:
                    continue  # shared its secrets, then vanished: no masked vector
                received = Message(content=recorddict_from_proto(recorddict_to_proto(msg.content)),
                                   metadata=copy.copy(msg.metadata))
                fit_s = [0.0]

                def fit(m: Any, ctxt: Any, nid: int = nid, fit_s: list[float] = fit_s) -> Any:
                    t0 = time.perf_counter()
                    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(leaves[nid]), 1, {})
                    out = Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=m)
                    fit_s[0] += time.perf_counter() - t0
                    return out

                t0 = time.perf_counter()
                reply = secaggplus_mod(received, self.contexts[nid], fit)
                client_s[nid][stage] = time.perf_counter() - t0 - fit_s[0]
                proto = recorddict_to_proto(reply.content)
                client_b[nid][stage] = float(proto.ByteSize())
                replies.append(Message(content=recorddict_from_proto(proto),
                                       metadata=copy.copy(reply.metadata)))
            self.inside += time.perf_counter() - start
            return replies

    grid = InProcessGrid()
    manager = SimpleClientManager()
    for nid in nids:
        manager.register(GridClientProxy(nid, grid, 0))  # type: ignore[arg-type]
    strategy = _flower_strategy(n)
    base = Context(run_id=0, node_id=1, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, config=ServerConfig(num_rounds=1), strategy=strategy,
                            client_manager=manager)
    zeros = [np.zeros(shape, np.float32) for _, shape in shapes]
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters(zeros), keep_input=True)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    workflow = _flower_workflow(w)
    server: dict[str, float] = {}
    walls: dict[str, float] = {}
    _time_stages(workflow, lambda: grid.inside, strategy, server, walls)

    cell = Cell("flower", w)
    try:
        cell.whole_s, _ = timed(lambda: workflow(grid, context))
    except Exception as exc:  # Flower's failure is a finding, not a crash of the benchmark
        cell.failed = f"{type(exc).__name__}: {exc}"
        return cell
    if strategy.aggregate is None:
        cell.failed = "Flower's workflow halted (no aggregate)"
    cell.server_s = server
    cell.client_mean_s, cell.client_max_s = _per_stage(client_s)
    cell.upload = {s: float(np.mean([b[s] for b in client_b.values() if s in b] or [0.0]))
                   for s in STAGES}
    cell.max_abs_error = _flower_error(w, shapes, trees, strategy.aggregate)
    totals = [sum(r.values()) for r in client_s.values()]
    cell.extra = {"stage_wall_s": walls, "configure_fit_s": strategy.configure_s,
                  "transport_s": grid.inside - sum(
        sum(r.values()) for r in client_s.values()),
        "slowest_client_total_s": max(totals)}
    cell.note = "one round"
    return cell


# -- Flower's primitives and the cost model ------------------------------------------------


def _median_call(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``fn`` over ``max(repeats, 3)`` calls; below 0.25 s a first call warms up."""
    first, out = timed(fn)
    calls = max(repeats, 3)
    if first > 0.25:  # combine_shares, create_shares of the key: the first call counts
        return statistics.median([first] + [timed(fn)[0] for _ in range(calls - 1)]), out
    return statistics.median(timed(fn)[0] for _ in range(calls)), out


def flower_primitives(w: Workload, shapes: Shapes, tree: Tree, repeats: int) -> dict[str, Any]:
    """Flower's primitives, each timed as its workflow calls them at workload ``w``."""
    from flwr.common import bytes_to_ndarray, ndarray_to_bytes
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
        decrypt,
        encrypt,
        generate_shared_key,
    )
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_combine,
        parameters_addition,
        parameters_mod,
        parameters_multiply,
    )
    from flwr.common.secure_aggregation.quantization import dequantize, quantize
    from flwr.common.secure_aggregation.secaggplus_utils import (
        pseudo_rand_gen,
        share_keys_plaintext_concat,
        share_keys_plaintext_separate,
    )
    from flwr.supercore.primitives.asymmetric import (
        bytes_to_private_key,
        bytes_to_public_key,
        generate_key_pairs,
        private_key_to_bytes,
        public_key_to_bytes,
    )

    n, k, t = w.clients, w.degree, w.threshold
    holders = k + 1  # Flower's num_shares: the neighbours and the client itself
    d = len(w.dropped)
    # live holders whose shares the server combines, per survivor (itself included) / dropped client
    m_survivor = max(t, min(holders, round(1 + k * (n - d - 1) / max(n - 1, 1))))
    m_dropped = max(t, min(k, round(k * (n - d) / max(n - 1, 1))))

    def keypair() -> tuple[bytes, bytes]:
        sk, pk = generate_key_pairs()
        return private_key_to_bytes(sk), public_key_to_bytes(pk)

    sk1, pk1 = keypair()
    _, peer_pk = keypair()
    shared = generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(peer_pk))
    seed = os.urandom(32)
    seed_shares = create_shares(seed, t, holders)
    sk_shares = create_shares(sk1, t, holders)
    plaintext = share_keys_plaintext_concat(FLOWER_NODE_BASE, FLOWER_NODE_BASE + 1, seed_shares[1],
                                            sk_shares[1])
    ciphertext = encrypt(shared, plaintext)
    params = list(tree.values())
    q_ratio = FLOWER_QUANTIZATION_RANGE  # weight 1 = max_weight
    quantized = factor_combine(q_ratio, quantize(params, CLIP, FLOWER_QUANTIZATION_RANGE))
    dims = [a.shape for a in quantized]
    mask = pseudo_rand_gen(shared, FLOWER_MODULUS_RANGE, dims)
    masked = parameters_mod(parameters_addition(quantized, mask), FLOWER_MODULUS_RANGE)  # int64
    blobs = [ndarray_to_bytes(a) for a in masked]

    ops: dict[str, Callable[[], Any]] = {
        "keygen": keypair,
        "share_seed": lambda: create_shares(os.urandom(32), t, holders),
        "share_sk": lambda: create_shares(sk1, t, holders),
        "agree": lambda: generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(peer_pk)),
        "encrypt": lambda: encrypt(shared, share_keys_plaintext_concat(
            FLOWER_NODE_BASE, FLOWER_NODE_BASE + 1, seed_shares[1], sk_shares[1])),
        "decrypt": lambda: share_keys_plaintext_separate(decrypt(shared, ciphertext)),
        "quantize": lambda: factor_combine(q_ratio, quantize(parameters_multiply(params, 1.0), CLIP,
                                                             FLOWER_QUANTIZATION_RANGE)),
        "prg": lambda: pseudo_rand_gen(shared, FLOWER_MODULUS_RANGE, dims),
        "add": lambda: parameters_addition(masked, mask),
        "mod": lambda: parameters_mod(masked, FLOWER_MODULUS_RANGE),
        "serialize": lambda: [ndarray_to_bytes(a) for a in masked],
        "deserialize": lambda: [bytes_to_ndarray(b) for b in blobs],
        "combine_seed": lambda: combine_shares(seed_shares[:m_survivor]),
        "combine_sk": lambda: combine_shares(sk_shares[:m_dropped]),
        "dequantize": lambda: dequantize(masked[1:], CLIP, FLOWER_QUANTIZATION_RANGE),
    }
    seconds: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for name, fn in ops.items():
        seconds[name], outputs[name] = _median_call(fn, repeats)
    if outputs["combine_seed"] != seed or outputs["combine_sk"] != sk1:
        raise RuntimeError("Flower's combine_shares did not rebuild the secret")
    return {
        "seconds": seconds, "holders": holders, "threshold": t, "degree": k,
        "combined_shares": {"survivor_seed": m_survivor, "dropped_key": m_dropped},
        "sizes": {"public_key_pem": len(pk1), "private_key_pem": len(sk1),
                  "seed_share": len(seed_shares[0]), "key_share": len(sk_shares[0]),
                  "share_ciphertext": len(ciphertext), "masked_vector": sum(map(len, blobs))},
    }


def flower_model(w: Workload, prims: dict[str, Any]) -> Cell:
    """Flower's round counted operation by operation from ``prims`` (see the docstring)."""
    p = prims["seconds"]
    size = prims["sizes"]
    n, k, d = w.clients, w.degree, len(w.dropped)
    live = n - d
    client = {
        "keys": 2 * p["keygen"],
        "shares": p["share_seed"] + p["share_sk"] + k * (p["agree"] + p["encrypt"]),
        "masked": (k * p["decrypt"] + p["quantize"] + p["prg"] + p["add"]
                   + k * (p["agree"] + p["prg"] + p["add"]) + p["mod"] + p["serialize"]),
        "unmask": 0.0,
    }
    server = {
        "keys": 0.0, "shares": 0.0,
        "masked": live * (p["deserialize"] + p["add"]) + p["mod"],
        "unmask": (live * (p["combine_seed"] + p["prg"] + p["add"])
                   + d * (p["combine_sk"] + k * (p["agree"] + p["prg"] + p["add"]))
                   + p["mod"] + p["dequantize"]),
    }
    holders = prims["holders"]
    upload = {
        "keys": 2.0 * size["public_key_pem"],
        "shares": float(k * size["share_ciphertext"]),
        "masked": float(size["masked_vector"]),
        "unmask": holders * (live / n * size["seed_share"] + d / n * size["key_share"]),
    }
    cell = Cell("flower_model", w, server_s=server, client_mean_s=client, upload=upload)
    cell.whole_s = (n * (client["keys"] + client["shares"]) + live * client["masked"]
                    + sum(server.values()))
    cell.note = "estimate: primitives x counts (not a run)"
    cell.extra = {"primitives": prims}
    return cell


# -- Flower in a Ray simulation (child process) ----------------------------------------


def flower_sim_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one SecAgg+ round in ``flwr.simulation.run_simulation``; return its figures."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from flwr.app import ConfigRecord
    from flwr.app.message_type import MessageType
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
    from flwr.common.serde import recorddict_to_proto
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.server_config import ServerConfig
    from flwr.server.workflow import DefaultWorkflow
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    w = Workload(**{**spec["workload"], "dropped": tuple(spec["workload"]["dropped"])})
    shapes: Shapes = [(name, tuple(shape)) for name, shape in spec["shapes"]]
    seed = spec["seed"]
    dropped = set(w.dropped)
    out: dict[str, Any] = {"server": {}, "walls": {}, "clients": []}

    class SimClient(NumPyClient):  # type: ignore[misc]
        def __init__(self, k: int) -> None:
            self.k = k

        def fit(self, parameters: Any, config: Any) -> Any:
            tree = make_client_trees(shapes, self.k + 1, seed)[self.k]
            return list(tree.values()), 1, {}

    def client_fn(context: Any) -> Any:
        return SimClient(int(context.node_config["partition-id"])).to_client()

    def fit_timer(msg: Any, ctxt: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        reply = call_next(msg, ctxt)
        ctxt.state.config_records["bench_fit"] = ConfigRecord({"s": time.perf_counter() - start})
        return reply

    def timing_mod(msg: Any, ctxt: Any, call_next: Any) -> Any:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        stage = FLOWER_STAGES[msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]]
        if stage == "masked" and int(ctxt.node_config["partition-id"]) in dropped:
            raise RuntimeError("benchmark dropout after the share stage")
        ctxt.state.config_records["bench_fit"] = ConfigRecord({"s": 0.0})
        start = time.perf_counter()
        reply = call_next(msg, ctxt)
        elapsed = time.perf_counter() - start - float(ctxt.state.config_records["bench_fit"]["s"])
        reply.content.config_records["bench"] = ConfigRecord({"s": elapsed, "stage": stage})
        return reply

    client_app = ClientApp(client_fn=client_fn, mods=[timing_mod, secaggplus_mod, fit_timer])

    class TimingGrid:
        def __init__(self, grid: Any) -> None:
            self.grid = grid
            self.inside = 0.0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.grid, name)

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
            start = time.perf_counter()
            replies = list(self.grid.send_and_receive(messages, timeout=timeout))
            for m in replies:
                if m.has_content() and "bench" in m.content.config_records:
                    rec = m.content.config_records.pop("bench")
                    out["clients"].append([m.metadata.src_node_id, rec["stage"], float(rec["s"]),
                                           recorddict_to_proto(m.content).ByteSize()])
            self.inside += time.perf_counter() - start
            return replies

    strategy = _flower_strategy(w.clients, ndarrays_to_parameters(
        [np.zeros(shape, np.float32) for _, shape in shapes]))
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Any, context: Any) -> None:
        timing = TimingGrid(grid)
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
        workflow = _flower_workflow(w)
        _time_stages(workflow, lambda: timing.inside, strategy, out["server"], out["walls"])
        start = time.perf_counter()
        DefaultWorkflow(fit_workflow=workflow)(timing, legacy)
        out["workflow_s"] = time.perf_counter() - start
        out["configure_fit_s"] = strategy.configure_s

    start = time.perf_counter()
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=w.clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    out["simulation_s"] = time.perf_counter() - start
    trees = make_client_trees(shapes, w.clients, seed)
    out["max_abs_error"] = _flower_error(w, shapes, trees, strategy.aggregate)
    out["ok"] = strategy.aggregate is not None
    return out


def run_flower_ray(w: Workload, shapes: Shapes, seed: int, timeout_s: float) -> Cell:
    """The Ray simulation in a child process (killed with its process group after ``timeout_s``)."""
    cell = Cell("flower_ray", w)
    spec = {"workload": {k: v for k, v in w.as_dict().items()
                         if k in ("key", "clients", "values", "neighbors", "threshold", "dropped")},
            "shapes": [[name, list(shape)] for name, shape in shapes], "seed": seed}
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--flower-sim-child",
                             json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        cell.failed = f"timed out after {timeout_s:.0f} s"
        cell.extra = {"stderr_tail": stderr[-2000:]}
        return cell
    elapsed = time.perf_counter() - start
    line = next((ln for ln in stdout.splitlines() if ln.startswith("FLOWER_SIM_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        cell.failed = f"exit status {proc.returncode}"
        cell.extra = {"stderr_tail": stderr[-2000:]}
        return cell
    res = json.loads(line.split(" ", 1)[1])
    if not res.get("ok"):
        cell.failed = "the workflow halted (no aggregate)"
    records: dict[int, dict[str, float]] = {}
    sizes: dict[int, dict[str, float]] = {}
    for nid, stage, secs, nbytes in res["clients"]:
        records.setdefault(nid, {})[stage] = secs
        sizes.setdefault(nid, {})[stage] = nbytes
    cell.server_s = {s: res["server"].get(s, 0.0) for s in STAGES}
    cell.client_mean_s, cell.client_max_s = _per_stage(records)
    cell.upload = {s: float(np.mean([b[s] for b in sizes.values() if s in b] or [0.0]))
                   for s in STAGES}
    cell.whole_s = sum(res["walls"].values())
    cell.max_abs_error = res.get("max_abs_error")
    cell.note = (f"whole round = the four stages' wall time; the first stage's "
                 f"{fmt_seconds(res['walls'].get('keys'))} is mostly the Ray actors starting "
                 f"(client sampling, which waits for the nodes: "
                 f"{fmt_seconds(res.get('configure_fit_s'))}); run_simulation "
                 f"{fmt_seconds(res.get('simulation_s'))} with Ray's start and stop, child "
                 f"process {fmt_seconds(elapsed)}")
    cell.extra = {"stage_wall_s": res["walls"], "simulation_s": res.get("simulation_s"),
                  "child_process_s": elapsed, "configure_fit_s": res.get("configure_fit_s")}
    return cell


# -- the run -------------------------------------------------------------------


def run_all(args: argparse.Namespace, problems: Problems, show: bool) -> dict[str, Any]:
    """Every workload and system; returns the cells by workload and Flower's primitive timings."""
    a = complete_workload("a", args.clients, args.values, args.dropout)
    b = secaggplus_workload("b", args.big_clients, args.big_values, args.dropout) \
        if args.big_clients else None
    c = complete_workload("c", args.sim_clients, args.sim_values, args.dropout) \
        if args.sim_clients else None
    flower = flower_version() is not None
    f = int(flower)
    steps = 1 + 2 * f + ((1 + f) if b else 0) + ((1 + 2 * f) if c else 0)
    bar = common.progress(steps, "bench_masks", show)
    out: dict[str, Any] = {"workloads": {k: w for k, w in (("a", a), ("b", b), ("c", c)) if w},
                           "cells": {}, "primitives": {}}

    def phase(label: str) -> None:
        bar.set_postfix_str(label)
        if not show:
            print(f"{label} ...", file=sys.stderr, flush=True)

    def step() -> None:
        bar.update()

    shapes_a = model_shapes(a.values)
    trees_a = make_client_trees(shapes_a, a.clients, args.seed)
    cells: dict[str, dict[str, Cell]] = {"a": {}}
    phase(f"(a) secagg, {a.clients} x {a.values:,}")
    cells["a"]["secagg"] = run_secagg(trees_a, a, args.repeats, problems)
    step()
    if flower:
        phase(f"(a) Flower primitives, {a.clients} x {a.values:,}")
        out["primitives"]["a"] = flower_primitives(a, shapes_a, trees_a[0], args.repeats)
        cells["a"]["flower_model"] = flower_model(a, out["primitives"]["a"])
        step()
        phase(f"(a) Flower SecAgg+ round in-process, {a.clients} x {a.values:,}")
        cells["a"]["flower"] = run_flower_inprocess(trees_a, shapes_a, a)
        step()
    del trees_a

    if c:
        shapes_c = model_shapes(c.values)
        trees_c = make_client_trees(shapes_c, c.clients, args.seed)
        cells["c"] = {}
        phase(f"(c) secagg, {c.clients} x {c.values:,}")
        cells["c"]["secagg"] = run_secagg(trees_c, c, args.repeats, problems)
        step()
        if flower:
            phase(f"(c) Flower in-process, {c.clients} x {c.values:,}")
            cells["c"]["flower"] = run_flower_inprocess(trees_c, shapes_c, c)
            step()
            phase(f"(c) Flower Ray simulation, {c.clients} x {c.values:,} (child process)")
            cells["c"]["flower_ray"] = run_flower_ray(c, shapes_c, args.seed, args.sim_timeout)
            step()
        del trees_c

    if b:
        shapes_b = model_shapes(b.values)
        cells["b"] = {}
        if flower:
            phase(f"(b) Flower primitives, k={b.degree}")
            one = make_client_trees(shapes_b, 1, args.seed)
            out["primitives"]["b"] = flower_primitives(b, shapes_b, one[0], args.repeats)
            cells["b"]["flower_model"] = flower_model(b, out["primitives"]["b"])
            step()
        phase(f"(b) secagg, {b.clients:,} x {b.values:,}, k={b.degree}")
        trees_b = make_client_trees(shapes_b, b.clients, args.seed)
        cells["b"]["secagg"] = run_secagg(trees_b, b, 1, problems)
        del trees_b
        step()
    bar.close()
    out["cells"] = cells
    out["flower"] = flower
    return out


# -- reporting -----------------------------------------------------------------

HEADERS = ["workload", "system", "clients", "values", "k / t", "dropped", "server", "client mean",
           "client max", "upload / client", "bytes/value", "vs float32", "whole round",
           "max abs error"]


def _ratio_cell(x: float | None, y: float | None, better: str) -> str:
    """``x / y`` as ``0.0049x (203x faster)``."""
    if x is None or y is None or y == 0 or x == 0:
        return "-"
    r = x / y
    return f"{r:.2g}x ({y / x:,.0f}x {better})" if r < 1 else f"{r:.2f}x"


def _opt(x: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if x is None else fmt(x)


def _row(key: str, cell: Cell) -> list[str]:
    w = cell.workload
    kt = f"{'n-1' if w.neighbors is None else w.neighbors} / {w.threshold}"
    if cell.failed:
        return [key, SYSTEMS[cell.system], f"{w.clients:,}", f"{w.values:,}", kt,
                str(len(w.dropped)), f"FAILED: {cell.failed}", *["-"] * 7]
    bpv = cell.bytes_per_value
    approx = "≈ " if cell.system == "flower_model" else ""
    return [
        key, SYSTEMS[cell.system], f"{w.clients:,}", f"{w.values:,}", kt, str(len(w.dropped)),
        approx + _opt(cell.server_total, fmt_seconds),
        approx + _opt(cell.client_mean_total, fmt_seconds),
        _opt(cell.client_max_total, fmt_seconds),
        approx + _opt(cell.upload_total, fmt_bytes),
        _opt(bpv, lambda v: f"{v:.2f}"), _opt(bpv, lambda v: f"{v / 4:.2f}x"),
        approx + _opt(cell.whole_s, fmt_seconds),
        _opt(cell.max_abs_error, lambda e: f"{e:.1e}"),
    ]


def _baseline(cells: dict[str, Cell]) -> Cell | None:
    """The Flower figure secagg is compared with: the measured run, else the model."""
    for key in ("flower", "flower_model"):
        c = cells.get(key)
        if c is not None and not c.failed and c.server_s:
            return c
    return None


def main_table(results: dict[str, Any]) -> str:
    rows = []
    for key in ("a", "b", "c"):
        cells = results["cells"].get(key)
        if not cells:
            continue
        for system in SYSTEMS:
            if system in cells:
                rows.append(_row(key, cells[system]))
        s, f = cells.get("secagg"), _baseline(cells)
        if s is not None and f is not None:
            rows.append([key, f"secagg / {SYSTEMS[f.system]}", "", "", "", "",
                         _ratio_cell(s.server_total, f.server_total, "faster"),
                         _ratio_cell(s.client_mean_total, f.client_mean_total, "faster"),
                         _ratio_cell(s.client_max_total, f.client_max_total, "faster"),
                         _ratio_cell(s.upload_total, f.upload_total, "smaller"), "", "",
                         _ratio_cell(s.whole_s, f.whole_s, "faster"), ""])
    return common.markdown_table(HEADERS, rows, left=2)


STAGE_HEADERS = ["workload", "system", *(f"server {s}" for s in STAGES),
                 *(f"client {s}" for s in STAGES), *(f"upload {s}" for s in STAGES)]


def stage_table(results: dict[str, Any]) -> str:
    rows = []
    for key in ("a", "b", "c"):
        cells = results["cells"].get(key, {})
        for system in (s for s in SYSTEMS if s in cells and not cells[s].failed):
            cell = cells[system]
            server = dict(cell.server_s)
            server["keys"] = server.get("keys", 0.0) + server.get("setup", 0.0)  # secagg's setup
            rows.append([key, SYSTEMS[system],
                         *(fmt_seconds(server.get(s, 0.0)) for s in STAGES),
                         *(fmt_seconds(cell.client_mean_s.get(s, 0.0)) for s in STAGES),
                         *(fmt_bytes(cell.upload.get(s, 0.0)) for s in STAGES)])
    return common.markdown_table(STAGE_HEADERS, rows, left=2)


PRIM_HEADERS = ["primitive (Flower 1.41)", "what", "(a) per call", "(b) per call"]
PRIM_WHAT = {
    "keygen": "SECP384R1 key pair to PEM (x2 per client)",
    "share_seed": "create_shares(32-byte seed, t, k+1)",
    "share_sk": "create_shares(PEM private key, t, k+1)",
    "agree": "generate_shared_key (PEM parse, ECDH, HKDF)",
    "encrypt": "Fernet encrypt of one share pair",
    "decrypt": "Fernet decrypt of one share pair",
    "quantize": "quantize (stochastic rounding) + weight factor",
    "prg": "pseudo_rand_gen: one mask over the vector (RandomState)",
    "add": "parameters_addition over the vector",
    "mod": "parameters_mod over the vector",
    "serialize": "ndarray_to_bytes of the masked vector",
    "deserialize": "bytes_to_ndarray of one masked vector (server)",
    "combine_seed": "combine_shares of a survivor's seed (live holders' shares)",
    "combine_sk": "combine_shares of a dropped client's key",
    "dequantize": "dequantize the sum",
}


def primitives_table(results: dict[str, Any]) -> str:
    prims = results["primitives"]
    rows = []
    for name, what in PRIM_WHAT.items():
        cells = [_opt(prims[k]["seconds"].get(name) if k in prims else None, fmt_seconds)
                 for k in ("a", "b")]
        rows.append([name, what, *cells])
    return common.markdown_table(PRIM_HEADERS, rows, left=2)


def footnotes(results: dict[str, Any], config: dict[str, Any], wall_s: float) -> list[str]:
    cells = results["cells"]
    a = results["workloads"]["a"]
    notes = [
        f"Updates: float32 trees of the bench_core MLP (N(0, {STD}) clipped to ±{CLIP}); "
        f"secagg clip={CLIP}, frac_bits={FRAC_BITS}, max_weight={MAX_WEIGHT}, max_clients = n; "
        f"Flower clipping_range={CLIP}, quantization_range=2^22, modulus_range=2^32 (its "
        "defaults), max_weight=1; every client weight 1. The aggregate is the mean of the "
        "survivors; 'max abs error' is against the exact float64 mean.",
        f"Dropouts: {config['dropout']:.0%} of the clients (evenly spaced indices) share their "
        "secrets and then vanish before sending the masked input: secagg "
        "dropouts={'masked': ...}; Flower: no reply in the collect-masked-vectors stage (Ray: "
        "the client raises there). Both then rebuild the dropped clients' mask keys.",
        "k / t: neighbours per client / threshold; n-1 = complete graph (Flower num_shares = n, "
        "secagg neighbors=None). Flower counts the client itself among the k+1 share holders, "
        "as secagg does.",
        "server: all stages' server work (secagg: MaskingServer's receive/close/finish; Flower: "
        "the workflow stages minus the time spent carrying messages). client mean: the sum "
        "over stages of the mean per client; client max: the sum over stages of the slowest "
        "client at each stage (an upper bound of the slowest client's total). upload: bytes a "
        "client sends, all stages (Flower: protobuf size of each reply's content).",
        f"secagg rounds at (a) and (c): median of {config['repeats']}; (b) and Flower: one "
        "round. whole round: wall time of one round with every client run in turn in this "
        "process (for Flower in-process: including the protobuf round trip of every message; "
        "for the Ray simulation: the workflow's stages, actors starting included).",
        "Flower's masked vector is int64 (8 bytes per value: 2.00x float32) whatever its "
        "modulus; secagg packs each value at w bits (w = codec.slot_bits).",
    ]
    for key in ("a", "b", "c"):
        s = cells.get(key, {}).get("secagg")
        if s is not None:
            notes.append(f"secagg at ({key}): mask group 2^{s.extra.get('mask_bits')}, "
                         f"{s.extra.get('holders')} holders per secret, the round used "
                         f"{s.extra.get('cores_used', float('nan')):.2f} cores (CPU time / wall); "
                         f"integer sum exact: {'yes' if s.exact else 'NO'}.")
    model_a, flower_a = cells["a"].get("flower_model"), cells["a"].get("flower")
    if model_a and flower_a and not flower_a.failed and flower_a.server_total:
        notes.append(
            f"Model check at (a): predicted server {fmt_seconds(model_a.server_total)} vs "
            f"measured {fmt_seconds(flower_a.server_total)}, client "
            f"{fmt_seconds(model_a.client_mean_total)} vs "
            f"{fmt_seconds(flower_a.client_mean_total)} (the model leaves out Flower's message "
            "and state bookkeeping).")
    if "b" in cells and "flower_model" in cells["b"]:
        m = cells["b"]["flower_model"]
        notes.append(f"(b) Flower is not run: at {m.workload.clients:,} clients its model "
                     f"predicts a {fmt_seconds(m.whole_s)} round in one process "
                     f"(server {fmt_seconds(m.server_total)}), dominated by combine_shares "
                     "(pycryptodome Shamir over GF(2^128) in Python, per 16-byte chunk of the "
                     "PEM text).")
    ray = cells.get("c", {}).get("flower_ray")
    if ray is not None:
        notes.append(f"Ray simulation at (c): {'FAILED: ' + ray.failed if ray.failed else ray.note}.")
    if a.clients != TARGET_A[0] or a.values != TARGET_A[1]:
        notes.append("Sizes below the targets' (--quick / --smoke / options): the PASS/MISS "
                     "lines of those targets are SKIP.")
    notes.append(f"Benchmark wall time {fmt_seconds(wall_s)}.")
    return notes


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/MISS lines (SKIP where the size is not the target's, or a figure is missing)."""
    cells = results["cells"]
    a_cells = cells["a"]
    b_cells = cells.get("b", {})

    def line(name: str, value: float | None, threshold: float | None, upper: bool, fmt: str,
             extra: str = "", skip: str | None = None) -> dict[str, Any]:
        if value is None:
            status, skip = "SKIP", skip or "not measured"
        elif skip:
            status = "SKIP"
        elif threshold is None:
            status = "INFO"
        else:
            status = "PASS" if (value <= threshold if upper else value >= threshold) else "MISS"
        shown = "-" if value is None else fmt.format(value)
        text = f"{status}  {name}: {shown}{extra}" + (f" ({skip})" if skip else "")
        return {"target": name, "threshold": threshold, "value": value, "status": status,
                "line": text}

    def size_skip(w: Workload | None, target: tuple[int, int]) -> str | None:
        if w is None:
            return "not run"
        if (w.clients, w.values) != target:
            return f"measured at {w.clients:,} x {w.values:,}; the target is at " \
                   f"{target[0]:,} x {target[1]:,}"
        return None

    wa = results["workloads"]["a"]
    wb = results["workloads"].get("b")
    sb = b_cells.get("secagg")
    sa = a_cells["secagg"]
    skip_b = size_skip(wb, TARGET_B)
    skip_a = size_skip(wa, TARGET_A)
    out = [
        line(f"secagg server <= {SERVER_TARGET_S:g} s on one core at (b)",
             sb.server_total if sb else None, SERVER_TARGET_S, True, "{:.2f} s",
             f" (the round used {sb.extra['cores_used']:.2f} cores)" if sb else "", skip_b),
        line(f"secagg whole in-process round <= {WHOLE_TARGET_S:g} s at (b)",
             sb.whole_s if sb else None, WHOLE_TARGET_S, True, "{:.1f} s", "", skip_b),
    ]
    fa = a_cells.get("flower")
    flower_skip = "Flower not run" if fa is None else f"Flower failed: {fa.failed}" if fa.failed \
        else skip_a
    if fa is not None and fa.failed:
        fa = None
    for what, attr in (("server", "server_total"), ("client", "client_mean_total")):
        mine = getattr(sa, attr)
        theirs = getattr(fa, attr) if fa else None
        ratio = theirs / mine if theirs and mine else None
        extra = (f" (Flower {fmt_seconds(theirs)} vs secagg {fmt_seconds(mine)}"
                 + (f"; slowest-client sums {fmt_seconds(fa.client_max_total)} vs "
                    f"{fmt_seconds(sa.client_max_total)}" if what == "client" and fa
                    and fa.client_max_total and sa.client_max_total else "") + ")") if fa else ""
        out.append(line(f">= {SPEEDUP_TARGET:g}x faster than Flower in {what} time at (a)", ratio,
                        SPEEDUP_TARGET, False, "{:,.1f}x", extra,
                        flower_skip))
    for key, skip in (("b", skip_b), ("a", skip_a)):
        s = cells.get(key, {}).get("secagg")
        bpv = s.bytes_per_value if s else None
        out.append(line(f"secagg upload <= {UPLOAD_TARGET:g}x float32 at ({key})",
                        None if bpv is None else bpv / 4, UPLOAD_TARGET, True, "{:.3f}x",
                        f" ({bpv:.3f} bytes/value vs 4; masked vector at w = "
                        f"{s.extra.get('mask_bits')} bits)" if s and bpv else "", skip))
    flower_bpv = [c.bytes_per_value for c in (a_cells.get("flower"), a_cells.get("flower_model"))
                  if c is not None and not c.failed and c.bytes_per_value]
    if flower_bpv:
        out.append(line("(for comparison) Flower upload vs float32 at (a)", flower_bpv[0] / 4, None,
                        True, "{:.3f}x", " (int64 masked vector: 2.00x, plus keys and shares)"))
    ray = cells.get("c", {}).get("flower_ray")
    if ray is not None:
        out.append(line("(for comparison) Flower whole round in a Ray simulation at (c)",
                        None if ray.failed else ray.whole_s, None, True, "{:.1f} s",
                        "" if ray.failed else " (stable: one round completed)",
                        f"FAILED: {ray.failed}" if ray.failed else None))
    return out


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Left: server / client mean / client max, both systems, (a) and (b); right: per stage at (a)."""
    plt = common.pyplot()
    if plt is None:
        return None
    cells = results["cells"]
    series = [(k, s) for k in ("a", "b") for s in ("secagg", "flower", "flower_model")
              if s in cells.get(k, {}) and not cells[k][s].failed
              and not (s == "flower_model" and "flower" in cells.get(k, {}))]
    colors = {"secagg": "#1f77b4", "flower": "#ff7f0e", "flower_model": "#ffbb78"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6))
    metrics = [("server", "server_total"), ("client mean", "client_mean_total"),
               ("client max", "client_max_total")]
    xs = np.arange(len(metrics))
    width = 0.8 / max(len(series), 1)
    for i, (key, system) in enumerate(series):
        cell = cells[key][system]
        ys = [getattr(cell, attr) or float("nan") for _, attr in metrics]
        w = cell.workload
        label = f"({key}) {SYSTEMS[system]}, {w.clients:,} x {w.values:,}"
        bars = ax1.bar(xs + (i - (len(series) - 1) / 2) * width, ys, width, label=label,
                       color=colors[system], alpha=1.0 if key == "a" else 0.6,
                       hatch="" if key == "a" else "//")
        common.annotate_bars(ax1, bars, ys, fmt_seconds)
    ax1.set_yscale("log")
    ax1.set_ylim(top=ax1.get_ylim()[1] * 30)  # room for the labels and the legend
    ax1.set_xticks(xs)
    ax1.set_xticklabels([m for m, _ in metrics])
    ax1.set_ylabel("seconds (log scale)")
    ax1.set_title("one round with dropouts: server and client time")
    ax1.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=7)

    a = cells["a"]
    systems = [s for s in ("secagg", "flower") if s in a and not a[s].failed]
    xs2 = np.arange(len(STAGES))
    bars_per = [(s, role) for role in ("server", "client") for s in systems]
    width2 = 0.8 / max(len(bars_per), 1)
    for i, (system, role) in enumerate(bars_per):
        cell = a[system]
        src = dict(cell.server_s) if role == "server" else cell.client_mean_s
        if role == "server":
            src["keys"] = src.get("keys", 0.0) + src.get("setup", 0.0)
        ys = [src.get(s) or float("nan") for s in STAGES]
        bars = ax2.bar(xs2 + (i - (len(bars_per) - 1) / 2) * width2, ys, width2,
                       label=f"{SYSTEMS[system]}: {role}" + (" (mean)" if role == "client" else ""),
                       color=colors[system], alpha=1.0 if role == "server" else 0.5)
        common.annotate_bars(ax2, bars, ys, fmt_seconds)
    ax2.set_yscale("log")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 30)
    ax2.set_xticks(xs2)
    ax2.set_xticklabels(STAGES)
    ax2.set_ylabel("seconds (log scale)")
    wa = results["workloads"]["a"]
    ax2.set_title(f"per stage at (a): {wa.clients} clients x {wa.values:,} values")
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=7)
    return common.save_figure(fig, path, "secagg masking vs Flower SecAgg+ (flwr "
                                         f"{flower_version()})")


def json_cells(results: dict[str, Any]) -> dict[str, Any]:
    return {key: {system: cell.as_dict() for system, cell in cells.items()}
            for key, cells in results["cells"].items()}


def markdown(doc: dict[str, Any], results: dict[str, Any], target_rows: list[dict[str, Any]],
             problems: list[str], notes: list[str]) -> list[str]:
    a = results["workloads"]["a"]
    title = (f"bench_masks: secagg masking vs Flower SecAgg+, {a.clients} clients x "
             f"{a.values:,} values")
    tables = [main_table(results), "## Per stage", stage_table(results)]
    if results["primitives"]:
        tables += ["## Flower's primitives (median per call)", primitives_table(results)]
    workloads = [w.describe() for w in results["workloads"].values()]
    return [*common.markdown_lines(title, doc, ("flwr",), tables,
                                   ["Workloads: " + "; ".join(workloads) + ".", *notes]),
            *common.target_lines("Targets", target_rows, problems, markdown=True)]


# -- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` and ``--smoke`` change the defaults, explicit ones win."""
    p = common.parser(
        __doc__, f"small run: (a) {QUICK['clients']} x {QUICK['values']:,}, (b) "
                 f"{QUICK['big_clients']} x {QUICK['big_values']:,}, no Ray simulation")
    p.add_argument("--clients", type=int,
                   help=f"(a) clients, both systems (default {FULL['clients']})")
    p.add_argument("--values", type=int, help=f"(a) values per update (default {FULL['values']:,})")
    p.add_argument("--big-clients", type=int,
                   help=f"(b) clients, secagg alone; 0 skips (default {FULL['big_clients']})")
    p.add_argument("--big-values", type=int,
                   help=f"(b) values per update (default {FULL['big_values']:,})")
    p.add_argument("--sim-clients", type=int,
                   help=f"(c) clients, with Flower's Ray simulation; 0 skips "
                        f"(default {FULL['sim_clients']}, none with --quick / --smoke)")
    p.add_argument("--sim-values", type=int,
                   help=f"(c) values per update (default {FULL['sim_values']:,})")
    p.add_argument("--sim-timeout", type=float, default=600.0,
                   help="seconds before the Ray simulation's child process is killed (default 600)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="share of the clients dropping after the share stage (default 0.1)")
    p.add_argument("--repeats", type=int,
                   help=f"secagg rounds at (a) and (c), median (default {FULL['repeats']})")
    p.add_argument("--flower-sim-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = common.apply_defaults(p.parse_args(argv), FULL, QUICK, SMOKE)
    if args.flower_sim_child:
        return args
    if args.clients < 3 or (args.big_clients and args.big_clients < 3) \
            or (args.sim_clients and args.sim_clients < 3):
        p.error("--clients, --big-clients and --sim-clients must be at least 3 (or 0 to skip b, c)")
    if min(args.values, args.big_values, args.sim_values, args.repeats) < 1:
        p.error("--values, --big-values, --sim-values and --repeats must be positive")
    if not 0 <= args.dropout < 0.5:
        p.error("--dropout must be in [0, 0.5)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run both systems on the same workloads, print the tables; ``--out`` writes JSON, md, PNG."""
    args = parse_args(argv)
    if args.flower_sim_child:
        res = flower_sim_child(json.loads(args.flower_sim_child))
        print("FLOWER_SIM_RESULT " + json.dumps(common.jsonable(res)), flush=True)
        return 0
    run = common.Run()
    run.info["libraries"]["flwr"] = flower_version()
    config = {k: getattr(args, k) for k in
              ("clients", "values", "big_clients", "big_values", "sim_clients", "sim_values",
               "dropout", "repeats", "seed", "quick", "smoke")}
    print(f"bench_masks: (a) {args.clients} x {args.values:,}"
          + (f", (b) {args.big_clients:,} x {args.big_values:,}" if args.big_clients else "")
          + (f", (c) {args.sim_clients} x {args.sim_values:,} + Ray" if args.sim_clients else "")
          + f", {args.dropout:.0%} dropping after shares; flwr {flower_version()}; "
          + run.summary(), flush=True)
    problems = Problems()
    results = run_all(args, problems, not args.no_progress)
    wall_s = run.finish()

    target_rows = targets(results)
    notes = footnotes(results, config, wall_s)
    print()
    for w in results["workloads"].values():
        print(f"  {w.describe()}")
    print()
    print(main_table(results))
    print()
    print(stage_table(results))
    if results["primitives"]:
        print()
        print(primitives_table(results))
    print()
    for note in notes:
        print(f"- {note}")
    print()
    print("\n".join(common.target_lines("Targets", target_rows, problems.items)))
    doc = common.result_doc(
        "bench_masks",
        {**config, "std": STD, "clip": CLIP, "frac_bits": FRAC_BITS, "max_weight": MAX_WEIGHT,
         "flower": {"version": flower_version(), "quantization_range": FLOWER_QUANTIZATION_RANGE,
                    "modulus_range": FLOWER_MODULUS_RANGE, "clipping_range": CLIP,
                    "max_weight": 1.0}},
        run, statistic=f"secagg (a)/(c): median of {args.repeats} rounds; otherwise one round",
        workloads={k: w.as_dict() for k, w in results["workloads"].items()},
        cells=json_cells(results), flower_primitives=results["primitives"],
        targets=target_rows, notes=notes, secagg_problems=problems.items)
    written = common.write_results(
        args.out, "masks", doc, markdown(doc, results, target_rows, problems.items, notes),
        plot=lambda path: plot(results, path), figure_alt="server and client time per system")
    common.report_written(wall_s, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
