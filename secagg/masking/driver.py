"""``run_round``: one in-process round between real :class:`MaskingClient` and :class:`MaskingServer` objects.

Every message between them is bytes in secagg's wire format, exactly as a
network transport (the Flower integration) would carry them; the driver only
routes them, simulates dropouts, and measures time and traffic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg._checks import check_int
from secagg.context import RawSum
from secagg.dp import DistributedDP
from secagg.errors import ConfigError
from secagg.masking.protocol import (
    STAGES,
    MaskingClient,
    MaskingConfig,
    MaskingServer,
    Reduce,
    Stage,
    check_weight,
)
from secagg.update import RoundId

__all__ = ["RoundResult", "run_round"]


@dataclass(frozen=True, eq=False)
class RoundResult:
    """The outcome of :func:`run_round`.

    Attributes:
        tree: the aggregate, shaped and typed like the clients' trees (as ``ctx.decrypt``).
        included: sorted indices of the clients whose inputs are in the sum.
        timings: seconds, ``{"server": {stage: s}, "client": {stage: mean s per client},
            "client_max": {stage: slowest client's s}}`` (server stages: ``"setup"`` and
            the four client stages, each with the closing work that follows it).
        bytes: bytes sent, ``{"server": {stage: bytes}, "client": {stage: mean bytes per client}}``.
        raw: the exact integer sums before decoding (``values``, ``weight_sum``, ``count``).
        config: the round's configuration (codec, threshold, graph, DP).
    """

    tree: Any
    included: list[int]
    timings: dict[str, dict[str, float]]
    bytes: dict[str, dict[str, float]]
    raw: RawSum = field(repr=False)
    config: MaskingConfig = field(repr=False)

    @property
    def count(self) -> int:
        """Clients in the sum."""
        return self.raw.count

    def epsilon(self, rounds: int = 1, delta: float = 1e-5, *,
                reporting_clients: int | list[int] | None = None) -> float:
        """Distributed DP's ``epsilon`` (``ConfigError`` without DP).

        Default: ``rounds`` rounds each with this round's count of noised inputs
        (``len(included)``); pass ``reporting_clients`` for others.
        """
        dim = self.raw.values.size
        counts = self.count if reporting_clients is None else reporting_clients
        return self.config.epsilon(rounds, delta, dim=dim, reporting_clients=counts)


def _dropouts(dropouts: Mapping[str, Iterable[int]] | None, n: int) -> dict[Stage, set[int]]:
    out: dict[Stage, set[int]] = {s: set() for s in STAGES}
    if dropouts is None:
        return out
    if not isinstance(dropouts, Mapping):
        raise ConfigError("dropouts must map a stage name to client indices.")
    seen: set[int] = set()
    for stage, members in dropouts.items():
        if stage not in STAGES:
            raise ConfigError(f"dropouts stage must be one of {STAGES}. Found {stage!r:.40}.")
        for i in members:
            idx = check_int(f"dropouts[{stage!r}] index", i, 0, n - 1)
            if idx in seen:
                raise ConfigError(f"client {idx} is listed in more than one dropout stage.")
            seen.add(idx)
            out[stage].add(idx)
    return out


def _signing(signing_keys: bool | Sequence[Ed25519PrivateKey] | None, n: int
             ) -> tuple[list[Ed25519PrivateKey | None], dict[int, Ed25519PublicKey] | None]:
    if signing_keys is None or signing_keys is False:
        return [None] * n, None
    if signing_keys is True:
        keys = [Ed25519PrivateKey.generate() for _ in range(n)]
    else:
        keys = list(signing_keys)
        if len(keys) != n or not all(isinstance(k, Ed25519PrivateKey) for k in keys):
            raise ConfigError(f"signing_keys must be True or {n} Ed25519PrivateKey objects.")
    return list(keys), {i: k.public_key() for i, k in enumerate(keys)}


def run_round(
    trees: Sequence[Any],
    threshold: int,
    neighbors: int | None = None,
    clip: float = 1.0,
    frac_bits: int = 16,
    max_weight: int = 1,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[str, Iterable[int]] | None = None,
    round_id: RoundId = 0,
    reduce: Reduce = "sum",
    *,
    max_clients: int | None = None,
    dp: DistributedDP | None = None,
    signing_keys: bool | Sequence[Ed25519PrivateKey] | None = None,
) -> RoundResult:
    """Run one masked-aggregation round in this process; see :mod:`secagg.masking`.

    Args:
        trees: one tree per client (numpy / torch leaves in dict / list / tuple nestings).
        threshold: ``t``: shares needed to rebuild a secret; refused unless
            ``holders / 2 < t <= holders`` (holders: ``n``, or ``neighbors + 1``).
        neighbors: ``None`` (every client masks with every other: SecAgg) or the
            degree ``k`` of the SecAgg+ graph.
        clip, frac_bits, max_weight: the codec (as in ``secagg.generate``).
        weights: per-client integer weights in ``[1, max_weight]``, masked with the values.
        dropouts: ``{"keys" | "shares" | "masked" | "unmask": client indices}``: the
            clients that vanish before sending that stage's message.
        round_id: the round, bound into every key and message.
        reduce: ``"sum"``, ``"mean"`` or ``"weighted_mean"``.
        max_clients: the codec's ``max_clients`` (default ``len(trees)``).
        dp: distributed DP (``secagg.dp.DistributedDP``), ``dp.min_clients <= threshold``.
        signing_keys: ``True`` (fresh Ed25519 keys, public halves given to every
            client and the server) or one ``Ed25519PrivateKey`` per client: adverts
            are signed and substituted keys refused, and [BIK+17]'s consistency round
            runs before unmasking (clients sign ``U3`` and unmask only with ``threshold``
            signatures on it). ``dropouts["unmask"]`` clients then vanish before
            signing; the round's time and bytes are counted in the ``"unmask"`` stage.

    Raises:
        InsecureThresholdError: the threshold is at most half the holders.
        TooFewSurvivorsError: fewer than ``threshold`` holders remain at some stage.
    """
    n = len(trees)
    config = MaskingConfig.create(n, threshold, neighbors=neighbors, clip=clip, frac_bits=frac_bits,
                                  max_weight=max_weight, max_clients=max_clients, dp=dp,
                                  round_id=round_id)
    gone = _dropouts(dropouts, n)
    if weights is None:
        weights = [1] * n
    if len(weights) != n:
        raise ConfigError(f"weights has {len(weights)} entries for {n} trees.")
    weights = [check_weight(w, config.codec.max_weight) for w in weights]
    sk, pks = _signing(signing_keys, n)
    server_t: dict[str, float] = {}
    server_b: dict[str, float] = {}
    client_t: dict[str, list[float]] = {s: [] for s in STAGES}
    client_b: dict[str, list[int]] = {s: [] for s in STAGES}

    t0 = time.perf_counter()
    server = MaskingServer(config, peer_keys=pks)
    blob = server.config_bytes()
    server_t["setup"] = time.perf_counter() - t0
    server_b["setup"] = float(len(blob) * n)
    clients: dict[int, MaskingClient] = {}
    for i in range(n):
        clients[i] = MaskingClient(blob, i, signing_key=sk[i], peer_keys=pks)

    signing_t: dict[int, float] = {}  # the consistency round, per client: added to "unmask"
    signing_b: dict[int, int] = {}

    def client_step(stage: Stage, i: int, call: Any) -> bytes:
        t = time.perf_counter()
        msg: bytes = call()
        client_t[stage].append(time.perf_counter() - t + signing_t.pop(i, 0.0))
        client_b[stage].append(len(msg) + signing_b.pop(i, 0))
        return msg

    def server_step(stage: str, call: Any) -> Any:
        t = time.perf_counter()
        out = call()
        server_t[stage] = server_t.get(stage, 0.0) + time.perf_counter() - t
        return out

    alive = set(range(n))
    # stage 1: keys
    alive -= gone["keys"]
    for i in sorted(alive):
        msg = client_step("keys", i, clients[i].advertise_keys)
        server_step("keys", lambda m=msg: server.receive(m))
    key_lists: dict[int, bytes] = server_step("keys", server.close_keys)
    server_b["keys"] = float(sum(map(len, key_lists.values())))
    # stage 2: shares
    alive -= gone["shares"]
    for i in sorted(alive):
        msg = client_step("shares", i, lambda c=clients[i], i=i: c.share_keys(key_lists[i]))
        server_step("shares", lambda m=msg: server.receive(m))
    share_lists: dict[int, bytes] = server_step("shares", server.close_shares)
    server_b["shares"] = float(sum(map(len, share_lists.values())))
    # stage 3: masked inputs
    alive -= gone["masked"]
    for i in sorted(alive):
        msg = client_step("masked", i, lambda c=clients[i], i=i: c.masked_input(
            share_lists[i], trees[i], weights[i]))
        server_step("masked", lambda m=msg: server.receive(m))
    requests: dict[int, bytes] = server_step("masked", server.close_masked)
    server_b["masked"] = float(sum(map(len, requests.values())))
    # stage 4: unmasking (with signing keys, first the consistency round: its dropouts are
    # the "unmask" ones, gone before signing U3; its time and bytes count as "unmask")
    alive -= gone["unmask"]
    if pks is not None:
        for i in sorted(alive):
            t = time.perf_counter()
            msg = clients[i].consistency(requests[i])
            signing_t[i], signing_b[i] = time.perf_counter() - t, len(msg)
            server_step("unmask", lambda m=msg: server.receive(m))
        requests = server_step("unmask", server.close_consistency)
        server_b["unmask"] = float(sum(map(len, requests.values())))
    for i in sorted(alive):
        msg = client_step("unmask", i, lambda c=clients[i], i=i: c.unmask(requests[i]))
        server_step("unmask", lambda m=msg: server.receive(m))
    agg = server_step("unmask", lambda: server.finish(reduce))
    server_b.setdefault("unmask", 0.0)

    def mean(xs: Sequence[float]) -> float:
        return float(sum(xs) / len(xs)) if xs else 0.0

    return RoundResult(
        tree=agg.tree,
        included=list(agg.included),
        timings={"server": server_t, "client": {s: mean(v) for s, v in client_t.items()},
                 "client_max": {s: max(v, default=0.0) for s, v in client_t.items()}},
        bytes={"server": server_b, "client": {s: mean(v) for s, v in client_b.items()}},
        raw=agg.raw,
        config=config,
    )
