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
    python benchmarks/bench_core.py --out benchmarks/results   # what `make bench` commits

The table goes to stdout; nothing is written unless ``--out`` names a folder
(``core.json`` and ``core.md`` go there) or a ``.json`` path (``.md`` next to it).
"""

from __future__ import annotations

import argparse
import math
import statistics
import struct
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import common  # first: it puts this checkout on sys.path if secagg is not installed

# isort: split
import secagg
import secagg.schemes.lattice.ckks  # load both backends now, not inside a timed setup
import secagg.schemes.paillier.backend
from common import (
    CLIP,
    FLARE_COEFF_MOD_BIT_SIZES,
    FLARE_POLY_MODULUS_DEGREE,
    FLARE_SCALE_BITS,
    FRAC_BITS,
    MAX_CLIENTS,
    MAX_WEIGHT,
    STD,
    Shapes,
    Tree,
    fmt_bytes,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    max_abs_error,
    median_time,
    timed,
)

# phe baseline wire format: fixed-width ciphertext plus a signed 16-bit exponent.
PHE_EXPONENT = struct.Struct(">h")

FULL = {"values": 100_000, "clients": 10, "repeats": 3, "phe_samples": 200, "phe_add_ops": 3000,
        "key_bits": common.PAILLIER_KEY_BITS}
QUICK = {"values": 10_000, "clients": 4, "repeats": 1, "phe_samples": 20, "phe_add_ops": 200,
         "key_bits": common.PAILLIER_KEY_BITS}
SMOKE = {"values": 200, "clients": 2, "repeats": 1, "phe_samples": 2, "phe_add_ops": 2,
         "key_bits": common.SMOKE_KEY_BITS}


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

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the fields and the time per client."""
        return {**asdict(self), "encrypt_s_per_client": self.encrypt_s_per_client}


def flat_values(tree: Tree, shapes: Shapes) -> np.ndarray:
    """A tree's values as one float64 vector in ``shapes`` order."""
    return np.concatenate([tree[name].astype(np.float64).ravel() for name, _ in shapes])


# -- systems -------------------------------------------------------------------


def _bench_secagg(
    ctx: secagg.SecretContext, key: str, label: str, trees: Sequence[Tree],
    reference: dict[str, np.ndarray], repeats: int, show: bool, setup_s: float,
    insecure: bool = False,
) -> SystemResult:
    """Encrypt every client's tree, sum the bytes, decrypt the mean (both secagg schemes)."""
    n_values = sum(v.size for v in trees[0].values())
    clients = len(trees)
    public_bytes = ctx.public.to_bytes()
    # clients and the aggregator hold only what they were sent
    client_ctx = common.load_public(public_bytes, insecure)
    server_ctx = common.load_public(public_bytes, insecure)
    bar = common.progress(clients + 2 * repeats, label, show)

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
    dec = median_time(lambda: ctx.decrypt(total, reduce="mean"), repeats, bar.update)
    bar.close()

    describe = ctx.public.describe()
    describe.pop("fingerprint", None)
    return SystemResult(
        key=key,
        label=label,
        encrypt_vps=n_values / statistics.median(enc_times),
        aggregate_vps=clients * n_values / statistics.median(agg_times),
        decrypt_vps=n_values / dec.median_s,
        bytes_per_value=len(blobs[0]) / n_values,
        context_bytes=len(public_bytes),
        max_abs_error=max_abs_error(dec.result, reference),
        error_note=f"quantization, bound 2^-{FRAC_BITS + 1} = {common.MEAN_ERROR_BOUND:.3g}; "
                   f"decoded leaves are float32 like the inputs",
        samples_s={"encrypt": enc_times, "aggregate": agg_times, "decrypt": dec.samples_s},
        params={
            "values": n_values, "clients": clients, "update_bytes": len(blobs[0]),
            "aggregate_bytes": len(total.to_bytes()), "ciphertexts": len(total.ciphertexts),
            "keygen_s": setup_s, **describe,
        },
    )


def bench_secagg_paillier(trees: Sequence[Tree], reference: dict[str, np.ndarray], repeats: int,
                          show: bool, key_bits: int = common.PAILLIER_KEY_BITS) -> SystemResult:
    """secagg's packed Paillier scheme with a fresh key (2048 bits unless ``--smoke``)."""
    setup_s, ctx = timed(lambda: secagg.generate(
        "paillier", **common.paillier_options(key_bits), **common.CODEC))
    return _bench_secagg(ctx, "secagg_paillier", "secagg paillier", trees, reference, repeats,
                         show, setup_s, insecure=key_bits < common.PAILLIER_KEY_BITS)


def bench_secagg_ckks(trees: Sequence[Tree], reference: dict[str, np.ndarray], repeats: int,
                      show: bool) -> SystemResult:
    """secagg's CKKS scheme with the parameters its planner picks for this codec."""
    setup_s, ctx = timed(lambda: secagg.generate("ckks", **common.CODEC))
    return _bench_secagg(ctx, "secagg_ckks", "secagg ckks", trees, reference, repeats,
                         show, setup_s)


def bench_phe_per_value(trees: Sequence[Tree], shapes: Shapes, samples: int, add_ops: int,
                        repeats: int, show: bool,
                        key_bits: int = common.PAILLIER_KEY_BITS) -> SystemResult:
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
    bar = common.progress(3 * repeats, "phe per value", show)

    bar.set_postfix_str("keygen")
    setup_s, (pk, sk) = timed(lambda: phe.generate_paillier_keypair(n_length=key_bits))
    width = (pk.nsquare.bit_length() + 7) // 8

    def encrypt_all() -> tuple[list, list[bytes]]:
        cts = [pk.encrypt(x) for x in plain]
        return cts, [c.ciphertext().to_bytes(width, "big") + PHE_EXPONENT.pack(c.exponent)
                     for c in cts]

    bar.set_postfix_str("encrypt")
    enc = median_time(encrypt_all, repeats, bar.update)
    cts, wire = enc.result

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
    add = median_time(add_all, repeats, bar.update)

    bar.set_postfix_str("decrypt")
    dec = median_time(lambda: [sk.decrypt(c) for c in cts], repeats, bar.update)
    bar.close()

    means = np.array([sk.decrypt(s) for s in add.result[: len(positions)]]) / clients
    exact = np.mean([f[positions] for f in flats], axis=0)
    return SystemResult(
        key="phe_per_value",
        label="phe per value",
        encrypt_vps=n_samples / enc.median_s,
        aggregate_vps=ops / add.median_s,
        decrypt_vps=n_samples / dec.median_s,
        bytes_per_value=width + PHE_EXPONENT.size,
        context_bytes=(pk.n.bit_length() + 7) // 8,
        max_abs_error=float(np.max(np.abs(means - exact))),
        error_note=f"phe float encoding; measured on {len(positions)} sampled positions",
        samples_s={"encrypt_per_value": [t / n_samples for t in enc.samples_s],
                   "aggregate_per_op": [t / ops for t in add.samples_s],
                   "decrypt_per_value": [t / n_samples for t in dec.samples_s]},
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
                        repeats: int, show: bool) -> SystemResult:
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
    bar = common.progress(clients + 2 * repeats, "TenSEAL (FLARE)", show)

    bar.set_postfix_str("keygen")
    setup_s, (secret_ctx, public_bytes) = timed(common.flare_keys)
    pk_only_bytes = common.flare_public_key_only_bytes(secret_ctx)
    client_ctx = ts.context_from(public_bytes)
    server_ctx = ts.context_from(public_bytes)

    def encrypt(tree: Tree) -> list[bytes]:
        with common.quiet_stdout():
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
    agg = median_time(aggregate, repeats, bar.update)

    def decrypt() -> dict[str, np.ndarray]:
        out = {}
        for (name, shape), vec in zip(shapes, agg.result):
            vec.link_context(secret_ctx)
            out[name] = (np.asarray(vec.decrypt(), dtype=np.float64) / clients).reshape(shape)
        return out

    bar.set_postfix_str("decrypt")
    dec = median_time(decrypt, repeats, bar.update)
    bar.close()

    update_bytes = sum(len(b) for b in updates[0])
    slots = FLARE_POLY_MODULUS_DEGREE // 2
    return SystemResult(
        key="tenseal_flare",
        label="TenSEAL (FLARE)",
        encrypt_vps=n_values / statistics.median(enc_times),
        aggregate_vps=clients * n_values / agg.median_s,
        decrypt_vps=n_values / dec.median_s,
        bytes_per_value=update_bytes / n_values,
        context_bytes=len(public_bytes),
        max_abs_error=max_abs_error(dec.result, reference),
        error_note=f"CKKS approximation at scale 2^{FLARE_SCALE_BITS}; float64 output",
        samples_s={"encrypt": enc_times, "aggregate": agg.samples_s, "decrypt": dec.samples_s},
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
            fmt_rate(r.encrypt_vps), fmt_rate(r.aggregate_vps), fmt_rate(r.decrypt_vps),
            fmt_seconds(r.encrypt_s_per_client), f"{r.bytes_per_value:,.2f}",
            fmt_bytes(r.context_bytes), f"{r.max_abs_error:.2e}",
            fmt_ratio(q["encrypt_speedup_vs_phe"]), fmt_ratio(q["aggregate_speedup_vs_phe"]),
            fmt_ratio(q["decrypt_speedup_vs_phe"]), fmt_ratio(q["bytes_ratio_vs_tenseal"]),
            fmt_ratio(q["encrypt_speed_ratio_vs_tenseal"]),
        ])
    return rows


def markdown_table(results: Sequence[SystemResult]) -> str:
    """The results as a GitHub-flavoured markdown table (numbers right-aligned)."""
    return common.markdown_table(HEADERS, table_rows(results))


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
            f"bytes/value = {r.bytes_per_value - PHE_EXPONENT.size:.0f}-byte ciphertext + "
            f"{PHE_EXPONENT.size}-byte exponent; context = the modulus n; "
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
            f"({fmt_bytes(p['public_key_only_context_bytes'])} with the public key only)."
        )
    notes.append(
        "Errors: secagg's is quantization, at most 2^-17 = 7.63e-06 per value; TenSEAL's is "
        "CKKS approximation; phe's is its float encoding."
    )
    return notes


def markdown(doc: dict[str, Any], results: Sequence[SystemResult]) -> list[str]:
    """The markdown file's lines: title, machine line, table, notes."""
    config = doc["config"]
    return common.markdown_lines(
        f"bench_core: {config['values']:,} values, {config['clients']} clients", doc,
        ("tenseal", "phe"), [markdown_table(results)], footnotes(results, config))


# -- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` and ``--smoke`` change the defaults, explicit ones win."""
    p = common.parser(
        __doc__, f"small run: {QUICK['values']:,} values, {QUICK['clients']} clients, "
           f"{QUICK['repeats']} repeat, {QUICK['phe_samples']} phe samples")
    common.add_update_arguments(p, FULL)
    p.add_argument("--phe-samples", type=int,
                   help=f"values encrypted by the phe baseline (default {FULL['phe_samples']})")
    p.add_argument("--phe-add-ops", type=int,
                   help=f"additions timed for the phe baseline (default {FULL['phe_add_ops']})")
    p.add_argument("--key-bits", type=int,
                   help=f"Paillier key size of secagg and phe (default {FULL['key_bits']}; "
                        f"--smoke: {SMOKE['key_bits']}, insecure)")
    args = common.apply_defaults(p.parse_args(argv), FULL, QUICK, SMOKE)
    common.check_update_arguments(p, args)
    if args.phe_samples < 1 or args.phe_add_ops < 1:
        p.error("--phe-samples and --phe-add-ops must be positive")
    common.check_key_bits(p, [args.key_bits], args.smoke)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every system on the same data, print the table; with ``--out``, write JSON and markdown."""
    args = parse_args(argv)
    run = common.Run()
    shapes = common.model_shapes(args.values)
    config = {"values": args.values, "clients": args.clients, "repeats": args.repeats,
              "phe_samples": args.phe_samples, "phe_add_ops": args.phe_add_ops,
              "key_bits": args.key_bits, "seed": args.seed, "quick": args.quick,
              "smoke": args.smoke, "shapes": shapes}
    print(f"bench_core: {args.values:,} values x {args.clients} clients, {args.repeats} repeat(s); "
          f"{run.summary()}", flush=True)
    trees = common.make_client_trees(shapes, args.clients, args.seed)
    reference = common.exact_mean(trees)
    show = not args.no_progress

    results = [
        bench_secagg_paillier(trees, reference, args.repeats, show, args.key_bits),
        bench_secagg_ckks(trees, reference, args.repeats, show),
        bench_phe_per_value(trees, shapes, args.phe_samples, args.phe_add_ops, args.repeats,
                            show, args.key_bits),
        bench_tenseal_flare(trees, shapes, reference, args.repeats, show),
    ]
    wall_s = run.finish()

    print()
    print(markdown_table(results))
    print()
    for note in footnotes(results, config):
        print(f"- {note}")
    rat = ratios(results)
    doc = common.result_doc(
        "bench_core",
        {**config, "std": STD, "clip": CLIP, "frac_bits": FRAC_BITS, "max_clients": MAX_CLIENTS,
         "max_weight": MAX_WEIGHT},
        run, systems={r.key: {**r.as_dict(), "ratios": rat[r.key]} for r in results})
    common.report_written(wall_s, common.write_results(args.out, "core", doc,
                                                       markdown(doc, results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
