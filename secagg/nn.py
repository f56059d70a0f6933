"""``secagg.nn``: the name existing code imports for :mod:`secagg.integrations.torch`."""

import sys
from typing import TYPE_CHECKING

from secagg.integrations import torch as _torch_integration

if TYPE_CHECKING:  # what type checkers see: the same names (at run time the module itself)
    from secagg.integrations.torch import *  # noqa: F403

sys.modules[__name__] = _torch_integration
