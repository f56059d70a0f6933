#!/usr/bin/env python3
"""Core throughput and size benchmark: secagg (Paillier, CKKS) against two baselines.

One run measures, side by side and on the same data, four systems:

* ``secagg paillier``: ``secagg.generate("paillier", key_bits=2048)``; packed slots.
* ``secagg ckks``: ``secagg.generate("ckks")``; parameters chosen by secagg's planner.
* ``phe per value``: plain ``phe`` (2048-bit key), one ``EncryptedNumber`` per float.
  Far too slow for a whole update, so it is timed on samples and extrapolated.
* ``TenSEAL (FLARE)``: TenSEAL CKKS with NVIDIA FLARE's defaults (N=8192,
  moduli [60, 40, 40], scale 2**40), one ``ckks_vector`` per layer.

Every system sees the same update tree: a small MLP (``fc1``/``fc2``/``fc3``
weights and biases) whose leaves hold exactly ``--values`` float32 values drawn
from N(0, 0.1) and clipped to ``clip``; client ``k`` gets its own draw.

Figures per system:

* encrypt values/s: one client's whole update, from the tree to bytes on the
  wire (quantization, packing, encryption, serialization);
* aggregate values/s: ``clients * values / t`` where ``t`` sums every client's
  bytes (deserialization, validation and homomorphic addition);
* decrypt values/s: ``values / t`` where ``t`` decrypts and decodes the
  aggregate into the mean;
* bytes per value: one client's update on the wire divided by ``values``;
* public context bytes: what clients and the aggregator receive;
* max abs error of the decoded mean against the exact float64 mean.

Times are ``time.perf_counter`` wall-clock with the garbage collector paused;
each figure is the MEDIAN of its samples (one sample per client for
encryption, ``--repeats`` samples for aggregation and decryption).

Usage::

    python benchmarks/bench_core.py            # 100,000 values, 10 clients (a few minutes)
    python benchmarks/bench_core.py --quick    # 10,000 values, 4 clients (well under a minute)
    python benchmarks/bench_core.py --values 50000 --clients 5 --out /tmp/core.json

Results go to ``benchmarks/results/core.json`` and ``core.md`` (see ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # fallback: run from a checkout without installing
    sys.path.append(str(REPO_ROOT))

import secagg  # noqa: E402
import secagg.ckks  # noqa: E402,F401  (load both backends now, not inside a timed setup)
import secagg.paillier  # noqa: E402,F401

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional: fall back to a silent stand-in
    class tqdm:  # type: ignore[no-redef]
        """Minimal no-op replacement used when tqdm is not installed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def update(self, n: int = 1) -> None:
            """Ignore progress."""

        def set_postfix_str(self, s: str) -> None:
            """Ignore the phase label."""

        def close(self) -> None:
            """Nothing to close."""


T = TypeVar("T")
Tree = dict[str, np.ndarray]
Shapes = list[tuple[str, tuple[int, ...]]]

# Fixed benchmark parameters (see the module docstring and benchmarks/README.md).
STD = 0.1
CLIP = 1.0
FRAC_BITS = 16
MAX_CLIENTS = 100
MAX_WEIGHT = 1
PAILLIER_KEY_BITS = 2048
# TenSEAL CKKS parameters as NVIDIA FLARE's HE provisioning uses them.
FLARE_POLY_MODULUS_DEGREE = 8192
FLARE_COEFF_MOD_BIT_SIZES = [60, 40, 40]
FLARE_SCALE_BITS = 40
# phe baseline wire format: fixed-width ciphertext plus a signed 16-bit exponent.
PHE_EXPONENT = struct.Struct(">h")

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "core.json"
FULL = {"values": 100_000, "clients": 10, "repeats": 3, "phe_samples": 200, "phe_add_ops": 3000}
QUICK = {"values": 10_000, "clients": 4, "repeats": 1, "phe_samples": 20, "phe_add_ops": 200}


# -- results -------------------------------------------------------------------


@dataclass
class SystemResult:
    """Everything measured for one system; rates are medians in values per second."""

    key: str
    label: str
    encrypt_vps: float
    aggregate_vps: float
    decrypt_vps: float
    bytes_per_value: float
    context_bytes: int
    max_abs_error: float
    error_note: str
    samples_s: dict[str, list[float]]
    extrapolated_from: dict[str, int] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def encrypt_s_per_client(self) -> float:
        """Time for one client to encrypt a whole update (extrapolated for phe)."""
        values = self.params["values"]
        return values / self.encrypt_vps


# -- helpers -------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, as ``timeit`` does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once; return its wall-clock seconds (``perf_counter``) and result."""
    with _gc_paused():
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
    return elapsed, out


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1 (TenSEAL's C++ warnings about multi-ciphertext vectors)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=True,
                disable=not enabled, dynamic_ncols=True)


def model_shapes(n_values: int) -> Shapes:
    """Leaves of an MLP ``d -> h1 -> h2 -> 10`` (weights and biases) holding exactly ``n_values``.

    The input width ``d`` is chosen as close to 784 (MNIST) as possible, with
    ``d >= h1 >= h2 >= 10``. For 100,000 values this is 784 -> 114 -> 84 -> 10:
    89,376 + 114 + 9,576 + 84 + 840 + 10 values. If no such MLP exists (tiny
    ``n_values``), the tree is a single leaf.
    """
    out = 10
    for delta in range(0, 4096):
        for d in sorted({784 - delta, 784 + delta}):
            if d < out:
                continue
            # n = d*h1 + h1 + h1*h2 + h2 + out*h2 + out  =>  h1 = (n - out - (out+1)*h2) / (d+1+h2)
            h2 = out
            while True:
                num = n_values - out - (out + 1) * h2
                h1, rem = divmod(num, d + 1 + h2)
                if h1 < h2:
                    break
                if rem == 0 and h1 <= d:
                    return [
                        ("fc1.weight", (h1, d)), ("fc1.bias", (h1,)),
                        ("fc2.weight", (h2, h1)), ("fc2.bias", (h2,)),
                        ("fc3.weight", (out, h2)), ("fc3.bias", (out,)),
                    ]
                h2 += 1
    return [("weights", (n_values,))]


def make_client_trees(shapes: Shapes, clients: int, seed: int) -> list[Tree]:
    """One float32 tree per client: N(0, STD) values clipped to ``±CLIP``."""
    trees = []
    for k in range(clients):
        rng = np.random.default_rng([seed, k])
        trees.append({
            name: np.clip(rng.normal(0.0, STD, shape).astype(np.float32), -CLIP, CLIP)
            for name, shape in shapes
        })
    return trees


def exact_mean(trees: Sequence[Tree]) -> dict[str, np.ndarray]:
    """The float64 mean of the clients' trees, leaf by leaf."""
    return {name: np.mean([t[name].astype(np.float64) for t in trees], axis=0) for name in trees[0]}


def max_abs_error(decoded: dict[str, Any], reference: dict[str, np.ndarray]) -> float:
    """Largest ``|decoded - reference|`` over all leaves."""
    return max(
        float(np.max(np.abs(np.asarray(decoded[name], dtype=np.float64) - ref)))
        for name, ref in reference.items()
    )


def flat_values(tree: Tree, shapes: Shapes) -> np.ndarray:
    """A tree's values as one float64 vector in ``shapes`` order."""
    return np.concatenate([tree[name].astype(np.float64).ravel() for name, _ in shapes])


# -- systems -------------------------------------------------------------------


def _bench_secagg(
    ctx: secagg.SecretContext, key: str, label: str, trees: Sequence[Tree],
    reference: dict[str, np.ndarray], repeats: int, progress: bool, setup_s: float,
) -> SystemResult:
    """Encrypt every client's tree, sum the bytes, decrypt the mean (both secagg schemes)."""
    n_values = sum(v.size for v in trees[0].values())
    clients = len(trees)
    public_bytes = ctx.public.to_bytes()
    # clients and the aggregator hold only what they were sent
    client_ctx = secagg.PublicContext.from_bytes(public_bytes)
    server_ctx = secagg.PublicContext.from_bytes(public_bytes)
    bar = _progress(clients + 2 * repeats, label, progress)

    bar.set_postfix_str("encrypt")
    blobs: list[bytes] = []
    enc_times = []
    for tree in trees:
        t, blob = timed(lambda tree=tree: client_ctx.encrypt(tree).to_bytes())
        enc_times.append(t)
        blobs.append(blob)
        bar.update()

    bar.set_postfix_str("aggregate")
    agg_times = []
    total = None
    for _ in range(repeats):
        agg = secagg.Aggregator(server_ctx)

        def add_all(agg: secagg.Aggregator = agg) -> None:
            for blob in blobs:
                agg.add(blob)

        t, _ = timed(add_all)
        agg_times.append(t)
        assert len(agg) == clients
        total = agg.result()
        bar.update()
    assert total is not None

    bar.set_postfix_str("decrypt")
    dec_times = []
    mean: dict[str, Any] = {}
    for _ in range(repeats):
        t, mean = timed(lambda: ctx.decrypt(total, reduce="mean"))
        dec_times.append(t)
        bar.update()
    bar.close()

    describe = ctx.public.describe()
    describe.pop("fingerprint", None)
    return SystemResult(
        key=key,
        label=label,
        encrypt_vps=n_values / statistics.median(enc_times),
        aggregate_vps=clients * n_values / statistics.median(agg_times),
        decrypt_vps=n_values / statistics.median(dec_times),
        bytes_per_value=len(blobs[0]) / n_values,
        context_bytes=len(public_bytes),
        max_abs_error=max_abs_error(mean, reference),
        error_note=f"quantization, bound 2^-{FRAC_BITS + 1} = {2.0 ** -(FRAC_BITS + 1):.3g}; "
                   f"decoded leaves are float32 like the inputs",
        samples_s={"encrypt": enc_times, "aggregate": agg_times, "decrypt": dec_times},
        params={
            "values": n_values, "clients": clients, "update_bytes": len(blobs[0]),
            "aggregate_bytes": len(total.to_bytes()), "ciphertexts": len(total.ciphertexts),
            "keygen_s": setup_s, **describe,
        },
    )


def bench_secagg_paillier(trees: Sequence[Tree], reference: dict[str, np.ndarray], repeats: int,
                          progress: bool) -> SystemResult:
    """secagg's packed Paillier scheme with a fresh 2048-bit key."""
    setup_s, ctx = timed(lambda: secagg.generate(
        "paillier", key_bits=PAILLIER_KEY_BITS, clip=CLIP, frac_bits=FRAC_BITS,
        max_clients=MAX_CLIENTS, max_weight=MAX_WEIGHT,
    ))
    return _bench_secagg(ctx, "secagg_paillier", "secagg paillier", trees, reference, repeats,
                         progress, setup_s)


def bench_secagg_ckks(trees: Sequence[Tree], reference: dict[str, np.ndarray], repeats: int,
                      progress: bool) -> SystemResult:
    """secagg's CKKS scheme with the parameters its planner picks for this codec."""
    setup_s, ctx = timed(lambda: secagg.generate(
        "ckks", clip=CLIP, frac_bits=FRAC_BITS, max_clients=MAX_CLIENTS, max_weight=MAX_WEIGHT,
    ))
    return _bench_secagg(ctx, "secagg_ckks", "secagg ckks", trees, reference, repeats,
                         progress, setup_s)


def bench_phe_per_value(trees: Sequence[Tree], shapes: Shapes, samples: int, add_ops: int,
                        repeats: int, progress: bool) -> SystemResult:
    """Baseline A: plain ``phe``, one ``EncryptedNumber`` per float, timed on samples.

    ``P = max(1, samples // clients)`` positions spread over the update are
    encrypted for every client (``P * clients`` encryptions, position-major).
    Wire format per value: the ciphertext as fixed-width bytes (512 for a
    2048-bit key) plus the exponent as a signed 16-bit integer.

    * encrypt: ``public_key.encrypt(float)`` + serialization, per value;
    * aggregate: rebuild an ``EncryptedNumber`` from bytes and add it (``a + b``)
      to its position's running sum, cycling over the sample pool for at least
      ``add_ops`` operations; one operation per client value;
    * decrypt: ``private_key.decrypt`` of the sampled ciphertexts, per value.

    The error is measured on the ``P`` genuine per-position sums of all clients.
    Rates are extrapolated linearly (every value costs the same).
    """
    import phe

    clients = len(trees)
    n_values = sum(v.size for v in trees[0].values())
    positions = np.unique(np.linspace(0, n_values - 1, max(1, samples // clients)).astype(np.int64))
    flats = [flat_values(t, shapes) for t in trees]
    plain = [float(flats[k][i]) for i in positions for k in range(clients)]  # position-major
    n_samples = len(plain)
    ops = math.ceil(max(add_ops, n_samples) / n_samples) * n_samples
    bar = _progress(3 * repeats, "phe per value", progress)

    bar.set_postfix_str("keygen")
    setup_s, (pk, sk) = timed(lambda: phe.generate_paillier_keypair(n_length=PAILLIER_KEY_BITS))
    width = (pk.nsquare.bit_length() + 7) // 8

    def encrypt_all() -> tuple[list, list[bytes]]:
        cts = [pk.encrypt(x) for x in plain]
        return cts, [c.ciphertext().to_bytes(width, "big") + PHE_EXPONENT.pack(c.exponent)
                     for c in cts]

    bar.set_postfix_str("encrypt")
    enc_times = []
    cts: list = []
    wire: list[bytes] = []
    for _ in range(repeats):
        t, (cts, wire) = timed(encrypt_all)
        enc_times.append(t / n_samples)
        bar.update()

    def add_all() -> list:
        sums = []
        acc = None
        from_bytes = int.from_bytes
        unpack = PHE_EXPONENT.unpack
        for i in range(ops):
            blob = wire[i % n_samples]
            e = phe.EncryptedNumber(pk, from_bytes(blob[:width], "big"), unpack(blob[width:])[0])
            acc = e if i % clients == 0 else acc + e
            if i % clients == clients - 1:
                sums.append(acc)
        return sums

    bar.set_postfix_str("aggregate")
    add_times = []
    sums: list = []
    for _ in range(repeats):
        t, sums = timed(add_all)
        add_times.append(t / ops)
        bar.update()

    bar.set_postfix_str("decrypt")
    dec_times = []
    for _ in range(repeats):
        t, _ = timed(lambda: [sk.decrypt(c) for c in cts])
        dec_times.append(t / n_samples)
        bar.update()
    bar.close()

    means = np.array([sk.decrypt(s) for s in sums[: len(positions)]]) / clients
    exact = np.mean([f[positions] for f in flats], axis=0)
    return SystemResult(
        key="phe_per_value",
        label="phe per value",
        encrypt_vps=1 / statistics.median(enc_times),
        aggregate_vps=1 / statistics.median(add_times),
        decrypt_vps=1 / statistics.median(dec_times),
        bytes_per_value=width + PHE_EXPONENT.size,
        context_bytes=(pk.n.bit_length() + 7) // 8,
        max_abs_error=float(np.max(np.abs(means - exact))),
        error_note=f"phe float encoding; measured on {len(positions)} sampled positions",
        samples_s={"encrypt_per_value": enc_times, "aggregate_per_op": add_times,
                   "decrypt_per_value": dec_times},
        extrapolated_from={"encrypt": n_samples, "aggregate": ops, "decrypt": n_samples},
        params={
            "values": n_values, "clients": clients, "key_bits": pk.n.bit_length(),
            "keygen_s": setup_s, "error_positions": len(positions), "wire_bytes_per_value":
                f"{width} (ciphertext mod n^2, fixed width) + {PHE_EXPONENT.size} (int16 exponent)",
            "context": "n as big-endian bytes",
        },
        notes=[f"extrapolated from {n_samples} encryptions, {ops} additions and "
               f"{n_samples} decryptions"],
    )


def bench_tenseal_flare(trees: Sequence[Tree], shapes: Shapes, reference: dict[str, np.ndarray],
                        repeats: int, progress: bool) -> SystemResult:
    """Baseline B: TenSEAL CKKS with NVIDIA FLARE's defaults, one ``ckks_vector`` per layer.

    Clients and the aggregator load the public context (``make_context_public()``
    then ``serialize()``: public and relinearization keys). Encrypt = one
    ``ts.ckks_vector`` per layer + ``serialize``; aggregate = ``ts.ckks_vector_from``
    with the public context + ``+`` per layer and client; decrypt = decrypt each
    layer's sum, divide by the client count, reshape.
    """
    import tenseal as ts

    clients = len(trees)
    n_values = sum(v.size for v in trees[0].values())
    bar = _progress(clients + 2 * repeats, "TenSEAL (FLARE)", progress)

    def keygen() -> tuple[Any, bytes]:
        secret = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=FLARE_POLY_MODULUS_DEGREE,
                            coeff_mod_bit_sizes=FLARE_COEFF_MOD_BIT_SIZES)
        secret.global_scale = 2.0**FLARE_SCALE_BITS
        public = secret.copy()
        public.make_context_public()
        return secret, public.serialize()

    bar.set_postfix_str("keygen")
    setup_s, (secret_ctx, public_bytes) = timed(keygen)
    pk_only_bytes = len(secret_ctx.serialize(save_public_key=True, save_secret_key=False,
                                             save_galois_keys=False, save_relin_keys=False))
    client_ctx = ts.context_from(public_bytes)
    server_ctx = ts.context_from(public_bytes)

    def encrypt(tree: Tree) -> list[bytes]:
        with _quiet_stdout():
            return [ts.ckks_vector(client_ctx, tree[name].ravel().tolist()).serialize()
                    for name, _ in shapes]

    bar.set_postfix_str("encrypt")
    updates: list[list[bytes]] = []
    enc_times = []
    for tree in trees:
        t, blobs = timed(lambda tree=tree: encrypt(tree))
        enc_times.append(t)
        updates.append(blobs)
        bar.update()

    def aggregate() -> list:
        sums: list = []
        for blobs in updates:
            vecs = [ts.ckks_vector_from(server_ctx, b) for b in blobs]
            sums = vecs if not sums else [s + v for s, v in zip(sums, vecs)]
        return sums

    bar.set_postfix_str("aggregate")
    agg_times = []
    sums: list = []
    for _ in range(repeats):
        t, sums = timed(aggregate)
        agg_times.append(t)
        bar.update()

    def decrypt() -> dict[str, np.ndarray]:
        out = {}
        for (name, shape), vec in zip(shapes, sums):
            vec.link_context(secret_ctx)
            out[name] = (np.asarray(vec.decrypt(), dtype=np.float64) / clients).reshape(shape)
        return out

    bar.set_postfix_str("decrypt")
    dec_times = []
    mean: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        t, mean = timed(decrypt)
        dec_times.append(t)
        bar.update()
    bar.close()

    update_bytes = sum(len(b) for b in updates[0])
    slots = FLARE_POLY_MODULUS_DEGREE // 2
    return SystemResult(
        key="tenseal_flare",
        label="TenSEAL (FLARE)",
        encrypt_vps=n_values / statistics.median(enc_times),
        aggregate_vps=clients * n_values / statistics.median(agg_times),
        decrypt_vps=n_values / statistics.median(dec_times),
        bytes_per_value=update_bytes / n_values,
        context_bytes=len(public_bytes),
        max_abs_error=max_abs_error(mean, reference),
        error_note=f"CKKS approximation at scale 2^{FLARE_SCALE_BITS}; float64 output",
        samples_s={"encrypt": enc_times, "aggregate": agg_times, "decrypt": dec_times},
        params={
            "values": n_values, "clients": clients, "update_bytes": update_bytes,
            "poly_modulus_degree": FLARE_POLY_MODULUS_DEGREE,
            "coeff_mod_bit_sizes": FLARE_COEFF_MOD_BIT_SIZES, "scale_bits": FLARE_SCALE_BITS,
            "ciphertexts": sum(-(-math.prod(s) // slots) for _, s in shapes),
            "public_context": "make_context_public(); serialize() (public + relinearization keys)",
            "public_key_only_context_bytes": pk_only_bytes, "keygen_s": setup_s,
        },
    )


# -- reporting -----------------------------------------------------------------


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:,.1f}x"
    return f"{x:.2f}x" if x >= 1 else f"{x:.2g}x"


def _fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:,.1f} h"
    if s >= 60:
        return f"{s / 60:,.1f} min"
    return f"{s:,.2f} s" if s >= 0.1 else f"{s * 1e3:,.1f} ms"


def ratios(results: Sequence[SystemResult]) -> dict[str, dict[str, float | None]]:
    """Speedups against the phe baseline and size/speed ratios against the TenSEAL baseline."""
    by_key = {r.key: r for r in results}
    phe_r, flare = by_key.get("phe_per_value"), by_key.get("tenseal_flare")
    out: dict[str, dict[str, float | None]] = {}
    for r in results:
        out[r.key] = {
            "encrypt_speedup_vs_phe": r.encrypt_vps / phe_r.encrypt_vps if phe_r else None,
            "aggregate_speedup_vs_phe": r.aggregate_vps / phe_r.aggregate_vps if phe_r else None,
            "decrypt_speedup_vs_phe": r.decrypt_vps / phe_r.decrypt_vps if phe_r else None,
            "bytes_ratio_vs_tenseal": r.bytes_per_value / flare.bytes_per_value if flare else None,
            "encrypt_speed_ratio_vs_tenseal": r.encrypt_vps / flare.encrypt_vps if flare else None,
        }
    return out


HEADERS = [
    "system", "encrypt values/s", "aggregate values/s", "decrypt values/s", "encrypt s/client",
    "bytes/value", "public context", "max abs error (mean)",
    "encrypt vs phe", "aggregate vs phe", "decrypt vs phe", "bytes vs TenSEAL",
    "encrypt vs TenSEAL",
]


def table_rows(results: Sequence[SystemResult]) -> list[list[str]]:
    """One row of formatted cells per system, in ``HEADERS`` order."""
    rat = ratios(results)
    rows = []
    for r in results:
        q = rat[r.key]
        rows.append([
            r.label + (" *" if r.extrapolated_from else ""),
            _fmt_rate(r.encrypt_vps), _fmt_rate(r.aggregate_vps), _fmt_rate(r.decrypt_vps),
            _fmt_seconds(r.encrypt_s_per_client), f"{r.bytes_per_value:,.2f}",
            _fmt_bytes(r.context_bytes), f"{r.max_abs_error:.2e}",
            _fmt_ratio(q["encrypt_speedup_vs_phe"]), _fmt_ratio(q["aggregate_speedup_vs_phe"]),
            _fmt_ratio(q["decrypt_speedup_vs_phe"]), _fmt_ratio(q["bytes_ratio_vs_tenseal"]),
            _fmt_ratio(q["encrypt_speed_ratio_vs_tenseal"]),
        ])
    return rows


def markdown_table(results: Sequence[SystemResult]) -> str:
    """The results as a GitHub-flavoured markdown table (numbers right-aligned)."""
    rows = table_rows(results)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    sep = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(HEADERS), sep, *(line(r) for r in rows)])


def footnotes(results: Sequence[SystemResult], config: dict[str, Any]) -> list[str]:
    """Lines explaining the table: setup, extrapolation, error sources, parameters."""
    by_key = {r.key: r for r in results}
    notes = [
        f"{config['values']:,} float32 values per update (N(0, {STD}) clipped to ±{CLIP}), "
        f"{config['clients']} clients, frac_bits={FRAC_BITS}, clip={CLIP}, "
        f"max_clients={MAX_CLIENTS}, max_weight={MAX_WEIGHT}.",
        "Layers (same tree for every system): "
        + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in config["shapes"]) + ".",
        f"Medians: encrypt over the {config['clients']} client updates, aggregate and decrypt "
        f"over {config['repeats']} repeat(s). aggregate values/s = clients x values / time to "
        f"deserialize, validate and add every client's bytes; decrypt values/s = values / time "
        f"to decrypt and decode the mean.",
        "Ratios: 'vs phe' are speedups (higher is better); 'bytes vs TenSEAL' is the size "
        "ratio (lower is better); 'encrypt vs TenSEAL' is a speed ratio (higher is better).",
    ]
    if "phe_per_value" in by_key:
        r = by_key["phe_per_value"]
        e = r.extrapolated_from or {}
        notes.append(
            f"* phe per value: extrapolated from {e.get('encrypt')} encryption, "
            f"{e.get('aggregate')} addition and {e.get('decrypt')} decryption samples; "
            f"bytes/value = 512-byte ciphertext + 2-byte exponent; context = the modulus n; "
            f"error on {r.params['error_positions']} sampled positions."
        )
    if "secagg_ckks" in by_key:
        p = by_key["secagg_ckks"].params
        notes.append(
            f"secagg ckks plan: N={p.get('poly_modulus_degree')}, moduli "
            f"{p.get('coeff_mod_bit_sizes')}, scale 2^{p.get('scale_bits')}, "
            f"{p.get('slots')} values per ciphertext."
        )
    if "secagg_paillier" in by_key:
        p = by_key["secagg_paillier"].params
        notes.append(
            f"secagg paillier: {p.get('key_bits')}-bit key, {p.get('slots_per_ciphertext')} slots "
            f"of {p.get('slot_bits')} bits per {p.get('ciphertext_bytes')}-byte ciphertext."
        )
    if "tenseal_flare" in by_key:
        p = by_key["tenseal_flare"].params
        notes.append(
            f"TenSEAL (FLARE): N={p['poly_modulus_degree']}, moduli {p['coeff_mod_bit_sizes']}, "
            f"scale 2^{p['scale_bits']}, one ckks_vector per layer ({p['ciphertexts']} "
            f"ciphertexts); public context with relinearization keys as FLARE ships it "
            f"({_fmt_bytes(p['public_key_only_context_bytes'])} with the public key only)."
        )
    notes.append(
        "Errors: secagg's is quantization, at most 2^-17 = 7.63e-06 per value; TenSEAL's is "
        "CKKS approximation; phe's is its float encoding."
    )
    return notes


def machine_info() -> dict[str, Any]:
    """Platform, CPU, Python and library versions, and the repository commit."""
    versions = {}
    for dist in ("numpy", "phe", "gmpy2", "tenseal", "msgpack", "tqdm"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["secagg"] = secagg.__version__
    versions["secagg_path"] = str(Path(secagg.__file__).resolve().parent)
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": versions,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "secagg"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        info["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def write_results(path: Path, results: Sequence[SystemResult], config: dict[str, Any],
                  info: dict[str, Any], wall_s: float) -> Path:
    """Write the JSON results to ``path`` and the markdown table next to it (``.md``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rat = ratios(results)
    systems = {}
    for r in results:
        d = asdict(r)
        d["encrypt_s_per_client"] = r.encrypt_s_per_client
        d["ratios"] = rat[r.key]
        systems[r.key] = d
    doc = {
        "benchmark": "bench_core",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "statistic": "median",
        "config": {**config, "shapes": [[n, list(s)] for n, s in config["shapes"]],
                   "std": STD, "clip": CLIP, "frac_bits": FRAC_BITS,
                   "max_clients": MAX_CLIENTS, "max_weight": MAX_WEIGHT},
        "machine": info,
        "wall_s": wall_s,
        "systems": systems,
    }
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    md_path = path.with_suffix(".md")
    md = [
        f"# bench_core: {config['values']:,} values, {config['clients']} clients",
        "",
        f"{doc['timestamp']} · {info['platform']} · {info['cpu_count']} CPUs · "
        f"Python {info['python']} · secagg {info['libraries']['secagg']} · "
        f"tenseal {info['libraries']['tenseal']} · phe {info['libraries']['phe']} · "
        f"commit {info.get('git_commit')}",
        "",
        markdown_table(results),
        "",
        *(f"- {n}" for n in footnotes(results, config)),
        "",
    ]
    md_path.write_text("\n".join(md))
    return md_path


# -- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` changes the defaults of the sized options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"small run: {QUICK['values']:,} values, {QUICK['clients']} clients, "
                        f"{QUICK['repeats']} repeat, {QUICK['phe_samples']} phe samples")
    p.add_argument("--values", type=int, help=f"values per update (default {FULL['values']:,})")
    p.add_argument("--clients", type=int, help=f"client updates summed (default {FULL['clients']})")
    p.add_argument("--repeats", type=int,
                   help=f"repeats of aggregation and decryption (default {FULL['repeats']})")
    p.add_argument("--phe-samples", type=int,
                   help=f"values encrypted by the phe baseline (default {FULL['phe_samples']})")
    p.add_argument("--phe-add-ops", type=int,
                   help=f"additions timed for the phe baseline (default {FULL['phe_add_ops']})")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic updates")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="JSON results path; the markdown table goes next to it (.md)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.values < 1:
        p.error("--values must be positive")
    if not 2 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be in [2, {MAX_CLIENTS}] (secagg decrypts sums of >= 2 clients)")
    if args.repeats < 1 or args.phe_samples < 1 or args.phe_add_ops < 1:
        p.error("--repeats, --phe-samples and --phe-add-ops must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every system on the same data, print the table, write JSON and markdown."""
    args = parse_args(argv)
    start = time.perf_counter()
    info = machine_info()
    shapes = model_shapes(args.values)
    config = {"values": args.values, "clients": args.clients, "repeats": args.repeats,
              "phe_samples": args.phe_samples, "phe_add_ops": args.phe_add_ops,
              "seed": args.seed, "quick": args.quick, "shapes": shapes}
    print(f"bench_core: {args.values:,} values x {args.clients} clients, {args.repeats} repeat(s); "
          f"{info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}", flush=True)
    trees = make_client_trees(shapes, args.clients, args.seed)
    reference = exact_mean(trees)
    progress = not args.no_progress

    results = [
        bench_secagg_paillier(trees, reference, args.repeats, progress),
        bench_secagg_ckks(trees, reference, args.repeats, progress),
        bench_phe_per_value(trees, shapes, args.phe_samples, args.phe_add_ops, args.repeats,
                            progress),
        bench_tenseal_flare(trees, shapes, reference, args.repeats, progress),
    ]
    wall_s = time.perf_counter() - start
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = list(os.getloadavg())

    print()
    print(markdown_table(results))
    print()
    for note in footnotes(results, config):
        print(f"- {note}")
    md_path = write_results(args.out, results, config, info, wall_s)
    print(f"\nwall time {_fmt_seconds(wall_s)}; wrote {args.out} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
