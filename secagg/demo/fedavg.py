"""A small federated-learning simulation: FedAvg and FedSGD on scikit-learn's digits.

The engine trains the same torch MLP (64 -> 32 tanh -> 10) side by side with
plaintext aggregation and with secure aggregation through secagg's public API
only (:func:`secagg.generate`, ``PublicContext.encrypt``, :class:`secagg.Aggregator`,
``SecretContext.decrypt``), from the same seeds, so that any difference in the
final model comes from the fixed-point codec alone::

    from secagg.demo import fedavg
    results = fedavg.run_experiment(backends=("plain", "paillier", "ckks", "bfv"), rounds=30)
    print(fedavg.format_table(results))
    fedavg.plot_accuracy(results, "results/fedavg_digits.png")

Protocol per round (``mode="fedavg"``): every client starts from the global
model, trains ``local_epochs`` epochs of minibatch SGD on its own data and
sends its model delta ``local - global`` (a dict name -> tensor); the server
adds the mean delta (sample-weighted if ``weighted``) to the global model.
With ``mode="fedsgd"`` every client sends the gradient of one full-batch step
at the global model and the server applies the mean gradient with an SGD step.

Secure aggregation: the key holder calls ``secagg.generate`` once per run; each
client encrypts its update with ``weight`` = its number of samples (weighted)
or 1; the untrusted aggregator sums the bytes; the key holder decrypts only the
sum, with ``reduce="weighted_mean"`` or ``"mean"``.

Codec parameters (``clip=1.0, frac_bits=16``): measured in plaintext on this
task (10 clients, Dirichlet alpha 0.5, seed 0, 30 rounds), the largest
``|delta|`` of any parameter of any client in any round is 0.26 for FedAvg
(``lr=0.1``, 2 local epochs, batch 32) and the largest FedSGD gradient value is
0.41, so ``clip=1.0`` leaves a margin of more than 2x and nothing is clipped.
Every record carries ``max_abs_update`` and ``clipped`` so that other settings
can be checked. Unclipped, the secure mean update is within ``2**-17`` per
value of the exact float64 mean (nearest rounding), plus float32 rounding; the
record's ``agg_error`` shows it.

Requires torch, scikit-learn (its bundled digits data set, no download), tqdm
(progress bars) and matplotlib (plots); the rest of secagg does not.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

import secagg
from secagg.dp import DistributedDP
from secagg.integrations import torch as snn

__all__ = [
    "BACKENDS",
    "FLConfig",
    "Dataset",
    "RunResult",
    "MLP",
    "load_digits_data",
    "dirichlet_split",
    "run_federated",
    "run_experiment",
    "format_table",
    "print_table",
    "plot_accuracy",
    "save_json",
    "config_dict",
    "plot_title",
    "max_param_diff",
]

BACKENDS = ("plain", *secagg.schemes.available())  # plaintext, then every registered scheme
DEFAULT_LR = {"fedavg": 0.1, "fedsgd": 1.0}
Mode = Literal["fedavg", "fedsgd"]
Tree = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FLConfig:
    """Everything that defines one federated run (shared by every backend).

    Attributes:
        rounds: communication rounds.
        clients: number of clients K (also secagg's ``max_clients``).
        alpha: Dirichlet concentration of the label split (small = more non-IID).
        mode: ``"fedavg"`` (clients send model deltas) or ``"fedsgd"`` (clients
            send one full-batch gradient).
        weighted: weight each client by its sample count (else plain mean).
        local_epochs: FedAvg local epochs E.
        batch_size: FedAvg local minibatch size.
        lr: client SGD learning rate (FedAvg) or server SGD learning rate (FedSGD);
            ``None`` picks 0.1 for FedAvg and 1.0 for FedSGD.
        hidden: hidden units of the MLP.
        seed: seeds the split, the initial model and every client's shuffling.
        test_fraction: share of the data held out for testing.
        max_train: use only this many (seeded, random) training samples; ``None``
            for all of them (for quick tests).
        min_client_samples: every client gets at least this many samples.
        clip: secagg codec clip (values saturate at ``±clip``).
        frac_bits: secagg codec fractional bits.
        key_bits: Paillier modulus size.
        insecure: allow Paillier keys below 2048 bits (tests only).
        dp: distributed differential privacy on the secure backends: each client
            clips its whole update to L2 norm ``dp_l2_clip`` and adds discrete
            Gaussian noise (:class:`secagg.dp.DistributedDP`, calibrated to all
            ``clients`` reporting). Implies the unweighted mean: a sample-count
            weight would multiply the sensitivity. The plain backend stays
            noiseless, so the table shows DP's accuracy cost.
        dp_l2_clip: L2 clipping norm of one client's update under DP.
        dp_noise_multiplier: total noise std, in units of ``dp_l2_clip``.
        dp_delta: the ``delta`` at which epsilon is reported.
    """

    rounds: int = 30
    clients: int = 10
    alpha: float = 0.5
    mode: Mode = "fedavg"
    weighted: bool = True
    local_epochs: int = 2
    batch_size: int = 32
    lr: float | None = None
    hidden: int = 32
    seed: int = 0
    test_fraction: float = 0.2
    max_train: int | None = None
    min_client_samples: int = 10
    clip: float = 1.0
    frac_bits: int = 16
    key_bits: int = 2048
    insecure: bool = False
    dp: bool = False
    dp_l2_clip: float = 0.5
    dp_noise_multiplier: float = 1.0
    dp_delta: float = 1e-5

    @property
    def learning_rate(self) -> float:
        """``lr``, or the mode's default (:data:`DEFAULT_LR`) where it is ``None``."""
        return DEFAULT_LR.get(self.mode, 0.1) if self.lr is None else self.lr

    def __post_init__(self) -> None:
        if self.dp and self.weighted:
            object.__setattr__(self, "weighted", False)
        if self.lr is None:
            object.__setattr__(self, "lr", self.learning_rate)
        _check_int("rounds", self.rounds, 1)
        _check_int("seed", self.seed, 0)
        _check_int("clients", self.clients, 2)
        _check_int("local_epochs", self.local_epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("hidden", self.hidden, 1)
        _check_int("min_client_samples", self.min_client_samples, 1)
        if self.max_train is not None:
            _check_int("max_train", self.max_train, self.clients * self.min_client_samples)
        if self.mode not in ("fedavg", "fedsgd"):
            raise ValueError(f"mode must be 'fedavg' or 'fedsgd'. Found {self.mode!r}.")
        for name in ("alpha", "lr", "dp_l2_clip", "dp_noise_multiplier", "dp_delta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number. Found {value!r}.")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1). Found {self.test_fraction!r}.")


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}. Found {value!r}.")


# -- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Standardized digits features and labels, split into train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(
    *, seed: int = 0, test_fraction: float = 0.2, max_train: int | None = None
) -> Dataset:
    """Load scikit-learn's bundled 8x8 digits (1797 samples, 64 features, 10 classes).

    Features are standardized with the training set's mean and standard
    deviation (constant pixels keep a divisor of 1).

    Args:
        seed: seeds the train/test permutation (and the ``max_train`` subset).
        test_fraction: share of samples held out for testing.
        max_train: keep only the first ``max_train`` samples of the shuffled
            training set; the test set is unchanged.

    Returns:
        A :class:`Dataset` of float32 features and int64 labels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    if max_train is not None:
        train = train[:max_train]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    return Dataset(
        torch.from_numpy(x[train].astype(np.float32)),
        torch.from_numpy(y[train]),
        torch.from_numpy(x[test].astype(np.float32)),
        torch.from_numpy(y[test]),
    )


def dirichlet_split(
    labels: np.ndarray,
    clients: int,
    alpha: float,
    *,
    rng: np.random.Generator,
    min_samples: int = 10,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Split sample indices over clients with label shares drawn from Dirichlet(alpha).

    For every class, the proportions of its samples that go to each client are
    drawn from ``Dirichlet(alpha * ones(clients))``; small ``alpha`` gives each
    client few dominant labels. Draws are repeated until every client holds at
    least ``min_samples`` samples (rejection sampling, so the label skew is not
    distorted by moving samples around).

    Args:
        labels: integer label of every sample.
        clients: number of clients.
        alpha: Dirichlet concentration (> 0).
        rng: seeded generator (the split is a function of its state).
        min_samples: smallest client data set accepted.
        max_tries: draws before giving up.

    Returns:
        One sorted index array per client; together they partition ``range(len(labels))``.

    Raises:
        ValueError: if no draw gave every client ``min_samples`` samples.
    """
    labels = np.asarray(labels)
    if clients * min_samples > labels.size:
        raise ValueError(
            f"{labels.size} samples cannot give {clients} clients {min_samples} samples each."
        )
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * idx.size).astype(np.int64)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        split = [np.sort(np.concatenate(p)) for p in parts]
        if min(s.size for s in split) >= min_samples:
            return split
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split in {max_tries} draws gave each of {clients} "
        f"clients {min_samples} samples; raise alpha or lower the number of clients."
    )


# -- model ---------------------------------------------------------------------------


class MLP(nn.Module):
    """A 64 -> hidden -> 10 perceptron with one tanh hidden layer.

    tanh rather than ReLU: with ReLU the gradient jumps wherever a hidden
    unit's input crosses zero, so a ``2**-17`` codec difference in the global
    model can flip a unit on some sample and change the next round's updates
    by orders of magnitude more than the codec error. With tanh each round is a
    smooth map of the global model, and plaintext and secure runs stay within
    a few codec units of each other (see ``tests/demo/test_fedavg.py``).
    """

    def __init__(self, n_in: int = 64, hidden: int = 32, n_out: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of feature vectors."""
        logits: torch.Tensor = self.fc2(torch.tanh(self.fc1(x)))
        return logits


def _params(model: nn.Module) -> Tree:
    return snn.parameters(model)


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (same parts, same seed, any platform)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint64)[0] >> 1)


@contextlib.contextmanager
def _torch_settings() -> Iterator[None]:
    """Deterministic algorithms and one intra-op thread, restored afterwards.

    The model is tiny: a second thread buys nothing, and on a loaded machine
    OpenMP's spinning threads made training about ten times slower.
    """
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def _evaluate(model: nn.Module, data: Dataset) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(data.x_test)
        loss = nn.functional.cross_entropy(logits, data.y_test).item()
        acc = (logits.argmax(dim=1) == data.y_test).double().mean().item()
    return acc, loss


def _local_update(
    global_model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: FLConfig, seed: int
) -> Tree:
    """One client's contribution: a FedAvg model delta or a FedSGD gradient."""
    torch.manual_seed(seed)
    model = MLP(hidden=cfg.hidden)
    model.load_state_dict(global_model.state_dict())
    if cfg.mode == "fedsgd":
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        return {k: g.clone() for k, g in snn.gradients(model).items()}
    before = snn.parameters(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    for _ in range(cfg.local_epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return snn.delta(model, before)


def _plain_mean(updates: Sequence[Tree], weights: Sequence[int]) -> dict[str, np.ndarray]:
    """The exact (float64) weighted mean of the updates."""
    total = float(sum(weights))
    sums = {name: sum(w * u[name].double().numpy() for u, w in zip(updates, weights))
            for name in updates[0]}
    return {name: cast(np.ndarray, s) / total for name, s in sums.items()}


# -- aggregation backends ------------------------------------------------------------


class _Plain:
    """Exact float aggregation: the reference."""

    def __init__(self, num_values: int) -> None:
        self.num_values = num_values

    def aggregate(
        self, updates: Sequence[Tree], weights: Sequence[int], round_id: int
    ) -> tuple[Tree, dict[str, Any]]:
        t0 = time.perf_counter()
        mean = _plain_mean(updates, weights)
        out = {k: torch.from_numpy(v).to(updates[0][k].dtype) for k, v in mean.items()}
        stats = {
            "enc_s": 0.0,
            "agg_s": time.perf_counter() - t0,
            "dec_s": 0.0,
            "bytes_per_client": 4 * self.num_values,  # raw float32 on the wire
            "clipped": 0,
        }
        return out, stats


class _Secure:
    """Secure aggregation through secagg's public API."""

    def __init__(self, scheme: str, cfg: FLConfig, max_weight: int) -> None:
        self.weighted = cfg.weighted
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = dict(
            max_clients=cfg.clients, clip=cfg.clip, frac_bits=cfg.frac_bits, max_weight=max_weight
        )
        kwargs.update(secagg.schemes.get(scheme).accepted(
            {"key_bits": cfg.key_bits, "insecure": cfg.insecure or None}))
        self.dp: DistributedDP | None = None
        if cfg.dp:
            # calibrated to every client reporting; the key holder refuses smaller sums
            self.dp = DistributedDP(cfg.dp_l2_clip, cfg.dp_noise_multiplier, cfg.clients)
            kwargs.update(dp=self.dp, min_clients=cfg.clients)
        # key holder
        self.ctx = secagg.generate(scheme, **kwargs)
        # clients and aggregator receive the public half as bytes
        self.public_bytes = self.ctx.public.to_bytes()
        self.pub = secagg.PublicContext.from_bytes(self.public_bytes, allow_insecure=cfg.insecure)
        self.keygen_s = time.perf_counter() - t0

    def aggregate(
        self, updates: Sequence[Tree], weights: Sequence[int], round_id: int
    ) -> tuple[Tree, dict[str, Any]]:
        enc_s = 0.0
        payloads = []
        clipped = 0
        for update, w in zip(updates, weights):
            t0 = time.perf_counter()
            enc = self.pub.encrypt(update, weight=w, round_id=round_id)
            payloads.append(enc.to_bytes())
            enc_s += time.perf_counter() - t0
            clipped += enc.num_clipped
        t0 = time.perf_counter()
        agg = secagg.Aggregator(self.pub, round_id=round_id)
        for data in payloads:
            agg.add(data)
        total = agg.result().to_bytes()
        agg_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mean = self.ctx.decrypt(total, reduce="weighted_mean" if self.weighted else "mean")
        dec_s = time.perf_counter() - t0
        stats = {
            "enc_s": enc_s,
            "agg_s": agg_s,
            "dec_s": dec_s,
            "bytes_per_client": sum(len(p) for p in payloads) / len(payloads),
            "clipped": clipped,
        }
        return mean, stats


# -- one run -------------------------------------------------------------------------


@dataclass
class RunResult:
    """One backend's run.

    Attributes:
        backend: ``"plain"``, ``"paillier"`` or ``"ckks"``.
        records: one dict per round: ``round``, ``accuracy``, ``loss``, ``enc_s``,
            ``agg_s``, ``dec_s`` (seconds, summed over clients), ``bytes_per_client``,
            ``max_abs_update`` (largest client value sent, to check ``clip``),
            ``clipped`` (values saturated by the codec) and ``agg_error``
            (largest ``|aggregate - exact float64 mean|`` of that round's updates).
        params: the final global model's parameters.
        keygen_s: seconds to make and publish the keys (0 for ``plain``).
        wall_s: seconds for the whole run.
        public_context_bytes: size of the public context sent to every party.
        epsilon: with distributed DP, the run's epsilon at ``cfg.dp_delta``.
    """

    backend: str
    records: list[dict[str, Any]]
    params: Tree = field(repr=False)
    keygen_s: float = 0.0
    wall_s: float = 0.0
    public_context_bytes: int = 0
    epsilon: float | None = None

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last round."""
        return float(self.records[-1]["accuracy"])


def run_federated(
    backend: str,
    cfg: FLConfig,
    *,
    data: Dataset | None = None,
    split: Sequence[np.ndarray] | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``cfg.rounds`` rounds of FedAvg or FedSGD with one aggregation backend.

    Args:
        backend: ``"plain"`` (exact float mean), ``"paillier"`` or ``"ckks"``.
        cfg: the run's configuration.
        data: the data set (default: :func:`load_digits_data` with ``cfg``'s seed).
        split: client index arrays into ``data``'s training set (default:
            :func:`dirichlet_split` seeded by ``cfg.seed``).
        progress: show a tqdm progress bar over rounds.

    Returns:
        A :class:`RunResult` with one record per round.

    Raises:
        ValueError: for an unknown backend or a split with a wrong number of clients.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}. Found {backend!r}.")
    if data is None:
        data = load_digits_data(
            seed=cfg.seed, test_fraction=cfg.test_fraction, max_train=cfg.max_train
        )
    if split is None:
        split = dirichlet_split(
            data.y_train.numpy(), cfg.clients, cfg.alpha,
            rng=np.random.default_rng(cfg.seed), min_samples=cfg.min_client_samples,
        )
    if len(split) != cfg.clients:
        raise ValueError(f"split has {len(split)} clients; the config says {cfg.clients}.")
    sizes = [len(s) for s in split]
    weights = sizes if cfg.weighted else [1] * cfg.clients
    shards = [(data.x_train[torch.from_numpy(s)], data.y_train[torch.from_numpy(s)]) for s in split]

    t_start = time.perf_counter()
    with _torch_settings():
        torch.manual_seed(cfg.seed)
        model = MLP(hidden=cfg.hidden)
        num_values = sum(p.numel() for p in model.parameters())
        agg: _Plain | _Secure
        if backend == "plain":
            agg = _Plain(num_values)
        else:
            agg = _Secure(backend, cfg, max(weights))
        server_opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
        records: list[dict[str, Any]] = []
        rounds: Any = range(cfg.rounds)
        if progress:
            from tqdm.auto import tqdm

            rounds = tqdm(rounds, desc=f"{backend:8s}", unit="round", leave=True)
        for r in rounds:
            updates = [
                _local_update(model, x, y, cfg, _seed(cfg.seed, r, k))
                for k, (x, y) in enumerate(shards)
            ]
            mean, stats = agg.aggregate(updates, weights, r)
            exact = _plain_mean(updates, weights)
            agg_error = max(
                float(np.max(np.abs(mean[k].double().numpy() - exact[k]))) for k in exact
            )
            if cfg.mode == "fedavg":
                snn.apply_delta(model, mean)
            else:
                snn.apply_gradients(model, mean, server_opt)
            acc, loss = _evaluate(model, data)
            max_abs = max(float(u[k].abs().max()) for u in updates for k in u)
            records.append(
                {"round": r + 1, "accuracy": acc, "loss": loss, **stats,
                 "max_abs_update": max_abs, "agg_error": agg_error}
            )
            if progress:
                rounds.set_postfix(acc=f"{acc:.4f}")
    epsilon = None
    if isinstance(agg, _Secure) and agg.dp is not None:
        epsilon = agg.pub.epsilon(cfg.rounds, cfg.dp_delta, dim=num_values,
                                  reporting_clients=cfg.clients)
    return RunResult(
        epsilon=epsilon,
        backend=backend,
        records=records,
        params=_params(model),
        keygen_s=getattr(agg, "keygen_s", 0.0),
        wall_s=time.perf_counter() - t_start,
        public_context_bytes=len(getattr(agg, "public_bytes", b"")),
    )


def run_experiment(
    backends: Sequence[str] = BACKENDS,
    rounds: int = 30,
    clients: int = 10,
    alpha: float = 0.5,
    mode: Mode = "fedavg",
    weighted: bool = True,
    seed: int = 0,
    progress: bool = True,
    key_bits: int = 2048,
    dp: bool = False,
    **options: Any,
) -> dict[str, RunResult]:
    """Run the same federation with several aggregation backends, side by side.

    Every backend sees the same data, split, initial model and client seeds;
    only the aggregation differs.

    Args:
        backends: any of ``"plain"``, ``"paillier"``, ``"ckks"``.
        rounds: communication rounds.
        clients: number of clients.
        alpha: Dirichlet concentration of the label split.
        mode: ``"fedavg"`` or ``"fedsgd"``.
        weighted: weight clients by sample count.
        seed: seeds everything.
        progress: tqdm progress bars over rounds.
        key_bits: Paillier modulus size.
        dp: distributed differential privacy on the secure backends (see :class:`FLConfig`).
        **options: further :class:`FLConfig` fields (``local_epochs``, ``lr``,
            ``clip``, ``frac_bits``, ``max_train``, ``insecure``, ...).

    Returns:
        Backend name -> :class:`RunResult`, in the order of ``backends``.
    """
    backends = list(backends)
    if not backends:
        raise ValueError("give at least one backend.")
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {BACKENDS}.")
    if len(set(backends)) != len(backends):
        raise ValueError(f"backends repeat: {backends}.")
    cfg = FLConfig(rounds=rounds, clients=clients, alpha=alpha, mode=mode, weighted=weighted,
                   seed=seed, key_bits=key_bits, dp=dp, **options)
    data = load_digits_data(seed=cfg.seed, test_fraction=cfg.test_fraction, max_train=cfg.max_train)
    split = dirichlet_split(
        data.y_train.numpy(), cfg.clients, cfg.alpha,
        rng=np.random.default_rng(cfg.seed), min_samples=cfg.min_client_samples,
    )
    return {
        b: run_federated(b, cfg, data=data, split=split, progress=progress) for b in backends
    }


# -- reporting -----------------------------------------------------------------------


def _bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


def max_param_diff(a: Tree, b: Tree) -> float:
    """Largest absolute difference between two models' parameters."""
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def format_table(results: Mapping[str, RunResult]) -> str:
    """A per-round table for each backend and a summary line per backend.

    The summary gives the final test accuracy and, when a ``plain`` run is
    present, ``|acc - plain acc|`` in percentage points and the largest
    difference between the final model's parameters and the plaintext run's.
    The ``plain`` backend's bytes/client are the raw float32 update.
    """
    lines: list[str] = []
    head = (f"{'round':>5} {'acc %':>7} {'loss':>7} {'enc s':>7} {'agg s':>7} {'dec s':>7} "
            f"{'bytes/client':>13}")
    for name, res in results.items():
        lines.append(f"== {name} ==")
        lines.append(head)
        for rec in res.records:
            lines.append(
                f"{rec['round']:>5d} {100 * rec['accuracy']:>7.2f} {rec['loss']:>7.4f} "
                f"{rec['enc_s']:>7.3f} {rec['agg_s']:>7.3f} {rec['dec_s']:>7.3f} "
                f"{_bytes(rec['bytes_per_client']):>13}"
            )
        lines.append("")
    plain = results.get("plain")
    lines.append("summary:")
    for name, res in results.items():
        n = len(res.records)
        per_round = sum(r["enc_s"] + r["agg_s"] + r["dec_s"] for r in res.records) / n
        line = f"  {name:8s} final acc {100 * res.final_accuracy:6.2f} %"
        if plain is not None:
            line += (
                f", |acc - plain| {100 * abs(res.final_accuracy - plain.final_accuracy):.2f} pp"
                f", max |param - plain| {max_param_diff(res.params, plain.params):.1e}"
            )
        line += (
            f", crypto {per_round:.3f} s/round, {_bytes(res.records[-1]['bytes_per_client'])}"
            f"/client/round, max |agg - exact| {max(r['agg_error'] for r in res.records):.1e}, "
            f"clipped {sum(r['clipped'] for r in res.records)}, wall {res.wall_s:.1f} s"
        )
        if res.epsilon is not None:
            line += f", DP epsilon {res.epsilon:.2f}"
        lines.append(line)
    return "\n".join(lines)


def print_table(results: Mapping[str, RunResult]) -> None:
    """Print :func:`format_table` to stdout."""
    print(format_table(results))


def plot_accuracy(results: Mapping[str, RunResult], path: str | Path, *, title: str = "") -> Path:
    """Write a PNG of test accuracy against round, one line per backend.

    Uses matplotlib's Agg canvas directly, so no display and no global backend change.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = ["-", "--", ":", "-."]
    for i, (name, res) in enumerate(results.items()):
        ax.plot(
            [r["round"] for r in res.records],
            [100 * r["accuracy"] for r in res.records],
            styles[i % len(styles)], marker="o", markersize=3, label=name,
        )
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Federated learning on digits: plaintext vs secure aggregation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def save_json(
    results: Mapping[str, RunResult], path: str | Path, *, config: Mapping[str, Any] | None = None
) -> Path:
    """Write the records, summaries and ``config`` of a run as JSON.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = results.get("plain")
    out: dict[str, Any] = {"config": dict(config or {}), "backends": {}}
    for name, res in results.items():
        summary = {
            "final_accuracy": res.final_accuracy,
            "keygen_s": res.keygen_s,
            "wall_s": res.wall_s,
            "public_context_bytes": res.public_context_bytes,
        }
        if plain is not None:
            summary["abs_diff_vs_plain_pp"] = 100 * abs(res.final_accuracy - plain.final_accuracy)
            summary["max_param_diff_vs_plain"] = max_param_diff(res.params, plain.params)
        out["backends"][name] = {"summary": summary, "records": res.records}
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def plot_title(cfg: FLConfig) -> str:
    """A one-line description of a run, for plot titles."""
    return (f"digits, {cfg.mode}, {cfg.clients} clients, Dirichlet alpha={cfg.alpha}"
            f"{', sample-weighted' if cfg.weighted else ''}")


def config_dict(cfg: FLConfig) -> dict[str, Any]:
    """A :class:`FLConfig` as plain data (for JSON output)."""
    return asdict(cfg)
