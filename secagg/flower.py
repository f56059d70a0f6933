"""``secagg.flower``: the name existing code imports for :mod:`secagg.integrations.flower`."""

import sys
from typing import TYPE_CHECKING

from secagg.integrations import flower as _flower_integration

if TYPE_CHECKING:  # what type checkers see: the same names (at run time the module itself)
    from secagg.integrations.flower import *  # noqa: F403
    from secagg.integrations.flower import __getattr__ as __getattr__  # SecAggFedAvg, built lazily

sys.modules[__name__] = _flower_integration
