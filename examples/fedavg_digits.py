"""Federated learning on digits with plaintext, Paillier and CKKS aggregation, side by side.

Ten clients hold a non-IID (Dirichlet alpha=0.5) share of scikit-learn's bundled
digits data; every round each trains a small MLP locally and sends its model
delta, weighted by its sample count. The same seeds drive every backend, so the
secure runs differ from the plaintext one only by secagg's fixed-point codec
(2**-17 per value and round).

    python examples/fedavg_digits.py                     # 30 rounds, all three backends
    python examples/fedavg_digits.py --mode fedsgd       # one gradient per client and round
    python examples/fedavg_digits.py --rounds 5 --backends plain,ckks --out /tmp/fl

Writes OUT/fedavg_digits.png (test accuracy per round) and OUT/fedavg_digits.json.
Same as ``python -m secagg demo``.
"""

from __future__ import annotations

import sys

from secagg.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
