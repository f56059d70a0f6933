"""Privacy accounting for the distributed discrete Gaussian: zCDP per round, (ε, δ) overall.

[KLS21] Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML 2021. Rounds are composed with
``dp_accounting``'s RDP accountant (an optional dependency, ``secagg[demo]``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kls21_tau", "kls21_rho", "compose_zcdp"]

# RDP orders for the accountant: dp_accounting's defaults plus orders close to 1,
# which are the optimal ones when the composed rho is large.
_RDP_ORDERS = tuple([1.0 + k / 100 for k in range(1, 10)] + [1.1 + k / 10 for k in range(99)]
                    + list(range(11, 64)) + [128, 256, 512, 1024, 4096])


def kls21_tau(sigma2: float, n: int) -> float:
    """``tau = 10 sum_{k=1}^{n-1} exp(-2 pi**2 sigma2 k/(k+1))`` [KLS21, Theorem 1]."""
    if n <= 1:
        return 0.0
    # every term is at most exp(-pi**2 sigma2) (k = 1); past ~745 they all underflow
    if math.pi**2 * sigma2 > 800:
        return 0.0
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * sigma2 * k / (k + 1.0))))


def kls21_rho(delta2: float, sigma2: float, n: int, d: int) -> float:
    """zCDP ``rho`` of a sum of ``n`` clients' ``N_Z(0, sigma2)^d`` noise, L2 sensitivity ``delta2``.

    ``rho = 1/2 min(D2²/(n σ²) + 2 τ d, D2²/(n σ²) + 2 τ D1/sqrt(n σ²) + τ² d)`` with
    ``D1 = min(sqrt(d) D2, D2²)`` [KLS21, Theorem 1 / Proposition 14]; see
    :meth:`secagg.dp.DistributedDP.rho` for the derivation.
    """
    tau = kls21_tau(sigma2, n)
    delta1 = min(math.sqrt(d) * delta2, delta2 * delta2)
    l2sq = delta2 * delta2 / (n * sigma2)
    l1 = delta1 / math.sqrt(n * sigma2)
    return 0.5 * min(l2sq + 2.0 * tau * d, l2sq + 2.0 * tau * l1 + tau * tau * d)


def compose_zcdp(rounds: list[tuple[float, int]], delta: float) -> float:
    """``epsilon`` at ``delta`` of rounds given as ``(rho, how many rounds)`` pairs.

    A ``rho``-zCDP round has the RDP curve of a Gaussian mechanism with noise
    multiplier ``1/sqrt(2 rho)``; ``dp_accounting.rdp.RdpAccountant`` composes
    them (add/remove adjacency) and converts to ``(epsilon, delta)``.
    """
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError as exc:  # an optional dependency: only accounting needs it
        raise ImportError(
            "DistributedDP.epsilon needs dp-accounting: pip install dp-accounting==0.6.0"
        ) from exc
    accountant = rdp.RdpAccountant(orders=_RDP_ORDERS)
    for rho, count in sorted(rounds):
        event = dp_accounting.GaussianDpEvent(noise_multiplier=1.0 / math.sqrt(2.0 * rho))
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, count))
    return float(accountant.get_epsilon(float(delta)))
