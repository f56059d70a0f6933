"""The benchmarks still run, write files only with ``--out``, and their shared helpers work.

Every script runs as a subprocess at its ``--smoke`` size (a few hundred values,
two or three clients, insecure 512-bit Paillier keys), without and with
``--out``. No figure is asserted on: the runs are far too small to mean anything.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"

# script -> a line every run prints (the comparison table's header, or the verdict)
SCRIPTS = {
    "bench_core.py": "| system ",
    "bench_paillier.py": "| key ",
    "bench_lattice.py": "| system ",
    "bench_round.py": "| system ",
    "load_aggregator.py": "memory growth",
}
# script -> the stem of what --out DIR writes, and whether a figure comes with it
OUTPUTS = {"bench_core.py": ("core", False), "bench_paillier.py": ("paillier", True),
           "bench_lattice.py": ("lattice", True), "bench_round.py": ("round", False),
           "load_aggregator.py": ("load", False)}
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _load_common():
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCH / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


common = _load_common()


def snapshot() -> dict[str, tuple[str, int]]:
    """Every file under benchmarks/ (no bytecode): its SHA-256 and mtime."""
    out = {}
    for path in sorted(BENCH.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out[str(path.relative_to(BENCH))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                 path.stat().st_mtime_ns)
    return out


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


# -- every script runs, and writes nothing without --out --------------------------------


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_and_writes_nothing_without_out(script, tmp_path):
    before = snapshot()
    proc = run([str(BENCH / script), "--smoke", "--no-progress"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert SCRIPTS[script] in proc.stdout
    assert "no files written" in proc.stdout
    assert snapshot() == before  # benchmarks/results (and the rest of benchmarks/) untouched
    assert list(tmp_path.iterdir()) == []  # nor the working directory


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_writes_json_and_markdown_with_out(script, tmp_path):
    before = snapshot()
    proc = run([str(BENCH / script), "--smoke", "--no-progress", "--out", str(tmp_path / "r")])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert SCRIPTS[script] in proc.stdout
    stem, figure = OUTPUTS[script]
    doc = json.loads((tmp_path / "r" / f"{stem}.json").read_text())
    assert doc["benchmark"] == script.removesuffix(".py")
    assert doc["config"]["smoke"] is True
    assert {"cpu_count", "cpu_model", "python", "libraries"} <= set(doc["machine"])
    md = (tmp_path / "r" / f"{stem}.md").read_text()
    assert md.startswith("# ")
    if figure and HAS_MATPLOTLIB:
        assert (tmp_path / "r" / f"{stem}.png").stat().st_size > 0
        assert f"({stem}.png)" in md
    assert snapshot() == before


def test_out_may_name_the_json_file(tmp_path):
    proc = run([str(BENCH / "bench_core.py"), "--smoke", "--no-progress",
                "--out", str(tmp_path / "x" / "mine.json")])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["mine.json", "mine.md"]


def test_cli_bench_passes_arguments_and_writes_nothing(tmp_path):
    before = snapshot()
    proc = run(["-m", "secagg", "bench", "--smoke", "--no-progress"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "bench_core:" in proc.stdout and SCRIPTS["bench_core.py"] in proc.stdout
    assert snapshot() == before
    assert list(tmp_path.iterdir()) == []


def test_smoke_is_needed_for_small_keys():
    proc = run([str(BENCH / "bench_core.py"), "--key-bits", "512", "--no-progress"])
    assert proc.returncode == 2 and "--key-bits" in proc.stderr


# -- common.py ----------------------------------------------------------------------------


def test_markdown_table_aligns_columns():
    table = common.markdown_table(["name", "rate", "x"], [["a", "1,000", "2x"], ["bbb", "5", "10x"]])
    assert table.splitlines() == [
        "| name |  rate |   x |",
        "|------|------:|----:|",
        "| a    | 1,000 |  2x |",
        "| bbb  |     5 | 10x |",
    ]
    two_left = common.markdown_table(["k", "v", "n"], [["1", "a", "3"]], left=2).splitlines()
    assert two_left[1] == "|---|---|--:|" and two_left[2] == "| 1 | a | 3 |"
    assert common.markdown_table(["only"], []).splitlines() == ["| only |", "|------|"]


def test_median_time_pauses_gc_and_keeps_samples():
    calls = []
    ticks = []

    def fn():
        calls.append(gc.isenabled())
        return len(calls)

    assert gc.isenabled()
    t = common.median_time(fn, 5, tick=lambda: ticks.append(1))
    assert calls == [False] * 5 and len(ticks) == 5
    assert gc.isenabled()
    assert len(t.samples_s) == 5 and all(s >= 0 for s in t.samples_s)
    assert t.median_s == statistics.median(t.samples_s)
    assert t.result == 5
    elapsed, out = common.timed(lambda: "x")
    assert out == "x" and elapsed >= 0
    with pytest.raises(ValueError):
        common.median_time(fn, 0)


def test_timed_restores_gc_after_an_error():
    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        common.timed(boom)
    assert gc.isenabled()


def test_write_results_only_with_out(tmp_path, capsys):
    doc = {"benchmark": "demo", "value": float("nan"), "n": np.int64(3), "shape": (2, 3),
           "ok": np.bool_(True), "x": np.float32(0.5)}
    assert common.write_results(None, "demo", doc, ["# demo", ""]) == []
    assert list(tmp_path.iterdir()) == []

    figures = []

    def plot(path: Path) -> Path:
        figures.append(path)
        path.write_bytes(b"png")
        return path

    written = common.write_results(tmp_path / "out", "demo", doc, ["# demo", ""], plot=plot,
                                   figure_alt="a figure")
    assert [p.name for p in written] == ["demo.json", "demo.md", "demo.png"]
    assert figures == [tmp_path / "out" / "demo.png"]
    assert json.loads((tmp_path / "out" / "demo.json").read_text()) == {
        "benchmark": "demo", "value": None, "n": 3, "shape": [2, 3], "ok": True, "x": 0.5}
    assert (tmp_path / "out" / "demo.md").read_text() == "# demo\n\n![a figure](demo.png)\n"
    common.report_written(1.0, written)
    assert "wrote" in capsys.readouterr().out

    assert common.output_path(tmp_path / "f.json", "demo") == tmp_path / "f.json"
    assert common.output_path(tmp_path, "demo") == tmp_path / "demo.json"
    common.report_written(1.0, [])
    assert "no files written" in capsys.readouterr().out


def test_jsonable_dataclasses_and_as_dict():
    @dataclass
    class A:
        x: float
        y: tuple

    class B:
        def as_dict(self):
            return {"b": np.float64(math.inf)}

    assert common.jsonable({"a": A(1.5, (1, 2)), 3: B()}) == {"a": {"x": 1.5, "y": [1, 2]},
                                                             "3": {"b": None}}


def test_result_doc_and_markdown_lines():
    r = common.Run()
    wall = r.finish()
    assert wall >= 0 and r.wall_s == wall
    doc = common.result_doc("demo", {"values": 3}, r, extra=1)
    assert doc["benchmark"] == "demo" and doc["statistic"] == "median" and doc["extra"] == 1
    assert doc["machine"] is r.info and doc["wall_s"] == wall
    lines = common.markdown_lines("demo", doc, ("numpy",), ["| t |", "block"], ["a note"])
    assert lines[0] == "# demo" and lines[1] == ""
    assert "secagg" in lines[2] and "numpy" in lines[2] and "wall time" in lines[2]
    assert lines[4:] == ["| t |", "", "block", "", "- a note", ""]


def test_machine_info():
    info = common.machine_info()
    assert info["cpu_count"] == os.cpu_count()
    assert info["python"].count(".") == 2
    libs = info["libraries"]
    assert libs["numpy"] == np.__version__ and libs["secagg"]
    if hasattr(os, "getloadavg"):
        assert len(info["loadavg_start"]) == 3


def test_formats():
    assert common.fmt_rate(123456.7) == "123,457" and common.fmt_rate(12.34) == "12.3"
    assert common.fmt_rate(None) == "-"
    assert common.fmt_ratio(1234) == "1,234x" and common.fmt_ratio(12.34) == "12.3x"
    assert common.fmt_ratio(0.5) == "0.5x" and common.fmt_ratio(0.5, floor=0.1) == "0.50x"
    assert common.fmt_ratio(None) == "-" and common.fmt_ratio(float("nan")) == "-"
    assert common.fmt_seconds(7200) == "2.0 h" and common.fmt_seconds(90) == "1.5 min"
    assert common.fmt_seconds(1.234) == "1.23 s" and common.fmt_seconds(0.0045) == "4.5 ms"
    assert common.fmt_bytes(2_500_000) == "2.5 MB" and common.fmt_bytes(3 << 20, binary=True) == "3.0 MiB"
    assert common.fmt_bytes(12) == "12 B" and common.fmt_share(0.25) == "25%"


def test_arguments_smoke_quick_full_and_explicit():
    full, quick, smoke = {"values": 100, "clients": 10}, {"values": 10, "clients": 4}, \
        {"values": 2, "clients": 2}

    def parse(*argv: str) -> argparse.Namespace:
        p = common.parser("demo\n\nmore", "quick help")
        p.add_argument("--values", type=int)
        p.add_argument("--clients", type=int)
        return common.apply_defaults(p.parse_args(argv), full, quick, smoke)

    a = parse()
    assert (a.values, a.clients, a.out, a.seed, a.no_progress) == (100, 10, None, 0, False)
    assert (parse("--quick").values, parse("--smoke").values) == (10, 2)
    assert parse("--smoke", "--values", "7").values == 7
    assert parse("--out", "d").out == Path("d")


def test_progress_without_a_bar():
    bar = common.progress(3, "x", enabled=False)
    bar.set_postfix_str("phase")
    bar.update()
    bar.close()


def test_workload():
    shapes = common.model_shapes(100_000)
    assert shapes[0] == ("fc1.weight", (114, 784))
    assert sum(math.prod(s) for _, s in shapes) == 100_000
    assert common.model_shapes(200) == [("weights", (200,))]
    trees = common.make_client_trees(shapes, 2, seed=0)
    assert all(abs(v).max() <= common.CLIP for t in trees for v in t.values())
    ref = common.exact_mean(trees)
    assert common.max_abs_error(ref, ref) == 0.0
    assert common.paillier_options(2048) == {"key_bits": 2048}
    assert common.paillier_options(512) == {"key_bits": 512, "insecure": True}
