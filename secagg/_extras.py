"""Optional dependencies: import one, or fail with an error that names the extra to install.

secagg's core needs numpy, phe, gmpy2, TenSEAL, msgpack and cryptography only;
the demo, the torch helpers, DP accounting and the Flower integration need
packages from an extra (``pip install "secagg[demo]"``). :func:`require`
imports such a package and turns its absence into a one-line error::

    require("matplotlib", "demo", purpose="the demo")
    # MissingExtraError: the demo needs matplotlib (pip install "secagg[demo]")

The CLI prints that as ``error: ...`` and exits with status 1, instead of a
``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg.errors import MissingExtraError

__all__ = ["PIP_NAMES", "require", "missing_extra"]

#: import name -> the name pip installs it under, where they differ
PIP_NAMES: dict[str, str] = {
    "sklearn": "scikit-learn",
    "dp_accounting": "dp-accounting",
}


def _pip_name(module: str) -> str:
    top = module.split(".")[0]
    return PIP_NAMES.get(top, top)


def missing_extra(module: str, extra: str, *, purpose: str = "this feature",
                  cause: ImportError | None = None) -> MissingExtraError:
    """The error :func:`require` raises for ``module`` (to raise from an ``except ImportError``).

    Args:
        module: the import name that failed (``"torch"``, ``"sklearn"``).
        extra: the secagg extra that installs it (``"demo"``).
        purpose: what needs it, as the message's subject (``"the demo"``).
        cause: the ``ImportError``; when the module itself was found but failed to
            import (a broken install, a missing shared library), its text is added.
    """
    install = f'pip install "secagg[{extra}]"'
    if cause is not None and not _is_absent(module, cause):
        return MissingExtraError(f"{purpose} needs {_pip_name(module)}, which is installed but failed "
                           f"to import ({cause}); reinstall it ({install})")
    return MissingExtraError(f"{purpose} needs {_pip_name(module)} ({install})")


def _is_absent(module: str, exc: ImportError) -> bool:
    """Whether ``exc`` says that ``module`` (or a package above it) is not installed."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return False
    return module == exc.name or module.startswith(exc.name + ".")


def require(module: str, extra: str, *, purpose: str = "this feature") -> ModuleType:
    """Import ``module``, or raise an error naming the extra that installs it.

    Args:
        module: import name (``"torch"``, ``"sklearn"``, ``"matplotlib"``).
        extra: the secagg extra that provides it (``"demo"``, ``"torch"``, ``"flower"``).
        purpose: what needs it, the message's subject (default ``"this feature"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``"<purpose> needs <package> (pip install "secagg[<extra>]")"``
            if the module is not installed, or a message with the import error's
            text if it is installed but fails to import.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(module, extra, purpose=purpose, cause=exc) from None
