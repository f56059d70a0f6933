"""Who masks with whom: the complete graph (SecAgg) or a k-regular graph (SecAgg+).

``neighbors=None`` is Bonawitz et al.'s protocol: every client masks with, and
shares its secrets among, all others. ``neighbors=k`` is Bell et al.'s SecAgg+
("Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS
2020): each client only talks to its ``k`` neighbours, so its work and traffic
are O(k) instead of O(n), and a secret is shared among ``k + 1`` holders (the
neighbours and the client itself), with the threshold ``t`` applying per
neighbourhood.

**Which graph.** A Harary graph ``H_{k,n}`` (the circulant graph joining each
position of a cycle to the ``k // 2`` nearest positions on either side, plus the
antipodal position when ``k`` is odd) laid on a uniformly random ordering of the
clients. The ordering comes from a 32-byte seed that the server draws from the
OS CSPRNG and publishes in the round configuration; every client recomputes the
graph from it, so the server cannot show different clients different graphs.
Why this graph rather than Bell et al.'s Erdős–Rényi graph:

* it is exactly ``k``-regular, so every secret has exactly ``k + 1`` holders and
  ``t > (k + 1) / 2`` is one rule for everyone (an Erdős–Rényi graph has
  degrees that vary by ``O(sqrt(k log n))``);
* it is ``k``-connected, and after a random relabelling the neighbourhood of any
  one client is a uniformly random ``k``-subset of the others, so the per-client
  bounds below are exact hypergeometric tails, the same kind of bound Bell et al.
  use (they use binomial tails);
* the honest survivors stay connected unless two runs of ``k / 2`` consecutive
  positions are all corrupt or dropped, which has a closed-form bound.

A server that chose the seed adversarially (rather than at random) could place
clients it controls around a target; against such a server, combined with
corrupt clients, the seed should come from a joint coin toss, which is not
implemented (see SECURITY in :mod:`secagg.masking`).

**Default degree for n = 1000 and 10 % dropout.** :func:`recommended_degree`
finds the smallest even ``k`` (with a ``t > (k + 1) / 2``) for which, with ``γ n``
clients colluding with the server and ``δ n`` dropping (both chosen before the
seed is drawn), and union bounds over all clients:

* privacy: no honest client has ``≥ t`` corrupt neighbours (they could rebuild
  both its secrets), probability ``≥ 1 - 2**-σ``;
* correctness: every client keeps ``≥ t`` live holders, probability ``≥ 1 - 2**-η``;
* no partial sums: the honest live clients stay connected, probability ``≥ 1 - 2**-σ``,

with ``σ = 40`` and ``η = 30`` (the statistical security and correctness
parameters in which Bell et al. state their bounds; these values are our
choice). For ``n = 1000``, ``δ = 0.1`` (the numbers are ``log2`` of the failure
probabilities):

=========  =====  =====  ========  ===========  ============
``γ``      ``k``  ``t``  privacy   correctness  connectivity
=========  =====  =====  ========  ===========  ============
0          48     25     (none)    -31.5        -158.6
0.01       48     25     (none)    -31.5        -149.8
**0.05**   **48** **25** -64.2     -31.5        -123.0
0.10       52     28     -42.5     -31.6        -110.4
0.20       74     45     -40.0     -32.0        -119.8
1/3        114    78     -41.4     -30.6        -132.7
=========  =====  =====  ========  ===========  ============

So ``neighbors=48, threshold=25`` (each client talks to 4.8 % of the clients)
serves 1000 clients with 10 % dropout and up to 5 % (50) colluding clients;
``k = 44`` already meets the privacy target there but fails correctness
(``2**-28``). Bell et al.'s own parameters are of the same order: their abstract
quotes about 3 % of 10**4 clients for 5 % corruption and 5 % dropout in their
stronger, semi-malicious setting.

This analysis is for a server that follows the protocol (Bell et al.'s
semi-honest setting) and dropouts that do not depend on the graph. Against a
server that also deviates, ``c`` colluding holders of one client need
``t > (k + 1 + c) / 2`` (see SECURITY in :mod:`secagg.masking`), and keeping
correctness at ``2**-30`` with 10 % dropout then takes a larger degree:
``k = 58, t = 33`` for ``c = 5``, ``k = 66, t = 39`` for ``c = 10``
(:func:`graph_bounds`).
"""

from __future__ import annotations

import hashlib
import math
from functools import cached_property

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import ConfigError

__all__ = ["Graph", "graph_bounds", "recommended_degree"]


class Graph:
    """The communication graph of one round: complete (``k=None``) or Harary on a seeded order."""

    def __init__(self, n: int, k: int | None, seed: bytes) -> None:
        self.n = n
        self.k = None if k is None or k >= n - 1 else k
        self.seed = seed
        if self.k is not None and self.k % 2 and n % 2:
            raise ConfigError(f"no {k}-regular graph on {n} clients exists (n * k must be even).")

    @cached_property
    def order(self) -> np.ndarray:
        """``order[p]`` is the client at cycle position ``p`` (a permutation from the seed)."""
        key = hashlib.sha256(b"secagg/masking/v1|graph-order|" + self.seed).digest()
        enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        words = np.frombuffer(enc.update(bytes(8 * self.n)), dtype="<u8")
        return np.argsort(words, kind="stable")

    @cached_property
    def _position(self) -> np.ndarray:
        pos = np.empty(self.n, dtype=np.int64)
        pos[self.order] = np.arange(self.n)
        return pos

    @cached_property
    def _offsets(self) -> np.ndarray:
        half = (self.k or 0) // 2
        extra = [self.n // 2] if self.k is not None and self.k % 2 else []
        return np.array([*range(1, half + 1), *range(-half, 0), *extra], dtype=np.int64)

    def neighbours(self, i: int) -> frozenset[int]:
        """The clients ``i`` masks with and shares among (never ``i`` itself); cached per client."""
        cache: dict[int, frozenset[int]] = self.__dict__.setdefault("_cache", {})
        found = cache.get(i)
        if found is None:
            if self.k is None:
                found = frozenset(range(self.n)) - {i}
            else:
                p = int(self._position[i])
                found = frozenset(self.order[(p + self._offsets) % self.n].tolist())
            cache[i] = found
        return found

    @property
    def holders(self) -> int:
        """How many parties hold shares of one client's secrets (its neighbours and itself)."""
        return self.n if self.k is None else self.k + 1


def _log_hyp_pmf(pop: int, succ: int, draws: int, i: int) -> float:
    def lc(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    return lc(succ, i) + lc(pop - succ, draws - i) - lc(pop, draws)


def _log2_tail(pop: int, succ: int, draws: int, at_least: int) -> float:
    """``log2 P[X >= at_least]`` for ``X ~ Hypergeometric(pop, succ, draws)``."""
    lo, hi = max(at_least, 0, draws - (pop - succ)), min(succ, draws)
    if lo > hi:
        return -math.inf
    logs = [_log_hyp_pmf(pop, succ, draws, i) for i in range(lo, hi + 1)]
    top = max(logs)
    return (top + math.log(sum(math.exp(x - top) for x in logs))) / math.log(2)


def graph_bounds(n: int, k: int, t: int, *, dropout: float, corrupt: float) -> dict[str, float]:
    """``log2`` of the three failure probabilities of :mod:`secagg.masking.graph`'s analysis.

    Returns ``{"privacy", "correctness", "connectivity"}``: union bounds over all
    ``n`` clients for a Harary graph of degree ``k`` on a random order, with
    ``floor(corrupt * n)`` corrupt and ``floor(dropout * n)`` dropped clients.
    """
    c, d = math.floor(corrupt * n), math.floor(dropout * n)
    log2n = math.log2(n)
    privacy = log2n + _log2_tail(n - 1, c, k, t)
    # a dropped client's key is rebuilt from its k neighbours, at most d - 1 of them dropped
    correctness = log2n + _log2_tail(n - 1, d, k, k - t + 1)
    removed, run = c + d, 2 * (k // 2)
    if removed < run:
        connectivity = -math.inf
    else:  # two disjoint windows of k/2 positions all removed: <= n^2/2 * C(R, k)/C(n, k)
        connectivity = (2 * log2n - 1 + (_log_comb(removed, run) - _log_comb(n, run)) / math.log(2))
    return {"privacy": privacy, "correctness": correctness, "connectivity": connectivity}


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def recommended_degree(n: int, *, dropout: float = 0.1, corrupt: float = 0.05,
                       sigma: float = 40, eta: float = 30) -> tuple[int, int]:
    """The smallest even degree ``k`` and a threshold ``t`` meeting the targets ``2**-sigma``, ``2**-eta``.

    Returns ``(k, t)`` with ``(k + 1) / 2 < t <= k + 1``; ``k = n - 1`` (the complete
    graph) when no smaller degree does. Example: ``recommended_degree(1000) == (48, 25)``.
    """
    if not 0 <= dropout < 1 or not 0 <= corrupt < 0.5:
        raise ConfigError("dropout must be in [0, 1) and corrupt in [0, 0.5).")
    for k in range(2, n - 1, 2):
        for t in range(k // 2 + 1, k + 2):
            b = graph_bounds(n, k, t, dropout=dropout, corrupt=corrupt)
            if b["correctness"] > -eta:
                break  # larger t only makes correctness worse
            if b["privacy"] <= -sigma and b["connectivity"] <= -sigma:
                return k, t
    return n - 1, n // 2 + 1
