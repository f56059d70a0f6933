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
    python benchmarks/load_aggregator.py --out benchmarks/results   # what `make load` commits

The result goes to stdout; ``--out`` writes ``load.json`` and ``load.md`` to a
folder (or to a ``.json`` path and the ``.md`` next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import secagg

FULL = {"clients": 1000, "values": 100_000, "key_bits": common.PAILLIER_KEY_BITS}
QUICK = {"clients": 100, "values": 10_000, "key_bits": common.PAILLIER_KEY_BITS}
SMOKE = {"clients": 3, "values": 200, "key_bits": common.SMOKE_KEY_BITS}
WARM_UPDATES = 10  # the memory baseline is taken after this many updates


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def client_stream(pub: secagg.PublicContext, x: np.ndarray, n: int) -> Iterator[bytes]:
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
                                     base.spec, None, cts, pub.backend).to_bytes()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` and ``--smoke`` change the defaults, explicit ones win."""
    p = common.parser(
        __doc__, f"small run: {QUICK['clients']:,} clients x "
                                   f"{QUICK['values']:,} values")
    p.add_argument("--scheme", choices=("paillier", "ckks", "bfv"), default="paillier")
    p.add_argument("--clients", type=int, help=f"client updates summed (default {FULL['clients']:,})")
    p.add_argument("--values", type=int, help=f"values per update (default {FULL['values']:,})")
    p.add_argument("--key-bits", type=int,
                   help=f"Paillier key size (default {FULL['key_bits']}; --smoke: "
                        f"{SMOKE['key_bits']}, insecure)")
    args = common.apply_defaults(p.parse_args(argv), FULL, QUICK, SMOKE)
    if args.clients < 2 or args.values < 1:
        p.error("--clients must be at least 2 and --values positive")
    common.check_key_bits(p, [args.key_bits], args.smoke)
    return args


def markdown(doc: dict[str, Any], result: dict[str, Any], verdict: str) -> list[str]:
    """The markdown file's lines: title, machine line, the figures, the verdict."""
    rows = [[k, f"{v:,.6g}" if isinstance(v, float) else str(v)] for k, v in result.items()]
    title = f"load_aggregator: {result['clients']:,} x {result['values']:,} values, {result['scheme']}"
    return common.markdown_lines(title, doc, (), [common.markdown_table(["figure", "value"], rows),
                                                  f"    {verdict}"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = common.Run()
    kw = common.paillier_options(args.key_bits) if args.scheme == "paillier" else {}
    ctx = secagg.generate(args.scheme, max_clients=args.clients, clip=1.0, frac_bits=16, **kw)
    pub = common.load_public(ctx.public.to_bytes(), insecure="insecure" in kw)
    x = np.random.default_rng(args.seed).normal(0, 0.1, args.values).astype(np.float32)
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
        if i == WARM_UPDATES - 1:
            baseline = samples[-1]
        if (i + 1) % 100 == 0 and not args.no_progress:
            print(f"{i + 1} updates, RSS {samples[-1] / 2**20:.0f} MiB, "
                  f"{(i + 1) * args.values / agg_s:,.0f} values/s", flush=True)
    total = agg.result()
    mean = ctx.decrypt(total.to_bytes(), reduce="mean")
    error = float(np.abs(mean - np.clip(x, -1, 1)).max())
    sum_bytes = len(total.to_bytes())
    growth = max(samples[WARM_UPDATES:] or samples) - (baseline or samples[0])
    allowed = 2 * update_bytes + sum_bytes
    wall_s = run.finish()
    result = {
        "scheme": args.scheme, "clients": args.clients, "values": args.values,
        "aggregate_values_per_s": args.clients * args.values / agg_s,
        "aggregate_seconds": agg_s, "update_bytes": update_bytes, "sum_bytes": sum_bytes,
        "rss_baseline_mib": (baseline or samples[0]) / 2**20, "rss_peak_mib": max(samples) / 2**20,
        "rss_growth_mib": growth / 2**20, "allowed_growth_mib": allowed / 2**20,
        "within_target": growth <= allowed, "decoded_mean_max_error": error,
    }
    print(json.dumps(result, indent=2))
    verdict = (f"{'PASS' if result['within_target'] else 'MISS'}  memory growth "
               f"{growth / 2**20:.1f} MiB over the warm baseline, allowed {allowed / 2**20:.1f} MiB "
               f"(2 x {update_bytes / 2**20:.1f} MiB update + {sum_bytes / 2**20:.1f} MiB sum); "
               f"{result['aggregate_values_per_s']:,.0f} values/s")
    print(verdict)
    config = {"scheme": args.scheme, "clients": args.clients, "values": args.values,
              "key_bits": args.key_bits if args.scheme == "paillier" else None,
              "seed": args.seed, "quick": args.quick, "smoke": args.smoke}
    doc = common.result_doc("load_aggregator", config, run, statistic="total over all updates",
                            result=result, verdict=verdict)
    common.report_written(wall_s, common.write_results(args.out, "load", doc,
                                                       markdown(doc, result, verdict)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
