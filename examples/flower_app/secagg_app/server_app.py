"""The ServerApp: encrypted FedAvg (``SecAggFedAvg``, public context only) on the digits task.

Run config (``[tool.flwr.app.config]``, pinned names): ``public-key`` (path on the
SuperLink's machine to the public context; the scheme is read from it),
``num-server-rounds``, ``min-nodes``, ``history-json`` (where ``strategy.history`` is
written as JSON), ``final-aggregate`` (where the final encrypted model's bytes go),
``mode = "plain"`` for Flower's own FedAvg as a baseline.

Anything missing or wrong raises (a ``SecAggError`` with what to do), so the run ends as
failed and the reason is in ``flwr log``: never a run that "succeeds" having done nothing.
"""

from __future__ import annotations

import json
import time
from logging import INFO
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

try:
    from secagg import PublicContext
    from secagg.errors import ConfigError
    from secagg.flower import SecAggFedAvg, aggregate_from_arrays
except ImportError as exc:  # the ServerApp runs where secagg is not installed: say so, loudly
    raise ImportError(
        f"secagg cannot be imported where the ServerApp runs ({exc}). Install it there "
        f"(pip install 'secagg[flower,demo]' from a checkout) and start the SuperLink with "
        f"--disable-runtime-dependency-installation, or give the App a direct path dependency."
    ) from exc

from . import task

app = ServerApp()


def _int(cfg: Any, name: str, lo: int) -> int:
    value = cfg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"run config {name!r} must be an integer >= {lo}. Found {value!r}.")
    return value


def _public_key(cfg: Any) -> bytes:
    path = cfg.get("public-key")
    if not isinstance(path, str) or not path:
        raise ConfigError("run config 'public-key' is not set; pass the public context's path "
                          "on the SuperLink's machine: flwr run --run-config "
                          "'public-key=\"/path/to/server.secagg.pub\"'.")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"run config 'public-key' names {path!r}, which cannot be read on "
                          f"the SuperLink's machine ({exc.strerror}).") from None


def _write_json(path: str, doc: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds; write the history and the final aggregate if asked."""
    cfg = context.run_config
    settings = task.Settings.from_run_config(cfg)
    rounds, min_nodes = _int(cfg, "num-server-rounds", 1), _int(cfg, "min-nodes", 1)
    mode = cfg.get("mode", "secagg")
    timeout = float(cfg.get("round-timeout", 600.0))
    fraction_evaluate = float(cfg.get("fraction-evaluate", 1.0))
    if not 0.0 <= fraction_evaluate <= 1.0:
        raise ConfigError(f"run config 'fraction-evaluate' must be in [0, 1]. "
                          f"Found {fraction_evaluate!r}.")
    options = dict(fraction_train=1.0, fraction_evaluate=fraction_evaluate,
                   min_train_nodes=min_nodes, min_evaluate_nodes=min_nodes,
                   min_available_nodes=min_nodes)
    strategy: Any
    if mode == "plain":
        strategy, scheme = FedAvg(**options), None
    elif mode == "secagg":
        public = _public_key(cfg)
        scheme = PublicContext.from_bytes(public).scheme
        strategy = SecAggFedAvg(public, **options)
    else:
        raise ConfigError(f"run config 'mode' must be 'secagg' or 'plain'. Found {mode!r}.")
    log(INFO, "secagg-digits: %s FedAvg%s, %d round(s), %d node(s) at least", mode,
        f" ({scheme})" if scheme else "", rounds, min_nodes)
    initial = ArrayRecord({k: Array(v) for k, v in task.initial_state(settings).items()})
    t0 = time.perf_counter()
    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                            timeout=timeout)
    wall = time.perf_counter() - t0
    history = list(getattr(strategy, "history", []))
    evaluate = {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
    log(INFO, "secagg-digits: %d round(s) in %.1f s", rounds, wall)
    if cfg.get("history-json"):
        _write_json(str(cfg["history-json"]), {
            "mode": mode, "scheme": scheme, "rounds": rounds, "min_nodes": min_nodes,
            "wall_s": wall, "initial_bytes": sum(len(a.data) for a in initial.values()),
            "history": history, "evaluate": evaluate,
        })
    if cfg.get("final-aggregate") and mode == "secagg":
        data = aggregate_from_arrays(result.arrays)
        if data is None:  # no round reached min_clients: the initial, public model
            log(INFO, "secagg-digits: no aggregate was decryptable; the model is the initial one")
            data = b""
        out = Path(str(cfg["final-aggregate"]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
