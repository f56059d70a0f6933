"""What every benchmark script shares: workload, timing, progress, machine info, output.

* the workload: secagg's codec settings (``CODEC``), NVIDIA FLARE's TenSEAL
  parameters, the MLP update tree of ``bench_core`` and ``bench_lattice``
  (:func:`model_shapes`, :func:`make_client_trees`) and its error measures;
* timing: :func:`timed` (one call, ``perf_counter``, garbage collector paused)
  and :func:`median_time` (the median of repeats);
* :func:`progress`: a ``tqdm`` bar on stderr, or a silent stand-in without tqdm;
* :func:`machine_info` and :class:`Run` (CPU model, cores, load average, the
  share of the CPUs other processes used, library versions, git commit);
* output: :func:`markdown_table`, the ``fmt_*`` number formats, :func:`pyplot`
  and :func:`save_figure` for the optional matplotlib figure, and
  :func:`write_results`, which writes JSON, markdown (and the figure) only when
  ``--out`` was given: a run without it prints its tables and writes nothing;
* :func:`add_common_arguments` / :func:`apply_defaults`: ``--quick``, ``--smoke``,
  ``--seed``, ``--out`` and ``--no-progress``, the same in every script.

``--smoke`` is for the test suite (``tests/benchmarks``): the smallest sizes and
insecure 512-bit Paillier keys, to prove a script still runs. Its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # fallback: run from a checkout without installing
    sys.path.append(str(REPO_ROOT))

import secagg  # noqa: E402

T = TypeVar("T")
Tree = dict[str, np.ndarray]
Shapes = list[tuple[str, tuple[int, ...]]]

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"  # where `make bench` (--out) writes

# -- the workload (see benchmarks/README.md) -------------------------------------

STD = 0.1
CLIP = 1.0
FRAC_BITS = 16
MAX_CLIENTS = 100
MAX_WEIGHT = 1
CODEC = {"clip": CLIP, "frac_bits": FRAC_BITS, "max_clients": MAX_CLIENTS, "max_weight": MAX_WEIGHT}
MEAN_ERROR_BOUND = 2.0 ** -(FRAC_BITS + 1)  # secagg's quantization error per decoded value
PAILLIER_KEY_BITS = 2048
SMOKE_KEY_BITS = 512  # --smoke only: insecure, fast keys
# TenSEAL CKKS parameters as NVIDIA FLARE's HE provisioning uses them.
FLARE_POLY_MODULUS_DEGREE = 8192
FLARE_COEFF_MOD_BIT_SIZES = [60, 40, 40]
FLARE_SCALE_BITS = 40


def paillier_options(key_bits: int) -> dict[str, Any]:
    """``secagg.generate("paillier", **paillier_options(k))``: keys below 2048 bits are insecure."""
    return {"key_bits": key_bits, **({"insecure": True} if key_bits < PAILLIER_KEY_BITS else {})}


def load_public(blob: bytes, insecure: bool = False) -> secagg.PublicContext:
    """A client's or the aggregator's context, from the bytes it was sent."""
    return secagg.PublicContext.from_bytes(blob, allow_insecure=insecure)


def flare_keys(n_threads: int | None = None) -> tuple[Any, bytes]:
    """NVIDIA FLARE's TenSEAL CKKS keys: (secret context, public context bytes).

    The public context is what FLARE ships (``make_context_public()`` then
    ``serialize()``: the public and relinearization keys).
    """
    import tenseal as ts

    kw = {} if n_threads is None else {"n_threads": n_threads}
    secret = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=FLARE_POLY_MODULUS_DEGREE,
                        coeff_mod_bit_sizes=FLARE_COEFF_MOD_BIT_SIZES, **kw)
    secret.global_scale = 2.0**FLARE_SCALE_BITS
    public = secret.copy()
    public.make_context_public()
    return secret, public.serialize()


def flare_public_key_only_bytes(secret: Any) -> int:
    """The size of a TenSEAL context with the public key only (no relinearization keys)."""
    return len(secret.serialize(save_public_key=True, save_secret_key=False,
                                save_galois_keys=False, save_relin_keys=False))


def model_shapes(n_values: int) -> Shapes:
    """Leaves of an MLP ``d -> h1 -> h2 -> 10`` (weights and biases) holding exactly ``n_values``.

    The input width ``d`` is chosen as close to 784 (MNIST) as possible, with
    ``d >= h1 >= h2 >= 10``. For 100,000 values this is 784 -> 114 -> 84 -> 10:
    89,376 + 114 + 9,576 + 84 + 840 + 10 values. If no such MLP exists (tiny
    ``n_values``), the tree is a single leaf.
    """
    out = 10
    for delta in range(4096):
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


# -- timing ------------------------------------------------------------------------


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, as ``timeit`` does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once; return its wall-clock seconds (``perf_counter``, GC paused) and result."""
    with gc_paused():
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
    return elapsed, out


@dataclass
class Timing(Generic[T]):
    """:func:`median_time`'s answer: the median, every sample, and the last call's result."""

    median_s: float
    samples_s: list[float]
    result: T


def median_time(fn: Callable[[], T], repeats: int = 1,
                tick: Callable[[], object] | None = None) -> Timing[T]:
    """Time ``fn`` ``repeats`` times with :func:`timed`; ``tick()`` after each (a progress bar)."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    samples: list[float] = []
    for _ in range(repeats):
        t, out = timed(fn)
        samples.append(t)
        if tick is not None:
            tick()
    return Timing(statistics.median(samples), samples, out)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
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


# -- progress ----------------------------------------------------------------------


class _SilentBar:
    """What :func:`progress` returns without tqdm (or when disabled): ignores everything."""

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def set_postfix_str(self, s: str) -> None:
        """Ignore the phase label."""

    def close(self) -> None:
        """Nothing to close."""


def progress(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar on stderr (``tqdm`` when installed and ``enabled``, else a silent one)."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional
            pass
        else:
            return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=True,
                        dynamic_ncols=True)
    return _SilentBar()


class Problems:
    """secagg misbehaviour a run saw (wrong sums, unspent pools, ...); reported, never raised."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        """Record ``what`` (and say so on stderr) unless ``ok``; returns ``ok``."""
        if not ok:
            self.items.append(what)
            print(f"\nSECAGG PROBLEM: {what}", file=sys.stderr, flush=True)
        return ok


# -- the machine -------------------------------------------------------------------

LIBRARIES = ("numpy", "phe", "gmpy2", "tenseal", "msgpack", "tqdm", "matplotlib")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def git_commit() -> str | None:
    """The checkout's commit, ``-dirty`` when ``secagg/`` has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "secagg"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Platform, CPU model and count, load average, Python and library versions, git commit."""
    versions: dict[str, Any] = {dist: _version(dist) for dist in LIBRARIES}
    versions["secagg"] = secagg.__version__
    versions["secagg_path"] = str(Path(secagg.__file__).resolve().parent)
    with contextlib.suppress(ImportError, AttributeError):
        import gmpy2

        versions["gmp"] = gmpy2.mp_version()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": versions,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    info["git_commit"] = git_commit()
    return info


def cpu_snapshot() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(f) for f in fields]
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = (sum(ticks[:8]) - idle) / hz  # user..steal, without guest (already in user)
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def other_load(start: tuple[float, float] | None, wall_s: float) -> float | None:
    """Share of the machine's CPU time that other processes used since ``start``."""
    end = cpu_snapshot()
    if start is None or end is None or wall_s <= 0:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, others) / (wall_s * (os.cpu_count() or 1))


class Run:
    """One benchmark run: the machine before it, its wall time, the load during it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = cpu_snapshot()
        self.info = machine_info()
        self.wall_s: float | None = None

    def finish(self) -> float:
        """Stop the clock; add the end load average and other processes' CPU share to ``info``."""
        self.wall_s = time.perf_counter() - self.start
        if hasattr(os, "getloadavg"):
            self.info["loadavg_end"] = list(os.getloadavg())
        self.info["other_processes_cpu_share"] = other_load(self.cpu_start, self.wall_s)
        return self.wall_s

    def summary(self) -> str:
        """``platform, N CPUs, Python x.y.z`` for a script's first line."""
        i = self.info
        return f"{i['platform']}, {i['cpu_count']} CPUs, Python {i['python']}"


# -- formats and tables ------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    """Values per second: ``12,345`` (one decimal below 100)."""
    if x is None or math.isnan(x):
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(x: float | None, floor: float = 1.0) -> str:
    """A ratio: ``1,234x``, ``12.3x``, two decimals down to ``floor``, two digits below it."""
    if x is None or math.isnan(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:,.1f}x"
    return f"{x:.2f}x" if x >= floor else f"{x:.2g}x"


def fmt_seconds(s: float | None) -> str:
    """A duration: ``1.5 h``, ``2.0 min``, ``1.23 s`` or ``4.5 ms``."""
    if s is None:
        return "-"
    if s >= 3600:
        return f"{s / 3600:,.1f} h"
    if s >= 60:
        return f"{s / 60:,.1f} min"
    return f"{s:,.2f} s" if s >= 0.1 else f"{s * 1e3:,.1f} ms"


def fmt_bytes(n: float, binary: bool = False) -> str:
    """A size: ``1.2 MB`` / ``3.4 kB`` (decimal) or ``1.2 MiB`` / ``3.4 KiB`` (``binary``)."""
    units = (("MiB", 1 << 20), ("KiB", 1 << 10)) if binary else (("MB", 1e6), ("kB", 1e3))
    for unit, scale in units:
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def fmt_share(share: float | None) -> str:
    """A fraction as a percentage (``?`` when unknown)."""
    return "?" if share is None else f"{100 * share:.0f}%"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub-flavoured markdown table: the first ``left`` columns left-aligned, the rest right."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i < left else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def target_lines(title: str, rows: Sequence[dict[str, Any]], problems: Sequence[str],
                 markdown: bool = False) -> list[str]:
    """The PASS/MISS lines (``rows[i]["line"]``) and any secagg problems, for stdout or markdown."""
    if markdown:
        out = [f"## {title}", "", *(f"    {t['line']}" for t in rows), ""]
        if problems:
            out += ["## secagg problems seen", "", *(f"- {p}" for p in problems), ""]
        return out
    out = [f"{title}:", *(f"  {t['line']}" for t in rows)]
    if problems:
        out += ["", "secagg problems seen:", *(f"  - {p}" for p in problems)]
    return out


def markdown_lines(title: str, doc: dict[str, Any], libraries: Sequence[str],
                   blocks: Sequence[str], notes: Sequence[str] = ()) -> list[str]:
    """A results file: ``# title``, :func:`header_line`, the blocks (tables), the notes as a list."""
    out = [f"# {title}", "", header_line(doc, libraries), ""]
    for block in blocks:
        out += [block, ""]
    if notes:
        out += [*(f"- {n}" for n in notes), ""]
    return out


def header_line(doc: dict[str, Any], libraries: Sequence[str] = ()) -> str:
    """The markdown's second line: when, where, which versions, how long, how loaded."""
    info = doc["machine"]
    libs = info.get("libraries", {})
    parts = [
        doc["timestamp"], info["platform"],
        f"{info['cpu_count']} CPUs ({info.get('cpu_model') or '?'})", f"Python {info['python']}",
        *(f"{name} {libs.get(name)}" for name in ("secagg", *libraries)),
        f"commit {info.get('git_commit')}",
        f"load {info.get('loadavg_start')} → {info.get('loadavg_end')}",
        f"wall time {fmt_seconds(doc.get('wall_s'))}",
        f"other processes used {fmt_share(info.get('other_processes_cpu_share'))} of the CPUs",
    ]
    return " · ".join(parts)


# -- plots -------------------------------------------------------------------------


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure", file=sys.stderr)
        return None
    return plt


def annotate_bars(ax: Any, bars: Any, ys: Sequence[float], fmt: Callable[[float], str] = fmt_rate,
                  fontsize: float = 6.5, rotation: float = 90) -> None:
    """Write each bar's value above it (NaN bars are left bare)."""
    for b, y in zip(bars, ys):
        if not math.isnan(y):
            ax.annotate(fmt(y), (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom",
                        fontsize=fontsize, rotation=rotation, xytext=(0, 2),
                        textcoords="offset points")


def save_figure(fig: Any, path: Path, title: str) -> Path:
    """Title, lay out, save (130 dpi) and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# -- results -----------------------------------------------------------------------


def jsonable(x: Any) -> Any:
    """``x`` with dataclasses, numpy scalars and tuples made JSON-friendly (NaN/inf -> None)."""
    if hasattr(x, "as_dict"):
        return jsonable(x.as_dict())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def result_doc(benchmark: str, config: dict[str, Any], run: Run, statistic: str = "median",
               **sections: Any) -> dict[str, Any]:
    """The JSON document every script writes: what, when, how, on what, how long, then its own."""
    return {
        "benchmark": benchmark,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "statistic": statistic,
        "config": config,
        "machine": run.info,
        "wall_s": run.wall_s,
        **sections,
    }


def output_path(out: Path | None, name: str) -> Path | None:
    """Where ``--out`` puts the JSON: ``out`` itself if it ends in ``.json``, else ``out/NAME.json``."""
    if out is None:
        return None
    return out if out.suffix == ".json" else out / f"{name}.json"


def write_results(out: Path | None, name: str, doc: dict[str, Any], markdown: Sequence[str],
                  plot: Callable[[Path], Path | None] | None = None,
                  figure_alt: str = "figure") -> list[Path]:
    """Write ``doc`` (JSON), ``markdown`` (``.md``) and ``plot``'s figure (``.png``) for ``--out``.

    Without ``--out`` (``out`` None) nothing is written and ``[]`` comes back;
    otherwise the paths written, JSON first. The markdown links the figure.
    """
    path = output_path(out, name)
    if path is None:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(doc), indent=2) + "\n")
    lines = list(markdown)
    png = plot(path.with_suffix(".png")) if plot is not None else None
    if png is not None:
        lines += [f"![{figure_alt}]({png.name})", ""]
    md = path.with_suffix(".md")
    md.write_text("\n".join(lines))
    return [path, md] + ([png] if png is not None else [])


def report_written(wall_s: float, written: Sequence[Path]) -> None:
    """The last line of a run: its wall time and what it wrote (nothing without ``--out``)."""
    if written:
        where = ", ".join(str(p) for p in written[:-1]) + (" and " if len(written) > 1 else "")
        print(f"\nwall time {fmt_seconds(wall_s)}; wrote {where}{written[-1]}")
    else:
        print(f"\nwall time {fmt_seconds(wall_s)}; no files written (--out DIR keeps the results)")


# -- command line ------------------------------------------------------------------


def parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A script's argument parser: the docstring's first paragraph, the common options."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, quick_help)
    return p


def add_common_arguments(p: argparse.ArgumentParser, quick_help: str) -> None:
    """``--quick``, ``--smoke``, ``--seed``, ``--out`` and ``--no-progress``."""
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--smoke", action="store_true",
                   help="tests only: the smallest sizes and insecure 512-bit Paillier keys, to "
                        "prove the script runs; the figures mean nothing")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic updates")
    p.add_argument("--out", type=Path, default=None, metavar="DIR_OR_JSON",
                   help="write the results: DIR/NAME.json with .md (and .png) next to it, or a "
                        "path ending in .json; without --out nothing is written")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_update_arguments(p: argparse.ArgumentParser, full: dict[str, Any]) -> None:
    """``--values``, ``--clients`` and ``--repeats`` (of aggregation and decryption)."""
    p.add_argument("--values", type=int, help=f"values per update (default {full['values']:,})")
    p.add_argument("--clients", type=int, help=f"client updates summed (default {full['clients']})")
    p.add_argument("--repeats", type=int,
                   help=f"repeats of aggregation and decryption (default {full['repeats']})")


def check_update_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--values`` and ``--repeats`` positive, ``--clients`` in [2, MAX_CLIENTS]."""
    if args.values < 1 or args.repeats < 1:
        p.error("--values and --repeats must be positive")
    if not 2 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be in [2, {MAX_CLIENTS}] (secagg decrypts sums of >= 2 clients)")


def apply_defaults(args: argparse.Namespace, full: dict[str, Any], quick: dict[str, Any],
                   smoke: dict[str, Any]) -> argparse.Namespace:
    """Fill the options left unset from ``smoke``, ``quick`` or ``full``; explicit options win."""
    defaults = smoke if args.smoke else quick if args.quick else full
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def check_key_bits(p: argparse.ArgumentParser, bits: Sequence[int], smoke: bool,
                   flag: str = "--key-bits") -> None:
    """Paillier key sizes: multiples of 8, at least 2048 bits (512 with ``--smoke``)."""
    least = SMOKE_KEY_BITS if smoke else PAILLIER_KEY_BITS
    if any(k < least or k % 8 for k in bits):
        p.error(f"{flag} must be multiples of 8 of at least {least} bits"
                + ("" if smoke else f" ({SMOKE_KEY_BITS} with --smoke)"))
