"""Federated learning on digits with plaintext, Paillier, CKKS and BFV aggregation, side by side.

Ten clients hold a non-IID (Dirichlet alpha=0.5) share of scikit-learn's bundled
digits data; every round each trains a small MLP locally and sends its model
delta, weighted by its sample count. The same seeds drive every backend, so the
secure runs differ from the plaintext one only by secagg's fixed-point codec
(2**-17 per value and round).

    python examples/fedavg_digits.py                     # 30 rounds, every backend
    python examples/fedavg_digits.py --mode fedsgd       # one gradient per client and round
    python examples/fedavg_digits.py --dp                # distributed DP; prints what ε means
    python examples/fedavg_digits.py --personalize       # local heads, securely averaged body
    python examples/fedavg_digits.py --rounds 5 --backends plain,ckks --out /tmp/fl

Writes OUT/NAME.png (an accuracy panel and a cost panel: crypto seconds and bytes
per client per round) and OUT/NAME.json (records, per-client results and
metadata), NAME being the run's mode and options: fedavg_digits for the default
run, fedavg_digits_fedsgd, fedavg_digits_dp, fedavg_digits_fedsgd_dp,
fedavg_digits_unweighted, fedavg_digits_personalize, fedavg_digits_rounds5_plain-ckks, ...
Same as ``python -m secagg demo``; needs ``pip install "secagg[demo]"``.
"""

from __future__ import annotations

import sys

from secagg.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
