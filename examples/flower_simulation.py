"""Encrypted FedAvg on Flower's simulation engine, next to plain Flower FedAvg.

    python examples/flower_simulation.py --rounds 3                   # Paillier, 2048-bit keys
    python examples/flower_simulation.py --scheme ckks                # or bfv
    python examples/flower_simulation.py --scheme paillier --optimized-keys
    python examples/flower_simulation.py --drop 3     # 3 clients fail in every round from round 2

The digits task of ``secagg.demo.fedavg`` (scikit-learn's 8x8 digits, the 64 -> 32 tanh ->
10 MLP, a Dirichlet(0.5) label split) over 20 Flower SuperNodes simulated with
Ray on 2 CPUs (1 CPU per ClientApp). Each round every node trains 2 local
epochs from the global model. The same ClientApp, data split and seeds run twice:

- **plain**: ``flwr.serverapp.strategy.FedAvg``; clients send their weights
  and ``num-examples`` in clear.
- **secagg**: ``secagg.flower.SecAggFedAvg`` holding only the public context,
  and ``secagg_mod`` on the ClientApp holding the shared secret context
  (cross-silo). Clients send encrypted full weights, weighted by their sample
  count inside the encryption; the server sums them and sends the encrypted
  mean model back; each client decrypts it.

Evaluation runs on the clients (Flower's federated evaluate) in both runs:
every client evaluates the global model it received, after decrypting it in
the secagg run, on the same held-out test set (360 digits), so the reported
accuracy is the global model's test accuracy and the min/max over clients
shows that every client holds the same model. As a cross-check the script also
evaluates the final model centrally (the secagg one decrypted with the key,
which this driver process holds only because it plays the key holder that hands
the key to the simulated clients; the ServerApp's strategy never holds it).

Requires ``pip install "secagg[flower,demo]"``.
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
from flwr.serverapp.strategy import FedAvg

import secagg
from _flower_sim import eval_metrics, kib, make_client_app, simulate  # examples/_flower_sim.py
from secagg.demo import fedavg as fl
from secagg.flower import SecAggFedAvg, decrypt_arrays, secagg_mod

# -- plain FedAvg with the same bookkeeping as SecAggFedAvg.history --------------------


class TimedFedAvg(FedAvg):
    """Flower's FedAvg recording per-round replies, bytes and seconds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: list[dict[str, Any]] = []
        self._started: dict[int, float] = {}

    def configure_train(self, server_round, arrays, config, grid):
        self._started[server_round] = time.perf_counter()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        t0 = time.perf_counter()
        replies = list(replies)
        ok = [m for m in replies if m.has_content()]
        arrays, metrics = super().aggregate_train(server_round, replies)
        now = time.perf_counter()
        sizes = [next(iter(m.content.array_records.values())).count_bytes() for m in ok]
        self.history.append({
            "round": server_round, "results": len(ok), "failures": len(replies) - len(ok),
            "summed": len(ok), "upload_bytes": float(np.mean(sizes)) if sizes else 0.0,
            "aggregate_bytes": arrays.count_bytes() if arrays is not None else 0,
            "aggregate_s": now - t0, "train_s": now - self._started[server_round],
            "round_s": None,
        })
        return arrays, metrics

    def aggregate_evaluate(self, server_round, replies):
        metrics = super().aggregate_evaluate(server_round, replies)
        self.history[-1]["round_s"] = time.perf_counter() - self._started[server_round]
        return metrics


# -- the two runs, side by side ---------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scheme", choices=secagg.schemes.available(), default="paillier")
    p.add_argument("--optimized-keys", action="store_true",
                   help="Paillier: Ma-Han-Lei keys (faster encryption and decryption)")
    p.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-split concentration")
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--clip", type=float, default=4.0,
                   help="secagg clip; must cover the model's weights (they stay below 0.6 "
                        "in 30 rounds of this task)")
    p.add_argument("--max-weight", type=int, default=1000,
                   help="largest sample count a client's update may be weighted by")
    p.add_argument("--drop", type=int, default=0,
                   help="clients that fail (raise) in each round from round 2 on")
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

    # The key holder (here: this driver, standing in for one of the clients or an
    # outside party) makes the keys; the secret goes to the clients, the public half
    # to the server.
    t0 = time.perf_counter()
    kw: dict[str, Any] = dict(max_clients=args.clients, clip=args.clip, frac_bits=16,
                              max_weight=args.max_weight, min_clients=2)
    kw.update(secagg.schemes.get(args.scheme).accepted(
        {"key_bits": args.key_bits, "optimized_keys": args.optimized_keys or None}))
    ctx = secagg.generate(args.scheme, **kw)
    secret_bytes, public_bytes = ctx.to_bytes(), ctx.public.to_bytes()
    keygen_s = time.perf_counter() - t0
    print(f"secagg: {args.scheme}, keys in {keygen_s:.1f} s, public context "
          f"{kib(len(public_bytes))}, secret context {kib(len(secret_bytes))}", flush=True)

    fedavg_options = dict(fraction_train=1.0, fraction_evaluate=1.0,
                          min_train_nodes=args.clients, min_evaluate_nodes=args.clients,
                          min_available_nodes=args.clients,
                          evaluate_metrics_aggr_fn=eval_metrics)
    runs: dict[str, dict[str, Any]] = {}
    runs["plain"] = simulate(make_client_app(data, split, args, drop, mods=[]),
                             lambda: TimedFedAvg(**fedavg_options), init, args)
    runs["secagg"] = simulate(
        make_client_app(data, split, args, drop, mods=[secagg_mod(secret_bytes)]),
        lambda: SecAggFedAvg(public_bytes, reduce="weighted_mean", **fedavg_options),
        init, args)

    # -- report --------------------------------------------------------------------
    finals: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        res = run["result"]
        ev = res.evaluate_metrics_clientapp
        arrays = res.arrays if name == "plain" else decrypt_arrays(res.arrays, ctx)
        final = fl.load_mlp(arrays.to_torch_state_dict(), args.hidden)
        central_acc, _ = fl.accuracy_and_loss(final, data.x_test, data.y_test)
        finals[name] = {
            "accuracy": float(ev[args.rounds]["accuracy"]),
            "accuracy_min": float(ev[args.rounds]["accuracy-min"]),
            "accuracy_max": float(ev[args.rounds]["accuracy-max"]),
            "central_accuracy": central_acc,
            "per_round_accuracy": [float(ev[r]["accuracy"]) for r in sorted(ev)],
            "history": run["strategy"].history,
            "wall_s": run["wall_s"],
            "params": {k: a.numpy() for k, a in arrays.items()},
        }
    plain, sec = finals["plain"], finals["secagg"]
    max_diff = max(float(np.max(np.abs(sec["params"][k].astype(np.float64)
                                       - plain["params"][k]))) for k in plain["params"])
    print()
    print(f"== {args.clients} clients, {args.rounds} rounds, digits, Dirichlet alpha "
          f"{args.alpha}, sample-weighted FedAvg of full weights; evaluation on the clients ==")
    print(f"{'round':>5} {'plain acc %':>11} {'secagg acc %':>12} {'plain s':>8} "
          f"{'secagg s':>8} {'sum s':>6} {'failures':>8}")
    for i in range(args.rounds):
        hp, hs = plain["history"][i], sec["history"][i]
        print(f"{i + 1:>5d} {100 * plain['per_round_accuracy'][i]:>11.2f} "
              f"{100 * sec['per_round_accuracy'][i]:>12.2f} {hp['round_s']:>8.2f} "
              f"{hs['round_s']:>8.2f} {hs['aggregate_s']:>6.3f} {hs['failures']:>8d}")
    up_p, down_p = plain["history"][-1]["upload_bytes"], plain["history"][-1]["aggregate_bytes"]
    up_s, down_s = sec["history"][-1]["upload_bytes"], sec["history"][-1]["aggregate_bytes"]
    diff_pp = 100 * abs(sec["accuracy"] - plain["accuracy"])
    print()
    print(f"final accuracy  plain FedAvg {100 * plain['accuracy']:.2f} %   "
          f"secagg ({args.scheme}) {100 * sec['accuracy']:.2f} %   |diff| {diff_pp:.2f} pp")
    print(f"  clients' accuracies: plain {100 * plain['accuracy_min']:.2f}..."
          f"{100 * plain['accuracy_max']:.2f} %, secagg {100 * sec['accuracy_min']:.2f}..."
          f"{100 * sec['accuracy_max']:.2f} % (every client holds the same model)")
    print(f"  central check of the final model: plain {100 * plain['central_accuracy']:.2f} %, "
          f"secagg {100 * sec['central_accuracy']:.2f} %; max |param diff| {max_diff:.1e}")
    print(f"bytes per client per round: upload plain {kib(up_p)}, secagg {kib(up_s)} "
          f"({up_s / up_p:.2f}x); download plain {kib(down_p)}, secagg {kib(down_s)}")
    later = slice(1, None) if args.rounds > 1 else slice(None)
    print(f"round time: round 1 (starts Flower's workers) plain "
          f"{plain['history'][0]['round_s']:.2f} s, secagg {sec['history'][0]['round_s']:.2f} s; "
          f"mean of later rounds plain "
          f"{np.mean([h['round_s'] for h in plain['history'][later]]):.2f} s, secagg "
          f"{np.mean([h['round_s'] for h in sec['history'][later]]):.2f} s")
    print(f"simulation wall plain {plain['wall_s']:.1f} s, secagg {sec['wall_s']:.1f} s; "
          f"keygen {keygen_s:.2f} s")
    total_s = time.perf_counter() - t_total
    print(f"total {total_s:.1f} s")
    if args.json:
        for f in finals.values():
            f.pop("params")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "keygen_s": keygen_s, "public_context_bytes": len(public_bytes),
            "abs_diff_pp": diff_pp, "max_param_diff": max_diff, "total_s": total_s,
            "runs": finals,
        }, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
