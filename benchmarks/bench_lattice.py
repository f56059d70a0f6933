#!/usr/bin/env python3
"""Lattice benchmark: secagg CKKS and BFV (public-key and seeded uploads) against NVFlare's TenSEAL default.

One run measures, side by side and on the same data (``--clients`` float32
update trees of the ``bench_core`` MLP, N(0, 0.1) clipped to ±1; clip=1,
frac_bits=16, max_clients=100, max_weight=1):

* ``NVFlare default``: TenSEAL CKKS as NVIDIA FLARE uses it: N=8192, moduli
  [60, 40, 40], scale 2**40, one ``ts.ckks_vector`` per layer of raw floats (no
  quantization). Encrypt = ``ckks_vector`` + ``serialize`` per layer;
  aggregate = ``ts.ckks_vector_from(public_context, bytes)`` + ``+``; decrypt
  each layer's sum. Clients load the public context with ``n_threads=1`` (one
  core) or ``n_threads=2``.
* ``secagg ckks`` / ``secagg bfv``: ``secagg.generate(scheme, ...)``; a client
  holds ``PublicContext.from_bytes(ctx.public.to_bytes())`` and encrypts with
  ``pub.encrypt(tree, workers=w).to_bytes()``; the aggregator feeds the bytes
  to ``secagg.Aggregator(pub).add``; the key holder calls
  ``ctx.decrypt(total_bytes, reduce="mean")``.
* ``secagg ckks seeded`` / ``secagg bfv seeded``: the shared-key (cross-silo)
  arrangement: ``ctx.encrypt(tree).to_bytes()`` with the SECRET context, which
  encrypts symmetrically and ships the seed of the uniform polynomial instead
  of the polynomial; the aggregator (public context only) expands it on load.

Figures: encrypt values/s with 1 and ``--workers`` workers (TenSEAL: threads),
aggregate values/s (``clients * values / t`` from bytes), decrypt values/s,
bytes per value on the wire, the max abs error of the decoded mean against the
exact float64 mean, and for secagg whether the decrypted integer sum
(``ctx.decrypt_raw(total).values``) equals ``sum_i codec.encode(x_i)`` exactly.
Plus every scheme's plan (``pub.describe()``), and encryption of a
``--big-copies`` times larger update (10 copies of the tree: 1,000,000 values)
with 1 and ``--workers`` workers. The run ends with PASS/MISS lines against
the targets at 100,000 values.

Every figure is the MEDIAN of its samples; the systems are interleaved (each
client's tree goes through every variant in a rotating order) so that a noisy
machine slows all of them alike.

Usage::

    python benchmarks/bench_lattice.py            # 100k values + 1M encrypt, 10 clients (~2 min)
    python benchmarks/bench_lattice.py --quick    # 10k values, no 1M, 1 round (< ~60 s)
    python benchmarks/bench_lattice.py --values 50000 --big-copies 0 --out /tmp/lattice.json
    python benchmarks/bench_lattice.py --out benchmarks/results   # what `make bench` commits

The tables go to stdout; nothing is written unless ``--out`` names a folder
(``lattice.json``, ``lattice.md`` and ``lattice.png`` go there) or a ``.json``
path (the ``.md`` and ``.png`` next to it).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import secagg
import secagg.schemes.lattice.bfv  # load the backends now, not inside a timed call
import secagg.schemes.lattice.ckks
import secagg.schemes.lattice.seal
from common import (
    CLIP,
    FLARE_COEFF_MOD_BIT_SIZES,
    FLARE_POLY_MODULUS_DEGREE,
    FLARE_SCALE_BITS,
    FRAC_BITS,
    MAX_CLIENTS,
    MAX_WEIGHT,
    MEAN_ERROR_BOUND,
    STD,
    Problems,
    Shapes,
    Tree,
    exact_mean,
    fmt_bytes,
    fmt_rate,
    fmt_seconds,
    make_client_trees,
    max_abs_error,
    model_shapes,
    timed,
)

FULL = {"values": 100_000, "clients": 10, "rounds": 5, "repeats": 5, "big_copies": 10,
        "big_rounds": 9}
QUICK = {"values": 10_000, "clients": 10, "rounds": 2, "repeats": 3, "big_copies": 0,
         "big_rounds": 1}
SMOKE = {"values": 200, "clients": 2, "rounds": 1, "repeats": 1, "big_copies": 0,
         "big_rounds": 1}
TARGET_VALUES = 100_000

# system key -> label; "flare" is the baseline every ratio is taken against
SYSTEMS = {
    "flare": "NVFlare default (TenSEAL CKKS)",
    "ckks": "secagg ckks",
    "bfv": "secagg bfv",
    "ckks_seeded": "secagg ckks, seeded",
    "bfv_seeded": "secagg bfv, seeded",
}
SECAGG_SYSTEMS = [s for s in SYSTEMS if s != "flare"]


# -- results -------------------------------------------------------------------


@dataclass
class Cell:
    """One system at one size and worker count; rates are medians in values per second."""

    system: str
    workers: int
    values: int
    encrypt_s: list[float] = field(default_factory=list)
    update_bytes: int = 0
    aggregate_s: list[float] = field(default_factory=list)
    decrypt_s: list[float] = field(default_factory=list)
    clients: int = 0
    max_abs_error: float | None = None
    exact: bool | None = None  # decrypted integer sum == sum of encoded inputs
    exact_note: str = ""

    @property
    def key(self) -> str:
        return f"{self.system}_w{self.workers}"

    @property
    def encrypt_vps(self) -> float | None:
        return self.values / statistics.median(self.encrypt_s) if self.encrypt_s else None

    @property
    def aggregate_vps(self) -> float | None:
        if not self.aggregate_s:
            return None
        return self.clients * self.values / statistics.median(self.aggregate_s)

    @property
    def decrypt_vps(self) -> float | None:
        return self.values / statistics.median(self.decrypt_s) if self.decrypt_s else None

    @property
    def bytes_per_value(self) -> float:
        return self.update_bytes / self.values

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system, "label": SYSTEMS[self.system], "workers": self.workers,
            "values": self.values, "encrypt_vps": self.encrypt_vps,
            "encrypt_s_per_client": statistics.median(self.encrypt_s) if self.encrypt_s else None,
            "aggregate_vps": self.aggregate_vps, "decrypt_vps": self.decrypt_vps,
            "bytes_per_value": self.bytes_per_value, "update_bytes": self.update_bytes,
            "clients_aggregated": self.clients or None, "max_abs_error": self.max_abs_error,
            "exact_integer_sum": self.exact, "exact_note": self.exact_note or None,
            "samples_s": {"encrypt": self.encrypt_s, "aggregate": self.aggregate_s,
                          "decrypt": self.decrypt_s},
        }


# -- systems -------------------------------------------------------------------


class Flare:
    """TenSEAL CKKS with NVIDIA FLARE's defaults, one ``ckks_vector`` per layer."""

    def __init__(self, workers: Sequence[int]) -> None:
        import tenseal as ts

        self.ts = ts
        # what FLARE ships: public + relinearization keys
        self.keygen_s, (self.secret, self.public_bytes) = timed(lambda: common.flare_keys(1))
        self.pk_only_bytes = common.flare_public_key_only_bytes(self.secret)
        self.clients = {w: ts.context_from(self.public_bytes, n_threads=w) for w in workers}
        self.server = ts.context_from(self.public_bytes, n_threads=1)

    def encrypt(self, tree: Tree, workers: int) -> list[bytes]:
        ctx = self.clients[workers]
        with common.quiet_stdout():  # TenSEAL warns on stdout about multi-ciphertext vectors
            return [self.ts.ckks_vector(ctx, leaf.ravel().tolist()).serialize()
                    for leaf in tree.values()]

    @staticmethod
    def size(upload: list[bytes]) -> int:
        return sum(len(b) for b in upload)

    def aggregate(self, uploads: Sequence[list[bytes]]) -> list:
        sums: list = []
        for blobs in uploads:
            vecs = [self.ts.ckks_vector_from(self.server, b) for b in blobs]
            sums = vecs if not sums else [s + v for s, v in zip(sums, vecs)]
        return sums

    def decrypt_mean(self, sums: list, like: Tree, clients: int) -> dict[str, np.ndarray]:
        out = {}
        for (name, leaf), vec in zip(like.items(), sums):
            vec.link_context(self.secret)
            out[name] = (np.asarray(vec.decrypt(), dtype=np.float64) / clients).reshape(leaf.shape)
        return out


class Secagg:
    """One secagg lattice scheme, as each role holds it."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.keygen_s, self.ctx = timed(lambda: secagg.generate(scheme, **common.CODEC))
        self.public_bytes = self.ctx.public.to_bytes()
        self.client = common.load_public(self.public_bytes)
        self.server = common.load_public(self.public_bytes)

    def encrypt(self, tree: Tree, workers: int, seeded: bool) -> bytes:
        who = self.ctx if seeded else self.client
        return who.encrypt(tree, workers=workers).to_bytes()

    @staticmethod
    def size(upload: bytes) -> int:
        return len(upload)

    def aggregate(self, uploads: Sequence[bytes]) -> bytes:
        agg = secagg.Aggregator(self.server)
        for blob in uploads:
            agg.add(blob)
        return agg.result().to_bytes()

    def expected_sum(self, trees: Sequence[Tree]) -> np.ndarray:
        """``sum_i codec.encode(x_i)`` on the flattened trees, in int64, computed in the clear."""
        codec = self.client.codec
        return np.sum([codec.encode(secagg.flatten(t)[1]) for t in trees], axis=0, dtype=np.int64)

    def check_exact(self, total: bytes, trees: Sequence[Tree]) -> tuple[bool, str]:
        try:
            raw = self.ctx.decrypt_raw(total)
        except secagg.SecAggError as exc:
            return False, f"decrypt_raw raised {type(exc).__name__}: {exc}"
        expected = self.expected_sum(trees)
        if raw.values.shape != expected.shape:
            return False, f"shape {raw.values.shape} != {expected.shape}"
        wrong = int(np.count_nonzero(raw.values != expected))
        if wrong:
            return False, (f"{wrong} of {expected.size} slot sums differ "
                           f"(max |diff| {int(np.max(np.abs(raw.values - expected)))})")
        if raw.count != len(trees) or raw.weight_sum != len(trees):
            return False, f"count {raw.count} / weight sum {raw.weight_sum} != {len(trees)}"
        return True, f"all {expected.size:,} slot sums equal"

    def noise_probe(self, total: bytes) -> dict[str, Any]:
        """Measured noise of a sum, for the plan table (uses the key holder's private objects)."""
        try:
            import tenseal.sealapi as sa

            upd = secagg.EncryptedUpdate.from_bytes(total, self.server)
            sb = self.ctx.secret_backend
            if self.scheme == "bfv":
                budgets = [sb._decryptor.invariant_noise_budget(c.ct) for c in upd.ciphertexts]
                return {"min_invariant_noise_budget_bits": int(min(budgets))}
            worst = 0.0
            for c in upd.ciphertexts:
                pt = sa.Plaintext()
                sb._decryptor.decrypt(c.ct, pt)
                raw = np.asarray(sb.public.encoder.decode_double(pt), dtype=np.float64)
                worst = max(worst, float(np.max(np.abs(raw - np.rint(raw)))))
            return {"max_rounding_residual": worst}
        except Exception as exc:  # private API: informative only
            return {"noise_probe_error": f"{type(exc).__name__}: {exc}"}


# -- the run -------------------------------------------------------------------


class Bench:
    """All systems' contexts and the measurements."""

    def __init__(self, args: argparse.Namespace, problems: Problems) -> None:
        self.args = args
        self.problems = problems
        self.worker_counts = sorted({1, args.workers})
        self.flare = Flare(self.worker_counts)
        self.schemes = {"ckks": Secagg("ckks"), "bfv": Secagg("bfv")}

    def scheme_of(self, system: str) -> Secagg:
        return self.schemes[system.split("_")[0]]

    def encrypt(self, system: str, tree: Tree, workers: int) -> tuple[float, Any]:
        if system == "flare":
            return timed(lambda: self.flare.encrypt(tree, workers))
        seeded = system.endswith("_seeded")
        s = self.scheme_of(system)
        return timed(lambda: s.encrypt(tree, workers, seeded))

    def size(self, system: str, upload: Any) -> int:
        return Flare.size(upload) if system == "flare" else Secagg.size(upload)

    def variants(self) -> list[tuple[str, int]]:
        return [(s, w) for s in SYSTEMS for w in self.worker_counts]

    # -- main size: encrypt, aggregate, decrypt, check ------------------------
    def run_main(self, values: int, show: bool) -> dict[str, Any]:
        args = self.args
        shapes = model_shapes(values)
        trees = make_client_trees(shapes, args.clients, args.seed)
        reference = exact_mean(trees)
        variants = self.variants()
        cells = {f"{s}_w{w}": Cell(s, w, values) for s, w in variants}
        uploads: dict[str, list[Any]] = {k: [None] * args.clients for k in cells}
        steps = args.rounds * args.clients * len(variants) + args.repeats * 2 * len(SYSTEMS)
        bar = common.progress(steps, f"{values:,} values", show)

        bar.set_postfix_str("encrypt")
        for rnd in range(args.rounds):
            for k, tree in enumerate(trees):
                shift = (rnd * args.clients + k) % len(variants)
                for system, w in variants[shift:] + variants[:shift]:  # interleaved
                    t, up = self.encrypt(system, tree, w)
                    cell = cells[f"{system}_w{w}"]
                    cell.encrypt_s.append(t)
                    uploads[cell.key][k] = up  # the latest encryption of each client
                    bar.update()
        for cell in cells.values():
            cell.update_bytes = int(statistics.median(self.size(cell.system, u)
                                                      for u in uploads[cell.key]))

        # aggregation and decryption of the one-worker uploads, systems interleaved
        totals: dict[str, Any] = {}
        for phase in ("aggregate", "decrypt"):
            bar.set_postfix_str(phase)
            for rep in range(args.repeats):
                order = list(SYSTEMS)
                shift = rep % len(order)
                for system in order[shift:] + order[:shift]:
                    cell = cells[f"{system}_w1"]
                    cell.clients = args.clients
                    if phase == "aggregate":
                        agg = self.flare.aggregate if system == "flare" else \
                            self.scheme_of(system).aggregate
                        t, totals[system] = timed(lambda agg=agg, key=cell.key: agg(uploads[key]))
                        cell.aggregate_s.append(t)
                    else:
                        if system == "flare":
                            t, mean = timed(lambda: self.flare.decrypt_mean(
                                totals["flare"], trees[0], args.clients))
                        else:
                            ctx = self.scheme_of(system).ctx
                            t, mean = timed(lambda ctx=ctx, s=system: ctx.decrypt(
                                totals[s], reduce="mean"))
                        cell.decrypt_s.append(t)
                        cell.max_abs_error = max_abs_error(mean, reference)
                    bar.update()
        bar.close()

        # correctness: exact integer sums for every secagg upload kind (the W-worker ones untimed)
        noise: dict[str, Any] = {}
        for system in SECAGG_SYSTEMS:
            s = self.scheme_of(system)
            for w in self.worker_counts:
                cell = cells[f"{system}_w{w}"]
                total = totals[system] if w == 1 else s.aggregate(uploads[cell.key])
                cell.exact, cell.exact_note = s.check_exact(total, trees)
                self.problems.check(cell.exact, f"{SYSTEMS[system]} ({w} worker(s), {values:,} "
                                                f"values, {args.clients} clients): integer sum not "
                                                f"exact: {cell.exact_note}")
                if w != 1:
                    cell.max_abs_error = max_abs_error(s.ctx.decrypt(total, reduce="mean"),
                                                       reference)
            noise[system] = s.noise_probe(totals[system])
            err = cells[f"{system}_w1"].max_abs_error
            self.problems.check(
                err is not None and err <= MEAN_ERROR_BOUND * (1 + 2.0**-20),
                f"{SYSTEMS[system]}: decoded mean error {err:.3g} exceeds 2^-{FRAC_BITS + 1}")
        flare_cell = cells["flare_w1"]
        flare_cell.exact = False
        flare_cell.exact_note = "approximate (CKKS on raw floats); see max abs error"
        for w in self.worker_counts[1:]:
            cells[f"flare_w{w}"].exact_note = "not aggregated (encrypt timing only)"
        return {"values": values, "shapes": shapes, "big": False, "cells": cells, "noise": noise}

    # -- big size: encryption with 1 and W workers only ------------------------
    def run_big(self, copies: int, show: bool) -> dict[str, Any]:
        args = self.args
        base = model_shapes(args.values)
        shapes: Shapes = [(f"copy{i}.{name}", shape) for i in range(copies) for name, shape in base]
        tree = make_client_trees(shapes, 1, args.seed)[0]
        values = sum(v.size for v in tree.values())
        variants = self.variants()
        cells = {f"{s}_w{w}": Cell(s, w, values) for s, w in variants}
        last: dict[str, Any] = {}
        bar = common.progress(args.big_rounds * len(variants), f"{values:,} values", show)
        bar.set_postfix_str("encrypt")
        for rnd in range(args.big_rounds):
            shift = rnd % len(variants)
            for system, w in variants[shift:] + variants[:shift]:
                last.pop(f"{system}_w{w}", None)  # free the previous upload first
                gc.collect()
                t, up = self.encrypt(system, tree, w)
                cell = cells[f"{system}_w{w}"]
                cell.encrypt_s.append(t)
                cell.update_bytes = self.size(system, up)
                last[cell.key] = up
                bar.update()
        bar.close()
        # correctness (untimed): the 1-worker and W-worker uploads of the same tree sum to 2x
        if len(self.worker_counts) > 1:
            w = self.worker_counts[-1]
            for system in SECAGG_SYSTEMS:
                s = self.scheme_of(system)
                total = s.aggregate([last[f"{system}_w1"], last[f"{system}_w{w}"]])
                ok, note = s.check_exact(total, [tree, tree])
                for ww in (1, w):
                    cells[f"{system}_w{ww}"].exact = ok
                    cells[f"{system}_w{ww}"].exact_note = "1-worker + W-worker uploads: " + note
                self.problems.check(ok, f"{SYSTEMS[system]} at {values:,} values: sum of the "
                                        f"1- and {w}-worker uploads not exact: {note}")
        last.clear()
        gc.collect()
        return {"values": values, "shapes": base, "copies": copies, "big": True, "cells": cells}

    # -- plans -----------------------------------------------------------------
    def plans(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, s in self.schemes.items():
            d = s.client.describe()
            d["public_context_bytes"] = len(s.public_bytes)
            d["keygen_s"] = s.keygen_s
            out[name] = d
        out["flare"] = {
            "scheme": "ckks (TenSEAL)", "poly_modulus_degree": FLARE_POLY_MODULUS_DEGREE,
            "coeff_mod_bit_sizes": FLARE_COEFF_MOD_BIT_SIZES, "scale_bits": FLARE_SCALE_BITS,
            "slots": FLARE_POLY_MODULUS_DEGREE // 2,
            "public_context_bytes": len(self.flare.public_bytes),
            "public_key_only_context_bytes": self.flare.pk_only_bytes,
            "keygen_s": self.flare.keygen_s,
        }
        return out


# -- derived figures and targets -----------------------------------------------


def ratios(size: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per cell: bytes and encryption speed against the NVFlare default on one thread."""
    cells = size["cells"]
    base = cells["flare_w1"]
    out = {}
    for key, c in cells.items():
        out[key] = {
            "bytes_smaller_than_flare": base.bytes_per_value / c.bytes_per_value,
            "encrypt_vs_flare_1thread": (c.encrypt_vps / base.encrypt_vps
                                         if c.encrypt_vps and base.encrypt_vps else None),
        }
    return out


def targets(results: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """PASS/MISS lines for the targets at 100,000 values (and the big size for 2 cores)."""
    main = results["main"]
    at_target = main["values"] == TARGET_VALUES
    cells = main["cells"]
    rat = ratios(main)
    flare = cells["flare_w1"]

    # 2 cores: secagg ckks with W workers against the NVFlare default on 1 thread, same size
    two_core: list[tuple[float, int, str]] = []
    for size in [main, results.get("big")]:
        if size is None or workers < 2:
            continue
        r = ratios(size)[f"ckks_w{workers}"]["encrypt_vs_flare_1thread"]
        if r is not None:
            two_core.append((r, size["values"], "ckks"))
    best2 = max(two_core) if two_core else None

    def line(name: str, value: float | None, threshold: float | None, upper: bool, fmt: str,
             extra: str = "", skip: str | None = None) -> dict[str, Any]:
        if skip:
            status = "SKIP"
        elif value is None:
            status = "SKIP"
            skip = "not measured"
        elif threshold is None:
            status = "INFO"
        else:
            status = "PASS" if (value <= threshold if upper else value >= threshold) else "MISS"
        shown = "-" if value is None else fmt.format(value)
        text = f"{status}  {name}: {shown}{extra}"
        if skip:
            text += f" ({skip})"
        return {"target": name, "threshold": threshold, "value": value, "status": status,
                "line": text}

    def exact_line(name: str, cell: Cell, skip: str | None) -> dict[str, Any]:
        status = "SKIP" if skip else ("PASS" if cell.exact else "MISS")
        err = cell.max_abs_error
        text = (f"{status}  {name}: {'exact' if cell.exact else 'NOT exact'} ({cell.exact_note}; "
                f"mean error {err:.2e} <= 2^-{FRAC_BITS + 1} = {MEAN_ERROR_BOUND:.2e}: "
                f"{'yes' if err <= MEAN_ERROR_BOUND else 'no'})")
        if skip:
            text += f" ({skip})"
        return {"target": name, "threshold": True, "value": cell.exact, "status": status,
                "line": text}

    skip = None if at_target else f"targets are for {TARGET_VALUES:,} values; measured at " \
                                  f"{main['values']:,}"
    ck, bf = cells["ckks_w1"], cells["bfv_w1"]
    out = [
        line("secagg ckks payload >= 1.9x smaller than NVFlare default",
             rat["ckks_w1"]["bytes_smaller_than_flare"], 1.9, False, "{:.2f}x",
             f" ({ck.bytes_per_value:.2f} vs {flare.bytes_per_value:.2f} bytes/value)", skip),
        line("secagg ckks encrypt >= 1.5x NVFlare default (1 core each)",
             rat["ckks_w1"]["encrypt_vs_flare_1thread"], 1.5, False, "{:.2f}x",
             f" ({fmt_rate(ck.encrypt_vps)} vs {fmt_rate(flare.encrypt_vps)} values/s)", skip),
        line(f"secagg ckks encrypt with {workers} cores >= 2.5x NVFlare default (1 core)",
             best2[0] if best2 else None, 2.5, False, "{:.2f}x",
             f" (best at {best2[1]:,} values; "
             + ", ".join(f"{v:,}: {r:.2f}x" for r, v, _ in sorted(two_core, key=lambda x: x[1]))
             + ")" if best2 else "",
             skip if skip else (None if workers >= 2 else "needs --workers >= 2")),
    ]
    out.append(exact_line("secagg ckks exact decoded sum", ck, skip))
    out.append(line("NVFlare default decoded mean error (approximate, for reference)",
                    flare.max_abs_error, None, True, "{:.2e}",
                    " (CKKS approximation; no exactness guarantee)"))
    out += [
        line("secagg bfv <= 15 bytes/value", bf.bytes_per_value, 15, True, "{:.2f} bytes/value",
             "", skip),
        line("secagg bfv payload >= 3.5x smaller than NVFlare default",
             rat["bfv_w1"]["bytes_smaller_than_flare"], 3.5, False, "{:.2f}x", "", skip),
        line("secagg bfv encrypt >= 2.5x NVFlare default (1 core each)",
             rat["bfv_w1"]["encrypt_vs_flare_1thread"], 2.5, False, "{:.2f}x",
             f" ({fmt_rate(bf.encrypt_vps)} vs {fmt_rate(flare.encrypt_vps)} values/s)", skip),
    ]
    out.append(exact_line("secagg bfv exact decoded sum", bf, skip))
    out += [
        line("seeded symmetric ckks upload <= 16 bytes/value",
             cells["ckks_seeded_w1"].bytes_per_value, 16, True, "{:.2f} bytes/value", "", skip),
        line("seeded symmetric bfv upload <= 8 bytes/value",
             cells["bfv_seeded_w1"].bytes_per_value, 8, True, "{:.2f} bytes/value", "", skip),
    ]
    if workers >= 2:
        f2 = cells[f"flare_w{workers}"]
        r2 = cells[f"ckks_w{workers}"]
        out.append(line(f"(for comparison) secagg ckks {workers} workers vs NVFlare n_threads="
                        f"{workers}", (r2.encrypt_vps / f2.encrypt_vps), None, False, "{:.2f}x",
                        f" at {main['values']:,} values ({fmt_rate(r2.encrypt_vps)} vs "
                        f"{fmt_rate(f2.encrypt_vps)} values/s)"))
    return out


# -- reporting -----------------------------------------------------------------

HEADERS = ["system", "values", "workers", "encrypt values/s", "encrypt s/client",
           "aggregate values/s", "decrypt values/s", "bytes/value", "vs float32",
           "smaller than NVFlare", "encrypt vs NVFlare 1 core", "max abs error (mean)",
           "exact sum"]


def _ratio(x: float | None) -> str:
    """bench_core's ratio format, but two decimals below 10 (0.999x reads 1.00x, not 1x)."""
    return common.fmt_ratio(x, floor=0.0)


def _opt(x: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if x is None else fmt(x)


def main_table(results: dict[str, Any]) -> str:
    rows = []
    for size in [results["main"], results.get("big")]:
        if size is None:
            continue
        rat = ratios(size)
        for key, c in size["cells"].items():
            label = SYSTEMS[c.system]
            if c.system == "flare":
                label += f", n_threads={c.workers}"
            exact = {True: "yes", False: "no", None: "-"}[c.exact]
            if c.system == "flare" and c.exact is False:
                exact = "no (approx.)"
            rows.append([
                label, f"{c.values:,}", str(c.workers), _opt(c.encrypt_vps, fmt_rate),
                _opt(c.values / c.encrypt_vps if c.encrypt_vps else None, fmt_seconds),
                _opt(c.aggregate_vps, fmt_rate), _opt(c.decrypt_vps, fmt_rate),
                f"{c.bytes_per_value:.2f}", f"{c.bytes_per_value / 4:.2f}x",
                _ratio(rat[key]["bytes_smaller_than_flare"]),
                _ratio(rat[key]["encrypt_vs_flare_1thread"]),
                _opt(c.max_abs_error, lambda e: f"{e:.2e}"), exact,
            ])
    return common.markdown_table(HEADERS, rows)


PLAN_HEADERS = ["scheme", "N", "moduli (bits)", "scale / plain modulus", "slots",
                "noise margin (planned)", "measured in the sum", "approx bytes/value",
                "public context", "keygen"]


def plan_table(plans: dict[str, Any], noise: dict[str, Any]) -> str:
    rows = []
    for name in ("ckks", "bfv"):
        p = plans[name]
        if name == "ckks":
            scale = f"scale 2^{p['scale_bits']}"
            margin = (f"{p['noise_margin']:.1f} σ (σ_sum={p['sum_noise_std']:.2g}), "
                      f"failure 2^{p['failure_log2']:.0f}/slot")
            n = noise.get("ckks", {})
            measured = (f"max residual {n['max_rounding_residual']:.2g}"
                        if "max_rounding_residual" in n else n.get("noise_probe_error", "-"))
        else:
            scale = f"t = {p['plain_modulus']:,} ({p['plain_modulus'].bit_length()} bits)"
            margin = f"{p['margin_bits']:.1f} bits (noise ≤ 2^{p['noise_bound_log2']:.1f})"
            n = noise.get("bfv", {})
            measured = (f"noise budget ≥ {n['min_invariant_noise_budget_bits']} bits"
                        if "min_invariant_noise_budget_bits" in n
                        else n.get("noise_probe_error", "-"))
        rows.append([f"secagg {name}", str(p["poly_modulus_degree"]),
                     str(list(p["coeff_mod_bit_sizes"])), scale, f"{p['slots']:,}", margin,
                     measured, f"{p['approx_bytes_per_value']:.1f}",
                     fmt_bytes(p["public_context_bytes"]), fmt_seconds(p["keygen_s"])])
    f = plans["flare"]
    rows.append(["NVFlare default", str(f["poly_modulus_degree"]), str(f["coeff_mod_bit_sizes"]),
                 f"scale 2^{f['scale_bits']}", f"{f['slots']:,}", "- (approximate)", "-", "-",
                 f"{fmt_bytes(f['public_context_bytes'])} "
                 f"({fmt_bytes(f['public_key_only_context_bytes'])} pk only)",
                 fmt_seconds(f["keygen_s"])])
    return common.markdown_table(PLAN_HEADERS, rows)


def footnotes(results: dict[str, Any], config: dict[str, Any]) -> list[str]:
    main = results["main"]
    notes = [
        f"{main['values']:,} float32 values per update (N(0, {STD}) clipped to ±{CLIP}), "
        f"{config['clients']} clients, frac_bits={FRAC_BITS}, clip={CLIP}, "
        f"max_clients={MAX_CLIENTS}, max_weight={MAX_WEIGHT}.",
        "Layers (same tree for every system): "
        + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in main["shapes"]) + ".",
        f"Medians: encrypt over {config['rounds']} round(s) x {config['clients']} clients per "
        f"variant, the variants interleaved in a rotating order; aggregate (clients x values / "
        f"time to load, validate and add every client's bytes) and decrypt (values / time to "
        f"decrypt and decode the mean) over {config['repeats']} repeat(s) of the 1-worker "
        f"uploads, systems interleaved.",
        "workers: secagg's `workers=` (forked processes, chunks of ciphertexts); for the NVFlare "
        "baseline the TenSEAL context's `n_threads` (clients load the public context with "
        "`ts.context_from(blob, n_threads=...)`). NVFlare itself loads it without n_threads, "
        "i.e. with all cores.",
        "'smaller than NVFlare' and 'encrypt vs NVFlare 1 core' compare with the NVFlare "
        "default on one thread at the same size (higher is better).",
        "exact sum: `ctx.decrypt_raw(total).values == sum_i codec.encode(flatten(x_i))`; the "
        f"{config['workers']}-worker uploads are summed and checked too (untimed). The NVFlare "
        "baseline encrypts raw floats and is approximate.",
        "seeded: the key holder's `ctx.encrypt(tree)` (symmetric, seeded ciphertexts, the "
        "shared-key arrangement); the aggregator expands the seed when it loads the bytes.",
    ]
    min_cts = 2 * getattr(secagg.schemes.lattice.seal, "_MIN_PARALLEL_CTS", 4)
    serial = [f"{name} ({-(-(main['values'] + 2) // p['slots'])} ciphertexts)"
              for name, p in results["plans"].items() if name in ("ckks", "bfv")
              and -(-(main["values"] + 2) // p["slots"]) < min_cts]
    if serial:
        notes.append(f"At {main['values']:,} values secagg encrypts serially whatever `workers=` "
                     f"says (fewer than {min_cts} ciphertexts): " + ", ".join(serial) + ".")
    big = results.get("big")
    if big:
        notes.append(
            f"{big['values']:,} values: {big['copies']} copies of the tree's layers in one "
            f"update; encryption only ({config['big_rounds']} round(s), interleaved); "
            "exactness checked on the sum of the 1-worker and the "
            f"{config['workers']}-worker upload of the same tree.")
    return notes


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Bytes/value and encrypt values/s per system (1 and W workers; main and big size)."""
    plt = common.pyplot()
    if plt is None:
        return None
    import matplotlib.ticker
    main, big = results["main"], results.get("big")
    systems = list(SYSTEMS)
    labels = [SYSTEMS[s].replace(" (TenSEAL CKKS)", "\n(TenSEAL CKKS)").replace(", seeded",
                                                                              ",\nseeded")
              for s in systems]
    workers = sorted({c.workers for c in main["cells"].values()})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6))
    xs = np.arange(len(systems))

    bpv = [main["cells"][f"{s}_w1"].bytes_per_value for s in systems]
    bars = ax1.bar(xs, bpv, color=["#888888", "#1f77b4", "#2ca02c", "#6baed6", "#98df8a"])
    common.annotate_bars(ax1, bars, bpv, lambda y: f"{y:.1f}", fontsize=8, rotation=0)
    ax1.axhline(4, color="k", ls=":", lw=1)
    ax1.text(-0.45, 4, "float32 (4 bytes)", ha="left", va="bottom", fontsize=8)
    ax1.set_xticks(xs)
    ax1.set_xticklabels(labels, fontsize=8)
    ax1.set_ylabel("bytes per value on the wire")
    ax1.set_title(f"upload size, {main['values']:,} values")
    ax1.grid(axis="y", alpha=0.3)

    series = [(main, w) for w in workers] + ([(big, w) for w in workers] if big else [])
    width = 0.8 / len(series)
    for i, (size, w) in enumerate(series):
        ys = [size["cells"][f"{s}_w{w}"].encrypt_vps or float("nan") for s in systems]
        pos = xs + (i - (len(series) - 1) / 2) * width
        bars = ax2.bar(pos, ys, width, label=f"{size['values']:,} values, {w} "
                                             f"{'core' if w == 1 else 'cores'}")
        common.annotate_bars(ax2, bars, ys)
    _, hi = ax2.get_ylim()
    ax2.set_ylim(0, hi * 1.25)
    ax2.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax2.set_xticks(xs)
    ax2.set_xticklabels(labels, fontsize=8)
    ax2.set_ylabel("encrypt values/s (median; to bytes on the wire)")
    ax2.set_title("client encryption speed")
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=8)
    return common.save_figure(fig, path, "secagg CKKS / BFV vs NVFlare's TenSEAL default "
                                         "(NVFlare workers = TenSEAL n_threads)")


def json_sizes(results: dict[str, Any]) -> dict[str, Any]:
    """Per measured size: its tree, every variant's figures and ratios, the measured noise."""
    sizes = {}
    for name in ("main", "big"):
        size = results.get(name)
        if size is None:
            continue
        rat = ratios(size)
        sizes[str(size["values"])] = {
            "values": size["values"], "shapes": [[n, list(s)] for n, s in size["shapes"]],
            "copies": size.get("copies", 1), "encrypt_only": size["big"],
            "variants": {k: {**c.as_dict(), "ratios": rat[k]} for k, c in size["cells"].items()},
            "measured_noise": size.get("noise"),
        }
    return sizes


def markdown(doc: dict[str, Any], results: dict[str, Any], target_rows: list[dict[str, Any]],
             problems: list[str]) -> list[str]:
    """The markdown file's lines: title, machine line, the tables, notes, targets."""
    config = doc["config"]
    title = (f"bench_lattice: secagg CKKS and BFV vs NVFlare's TenSEAL default, "
             f"{results['main']['values']:,} values, {config['clients']} clients")
    tables = [main_table(results), "## Plans (`pub.describe()`)",
              plan_table(results["plans"], results["main"].get("noise", {}))]
    return [*common.markdown_lines(title, doc, ("tenseal",), tables, footnotes(results, config)),
            *common.target_lines(targets_title(config), target_rows, problems, markdown=True)]


def targets_title(config: dict[str, Any]) -> str:
    return f"Targets ({TARGET_VALUES:,} values, {config['clients']} clients)"


# -- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` and ``--smoke`` change the defaults, explicit ones win."""
    p = common.parser(
        __doc__, f"small run: {QUICK['values']:,} values, {QUICK['rounds']} rounds, "
           f"{QUICK['repeats']} repeats, no big update")
    common.add_update_arguments(p, FULL)
    p.add_argument("--rounds", type=int,
                   help=f"encryptions of every client's tree per variant (default {FULL['rounds']})")
    p.add_argument("--big-copies", type=int,
                   help=f"the big update holds this many copies of the tree; 0 skips it "
                        f"(default {FULL['big_copies']})")
    p.add_argument("--big-rounds", type=int,
                   help=f"encryptions of the big update per variant (default {FULL['big_rounds']})")
    p.add_argument("--workers", type=int, default=2,
                   help="workers (secagg) and n_threads (TenSEAL) of the multi-core variants "
                        "(default 2)")
    args = common.apply_defaults(p.parse_args(argv), FULL, QUICK, SMOKE)
    common.check_update_arguments(p, args)
    if min(args.rounds, args.big_rounds, args.workers) < 1 or args.big_copies < 0:
        p.error("--rounds, --big-rounds and --workers must be positive, "
                "--big-copies non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every system on the same data, print the tables; ``--out`` writes JSON, md and PNG."""
    args = parse_args(argv)
    run = common.Run()
    config = {k: getattr(args, k) for k in
              ("values", "clients", "rounds", "repeats", "big_copies", "big_rounds", "workers",
               "seed", "quick", "smoke")}
    print(f"bench_lattice: {args.values:,} values x {args.clients} clients, {args.rounds} "
          f"encrypt round(s), {args.repeats} repeat(s)"
          + (f", {args.big_copies * args.values:,}-value update" if args.big_copies else "")
          + f", workers 1 and {args.workers}; {run.summary()}", flush=True)
    show = not args.no_progress
    problems = Problems()
    print("key generation (NVFlare default, secagg ckks, secagg bfv) ...", file=sys.stderr,
          flush=True)
    bench = Bench(args, problems)
    results: dict[str, Any] = {"plans": bench.plans()}
    results["main"] = bench.run_main(args.values, show)
    if args.big_copies:
        results["big"] = bench.run_big(args.big_copies, show)
    wall_s = run.finish()

    target_rows = targets(results, args.workers)
    print()
    print(main_table(results))
    print()
    print(plan_table(results["plans"], results["main"].get("noise", {})))
    print()
    for note in footnotes(results, config):
        print(f"- {note}")
    print()
    print("\n".join(common.target_lines(targets_title(config), target_rows, problems.items)))
    doc = common.result_doc(
        "bench_lattice",
        {**config, "std": STD, "clip": CLIP, "frac_bits": FRAC_BITS, "max_clients": MAX_CLIENTS,
         "max_weight": MAX_WEIGHT,
         "flare": {"poly_modulus_degree": FLARE_POLY_MODULUS_DEGREE,
                   "coeff_mod_bit_sizes": FLARE_COEFF_MOD_BIT_SIZES,
                   "scale_bits": FLARE_SCALE_BITS}},
        run, plans=results["plans"], sizes=json_sizes(results), targets=target_rows,
        secagg_problems=problems.items)
    written = common.write_results(
        args.out, "lattice", doc, markdown(doc, results, target_rows, problems.items),
        plot=lambda path: plot(results, path), figure_alt="bytes/value and encrypt values/s")
    common.report_written(wall_s, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
