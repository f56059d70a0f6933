#!/usr/bin/env python3
"""Load test: one aggregator sums 1,000 client updates of 100k values, streamed from bytes.

Clients are simulated cheaply: one real encrypted update is made, and every
further client's update is a re-randomization of it (Paillier: each ciphertext
times a fresh-looking ``r**n`` factor; lattice schemes: a fresh encryption of
the same values), so that every payload is distinct bytes and the aggregator's
replay check passes. The aggregator sees only bytes, one update at a time, as a
server reading from the network would.

Measured: aggregation throughput (values/s, 1 core) and the process's resident
memory, sampled after every update. The memory target of the reliability issue
is that growth over a warm baseline (after the first 10 updates) stays within
2x one update's size plus the running sum.

    python benchmarks/load_aggregator.py                      # Paillier 2048, 1,000 x 100k
    python benchmarks/load_aggregator.py --scheme ckks --clients 200 --values 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import secagg


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def client_stream(pub: secagg.PublicContext, x: np.ndarray, n: int):
    """Yield ``n`` distinct update payloads of the same values."""
    base = pub.encrypt(x)
    if pub.scheme != "paillier":
        yield base.to_bytes()
        for _ in range(n - 1):
            yield pub.encrypt(x).to_bytes()
        return
    backend = pub.backend
    factors = [backend.raw_fresh_obfuscator() for _ in base.ciphertexts]
    cts = list(base.ciphertexts)
    for _ in range(n):
        cts = [c * f % backend.nsquare for c, f in zip(cts, factors)]
        yield secagg.EncryptedUpdate(pub.scheme, pub.fingerprint, secagg.Kind.UPDATE, 1,
                                     base.spec, None, cts, pub).to_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=("paillier", "ckks", "bfv"), default="paillier")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load.json")
    args = parser.parse_args()

    kw = {"key_bits": 2048} if args.scheme == "paillier" else {}
    ctx = secagg.generate(args.scheme, max_clients=args.clients, clip=1.0, frac_bits=16, **kw)
    pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes())
    x = np.random.default_rng(0).normal(0, 0.1, args.values).astype(np.float32)
    agg = secagg.Aggregator(pub)
    agg_s, update_bytes, samples = 0.0, 0, []
    baseline = None
    for i, data in enumerate(client_stream(pub, x, args.clients)):
        update_bytes = len(data)
        t0 = time.perf_counter()
        agg.add(data)
        agg_s += time.perf_counter() - t0
        del data
        samples.append(rss_bytes())
        if i == 9:
            baseline = samples[-1]
        if (i + 1) % 100 == 0:
            print(f"{i + 1} updates, RSS {samples[-1] / 2**20:.0f} MiB, "
                  f"{(i + 1) * args.values / agg_s:,.0f} values/s", flush=True)
    total = agg.result()
    mean = ctx.decrypt(total.to_bytes(), reduce="mean")
    error = float(np.abs(mean - np.clip(x, -1, 1)).max())
    sum_bytes = len(total.to_bytes())
    growth = max(samples[10:] or samples) - (baseline or samples[0])
    allowed = 2 * update_bytes + sum_bytes
    result = {
        "scheme": args.scheme, "clients": args.clients, "values": args.values,
        "aggregate_values_per_s": args.clients * args.values / agg_s,
        "aggregate_seconds": agg_s, "update_bytes": update_bytes, "sum_bytes": sum_bytes,
        "rss_baseline_mib": (baseline or samples[0]) / 2**20, "rss_peak_mib": max(samples) / 2**20,
        "rss_growth_mib": growth / 2**20, "allowed_growth_mib": allowed / 2**20,
        "within_target": growth <= allowed, "decoded_mean_max_error": error,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    verdict = "PASS" if result["within_target"] else "MISS"
    print(f"{verdict}  memory growth {growth / 2**20:.1f} MiB over the warm baseline, allowed "
          f"{allowed / 2**20:.1f} MiB (2 x {update_bytes / 2**20:.1f} MiB update + "
          f"{sum_bytes / 2**20:.1f} MiB sum); {result['aggregate_values_per_s']:,.0f} values/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
