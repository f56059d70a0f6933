"""One deployed round of a large model: encrypted FedAvg vs plain Flower FedAvg, same deployment.

    python benchmarks/bench_deploy.py                       # 11.2M values (ResNet-18's count), BFV
    python benchmarks/bench_deploy.py --values 500000 --scheme paillier
    python benchmarks/bench_deploy.py --out benchmarks/results

Starts a SuperLink and two SuperNodes on 127.0.0.1 (insecure, subprocess isolation; the
harness of ``tests/deploy``), then runs the App of ``examples/flower_app`` twice, one round
each, with the digits MLP padded to ``--values`` values (``pad-values``): ``mode="plain"``
(Flower's FedAvg) and ``mode="secagg"`` with kits made by the CLI for ``--scheme``. The
clients hold the key, so BFV/CKKS uploads are seeded (half a ciphertext). Reported from
the App's own history JSON: the round's wall time, the ratio to plain, bytes per upload
and per aggregate, seconds summing. Targets (issue 15): at 11.2M values, at most 600 s,
at most 1.5x plain, at most 80 MB uploaded per client.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.deployment import Deployment, free_port, tail, wait_for

MLP_VALUES = 64 * 32 + 32 + 32 * 10 + 10  # the digits MLP (hidden=32)


def _round(d: Deployment, config: dict, timeout: float) -> dict:
    path = Path(config["history-json"])
    t0 = time.perf_counter()
    proc = d.run_app(config, timeout=timeout)
    wall = time.perf_counter() - t0
    if not path.exists():
        raise SystemExit(f"the run wrote no history (rc {proc.returncode}):\n"
                         f"{tail(d.tmp / 'flwr-run.log', 40)}")
    doc = json.loads(path.read_text())
    doc["flwr_run_s"] = wall
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=11_200_000)
    parser.add_argument("--scheme", default="bfv", choices=["bfv", "ckks", "paillier"])
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the encrypted run (2: see whether round 2's train decrypts)")
    parser.add_argument("--out", type=Path, help="write bench_deploy.json here")
    args = parser.parse_args()
    pad = max(args.values - MLP_VALUES, 0)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp_name:
        tmp = Path(tmp_name)
        kits = tmp / "kits"
        subprocess.run([sys.executable, "-m", "secagg", "keygen", "--scheme", args.scheme,
                        "--clip", "4", "--max-weight", "1000", "--max-clients", "8",
                        "--silos", "2", "--out-dir", str(kits), "--no-passphrase"],
                       check=True, capture_output=True, timeout=600)
        d = Deployment(tmp)
        try:
            port = free_port()
            d.start("superlink", "flower-superlink", "--insecure",
                    "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                    "--port", str(port))
            wait_for("the SuperLink", lambda: "startup complete" in tail(d.log("superlink")),
                     120, [d.log("superlink")])
            for i in range(2):
                d.start(f"node{i}", "flower-supernode", "--insecure", "--superlink",
                        f"127.0.0.1:{port}", "--port", str(free_port()), "--node-config",
                        f'secagg-key="{kits}/silo-0{i + 1}.secagg" partition-id={i} num-partitions=2')
            d.connect(port)
            for i in range(2):
                wait_for(f"node{i}", lambda i=i: "SuperNode ID" in tail(d.log(f"node{i}")), 120,
                         [d.log(f"node{i}")])
            base = {"public-key": str(kits / "server.secagg.pub"), "num-server-rounds": 1,
                    "min-nodes": 2, "pad-values": pad, "round-timeout": args.timeout}
            plain = _round(d, {**base, "mode": "plain",
                               "history-json": str(tmp / "plain.json")}, args.timeout)
            enc = _round(d, {**base, "mode": "secagg", "num-server-rounds": args.rounds,
                             "history-json": str(tmp / "secagg.json")}, args.timeout)
            # what the nodes' secagg_mod logged: decrypt and encrypt seconds per message
            client_log = [line.split("secagg_mod: ", 1)[1].strip()
                          for i in range(2) for line in d.log(f"node{i}").read_text().splitlines()
                          if "secagg_mod: " in line]
        finally:
            d.close()
    h = enc["history"][0]
    report = {
        "values": MLP_VALUES + pad, "scheme": args.scheme, "nodes": 2,
        "plain_round_s": plain["wall_s"], "secagg_round_s": enc["wall_s"],
        "ratio": enc["wall_s"] / plain["wall_s"],
        "plain_model_bytes": plain["initial_bytes"],
        "upload_bytes_per_client": h["upload_bytes"], "aggregate_bytes": h["aggregate_bytes"],
        "bytes_in": h["bytes_in"], "bytes_out": h["bytes_out"], "summing_s": h["aggregate_s"],
        "summed": h["summed"], "flwr_run_s": {"plain": plain["flwr_run_s"],
                                              "secagg": enc["flwr_run_s"]},
        "rounds": args.rounds, "client_log": client_log,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_deploy.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
