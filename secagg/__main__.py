"""``python -m secagg``: see :mod:`secagg.cli`."""

from __future__ import annotations

import sys

from secagg.cli import main

if __name__ == "__main__":
    sys.exit(main())
