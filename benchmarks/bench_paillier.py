#!/usr/bin/env python3
"""Packed Paillier benchmark: secagg's Paillier variants against phe per value and BatchCrypt-style packing.

One run measures, side by side, at every key size (default 2048 and 3072 bits)
and every update size (default 10,000, 100,000 and 1,000,000 float32 values
drawn from N(0, 0.1); clip=1, frac_bits=16, max_clients=100, max_weight=1):

* ``phe per value`` (baseline a): one ``phe.EncryptedNumber`` per value:
  ``public_key.encrypt(float)``, ``a + b``, ``private_key.decrypt``. Timed on a
  sample of values and extrapolated (every value costs the same).
* ``BatchCrypt-style`` (baseline b): the plaintexts secagg itself packs (same
  codec, same offset, same ``layout.raw_pack``), each encrypted with phe's
  ``public_key.raw_encrypt(m)`` (a full ``r**n mod n**2`` per ciphertext) and
  decrypted with ``private_key.raw_decrypt``. Packing and unpacking are timed
  on the whole update; encryption and decryption on a sample of ciphertexts,
  then extrapolated to the update's ciphertext count.
* secagg: ``secagg.generate("paillier", key_bits=K)`` (DJN randomness from a
  fixed-base table, fresh randomness, no pool, 1 worker), the same with all
  cores (``workers=os.cpu_count()``), ``optimized_keys=True`` (1 worker and all
  cores), ``randomness="standard"`` (full ``r**n``; on the default key), and the
  default with a noise pool (``pub.precompute(n_ciphertexts)`` timed as the
  offline cost, then the online encryption). Encryption is
  ``pub.encrypt(tree).to_bytes()`` on a client's ``PublicContext`` loaded from
  bytes (quantization, packing, encryption, serialization); the one-time
  fixed-base table build is done before timing and reported on its own.
  Decryption is ``ctx.decrypt(total_bytes)`` of a 2-client sum (parse,
  validation, decryption, unpacking, decoding), with
  ``secret_backend.constant_time`` True (the default) and False.

Plus, per key and size: aggregation of 10 distinct client updates from bytes
(``Aggregator.add``, full validation) against a plain copy of the same bytes,
bytes per value on the wire, slots per ciphertext; per key: key generation
time (default and optimized keys) and the fixed-base tables' build time,
memory and window.

Every figure is the MEDIAN of its samples. Costs that grow linearly and would
blow the time budget are measured on a sample or a smaller update and
extrapolated; the table marks them (``*`` sampled, ``†`` from a smaller
update) and the JSON says from what.

Usage::

    python benchmarks/bench_paillier.py            # 2048 + 3072 bits, 10k/100k/1M values (< ~10 min)
    python benchmarks/bench_paillier.py --quick    # 2048 bits, 10k and 100k values (< ~90 s)
    python benchmarks/bench_paillier.py --keys 2048 --sizes 10k 100k --out /tmp/paillier.json
    python benchmarks/bench_paillier.py --out benchmarks/results   # what `make bench` commits

The tables go to stdout; nothing is written unless ``--out`` names a folder
(``paillier.json``, ``paillier.md`` and ``paillier.png`` go there) or a ``.json``
path (the ``.md`` and ``.png`` next to it).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import phe

import secagg
import secagg.schemes.paillier.backend  # load the backend now, not inside a timed call
from common import (
    CLIP,
    CODEC,
    FRAC_BITS,
    MAX_CLIENTS,
    MAX_WEIGHT,
    STD,
    Problems,
    Tree,
    fmt_bytes,
    fmt_rate,
    fmt_seconds,
    gc_paused,
    timed,
)

try:
    from secagg.update import EXTRA_SLOTS  # the encrypted weight and count after the values
except ImportError:  # pragma: no cover - older layouts
    EXTRA_SLOTS = 2

FLOAT32_BYTES = 4
PHE_EXPONENT_BYTES = 2  # phe's wire format in bench_core: ciphertext + int16 exponent
BIG_UPDATE = 100_000  # updates larger than this are encrypted once (one round)

FULL: dict[str, Any] = {
    "keys": [2048, 3072], "sizes": [10_000, 100_000, 1_000_000], "repeats": 3,
    "phe_samples": 100, "bc_samples": 30, "standard_cap": 10_000, "pool_cap": 1_000_000,
    "decrypt_cap": 100_000, "agg_cap": 20_000, "agg_clients": 10,
}
QUICK: dict[str, Any] = {
    "keys": [2048], "sizes": [10_000, 100_000], "repeats": 1,
    "phe_samples": 10, "bc_samples": 4, "standard_cap": 2_000, "pool_cap": 100_000,
    "decrypt_cap": 100_000, "agg_cap": 5_000, "agg_clients": 10,
}
# two sizes, so that the second reuses and extrapolates (†) the first's measurements
SMOKE: dict[str, Any] = {
    "keys": [common.SMOKE_KEY_BITS], "sizes": [100, 300], "repeats": 1,
    "phe_samples": 2, "bc_samples": 1, "standard_cap": 100, "pool_cap": 100,
    "decrypt_cap": 100, "agg_cap": 100, "agg_clients": 2,
}

# Targets checked at the end (2048-bit key, 100,000 values, one core unless said).
TARGET_KEY = 2048
TARGET_VALUES = 100_000
TARGETS_TITLE = f"Targets ({TARGET_KEY}-bit key, {TARGET_VALUES:,} values)"

# (key, label, decrypted?) in table order
VARIANTS = [
    ("phe", "phe per value", True),
    ("batchcrypt", "BatchCrypt-style (phe raw_encrypt)", True),
    ("djn", "secagg default (DJN)", True),
    ("djn_workers", "secagg default, {w} workers", True),
    ("optimized", "secagg optimized keys", True),
    ("optimized_workers", "secagg optimized keys, {w} workers", True),
    ("standard", "secagg standard randomness", False),
    ("pool", "secagg default + pool (online)", False),
]


# -- results -------------------------------------------------------------------


@dataclass
class Op:
    """One operation's figure: values per second for an update, and how it was obtained.

    ``samples_s`` are the raw timings in ``sample_unit`` (a whole update of
    ``measured_values`` values, one value, or one ciphertext). ``mark`` is ``*``
    when extrapolated from a sample of values or ciphertexts and ``†`` when
    extrapolated from a smaller update; ``extrapolated`` says how.
    """

    vps: float
    seconds_per_update: float
    samples_s: list[float]
    sample_unit: str
    measured_values: int
    extrapolated: str | None = None
    mark: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cell:
    """Everything measured for one variant at one key and update size."""

    variant: str
    label: str
    encrypt: Op | None = None
    decrypt: Op | None = None
    decrypt_variable_time: Op | None = None
    offline_precompute: Op | None = None
    bytes_per_value: float | None = None
    notes: list[str] = field(default_factory=list)


# -- helpers -------------------------------------------------------------------


def make_tree(values: int, seed: int, client: int) -> Tree:
    """One client's update: ``values`` float32 draws from N(0, STD), clipped to ``±CLIP``."""
    rng = np.random.default_rng([seed, client, values])
    return {"update": np.clip(rng.normal(0.0, STD, values).astype(np.float32), -CLIP, CLIP)}


def update_op(samples: list[float], measured: int, values: int, *, unit: str | None = None,
              note: str | None = None) -> Op:
    """An :class:`Op` from whole-update timings at ``measured`` values, scaled to ``values``."""
    vps = measured / statistics.median(samples)
    mark = "" if measured == values else "†"
    if measured != values and note is None:
        note = f"extrapolated linearly from an update of {measured:,} values"
    return Op(vps=vps, seconds_per_update=values / vps, samples_s=list(samples),
              sample_unit=unit or f"update of {measured} values", measured_values=measured,
              extrapolated=note, mark=mark)


# -- per-key setup -------------------------------------------------------------


class KeySetup:
    """The contexts for one key size, as each role holds them."""

    def __init__(self, key_bits: int, workers: int) -> None:
        self.key_bits = key_bits
        self.workers = workers
        opts = common.paillier_options(key_bits)  # insecure below 2048 bits (--smoke)
        self.keygen_s, self.ctx = timed(lambda: secagg.generate("paillier", **opts, **CODEC))
        self.keygen_opt_s, self.octx = timed(lambda: secagg.generate(
            "paillier", optimized_keys=True, **opts, **CODEC))
        self.pk: phe.PaillierPublicKey = self.ctx.public.backend.public_key
        self.sk: phe.PaillierPrivateKey = self.ctx.secret_backend.private_key
        # standard randomness on the default key: only the randomness differs
        self.sctx = secagg.generate("paillier", keypair=(self.pk, self.sk),
                                    randomness="standard", **opts, **CODEC)
        # clients and the aggregator hold only what they were sent
        insecure = "insecure" in opts
        self.client = common.load_public(self.ctx.public.to_bytes(), insecure)
        self.oclient = common.load_public(self.octx.public.to_bytes(), insecure)
        self.sclient = common.load_public(self.sctx.public.to_bytes(), insecure)
        self.pool_client = common.load_public(self.ctx.public.to_bytes(), insecure)
        self.server = common.load_public(self.ctx.public.to_bytes(), insecure)
        self.oserver = common.load_public(self.octx.public.to_bytes(), insecure)
        self.constant_time_default = bool(self.ctx.secret_backend.constant_time)
        # the one-time fixed-base tables: built here, never inside a timed encryption
        self.tables: dict[str, dict[str, Any]] = {}
        for name, pub in (("default", self.client), ("optimized", self.oclient),
                          ("pool", self.pool_client)):
            t, table = timed(pub.backend.table)
            self.tables[name] = {"build_s": t, "nbytes": table.nbytes, "window": table.window,
                                 "exponent_bits": table.exp_bits,
                                 "rows": -(-table.exp_bits // table.window)}
        b = self.client.backend
        self.layout = {"slots": b.layout.slots, "slot_bits": b.layout.slot_bits,
                       "plaintext_bits": b.layout.plaintext_bits, "ciphertext_bytes": b.ct_bytes,
                       "offset": int(b.offset)}

    def describe(self) -> dict[str, Any]:
        """Key-level figures for the JSON."""
        return {
            "keygen_s": {"default": self.keygen_s, "optimized": self.keygen_opt_s},
            "layout": self.layout,
            "tables": {k: v for k, v in self.tables.items() if k != "pool"},
            "table_note": "built once per key before any timing; the pool client's own copy "
                          "of the default table is not counted",
            "constant_time_default": self.constant_time_default,
            "randomness_exponent_bits": {"default": self.client.backend.r_bits,
                                         "optimized": self.oclient.backend.r_bits,
                                         "standard": self.sclient.backend.r_bits},
        }


# -- the benchmark -------------------------------------------------------------


class Bench:
    """Runs every variant at every size for one key, interleaved round by round."""

    def __init__(self, setup: KeySetup, args: argparse.Namespace, problems: Problems) -> None:
        self.s = setup
        self.args = args
        self.problems = problems
        self.workers = args.workers
        self.trees: dict[tuple[int, int], Tree] = {}
        # measurements reused by larger sizes: (variant-op, measured values) -> Op
        self.cache: dict[tuple[str, int], Op] = {}
        self.agg_blobs: dict[int, list[bytes]] = {}
        # phe and BatchCrypt-style cells per measured size: a figure extrapolated from a
        # smaller update (†) is compared with the baselines measured alongside it
        self.baselines: dict[int, dict[str, Cell]] = {}

    def tree(self, values: int, client: int) -> Tree:
        key = (values, client)
        if key not in self.trees:
            self.trees[key] = make_tree(values, self.args.seed, client)
        return self.trees[key]

    # -- baselines --------------------------------------------------------------

    def phe_round(self, values: int, n_positions: int, rnd: int, rec: dict[str, list[float]]) -> None:
        """Encrypt two clients' values, add them, decrypt: one ``phe.EncryptedNumber`` each."""
        pk, sk = self.s.pk, self.s.sk
        rng = np.random.default_rng([self.args.seed, values, rnd, 7])
        pos = rng.choice(values, size=min(n_positions, values), replace=False)
        x0 = self.tree(values, 0)["update"][pos].astype(np.float64)
        x1 = self.tree(values, 1)["update"][pos].astype(np.float64)
        clock = time.perf_counter
        with gc_paused():
            encs = []
            for xs in (x0, x1):
                row = []
                for x in xs:
                    t0 = clock()
                    row.append(pk.encrypt(float(x)))
                    rec["encrypt"].append(clock() - t0)
                encs.append(row)
            sums = []
            for a, b in zip(*encs):
                t0 = clock()
                sums.append(a + b)
                rec["add"].append(clock() - t0)
            dec = []
            for c in sums:
                t0 = clock()
                dec.append(sk.decrypt(c))
                rec["decrypt"].append(clock() - t0)
        err = float(np.max(np.abs(np.asarray(dec) - (x0 + x1))))
        rec["max_abs_error"].append(err)
        # per-round means: timed like secagg's whole-update samples (a burst of load
        # during the round counts, as it would in a secagg sample)
        n = len(pos)
        for key, k in (("encrypt", 2 * n), ("add", n), ("decrypt", n)):
            rec[f"{key}_rounds"].append(statistics.fmean(rec[key][-k:]))

    def packed(self, values: int) -> tuple[float, list[int]]:
        """secagg's packed plaintexts for client 0 (codec, offset, ``layout.raw_pack``), timed."""
        b = self.s.client.backend
        codec = self.s.client.codec
        x = self.tree(values, 0)["update"]

        def pack() -> list[int]:
            q, _ = codec.raw_encode(x.ravel())
            slots = np.empty(q.size + EXTRA_SLOTS, dtype=np.int64)
            slots[: q.size] = q
            slots[q.size:] = (1, 1)  # weight and count, as secagg appends them
            return b.layout.raw_pack((slots + np.int64(b.offset)).astype(np.uint64))

        return timed(pack)

    def bc_round(self, values: int, per_round: int, rnd: int, rec: dict[str, list[float]]) -> int:
        """BatchCrypt-style: phe ``raw_encrypt`` / ``raw_decrypt`` on secagg's packed plaintexts."""
        pk, sk = self.s.pk, self.s.sk
        width = self.s.layout["ciphertext_bytes"]
        t_pack, plain = self.packed(values)
        rec["pack"].append(t_pack)
        n_cts = len(plain)
        rng = np.random.default_rng([self.args.seed, values, rnd, 11])
        idx = rng.choice(n_cts, size=min(per_round, n_cts), replace=False)
        clock = time.perf_counter
        with gc_paused():
            cts = []
            for i in idx:
                t0 = clock()
                c = pk.raw_encrypt(plain[int(i)])
                c.to_bytes(width, "big")
                rec["encrypt_ct"].append(clock() - t0)
                cts.append(c)
            rec["encrypt_ct_rounds"].append(statistics.fmean(rec["encrypt_ct"][-len(idx):]))
            ok = True
            for i, c in zip(idx, cts):
                t0 = clock()
                m = sk.raw_decrypt(int(c))
                rec["decrypt_ct"].append(clock() - t0)
                ok &= m == plain[int(i)]
        rec["decrypt_ct_rounds"].append(statistics.fmean(rec["decrypt_ct"][-len(idx):]))
        self.problems.check(ok, f"phe raw_decrypt of secagg-packed plaintexts differs "
                                f"({self.s.key_bits} bits)")
        layout = self.s.client.backend.layout
        t_unpack, _ = timed(lambda: layout.raw_unpack(plain, values + EXTRA_SLOTS))
        rec["unpack"].append(t_unpack)
        return n_cts

    # -- secagg -----------------------------------------------------------------

    def encrypt(self, pub: secagg.PublicContext, tree: Tree, workers: int) -> tuple[float, bytes]:
        """``pub.encrypt(tree).to_bytes()``, timed; checks the ciphertext count."""
        values = sum(v.size for v in tree.values())

        def run() -> tuple[Any, bytes]:
            upd = pub.encrypt(tree, workers=workers)
            return upd, upd.to_bytes()

        t, (upd, blob) = timed(run)
        want = pub.backend.num_ciphertexts(values + EXTRA_SLOTS)
        self.problems.check(len(upd.ciphertexts) == want,
                            f"update of {values} values has {len(upd.ciphertexts)} ciphertexts, "
                            f"expected {want}")
        return t, blob

    def pool_once(self, tree: Tree) -> tuple[float, float, bytes]:
        """Precompute exactly the update's randomness (offline), then encrypt (online)."""
        pub = self.s.pool_client
        b = pub.backend
        values = sum(v.size for v in tree.values())
        n_cts = b.num_ciphertexts(values + EXTRA_SLOTS)
        self.problems.check(b.pool_size == 0, f"pool not empty before precompute ({b.pool_size})")
        t_pre, _ = timed(lambda: pub.precompute(n_cts))
        self.problems.check(b.pool_size == n_cts,
                            f"precompute({n_cts}) left {b.pool_size} values in the pool")
        t_on, blob = self.encrypt(pub, tree, 1)
        self.problems.check(b.pool_size == 0,
                            f"online encryption left {b.pool_size} of {n_cts} pooled values unused")
        return t_pre, t_on, blob

    def total(self, server: secagg.PublicContext, blobs: Sequence[bytes]) -> bytes:
        agg = secagg.Aggregator(server)
        for blob in blobs:
            agg.add(blob)
        return agg.result().to_bytes()

    def decrypt_once(self, ctx: secagg.SecretContext, total: bytes, reference: np.ndarray,
                     rec: dict[str, list[float]], what: str) -> None:
        """Decrypt a sum: constant-time with 1 and all workers, variable-time with 1."""
        sb = ctx.secret_backend
        sb.constant_time = True
        t1, out1 = timed(lambda: ctx.decrypt(total, workers=1))
        tw, outw = timed(lambda: ctx.decrypt(total, workers=self.workers))
        sb.constant_time = False
        try:
            tv, outv = timed(lambda: ctx.decrypt(total, workers=1))
        finally:
            sb.constant_time = True
        rec["ct_1"].append(t1)
        rec["ct_w"].append(tw)
        rec["vt_1"].append(tv)
        a, b, c = (np.asarray(o["update"]) for o in (out1, outw, outv))
        self.problems.check(np.array_equal(a, b) and np.array_equal(a, c),
                            f"{what}: decryptions with workers / constant_time differ")
        err = float(np.max(np.abs(a.astype(np.float64) - reference)))
        rec.setdefault("max_abs_error", []).append(err)
        self.problems.check(err <= 2.0 ** -(FRAC_BITS + 1) + 1e-7,
                            f"{what}: decrypted mean off by {err:.3g} (bound 2^-{FRAC_BITS + 1})")

    def decrypt_totals(self, values: int) -> dict[str, tuple[secagg.SecretContext, bytes, np.ndarray]]:
        """2-client sums at ``values`` (for sizes above the decrypt cap), encrypted untimed."""
        t0, t1 = self.tree(values, 0), self.tree(values, 1)
        ref = (t0["update"].astype(np.float64) + t1["update"].astype(np.float64)) / 2
        out = {}
        for name, ctx, client, server in (
            ("djn", self.s.ctx, self.s.client, self.s.server),
            ("optimized", self.s.octx, self.s.oclient, self.s.oserver),
        ):
            blobs = [self.encrypt(client, t, self.workers)[1] for t in (t0, t1)]
            out[name] = (ctx, self.total(server, blobs), ref)
        return out

    # -- aggregation --------------------------------------------------------------

    def agg_updates(self, values: int) -> list[bytes]:
        """``agg_clients`` distinct client updates of ``values`` values (encrypted untimed)."""
        if values not in self.agg_blobs:
            trees = [make_tree(values, self.args.seed + 1, k) for k in range(self.args.agg_clients)]
            blobs = [self.encrypt(self.s.client, t, self.workers)[1] for t in trees]
            mean = np.mean([t["update"].astype(np.float64) for t in trees], axis=0)
            total = self.total(self.s.server, blobs)
            got = np.asarray(self.s.ctx.decrypt(total)["update"], dtype=np.float64)
            err = float(np.max(np.abs(got - mean)))
            self.problems.check(err <= 2.0 ** -(FRAC_BITS + 1) + 1e-7,
                                f"{self.args.agg_clients}-client mean off by {err:.3g}")
            self.agg_blobs[values] = blobs
        return self.agg_blobs[values]

    def agg_round(self, blobs: Sequence[bytes], rec: dict[str, list[float]]) -> None:
        """Aggregate every client's bytes (fresh Aggregator), then copy the same bytes."""
        server = self.s.server

        def add_all() -> int:
            agg = secagg.Aggregator(server)
            for blob in blobs:
                agg.add(blob)
            return len(agg)

        t, n = timed(add_all)
        self.problems.check(n == len(blobs), f"aggregator counted {n} of {len(blobs)} updates")
        rec["aggregate"].append(t)
        t, _ = timed(lambda: [bytes(bytearray(blob)) for blob in blobs])
        rec["copy"].append(t)

    # -- one size ---------------------------------------------------------------

    def run_size(self, values: int, show: bool) -> dict[str, Any]:
        """Every variant at one update size; round-robin over ``rounds`` repeats."""
        a, w = self.args, self.workers
        rounds = a.repeats if values <= BIG_UPDATE else 1
        std_m = min(values, a.standard_cap)
        pool_m = min(values, a.pool_cap)
        dec_m = min(values, a.decrypt_cap)
        agg_m = min(values, a.agg_cap)
        std_reuse = ("standard", std_m) in self.cache and std_m != values
        pool_reuse = ("pool", pool_m) in self.cache and pool_m != values
        dec_reuse = ("djn.decrypt", dec_m) in self.cache and dec_m != values
        phe_positions = max(1, math.ceil(a.phe_samples / 2 / rounds))
        bc_per_round = max(1, math.ceil(a.bc_samples / rounds))

        steps = rounds * 11 + 1
        bar = common.progress(steps, f"{self.s.key_bits} bits, {values:,} values", show)
        phe_rec: dict[str, list[float]] = {k: [] for k in (
            "encrypt", "add", "decrypt", "max_abs_error", "encrypt_rounds", "add_rounds",
            "decrypt_rounds")}
        bc_rec: dict[str, list[float]] = {k: [] for k in (
            "pack", "encrypt_ct", "decrypt_ct", "unpack", "encrypt_ct_rounds", "decrypt_ct_rounds")}
        enc: dict[str, list[float]] = {k: [] for k in
                                       ("djn", "djn_workers", "optimized", "optimized_workers",
                                        "standard", "pool_offline", "pool_online")}
        dec_rec = {"djn": {"ct_1": [], "ct_w": [], "vt_1": []},
                   "optimized": {"ct_1": [], "ct_w": [], "vt_1": []}}
        agg_rec: dict[str, list[float]] = {"aggregate": [], "copy": []}

        bar.set_postfix_str("aggregation setup")
        agg_blobs = self.agg_updates(agg_m)
        bar.update()
        t0, t1 = self.tree(values, 0), self.tree(values, 1)
        ref = (t0["update"].astype(np.float64) + t1["update"].astype(np.float64)) / 2
        blobs: dict[str, list[bytes]] = {"djn": [], "optimized": []}
        totals: dict[str, tuple[secagg.SecretContext, bytes, np.ndarray]] = {}
        bytes_per_value: dict[str, float] = {}
        n_cts = 0
        for rnd in range(rounds):
            bar.set_postfix_str(f"phe per value ({phe_positions} x 2)")
            self.phe_round(values, phe_positions, rnd, phe_rec)
            bar.update()
            bar.set_postfix_str(f"BatchCrypt-style ({bc_per_round} ciphertexts)")
            n_cts = self.bc_round(values, bc_per_round, rnd, bc_rec)
            bar.update()
            for key, pub, tree, nw in (
                ("djn", self.s.client, t0, 1), ("djn_workers", self.s.client, t1, w),
                ("optimized", self.s.oclient, t0, 1), ("optimized_workers", self.s.oclient, t1, w),
            ):
                bar.set_postfix_str(f"encrypt {key}")
                t, blob = self.encrypt(pub, tree, nw)
                enc[key].append(t)
                if rnd == 0:
                    blobs[key.split("_")[0]].append(blob)
                    bytes_per_value[key] = len(blob) / values
                bar.update()
            if not std_reuse and (rnd == 0 or std_m == values):
                bar.set_postfix_str(f"encrypt standard ({std_m:,} values)")
                t, _ = self.encrypt(self.s.sclient, self.tree(std_m, 0), 1)
                enc["standard"].append(t)
            bar.update()
            if not pool_reuse and (rnd == 0 or pool_m == values):
                bar.set_postfix_str(f"pool ({pool_m:,} values)")
                t_pre, t_on, blob = self.pool_once(self.tree(pool_m, 0))
                enc["pool_offline"].append(t_pre)
                enc["pool_online"].append(t_on)
                if pool_m == values:
                    bytes_per_value["pool"] = len(blob) / values
            bar.update()
            bar.set_postfix_str("aggregate")
            self.agg_round(agg_blobs, agg_rec)
            bar.update()
            # decryption of 2-client sums
            if rnd == 0 and dec_m == values:
                totals["djn"] = (self.s.ctx, self.total(self.s.server, blobs["djn"]), ref)
                totals["optimized"] = (self.s.octx, self.total(self.s.oserver, blobs["optimized"]), ref)
            elif rnd == 0 and not dec_reuse:
                bar.set_postfix_str(f"encrypt sums of {dec_m:,} values to decrypt")
                totals = self.decrypt_totals(dec_m)
            if totals and (dec_m == values or rnd == 0):
                for name, (ctx, total, r) in totals.items():
                    bar.set_postfix_str(f"decrypt {name}")
                    self.decrypt_once(ctx, total, r, dec_rec[name], f"{self.s.key_bits}-bit {name}")
                    bar.update()
            else:
                bar.update(2)
        bar.close()

        return self.collect(values, n_cts, rounds, phe_rec, bc_rec, enc, dec_rec, agg_rec,
                            agg_m, bytes_per_value, (std_m, pool_m, dec_m))

    # -- figures ----------------------------------------------------------------

    def cached(self, key: str, measured: int, values: int, samples: list[float],
               unit: str | None = None) -> Op:
        """The Op for ``key`` at ``values``: from ``samples`` if any, else from the cache."""
        if samples:
            op = update_op(samples, measured, values, unit=unit)
            self.cache[(key, measured)] = op
            return op
        src = self.cache[(key, measured)]
        return update_op(src.samples_s, measured, values, unit=src.sample_unit,
                         note=f"extrapolated linearly from the {measured:,}-value measurement")

    def collect(self, values: int, n_cts: int, rounds: int, phe_rec: dict, bc_rec: dict,
                enc: dict, dec_rec: dict, agg_rec: dict, agg_m: int,
                bytes_per_value: dict[str, float], caps: tuple[int, int, int]) -> dict[str, Any]:
        std_m, pool_m, dec_m = caps
        w = self.workers
        s = self.s
        cells: dict[str, Cell] = {k: Cell(k, label.format(w=w)) for k, label, _ in VARIANTS}

        # (a) phe per value
        n_enc, n_dec = len(phe_rec["encrypt"]), len(phe_rec["decrypt"])
        sampled = (f"median over {rounds} round(s) of the mean time per value, {{n}} sampled "
                   f"values in all, extrapolated to {values:,}")
        for op_name, key in (("encrypt", "encrypt"), ("decrypt", "decrypt")):
            per = statistics.median(phe_rec[f"{key}_rounds"])
            setattr(cells["phe"], op_name, Op(
                vps=1 / per, seconds_per_update=values * per, samples_s=phe_rec[key],
                sample_unit="value", measured_values=len(phe_rec[key]),
                extrapolated=sampled.format(n=len(phe_rec[key])), mark="*",
                extra={"round_means_s": phe_rec[f"{key}_rounds"],
                       "per_value_median_s": statistics.median(phe_rec[key])}))
        phe_add = statistics.median(phe_rec["add_rounds"])
        cells["phe"].encrypt.extra["add_vps"] = 1 / phe_add  # type: ignore[union-attr]
        cells["phe"].encrypt.extra["add_samples_s"] = phe_rec["add"]  # type: ignore[union-attr]
        cells["phe"].bytes_per_value = s.layout["ciphertext_bytes"] + PHE_EXPONENT_BYTES
        cells["phe"].notes.append(f"{n_enc} encryptions, {len(phe_rec['add'])} additions, "
                                  f"{n_dec} decryptions; max abs error of sums "
                                  f"{max(phe_rec['max_abs_error']):.2g}")

        # (b) BatchCrypt-style
        t_pack, t_unpack = statistics.median(bc_rec["pack"]), statistics.median(bc_rec["unpack"])
        enc_ct = statistics.median(bc_rec["encrypt_ct_rounds"])
        dec_ct = statistics.median(bc_rec["decrypt_ct_rounds"])
        n_sampled = len(bc_rec["encrypt_ct"])
        full = n_sampled >= n_cts * rounds
        note = (f"pack/unpack timed on the whole update; phe raw_encrypt/raw_decrypt: median over "
                f"{rounds} round(s) of the mean time per ciphertext ({n_sampled} sampled in all) "
                f"x {n_cts:,} ciphertexts")
        for op_name, per, fixed, key in (("encrypt", enc_ct, t_pack, "encrypt_ct"),
                                         ("decrypt", dec_ct, t_unpack, "decrypt_ct")):
            total_s = fixed + n_cts * per
            setattr(cells["batchcrypt"], op_name, Op(
                vps=values / total_s, seconds_per_update=total_s, samples_s=bc_rec[key],
                sample_unit="ciphertext", measured_values=n_sampled,
                extrapolated=None if full else note, mark="" if full else "*",
                extra={"pack_or_unpack_s": fixed, "per_ciphertext_s": per,
                       "ciphertexts": n_cts, "pack_samples_s": bc_rec["pack"],
                       "round_means_s": bc_rec[f"{key}_rounds"],
                       "unpack_samples_s": bc_rec["unpack"]}))
        cells["batchcrypt"].bytes_per_value = n_cts * s.layout["ciphertext_bytes"] / values

        # (c) secagg
        for key in ("djn", "djn_workers", "optimized", "optimized_workers"):
            cells[key].encrypt = update_op(enc[key], values, values)
            cells[key].bytes_per_value = bytes_per_value.get(key)
        cells["standard"].encrypt = self.cached("standard", std_m, values, enc["standard"])
        cells["standard"].notes.append("same key as the default; decryption is the default's")
        cells["pool"].encrypt = self.cached("pool", pool_m, values, enc["pool_online"])
        cells["pool"].offline_precompute = self.cached("pool_offline", pool_m, values,
                                                       enc["pool_offline"])
        cells["pool"].notes.append("precompute(n_ciphertexts) with 1 worker is the offline cost; "
                                   "decryption is the default's")
        cells["standard"].bytes_per_value = cells["djn"].bytes_per_value
        cells["pool"].bytes_per_value = bytes_per_value.get("pool", cells["djn"].bytes_per_value)
        for name, one, many in (("djn", "djn", "djn_workers"),
                                ("optimized", "optimized", "optimized_workers")):
            rec = dec_rec[name]
            cells[one].decrypt = self.cached(f"{name}.decrypt", dec_m, values, rec["ct_1"])
            cells[one].decrypt_variable_time = self.cached(f"{name}.decrypt_vt", dec_m, values,
                                                           rec["vt_1"])
            cells[many].decrypt = self.cached(f"{name}.decrypt_w", dec_m, values, rec["ct_w"])
            if rec.get("max_abs_error"):
                cells[one].notes.append(f"max abs error of the decrypted mean "
                                        f"{max(rec['max_abs_error']):.3g}")

        # ratios (for † figures: against the baselines measured at the size they come from)
        self.baselines[values] = {"phe": cells["phe"], "batchcrypt": cells["batchcrypt"]}

        def base_for(x: Op) -> tuple[int, dict[str, Cell]]:
            src = x.measured_values if x.mark == "†" else values
            return (src, self.baselines[src]) if src in self.baselines else \
                (values, self.baselines[values])

        def r(x: Op | None, which: str, op: str) -> float | None:
            if x is None:
                return None
            base = getattr(base_for(x)[1][which], op)
            return x.vps / base.vps if base else None

        ratios: dict[str, Any] = {}
        for key, cell in cells.items():
            ratios[key] = {
                "encrypt_vs_phe": r(cell.encrypt, "phe", "encrypt"),
                "encrypt_vs_batchcrypt": r(cell.encrypt, "batchcrypt", "encrypt"),
                "decrypt_vs_phe": r(cell.decrypt, "phe", "decrypt"),
                "decrypt_vs_batchcrypt": r(cell.decrypt, "batchcrypt", "decrypt"),
                "decrypt_variable_time_vs_phe": r(cell.decrypt_variable_time, "phe", "decrypt"),
                "decrypt_variable_time_vs_batchcrypt": r(cell.decrypt_variable_time,
                                                         "batchcrypt", "decrypt"),
                "constant_time_cost": (cell.decrypt_variable_time.vps / cell.decrypt.vps
                                       if cell.decrypt and cell.decrypt_variable_time else None),
                "baselines_from_values": {
                    op: base_for(o)[0] for op, o in (("encrypt", cell.encrypt),
                                                     ("decrypt", cell.decrypt)) if o is not None},
            }
        speedups = {
            "workers": w,
            "djn_encrypt": cells["djn_workers"].encrypt.vps / cells["djn"].encrypt.vps,  # type: ignore[union-attr]
            "djn_decrypt": cells["djn_workers"].decrypt.vps / cells["djn"].decrypt.vps,  # type: ignore[union-attr]
            "optimized_encrypt": (cells["optimized_workers"].encrypt.vps  # type: ignore[union-attr]
                                  / cells["optimized"].encrypt.vps),  # type: ignore[union-attr]
            "optimized_decrypt": (cells["optimized_workers"].decrypt.vps  # type: ignore[union-attr]
                                  / cells["optimized"].decrypt.vps),  # type: ignore[union-attr]
            "pool_online_vs_phe": ratios["pool"]["encrypt_vs_phe"],
        }
        clients = self.args.agg_clients
        t_agg, t_copy = statistics.median(agg_rec["aggregate"]), statistics.median(agg_rec["copy"])
        agg_bytes = sum(len(b) for b in self.agg_blobs[agg_m])
        aggregate = {
            "clients": clients, "measured_values": agg_m,
            "aggregate_vps": clients * agg_m / t_agg,
            "copy_vps": clients * agg_m / t_copy,
            "aggregate_vs_copy": t_copy / t_agg,
            "copy_bytes_per_s": agg_bytes / t_copy,
            "aggregate_s_extrapolated": t_agg * values / agg_m,
            "extrapolated": None if agg_m == values else
            f"{clients} distinct updates of {agg_m:,} values, scaled linearly to {values:,}",
            "samples_s": agg_rec,
            "how": "Aggregator.add(bytes) with full validation, fresh Aggregator per sample; "
                   "copy = bytes(bytearray(data)) of the same bytes",
        }
        djn_bpv = cells["djn"].bytes_per_value or float("nan")
        wire = {"bytes_per_value": djn_bpv, "vs_float32": djn_bpv / FLOAT32_BYTES,
                "update_bytes": djn_bpv * values, "slots_per_ciphertext": s.layout["slots"],
                "slot_bits": s.layout["slot_bits"], "ciphertexts": n_cts}
        return {"values": values, "rounds": rounds, "cells": cells, "ratios": ratios,
                "speedups": speedups, "aggregate": aggregate, "wire": wire}


# -- reporting -----------------------------------------------------------------


def _ratio(x: float | None) -> str:
    """Ratios keep two decimals down to 0.1x."""
    return common.fmt_ratio(x, floor=0.1)


def _bytes(n: float) -> str:
    """Table memory in binary units (KiB, MiB)."""
    return fmt_bytes(n, binary=True)


def _cell(op: Op | None) -> str:
    return "-" if op is None else f"{fmt_rate(op.vps)}{(' ' + op.mark) if op.mark else ''}"


MAIN_HEADERS = ["key", "values", "variant", "encrypt values/s", "decrypt values/s",
                "decrypt values/s (variable-time)", "encrypt s/update", "encrypt vs phe",
                "encrypt vs BatchCrypt", "decrypt vs phe", "decrypt vs BatchCrypt"]


def main_table(results: dict[int, dict[str, Any]]) -> str:
    """One row per key, size and variant: rates and ratios."""
    rows = []
    for key_bits, kr in results.items():
        for values, sr in kr["sizes"].items():
            for vkey, cell in sr["cells"].items():
                q = sr["ratios"][vkey]
                rows.append([
                    str(key_bits), f"{values:,}", cell.label, _cell(cell.encrypt),
                    _cell(cell.decrypt), _cell(cell.decrypt_variable_time),
                    fmt_seconds(cell.encrypt.seconds_per_update if cell.encrypt else None),
                    _ratio(q["encrypt_vs_phe"]), _ratio(q["encrypt_vs_batchcrypt"]),
                    _ratio(q["decrypt_vs_phe"]), _ratio(q["decrypt_vs_batchcrypt"]),
                ])
    return common.markdown_table(MAIN_HEADERS, rows, left=3)


SIZE_HEADERS = ["key", "values", "slots x bits", "bytes/value", "vs float32",
                "aggregate values/s (10 clients)", "copy values/s", "aggregate / copy",
                "encrypt speedup (all cores)", "decrypt speedup (all cores)",
                "pool precompute (offline)", "pool online vs phe",
                "variable-time / constant-time decrypt"]


def size_table(results: dict[int, dict[str, Any]]) -> str:
    """One row per key and size: wire size, aggregation, workers, pool."""
    rows = []
    for key_bits, kr in results.items():
        for values, sr in kr["sizes"].items():
            wire, agg, sp = sr["wire"], sr["aggregate"], sr["speedups"]
            pre = sr["cells"]["pool"].offline_precompute
            ct = sr["ratios"]["djn"]["constant_time_cost"]
            rows.append([
                str(key_bits), f"{values:,}", f"{wire['slots_per_ciphertext']} x {wire['slot_bits']}",
                f"{wire['bytes_per_value']:.3f}", f"{wire['vs_float32']:.3f}x",
                fmt_rate(agg["aggregate_vps"]) + (" †" if agg["extrapolated"] else ""),
                fmt_rate(agg["copy_vps"]), _ratio(agg["aggregate_vs_copy"]),
                _ratio(sp["djn_encrypt"]), _ratio(sp["djn_decrypt"]),
                (fmt_seconds(pre.seconds_per_update) + (" †" if pre.mark else "")) if pre else "-",
                _ratio(sp["pool_online_vs_phe"]),
                f"{ct:.2f}x" if ct else "-",
            ])
    return common.markdown_table(SIZE_HEADERS, rows, left=2)


KEY_HEADERS = ["key", "keygen default", "keygen optimized", "slots/ciphertext", "slot bits",
               "ciphertext bytes", "DJN table (build, memory, window)",
               "optimized table (build, memory, window)", "exponent bits (default / optimized)"]


def key_table(results: dict[int, dict[str, Any]]) -> str:
    """One row per key: one-time costs and layout."""
    rows = []
    for key_bits, kr in results.items():
        d = kr["key"]
        tb = d["tables"]

        def tab(t: dict[str, Any]) -> str:
            return f"{fmt_seconds(t['build_s'])}, {_bytes(t['nbytes'])}, w={t['window']}"

        rows.append([
            str(key_bits), fmt_seconds(d["keygen_s"]["default"]),
            fmt_seconds(d["keygen_s"]["optimized"]), str(d["layout"]["slots"]),
            str(d["layout"]["slot_bits"]), str(d["layout"]["ciphertext_bytes"]),
            tab(tb["default"]), tab(tb["optimized"]),
            f"{d['randomness_exponent_bits']['default']} / {d['randomness_exponent_bits']['optimized']}",
        ])
    return common.markdown_table(KEY_HEADERS, rows)


def footnotes(config: dict[str, Any], workers: int) -> list[str]:
    """Lines explaining the tables."""
    return [
        f"float32 values from N(0, {STD}) clipped to ±{CLIP}; frac_bits={FRAC_BITS}, clip={CLIP}, "
        f"max_clients={MAX_CLIENTS}, max_weight={MAX_WEIGHT}. Medians; updates of up to "
        f"{BIG_UPDATE:,} values over {config['repeats']} interleaved round(s), larger ones once.",
        "encrypt = pub.encrypt(tree).to_bytes() on a client PublicContext loaded from bytes "
        "(quantize, pack, encrypt, serialize), fixed-base table built beforehand; decrypt = "
        "ctx.decrypt(bytes of a 2-client sum) (parse, validate, decrypt, unpack, decode); "
        "'decrypt values/s' is constant-time (secagg's default), the next column variable-time.",
        f"* sampled and extrapolated: phe per value from ~{config['phe_samples']} encryptions "
        f"per size (half as many additions and decryptions); BatchCrypt-style from "
        f"~{config['bc_samples']} phe raw_encrypt/raw_decrypt ciphertexts per size, with "
        f"packing/unpacking of the whole update timed; each is the median over rounds of the "
        f"round's mean time per value or ciphertext, like secagg's whole-update samples.",
        f"† extrapolated linearly from a smaller update: standard randomness above "
        f"{config['standard_cap']:,} values, the pool above {config['pool_cap']:,}, decryption "
        f"above {config['decrypt_cap']:,}, aggregation above {config['agg_cap']:,} "
        f"({config['agg_clients']} distinct client updates of that size, from bytes).",
        f"'{workers} workers' = workers=os.cpu_count(); ratios 'vs phe' and 'vs BatchCrypt' are "
        f"speedups at the same key and size (higher is better); a † figure is compared with the "
        f"baselines measured next to it, at the size it comes from. Standard randomness and the "
        f"pool decrypt exactly like the default.",
        "aggregate / copy: aggregation rate divided by the rate of bytes(bytearray(data)) on the "
        "same bytes (one core). variable-time / constant-time decrypt: how much faster decryption "
        "is with secret_backend.constant_time=False (default key, 1 worker).",
    ]


def targets(results: dict[int, dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """PASS/MISS lines for the targets at 2048 bits and 100,000 values."""
    sr = results.get(TARGET_KEY, {}).get("sizes", {}).get(TARGET_VALUES)
    spec = [
        ("encrypt >= 1000x phe per value (default, 1 core)", 1000, "x",
         lambda s: s["ratios"]["djn"]["encrypt_vs_phe"]),
        ("encrypt >= 2000x phe per value (optimized keys, 1 core)", 2000, "x",
         lambda s: s["ratios"]["optimized"]["encrypt_vs_phe"]),
        ("online encrypt with a noise pool >= 20,000x phe per value (1 core)", 20000, "x",
         lambda s: s["ratios"]["pool"]["encrypt_vs_phe"]),
        ("decrypt >= 75x phe per value (default, constant-time, 1 core)", 75, "x",
         lambda s: s["ratios"]["djn"]["decrypt_vs_phe"]),
        ("decrypt >= 150x phe per value (optimized keys, constant-time, 1 core)", 150, "x",
         lambda s: s["ratios"]["optimized"]["decrypt_vs_phe"]),
        ("aggregate >= 10M values/s per core (10 clients, from bytes)", 10e6, "values/s",
         lambda s: s["aggregate"]["aggregate_vps"]),
        ("upload <= 1.6x float32 bytes", 1.6, "x float32",
         lambda s: s["wire"]["vs_float32"]),
        (f"encrypt with {workers} cores >= 1.7x one core (default)", 1.7, "x",
         lambda s: s["speedups"]["djn_encrypt"]),
        (f"decrypt with {workers} cores >= 1.7x one core (default)", 1.7, "x",
         lambda s: s["speedups"]["djn_decrypt"]),
    ]
    out = []
    for name, threshold, unit, get in spec:
        value = get(sr) if sr else None
        upper = name.startswith("upload")
        if value is None or ("cores" in name and workers < 2):
            status = "SKIP"
        else:
            status = "PASS" if (value <= threshold if upper else value >= threshold) else "MISS"
        shown = "-" if value is None else (
            f"{value:,.0f} {unit}" if unit == "values/s" else f"{value:,.2f}{unit}")
        line = f"{status}  {name}: {shown}"
        if status == "SKIP":
            line += f" (needs {TARGET_KEY}-bit keys and {TARGET_VALUES:,} values" + \
                    (", 2+ cores" if "cores" in name else "") + ")"
        out.append({"target": name, "threshold": threshold, "value": value, "status": status,
                    "line": line})
    return out


def plot(results: dict[int, dict[str, Any]], path: Path) -> Path | None:
    """Encrypt and decrypt values/s per variant (log scale), one bar per key, at 100k values."""
    plt = common.pyplot()
    if plt is None:
        return None
    keys = list(results)
    sizes = {v for kr in results.values() for v in kr["sizes"]}
    values = TARGET_VALUES if TARGET_VALUES in sizes else max(sizes)
    enc_rows = [(k, lab) for k, lab, _ in VARIANTS]
    dec_rows = [("phe", "decrypt", "phe per value"),
                ("batchcrypt", "decrypt", "BatchCrypt-style"),
                ("djn", "decrypt", "default"), ("djn", "decrypt_variable_time", "default, variable-time"),
                ("djn_workers", "decrypt", "default, all cores"),
                ("optimized", "decrypt", "optimized"),
                ("optimized", "decrypt_variable_time", "optimized, variable-time"),
                ("optimized_workers", "decrypt", "optimized, all cores")]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2))
    width = 0.8 / max(1, len(keys))
    for ax, rows, title in ((axes[0], [(k, "encrypt", lab) for k, lab in enc_rows], "encrypt"),
                            (axes[1], dec_rows, "decrypt")):
        for i, key_bits in enumerate(keys):
            sr = results[key_bits]["sizes"].get(values)
            if sr is None:
                continue
            ys = []
            for vkey, op, _ in rows:
                o = getattr(sr["cells"][vkey], op)
                ys.append(o.vps if o else float("nan"))
            xs = np.arange(len(rows)) + (i - (len(keys) - 1) / 2) * width
            common.annotate_bars(ax, ax.bar(xs, ys, width, label=f"{key_bits}-bit"), ys)
        labels = [lab.format(w="all") if "{w}" in lab else lab for _, _, lab in rows]
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 4)  # room for the labels above the bars
        ax.set_xticks(np.arange(len(rows)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("values/s (log scale)")
        ax.set_title(f"{title}, {values:,} values (median)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend()
    return common.save_figure(fig, path, "secagg packed Paillier vs phe per value and "
                              "BatchCrypt-style packing (sampled baselines extrapolated)")


def markdown(doc: dict[str, Any], results: dict[int, dict[str, Any]],
             target_rows: list[dict[str, Any]], problems: list[str], workers: int) -> list[str]:
    """The markdown file's lines: title, machine line, the three tables, notes, targets."""
    title = f"bench_paillier: packed Paillier at {', '.join(str(k) for k in results)} bits"
    tables = [main_table(results), size_table(results), key_table(results)]
    return [*common.markdown_lines(title, doc, ("phe", "gmpy2"), tables,
                                   footnotes(doc["config"], workers)),
            *common.target_lines(TARGETS_TITLE, target_rows, problems, markdown=True)]


def json_results(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per key and size: every variant's figures and ratios, speedups, aggregation, wire size."""
    return {str(k): {"key": kr["key"], "sizes": {str(v): {
        "values": sr["values"], "rounds": sr["rounds"],
        "variants": {vk: {**common.jsonable(c), "ratios": sr["ratios"][vk]}
                     for vk, c in sr["cells"].items()},
        "speedups": sr["speedups"], "aggregate": sr["aggregate"],
        "wire": sr["wire"]} for v, sr in kr["sizes"].items()}} for k, kr in results.items()}


# -- main ----------------------------------------------------------------------


def _size(text: str) -> int:
    """Parse ``100000``, ``100_000``, ``100k`` or ``1M``."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1]) * scale) if scale > 1 else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return n


CAPS = [  # (option, what it caps): sizes above a cap are measured at the cap and extrapolated
    ("standard_cap", "largest update encrypted with standard randomness; larger ones are "
                     "extrapolated"),
    ("pool_cap", "largest update given a noise pool"),
    ("decrypt_cap", "largest sum decrypted"),
    ("agg_cap", "values per client update in the aggregation"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` and ``--smoke`` change the defaults, explicit ones win."""
    p = common.parser(
        __doc__, "small run: 2048 bits, 10k and 100k values, 1 round, tiny baseline samples")
    p.add_argument("--keys", type=int, nargs="+",
                   help=f"key sizes in bits (default 2048 3072; --smoke: {common.SMOKE_KEY_BITS}, "
                        f"insecure)")
    p.add_argument("--sizes", type=_size, nargs="+",
                   help="update sizes in values, e.g. 10k 100k 1M (default)")
    p.add_argument("--repeats", type=int,
                   help=f"interleaved rounds for updates of up to {BIG_UPDATE:,} values "
                        f"(default {FULL['repeats']})")
    p.add_argument("--phe-samples", type=int,
                   help=f"phe per-value encryptions per size (default {FULL['phe_samples']})")
    p.add_argument("--bc-samples", type=int,
                   help=f"BatchCrypt-style ciphertexts per size (default {FULL['bc_samples']})")
    for name, what in CAPS:
        p.add_argument(f"--{name.replace('_', '-')}", type=_size,
                       help=f"{what} (default {FULL[name]:,})")
    p.add_argument("--agg-clients", type=int,
                   help=f"client updates aggregated (default {FULL['agg_clients']})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="workers of the 'all cores' variants (default os.cpu_count())")
    args = common.apply_defaults(p.parse_args(argv), FULL, QUICK, SMOKE)
    common.check_key_bits(p, args.keys, args.smoke, "--keys")
    if min(args.repeats, args.phe_samples, args.bc_samples, args.workers) < 1:
        p.error("--repeats, --phe-samples, --bc-samples and --workers must be positive")
    if not 2 <= args.agg_clients <= MAX_CLIENTS:
        p.error(f"--agg-clients must be in [2, {MAX_CLIENTS}]")
    args.keys = sorted(dict.fromkeys(args.keys))
    args.sizes = sorted(dict.fromkeys(args.sizes))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every variant at every key and size, print the tables; ``--out`` writes JSON, md, PNG."""
    args = parse_args(argv)
    run = common.Run()
    config = {k: getattr(args, k) for k in
              ("keys", "sizes", "repeats", "phe_samples", "bc_samples", "standard_cap",
               "pool_cap", "decrypt_cap", "agg_cap", "agg_clients", "seed", "quick", "smoke")}
    print(f"bench_paillier: keys {args.keys} bits, sizes {[f'{s:,}' for s in args.sizes]}, "
          f"{args.repeats} round(s), {args.workers} workers for 'all cores'; {run.summary()}",
          flush=True)
    show = not args.no_progress
    problems = Problems()
    results: dict[int, dict[str, Any]] = {}
    for key_bits in args.keys:
        print(f"{key_bits} bits: key generation (default, optimized) and fixed-base tables ...",
              file=sys.stderr, flush=True)
        setup = KeySetup(key_bits, args.workers)
        problems.check(setup.constant_time_default,
                       "secret_backend.constant_time is not True by default")
        print(f"{key_bits} bits: keygen {setup.keygen_s:.2f} s, optimized {setup.keygen_opt_s:.2f} s; "
              f"DJN table {setup.tables['default']['build_s']:.2f} s "
              f"({_bytes(setup.tables['default']['nbytes'])}, w={setup.tables['default']['window']})",
              file=sys.stderr, flush=True)
        bench = Bench(setup, args, problems)
        results[key_bits] = {"key": setup.describe(), "sizes": {}}
        for values in args.sizes:
            results[key_bits]["sizes"][values] = bench.run_size(values, show)
        del bench, setup
        gc.collect()
    wall_s = run.finish()

    target_rows = targets(results, args.workers)
    print()
    print(main_table(results))
    print()
    print(size_table(results))
    print()
    print(key_table(results))
    print()
    for note in footnotes(config, args.workers):
        print(f"- {note}")
    print()
    print("\n".join(common.target_lines(TARGETS_TITLE, target_rows, problems.items)))
    doc = common.result_doc(
        "bench_paillier",
        {**config, "std": STD, "clip": CLIP, "frac_bits": FRAC_BITS, "max_clients": MAX_CLIENTS,
         "max_weight": MAX_WEIGHT, "workers": args.workers, "big_update": BIG_UPDATE},
        run,
        extrapolation={
            "*": "sampled values (phe) or ciphertexts (BatchCrypt-style), extrapolated linearly",
            "†": "measured on a smaller update, extrapolated linearly",
        },
        keys=json_results(results), targets=target_rows, secagg_problems=problems.items)
    written = common.write_results(
        args.out, "paillier", doc, markdown(doc, results, target_rows, problems.items, args.workers),
        plot=lambda path: plot(results, path), figure_alt="encrypt and decrypt values/s")
    info = run.info
    print(f"\nother processes used {common.fmt_share(info['other_processes_cpu_share'])} of the "
          f"machine's CPU time during the run (load average {info.get('loadavg_start')} -> "
          f"{info.get('loadavg_end')})")
    common.report_written(wall_s, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
