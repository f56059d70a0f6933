"""``benchmarks/bench_masks.py`` runs at its ``--smoke`` size and writes files only with ``--out``.

The smoke run is tiny (three clients of 200 values against Flower's SecAgg+ in
process, five for secagg alone, no Ray simulation); no figure is asserted on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("secagg.masking")

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SCRIPT = BENCH / "bench_masks.py"
HEADER = "| workload | system "
HAS_FLOWER = importlib.util.find_spec("flwr") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def snapshot() -> dict[str, tuple[str, int]]:
    """Every file under benchmarks/ (no bytecode): its SHA-256 and mtime."""
    out = {}
    for path in sorted(BENCH.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out[str(path.relative_to(BENCH))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                 path.stat().st_mtime_ns)
    return out


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg", "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def check_output(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert HEADER in proc.stdout
    assert "secagg masking" in proc.stdout
    assert "Targets:" in proc.stdout
    if HAS_FLOWER:
        assert "Flower SecAgg+ (in-process)" in proc.stdout
        assert "Flower SecAgg+ (model from its primitives)" in proc.stdout
    assert "secagg problems seen" not in proc.stdout


def test_smoke_runs_and_writes_nothing_without_out(tmp_path):
    before = snapshot()
    proc = run(["--smoke", "--no-progress"], cwd=tmp_path)
    check_output(proc)
    assert "no files written" in proc.stdout
    assert snapshot() == before  # benchmarks/results (and the rest of benchmarks/) untouched
    assert list(tmp_path.iterdir()) == []  # nor the working directory


def test_smoke_writes_json_markdown_and_figure_with_out(tmp_path):
    before = snapshot()
    proc = run(["--smoke", "--no-progress", "--out", str(tmp_path / "r")], cwd=tmp_path)
    check_output(proc)
    doc = json.loads((tmp_path / "r" / "masks.json").read_text())
    assert doc["benchmark"] == "bench_masks"
    assert doc["config"]["smoke"] is True
    assert {"cpu_count", "cpu_model", "python", "libraries"} <= set(doc["machine"])
    assert set(doc["cells"]["a"]) >= {"secagg"} and "b" in doc["cells"]
    assert all(t["status"] in {"PASS", "MISS", "SKIP", "INFO"} for t in doc["targets"])
    assert doc["secagg_problems"] == []
    md = (tmp_path / "r" / "masks.md").read_text()
    assert md.startswith("# bench_masks") and HEADER in md
    if HAS_MATPLOTLIB:
        assert (tmp_path / "r" / "masks.png").stat().st_size > 0
        assert "(masks.png)" in md
    assert snapshot() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
