"""Masked FedAvg (no key holder) on Flower's simulation engine, next to plain Flower FedAvg.

    python examples/flower_masking.py --rounds 3
    python examples/flower_masking.py --rounds 5 --drop 3                   # 3 clients vanish a round
    python examples/flower_masking.py --drop 3 --drop-stage shares          # ... at another stage
    python examples/flower_masking.py --neighbors 8 --threshold 0.6         # SecAgg+ graph

The digits task of ``secagg.demo.fedavg`` (scikit-learn's 8x8 digits, the 64 -> 32 tanh ->
10 MLP, a Dirichlet(0.5) label split) over 20 Flower SuperNodes simulated with
Ray on 2 CPUs (1 CPU per ClientApp). Each round every node trains 2 local
epochs from the global model. The same ClientApp, data split and seeds run twice:

- **plain**: ``flwr.serverapp.strategy.FedAvg``; clients send their weights
  and ``num-examples`` in clear.
- **masked**: ``secagg.flower.MaskedFedAvg`` and ``masked_mod`` on the
  ClientApp (``secagg.masking``: pairwise masks, Shamir-shared seeds, no key
  anywhere). Each round is four message exchanges (keys, shares, masked
  inputs, unmasking); the server learns only the sample-weighted sum of the
  round's models and broadcasts the mean in clear.

``--drop K`` makes K random clients vanish in each round from round 2: in the
plain run they fail in training; in the masked run they fail at
``--drop-stage`` (default ``masked``: they trained and shared their keys but
never send a masked input, so the others' pairwise masks towards them are
removed from the other survivors' shares). Both runs then average the same
clients (with ``--drop-stage unmask`` the masked run still includes them: their
input arrived, and only their self mask is rebuilt).

Every client evaluates the global model it received on the same held-out test
set (360 digits). Requires ``pip install "secagg[flower,demo]"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.serverapp.strategy import FedAvg

from _flower_sim import eval_metrics, kib, make_client_app, simulate  # examples/_flower_sim.py
from secagg.demo import fedavg as fl
from secagg.flower import MASK_RECORD_KEY, MaskedFedAvg, masked_mod

STAGES = ("keys", "shares", "masked", "unmask")


def vanish_at(stage: str, drop: set[tuple[int, int]]):
    """A mod (placed before ``masked_mod``) that makes client ``pid`` fail at ``stage`` of round ``r``."""

    def mod(msg: Message, context: Context, call_next):
        record = msg.content.config_records.get(MASK_RECORD_KEY) if msg.has_content() else None
        if record is not None and record["stage"] == stage:
            key = (int(msg.metadata.group_id), int(context.node_config["partition-id"]))
            if key in drop:
                raise RuntimeError(f"simulated dropout of partition {key[1]} in round {key[0]}")
        return call_next(msg, context)

    return mod


class TimedFedAvg(FedAvg):
    """Flower's FedAvg recording per-round replies, upload bytes and seconds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: list[dict[str, Any]] = []
        self._started: dict[int, float] = {}

    def configure_train(self, server_round, arrays, config, grid):
        self._started[server_round] = time.perf_counter()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        ok = [m for m in replies if m.has_content()]
        arrays, metrics = super().aggregate_train(server_round, replies)
        sizes = [next(iter(m.content.array_records.values())).count_bytes() for m in ok]
        self.history.append({"round": server_round, "summed": len(ok),
                             "failures": len(replies) - len(ok),
                             "upload_bytes": float(np.mean(sizes)) if sizes else 0.0,
                             "round_s": None})
        return arrays, metrics

    def aggregate_evaluate(self, server_round, replies):
        metrics = super().aggregate_evaluate(server_round, replies)
        self.history[-1]["round_s"] = time.perf_counter() - self._started[server_round]
        return metrics


def _threshold(value: str) -> int | float:
    return float(value) if "." in value else int(value)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--threshold", type=_threshold, default=0.6,
                   help="shares needed per secret: an int, or a fraction of the holders")
    p.add_argument("--neighbors", type=int, default=None,
                   help="SecAgg+ degree k (even); default: every client masks with every other")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-split concentration")
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--clip", type=float, default=4.0,
                   help="codec clip; must cover the model's weights (they stay below 0.6 "
                        "in 30 rounds of this task)")
    p.add_argument("--max-weight", type=int, default=1000,
                   help="largest sample count a client's weights are multiplied by")
    p.add_argument("--drop", type=int, default=0,
                   help="clients that vanish in each round from round 2 on")
    p.add_argument("--drop-stage", choices=STAGES, default="masked",
                   help="the masked-round stage at which they vanish")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="Flower's reply timeout (s)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quiet", action="store_true", help="hide Flower's INFO log")
    args = p.parse_args()
    if args.quiet:
        logging.getLogger("flwr").setLevel(logging.WARNING)

    t_total = time.perf_counter()
    data = fl.load_digits_data(seed=args.seed)
    split = fl.dirichlet_split(data.y_train.numpy(), args.clients, args.alpha,
                               rng=np.random.default_rng(args.seed))
    rng = random.Random(args.seed)
    drop = {(r, pid) for r in range(2, args.rounds + 1)
            for pid in rng.sample(range(args.clients), args.drop)}
    torch.manual_seed(args.seed)
    init = fl.MLP(hidden=args.hidden).state_dict()

    fedavg_options = dict(fraction_train=1.0, fraction_evaluate=1.0,
                          min_train_nodes=args.clients, min_evaluate_nodes=args.clients,
                          min_available_nodes=args.clients,
                          evaluate_metrics_aggr_fn=eval_metrics)
    runs: dict[str, dict[str, Any]] = {}
    # plain FedAvg: the vanishing clients fail in training (at "unmask" the masked run
    # still includes them, so the plain run keeps them too)
    plain_drop = drop if args.drop_stage != "unmask" else set()
    runs["plain"] = simulate(make_client_app(data, split, args, plain_drop, mods=[]),
                             lambda: TimedFedAvg(**fedavg_options), init, args)
    if args.drop_stage == "keys":
        app = make_client_app(data, split, args, drop, mods=[masked_mod()])
    else:
        app = make_client_app(data, split, args, set(),
                              mods=[vanish_at(args.drop_stage, drop), masked_mod()])
    runs["masked"] = simulate(
        app, lambda: MaskedFedAvg(threshold=args.threshold, neighbors=args.neighbors,
                                  clip=args.clip, frac_bits=16, max_weight=args.max_weight,
                                  reduce="weighted_mean", **fedavg_options),
        init, args)

    # -- report --------------------------------------------------------------------
    finals: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        res = run["result"]
        ev = res.evaluate_metrics_clientapp
        final = fl.load_mlp(res.arrays.to_torch_state_dict(), args.hidden)
        central_acc, _ = fl.accuracy_and_loss(final, data.x_test, data.y_test)
        finals[name] = {
            "accuracy": float(ev[args.rounds]["accuracy"]),
            "accuracy_min": float(ev[args.rounds]["accuracy-min"]),
            "accuracy_max": float(ev[args.rounds]["accuracy-max"]),
            "central_accuracy": central_acc,
            "per_round_accuracy": [float(ev[r]["accuracy"]) for r in sorted(ev)],
            "history": run["strategy"].history,
            "wall_s": run["wall_s"],
            "params": {k: a.numpy() for k, a in res.arrays.items()},
        }
    plain, masked = finals["plain"], finals["masked"]
    max_diff = max(float(np.max(np.abs(masked["params"][k].astype(np.float64)
                                       - plain["params"][k]))) for k in plain["params"])
    h0 = masked["history"][0]
    graph = "complete graph" if args.neighbors is None else f"{args.neighbors}-regular graph"
    print()
    print(f"== {args.clients} clients, {args.rounds} rounds, digits, Dirichlet alpha "
          f"{args.alpha}, sample-weighted FedAvg of full weights; masking: {graph}, threshold "
          f"{h0['threshold']} of {h0['holders']}, {h0['width']}-bit group ==")
    print(f"{'round':>5} {'plain acc %':>11} {'masked acc %':>12} {'plain s':>8} "
          f"{'masked s':>8} {'unmask s':>8} {'summed':>6}  dropped (stage)")
    for i in range(args.rounds):
        hp, hm = plain["history"][i], masked["history"][i]
        gone = ", ".join(f"{len(v)} at {s}" for s, v in hm["dropped"].items() if v) or "-"
        print(f"{i + 1:>5d} {100 * plain['per_round_accuracy'][i]:>11.2f} "
              f"{100 * masked['per_round_accuracy'][i]:>12.2f} {hp['round_s']:>8.2f} "
              f"{hm['round_s']:>8.2f} {hm['aggregate_s']:>8.2f} {hm['summed']:>6d}  {gone}")
    up_p = plain["history"][-1]["upload_bytes"]
    last = masked["history"][-1]
    up_m = sum(last["upload_bytes"].values())
    down_m = sum(last["download_bytes"].values())
    diff_pp = 100 * abs(masked["accuracy"] - plain["accuracy"])
    print()
    print(f"final accuracy  plain FedAvg {100 * plain['accuracy']:.2f} %   "
          f"masked {100 * masked['accuracy']:.2f} %   |diff| {diff_pp:.2f} pp")
    print(f"  clients' accuracies: plain {100 * plain['accuracy_min']:.2f}..."
          f"{100 * plain['accuracy_max']:.2f} %, masked {100 * masked['accuracy_min']:.2f}..."
          f"{100 * masked['accuracy_max']:.2f} % (every client holds the same model)")
    print(f"  central check of the final model: plain {100 * plain['central_accuracy']:.2f} %, "
          f"masked {100 * masked['central_accuracy']:.2f} %; max |param diff| {max_diff:.1e}")
    stages = ", ".join(f"{s} {kib(last['upload_bytes'].get(s, 0.0))}" for s in STAGES)
    print(f"bytes per client per round: upload plain {kib(up_p)}, masked {kib(up_m)} "
          f"({up_m / up_p:.2f}x; {stages}); masking messages down {kib(down_m)} "
          f"(plus the plaintext model, as in plain FedAvg)")
    later = slice(1, None) if args.rounds > 1 else slice(None)
    print(f"round time: round 1 (starts Flower's workers) plain "
          f"{plain['history'][0]['round_s']:.2f} s, masked {h0['round_s']:.2f} s; mean of later "
          f"rounds plain {np.mean([h['round_s'] for h in plain['history'][later]]):.2f} s, "
          f"masked {np.mean([h['round_s'] for h in masked['history'][later]]):.2f} s")
    print(f"simulation wall plain {plain['wall_s']:.1f} s, masked {masked['wall_s']:.1f} s")
    total_s = time.perf_counter() - t_total
    print(f"total {total_s:.1f} s")
    if args.json:
        for f in finals.values():
            f.pop("params")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "abs_diff_pp": diff_pp, "max_param_diff": max_diff, "total_s": total_s,
            "runs": finals,
        }, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
