"""The README's quickstart runs as written; the example script runs."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # tests/core/ -> the repository root


def test_readme_quickstart_runs(capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    np.testing.assert_allclose(scope["mean"]["w"], 0.2, atol=2**-17)
    assert np.all(scope["mean"]["b"] == 0)


def test_quickstart_example_runs(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["quickstart.py", "ckks"])
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    assert "ckks" in capsys.readouterr().out
