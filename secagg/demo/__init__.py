"""The federated demo behind ``python -m secagg demo`` and ``make demo``.

It uses the library only through its public API (``secagg.generate``,
``PublicContext``, ``Aggregator``, ``secagg.nn``, ``secagg.dp``) and needs the
``demo`` extra (torch, scikit-learn, matplotlib, tqdm, dp-accounting).
:func:`require_demo` checks for them before anything slow runs; importing this
package alone needs none of them.
"""

from __future__ import annotations

from secagg._extras import require

__all__ = ["PURPOSE", "require_demo"]

PURPOSE = "the demo"


def require_demo(*, dp: bool = False, progress: bool = True, plot: bool = True) -> None:
    """Import every package a demo run will need, or raise an error naming the extra.

    Args:
        dp: the run uses distributed DP (needs dp-accounting for epsilon).
        progress: the run shows progress bars (needs tqdm).
        plot: the run writes a plot (needs matplotlib).

    Raises:
        ConfigError: ``the demo needs torch (pip install "secagg[demo]")`` and the
            like, for the first missing package.
    """
    modules = ["torch", "sklearn"]
    if plot:
        modules.append("matplotlib")
    if progress:
        modules.append("tqdm")
    if dp:
        modules.append("dp_accounting")
    for module in modules:
        require(module, "demo", purpose=PURPOSE)
