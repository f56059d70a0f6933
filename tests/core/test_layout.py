"""The tests exercise this checkout's secagg, never another copy on the path."""

from __future__ import annotations

import sys
from pathlib import Path

import secagg

ROOT = Path(__file__).resolve().parents[2]  # tests/core/ -> the repository root


def test_every_secagg_module_comes_from_this_checkout():
    # An editable install of another checkout can still answer `import secagg.<name>` for a
    # module this one no longer has (a test importing an old path would test stale code).
    # Every test module is imported at collection, so this sees what all of them imported.
    assert Path(secagg.__file__).resolve() == ROOT / "secagg" / "__init__.py"
    stray = {name: module.__file__ for name, module in list(sys.modules.items())
             if name.split(".")[0] == "secagg" and getattr(module, "__file__", None)
             and not Path(module.__file__).resolve().is_relative_to(ROOT)}
    assert stray == {}
