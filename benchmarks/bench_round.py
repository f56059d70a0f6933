#!/usr/bin/env python3
"""One lattice round's critical path: secagg CKKS and BFV against NVFlare's TenSEAL default.

The critical path of a round: one client encrypting its tree to bytes, the
aggregator summing ``--clients`` such payloads from bytes (and serializing the
sum for the key holder), the key holder decrypting the sum to the mean. Each
system runs at every size of ``--sizes`` in the same run, interleaved:

* ``NVFlare default``: TenSEAL CKKS as NVIDIA FLARE uses it (N=8192, moduli
  [60, 40, 40], scale 2**40, one ``ckks_vector`` per layer; the class is
  ``bench_lattice.Flare``), approximate;
* ``secagg ckks`` / ``secagg bfv``: public-key uploads (``pub.encrypt``; also
  "online": after ``pub.precompute(k)`` made the encryptions of zero, timed apart),
  ``secagg.Aggregator(pub).add(bytes)``, ``ctx.decrypt(total, reduce="mean")``;
  exact (checked: the decrypted integer sum equals the sum of the quantized
  inputs).

Figures are medians over ``--repeats``; encryption also with ``--workers``
forked workers (both cores). The aggregator's peak memory is measured with
tracemalloc while it reads the payloads one by one from files (numpy reports
its buffers to tracemalloc; SEAL's own allocations are not seen, and the
public-key path makes none while summing), as a multiple of one payload.

A per-stage breakdown (cProfile of one extra round; own time of the functions
of each stage: encode, encrypt, serialize, deserialize, validate, add, decrypt,
decode) says where the time goes (each function's own time goes to the first stage that
names it, the rest to "python") and whether it is SEAL, compression (zstd
inside SEAL's save and our decompressor), the wire (BLAKE2b digest,
MessagePack), numpy or Python.

Usage::

    python benchmarks/bench_round.py                       # 100k, 1M, 10M values, 10 clients
    python benchmarks/bench_round.py --quick               # 10k and 100k, 1 repeat
    python benchmarks/bench_round.py --out benchmarks/results   # writes round.json and round.md

Nothing is written unless ``--out`` names a folder or a ``.json`` path.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import secagg
from bench_lattice import Flare
from common import Tree

SCHEMES = ("ckks", "bfv")

# stage -> substrings of cProfile function labels (file:line(name) or {built-in ...})
STAGES: dict[str, tuple[str, ...]] = {
    "encode": ("(encode)", "(raw_encode)", "(flatten)", "(encode_tree)", "method 'tolist'",
               "method 'astype'", "_sealapi_cpp.encode"),
    "encrypt": ("_sealapi_cpp.encrypt", "(_add_plain)", "(scaled_plain)", "(plain_words)"),
    "serialize": ("_sealapi_cpp.save", "decompress", "(pack)", "(seal)", "Packer", "packb",
                  "blake2b' objects", "method 'join'", "(residues)", "(_body)", "(to_wire)",
                  "(to_bytes)", "(save)"),
    "deserialize": ("(open_payload)", "unpackb", "(digest)", "(from_bytes)", "(from_wire)",
                    "(ciphertexts_from_wire)"),
    "validate": ("(check_residues)", "(check_layout)", "(precheck)", "method 'max'"),
    "add": ("(add_into)", "(_materialize)", "(unpack)", "(copy)", "(raw_accumulate)",
            "(raw_copy)"),
    "decrypt": ("_sealapi_cpp.decrypt", "_sealapi_cpp.load", "invariant_noise_budget",
                "(ciphertext)", "(_load)", "(load_ciphertext)"),
    "decode": ("decode_double", "decode_int64", "numpy.asarray", "(rint)", "(decode)",
               "(unflatten)"),
}
KINDS: dict[str, tuple[str, ...]] = {
    "SEAL": ("_sealapi_cpp.encrypt", "_sealapi_cpp.encode", "_sealapi_cpp.decrypt",
             "decode_double", "decode_int64", "invariant_noise_budget", "_sealapi_cpp.load"),
    "compression": ("_sealapi_cpp.save", "decompress"),
    "wire": ("(digest)", "blake2b", "unpackb", "Packer", "packb", "method 'join'"),
    # ufuncs are not profiled as calls: their time is the own time of the rns functions
    "numpy": ("numpy", "method 'max'", "method 'reduce'", "tobytes", "ascontiguousarray",
              "(unpack)", "(pack)", "(add_into)", "(check_residues)", "(_add_plain)",
              "(scaled_plain)", "(_materialize)", "(residues)", "(copy)"),
}


def _label(func: tuple[str, int, str]) -> str:
    file, line, name = func
    return name if file == "~" else f"{os.path.basename(file)}:{line}({name})"


def profile_split(fn: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Own time of ``fn``'s functions by stage and by kind (first pattern each label matches)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    splits = []
    for groups in (STAGES, KINDS):
        out = {g: 0.0 for g in groups} | {"python": 0.0}
        for func, (_, _, tottime, _, _) in stats.items():
            label = _label(func)
            group = next((g for g, pats in groups.items() if any(p in label for p in pats)),
                         "python")
            out[group] += tottime
        splits.append(out)
    return splits[0], splits[1]


class SecaggRound:
    """One secagg lattice scheme: client, aggregator and key holder, each from bytes."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.ctx = secagg.generate(scheme, **common.CODEC)
        blob = self.ctx.public.to_bytes()
        self.client = common.load_public(blob)
        self.server = common.load_public(blob)

    def encrypt(self, tree: Tree, workers: int = 1) -> bytes:
        return self.client.encrypt(tree, workers=workers).to_bytes()

    def aggregate(self, uploads: list[bytes]) -> bytes:
        agg = secagg.Aggregator(self.server)
        for blob in uploads:
            agg.add(blob)
        return agg.result().to_bytes()

    def aggregate_files(self, paths: list[Path]) -> tuple[int, bytes]:
        """Sum payloads read one by one; (tracemalloc peak of the summing, the sum's bytes)."""
        agg = secagg.Aggregator(self.server)
        for path in paths:
            agg.add(path.read_bytes())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        return peak, agg.result().to_bytes()

    def decrypt(self, total: bytes) -> Any:
        return self.ctx.decrypt(total, reduce="mean")

    def exact(self, total: bytes, trees: list[Tree]) -> bool:
        codec = self.client.codec
        want = np.sum([codec.encode(secagg.flatten(t)[1]) for t in trees], axis=0, dtype=np.int64)
        return bool(np.array_equal(self.ctx.decrypt_raw(total).values, want))


def median_of(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_memory(system: SecaggRound, uploads: list[bytes]) -> dict[str, float]:
    """tracemalloc peak while the aggregator sums payloads read one by one from files."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, blob in enumerate(uploads):
            paths.append(Path(tmp) / f"{i}.bin")
            paths[-1].write_bytes(blob)
        gc.collect()
        tracemalloc.start()
        try:
            peak, _ = system.aggregate_files(paths)
            _, peak_out = tracemalloc.get_traced_memory()  # result().to_bytes(), after the sum
        finally:
            tracemalloc.stop()
    size = len(uploads[0])
    return {"peak_bytes": peak, "payload_bytes": size, "peak_per_payload": peak / size,
            "peak_per_payload_excluding_input": (peak - size) / size,
            "serialize_peak_per_payload": peak_out / size}


def measure(system: SecaggRound, trees: list[Tree], args: argparse.Namespace,
            repeats: int) -> dict[str, Any]:
    """One secagg scheme's round at one size: medians, exactness, memory and the breakdown."""
    values = sum(leaf.size for leaf in trees[0].values())
    t_enc, first = median_of(lambda: system.encrypt(trees[0]), repeats)
    t_enc2, _ = median_of(lambda: system.encrypt(trees[0], args.workers), repeats)
    k = system.client.backend.num_ciphertexts(values + 2)
    online, pre = [], []
    for _ in range(repeats):  # precomputed encryptions of zero, then the online encryption
        pre.append(median_of(lambda: system.client.precompute(k), 1)[0])
        online.append(median_of(lambda: system.encrypt(trees[0]), 1)[0])
    t_online, t_pre = statistics.median(online), statistics.median(pre)
    uploads = [first] + [system.encrypt(t, args.workers) for t in trees[1:]]
    t_sum, total = median_of(lambda: system.aggregate(uploads), repeats)
    t_dec, _ = median_of(lambda: system.decrypt(total), repeats)
    roles = {
        "client": lambda: system.encrypt(trees[0]),
        "aggregator": lambda: system.aggregate(uploads),
        "key holder": lambda: system.decrypt(total),
    }
    profiles = {role: profile_split(fn) for role, fn in roles.items()}
    return {
        "encrypt_s": t_enc, f"encrypt_s_{args.workers}_workers": t_enc2, "sum_s": t_sum,
        "encrypt_online_s": t_online, "precompute_s": t_pre,
        "critical_online_s": t_online + t_sum + t_dec,
        "encrypt_online_values_per_s": values / t_online,
        "decrypt_s": t_dec, "critical_s": t_enc + t_sum + t_dec,
        f"critical_s_{args.workers}_workers": t_enc2 + t_sum + t_dec,
        "bytes_per_value": len(first) / values, "exact": system.exact(total, trees),
        "encrypt_values_per_s": values / t_enc, "sum_values_per_s": len(trees) * values / t_sum,
        "memory": peak_memory(system, uploads),
        "stages": {role: split[0] for role, split in profiles.items()},
        "kinds": {role: split[1] for role, split in profiles.items()},
    }


def run_size(values: int, args: argparse.Namespace, flare: Flare, systems: dict[str, SecaggRound],
             show: bool) -> dict[str, Any]:
    shapes = common.model_shapes(values)
    trees = common.make_client_trees(shapes, args.clients, seed=values)
    repeats = args.repeats if values < 5_000_000 else 1
    row: dict[str, Any] = {"values": values, "clients": args.clients, "systems": {}}

    # NVFlare: one client's encryption timed; the sum adds that upload to itself (TenSEAL has no
    # replay check), so timing needs no ten encryptions of a 10M-value tree
    t_enc, up = median_of(lambda: flare.encrypt(trees[0], 1), repeats)
    uploads = [up] * args.clients
    t_sum, sums = median_of(lambda: flare.aggregate(uploads), repeats)
    t_dec, _ = median_of(lambda: flare.decrypt_mean(sums, trees[0], args.clients), repeats)
    row["systems"]["NVFlare default"] = {
        "encrypt_s": t_enc, "sum_s": t_sum, "decrypt_s": t_dec,
        "critical_s": t_enc + t_sum + t_dec, "bytes_per_value": Flare.size(up) / values,
        "exact": False,
    }
    if show:
        print(f"  {values:>11,} NVFlare default: encrypt {t_enc:.2f} s, sum {t_sum:.2f} s, "
              f"decrypt {t_dec:.2f} s", flush=True)
    for scheme, system in systems.items():
        cell = measure(system, trees, args, repeats)
        row["systems"][f"secagg {scheme}"] = cell
        if show:
            print(f"  {values:>11,} secagg {scheme}: encrypt {cell['encrypt_s']:.2f} s "
                  f"({cell[f'encrypt_s_{args.workers}_workers']:.2f} s with {args.workers} workers), "
                  f"sum {cell['sum_s']:.2f} s, decrypt {cell['decrypt_s']:.2f} s, exact "
                  f"{cell['exact']}, peak {cell['memory']['peak_per_payload']:.2f}x payload",
                  flush=True)
    base = row["systems"]["NVFlare default"]["critical_s"]
    for cell in row["systems"].values():
        cell["speedup_vs_nvflare"] = base / cell["critical_s"]
        if "critical_online_s" in cell:
            cell["speedup_online_vs_nvflare"] = base / cell["critical_online_s"]
        key = f"critical_s_{args.workers}_workers"
        if key in cell:
            cell[f"speedup_vs_nvflare_{args.workers}_workers"] = base / cell[key]
    return row


def tables(rows: list[dict[str, Any]], workers: int) -> str:
    head = ["system", "values", "encrypt", f"encrypt {workers}w", "encrypt online (precompute)",
            f"sum of {rows[0]['clients']}", "decrypt", "critical path", "vs NVFlare",
            f"vs NVFlare {workers}w", "vs NVFlare online", "B/value",
            "exact", "aggregator peak / payload (summing)"]
    body = []
    for row in rows:
        for name, c in row["systems"].items():
            mem = c.get("memory")
            body.append([
                name, f"{row['values']:,}", common.fmt_seconds(c["encrypt_s"]),
                common.fmt_seconds(c.get(f"encrypt_s_{workers}_workers")),
                "-" if "encrypt_online_s" not in c else
                f"{common.fmt_seconds(c['encrypt_online_s'])} ({common.fmt_seconds(c['precompute_s'])})",
                common.fmt_seconds(c["sum_s"]), common.fmt_seconds(c["decrypt_s"]),
                common.fmt_seconds(c["critical_s"]), f"{c['speedup_vs_nvflare']:.2f}x",
                "-" if f"speedup_vs_nvflare_{workers}_workers" not in c
                else f"{c[f'speedup_vs_nvflare_{workers}_workers']:.2f}x",
                "-" if "speedup_online_vs_nvflare" not in c else f"{c['speedup_online_vs_nvflare']:.2f}x",
                f"{c['bytes_per_value']:.2f}", "yes" if c["exact"] else "no (approx.)",
                "-" if mem is None else f"{mem['peak_per_payload']:.2f}x "
                f"({mem['peak_per_payload_excluding_input']:.2f}x without the input; "
                f"{mem['serialize_peak_per_payload']:.2f}x serializing the sum)",
            ])
    out = [common.markdown_table(head, body), ""]
    for label, key in (("stage", "stages"), ("kind", "kinds")):
        head2 = ["system", "values", "role", *(STAGES if key == "stages" else KINDS), "python"]
        body2 = []
        for row in rows:
            for name, c in row["systems"].items():
                for role, split in c.get(key, {}).items():
                    body2.append([name, f"{row['values']:,}", role]
                                 + [common.fmt_seconds(v) if v >= 5e-4 else "-" for v in split.values()])
        out += [f"Seconds by {label} (cProfile own time, one profiled round):", "",
                common.markdown_table(head2, body2), ""]
    return "\n".join(out)


def targets(rows: list[dict[str, Any]], workers: int) -> list[str]:
    lines = []
    by = {r["values"]: r["systems"] for r in rows}
    if 1_000_000 in by:
        s = by[1_000_000]
        for scheme, want in (("ckks", 4.0), ("bfv", 6.0)):
            c = s[f"secagg {scheme}"]
            got = c["speedup_vs_nvflare"]
            lines.append(f"{'PASS' if got >= want else 'MISS'}  {scheme} critical path at 1M x "
                         f"{rows[0]['clients']}, one core >= {want:g}x NVFlare: {got:.2f}x "
                         f"({c['critical_s']:.2f} s vs {s['NVFlare default']['critical_s']:.2f} s); "
                         f"with {workers} workers {c[f'speedup_vs_nvflare_{workers}_workers']:.2f}x; "
                         f"online, zeros precomputed, {c['speedup_online_vs_nvflare']:.2f}x")
        for scheme, want in (("ckks", 1.5e6), ("bfv", 2e6)):
            got = s[f"secagg {scheme}"]["encrypt_values_per_s"]
            online = s[f"secagg {scheme}"]["encrypt_online_values_per_s"]
            lines.append(f"{'PASS' if got >= want else 'MISS'}  {scheme} encrypt >= {want / 1e6:g}M "
                         f"values/s per core at 1M: {got / 1e6:.2f}M (online with precomputed "
                         f"zeros: {online / 1e6:.2f}M, {'PASS' if online >= want else 'MISS'})")
        for scheme in SCHEMES:
            got = s[f"secagg {scheme}"]["sum_values_per_s"]
            lines.append(f"{'PASS' if got >= 2e7 else 'MISS'}  {scheme} sum from bytes >= 20M "
                         f"values/s per core at 1M: {got / 1e6:.1f}M")
    if 10_000_000 in by:
        for scheme in SCHEMES:
            m = by[10_000_000][f"secagg {scheme}"]["memory"]
            lines.append(f"{'PASS' if m['peak_per_payload'] <= 3 else 'MISS'}  {scheme} 10M x "
                         f"{rows[0]['clients']}: aggregator peak <= 3x one payload: "
                         f"{m['peak_per_payload']:.2f}x (without the payload being read: "
                         f"{m['peak_per_payload_excluding_input']:.2f}x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, "10k and 100k values, 1 repeat")
    ap.add_argument("--sizes", default=None, help="comma-separated values per update "
                    "(default 100000,1000000,10000000)")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=None, help="medians over this many (default 3)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    sizes_default, repeats_default = (
        ("2000", 1) if args.smoke else ("10000,100000", 1) if args.quick
        else ("100000,1000000,10000000", 3))
    args.sizes = args.sizes or sizes_default
    args.repeats = args.repeats or repeats_default
    if args.smoke:
        args.clients = min(args.clients, 3)
    sizes = [int(s) for s in args.sizes.split(",")]
    run = common.Run()
    print(f"bench_round: {run.summary()}; sizes {sizes}, {args.clients} clients", flush=True)
    flare = Flare([1])
    systems = {s: SecaggRound(s) for s in SCHEMES}
    rows = [run_size(v, args, flare, systems, show=not args.no_progress) for v in sizes]
    wall = run.finish()
    text = tables(rows, args.workers)
    lines = targets(rows, args.workers)
    print("\n" + text + "\n" + "\n".join(lines))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    doc = common.result_doc("bench_round", config, run, rows=rows, targets=lines)
    command = (f"python benchmarks/bench_round.py --sizes {args.sizes} --repeats {args.repeats} "
               f"--clients {args.clients} --workers {args.workers}")
    md = common.markdown_lines(
        f"bench_round: one lattice round's critical path, {args.clients} clients", doc,
        ("tenseal",), [f"Command: `{command}`", text, "## Targets",
                       "\n".join("    " + x for x in lines)])
    common.report_written(wall, common.write_results(args.out, "round", doc, md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
