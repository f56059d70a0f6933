"""A small federated-learning simulation: FedAvg and FedSGD on scikit-learn's digits.

The engine trains the same torch MLP (64 -> 32 tanh -> 10) side by side with
plaintext aggregation and with secure aggregation through secagg's public API
only (:func:`secagg.generate`, ``PublicContext.encrypt``, :class:`secagg.Aggregator`,
``SecretContext.decrypt``), from the same seeds, so that any difference in the
final model comes from the fixed-point codec alone::

    from secagg.demo import fedavg
    results = fedavg.run_experiment(backends=("plain", "paillier", "ckks", "bfv"), rounds=30)
    print(fedavg.format_table(results))
    fedavg.plot_accuracy(results, "results/fedavg_digits.png")   # accuracy and cost panels

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

Personalised FL (``personalize=True``, :func:`run_personalized_experiment`):
the MLP's last layer (:data:`PERSONAL_LAYERS`, ``fc2``) is each client's own
head and never leaves it; only the body (``fc1``) is encrypted, summed and
averaged. Every client trains its model (global body + own head), keeps the
trained head for the next round and sends its body delta (FedAvg) or body
gradient (FedSGD; it steps its head itself). Each client's model is evaluated
on the whole test set and on the test examples of the labels it holds (labels
with at least :data:`HELD_LABEL_SHARE` of its training samples), and compared
with the global model of plain FedAvg (or FedSGD) on the same data.

Outputs are named after the run (:func:`output_stem`): ``fedavg_digits`` for
the default run, ``fedavg_digits_fedsgd``, ``_dp``, ``_unweighted``,
``_personalize`` and a suffix per other non-default option, so runs do not
overwrite each other. The plot (:func:`make_figure`) has an accuracy panel and
a cost panel; the JSON (:func:`save_json`, :func:`run_metadata`) carries the
mode, options, DP ``(epsilon, delta)``, the differences from plaintext and the
file names.

Requires torch, scikit-learn (its bundled digits data set, no download), tqdm
(progress bars) and matplotlib (plots); the rest of secagg does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from secagg._extras import missing_extra, require
from secagg.demo import PURPOSE

try:
    import torch
    from torch import nn
except ImportError as _exc:  # pragma: no cover - the demo extra is installed in the tests
    raise missing_extra("torch", "demo", purpose=PURPOSE, cause=_exc) from None

import secagg
from secagg.dp import DistributedDP
from secagg.integrations import torch as snn

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "BACKENDS",
    "PERSONAL_LAYERS",
    "HELD_LABEL_SHARE",
    "DP_UNWEIGHTED_NOTICE",
    "FLConfig",
    "Dataset",
    "RunResult",
    "MLP",
    "sgd_epochs",
    "accuracy_and_loss",
    "load_mlp",
    "load_digits_data",
    "dirichlet_split",
    "held_labels",
    "run_federated",
    "run_experiment",
    "run_personalized_experiment",
    "format_table",
    "format_client_table",
    "print_table",
    "make_figure",
    "plot_accuracy",
    "save_json",
    "run_metadata",
    "output_stem",
    "config_dict",
    "plot_title",
    "dp_label",
    "epsilon_line",
    "coincidence_note",
    "max_differences",
    "max_param_diff",
    "max_model_diff",
]

BACKENDS = ("plain", *secagg.schemes.available())  # plaintext, then every registered scheme
DEFAULT_LR = {"fedavg": 0.1, "fedsgd": 1.0}
Mode = Literal["fedavg", "fedsgd"]
Tree = dict[str, torch.Tensor]

#: glob patterns of the parameters that stay on each client under ``personalize``: the head
PERSONAL_LAYERS = ("fc2.*",)
#: a client "holds" a label that makes up at least this share of its training samples
HELD_LABEL_SHARE = 0.05
#: printed when DP switches a weighted run to the unweighted mean
DP_UNWEIGHTED_NOTICE = (
    "DP: averaging unweighted (each update weight 1; the noise is calibrated for weight 1)"
)


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
        personalize: personalised FL: the layers in :data:`PERSONAL_LAYERS` (the
            last one) stay on each client, only the others are aggregated.
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
    personalize: bool = False

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
    require("sklearn", "demo", purpose=PURPOSE)
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


def held_labels(labels: np.ndarray, *, share: float = HELD_LABEL_SHARE) -> list[int]:
    """The labels that make up at least ``share`` of ``labels`` (one client's training labels)."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    return [int(v) for v, c in zip(values, counts) if c >= share * labels.size]


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


def _shared(cfg: FLConfig) -> tuple[str, ...] | None:
    """``exclude=`` for secagg.nn: the layers a personalised run keeps local (else nothing)."""
    return PERSONAL_LAYERS if cfg.personalize else None


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


def sgd_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
               batch_size: int, lr: float) -> float:
    """Minibatch SGD on ``(x, y)``, a new order each epoch; returns the last epoch's mean loss.

    The order comes from torch's global generator: seed it first for a run that replays.
    The demo's clients and the Flower examples' ClientApps train with this one loop.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_sum, batches = 0.0, 0
    for _ in range(epochs):
        loss_sum, batches = 0.0, 0
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
    return loss_sum / max(batches, 1)


def accuracy_and_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``."""
    with torch.no_grad():
        logits = model(x)
        loss = float(nn.functional.cross_entropy(logits, y))
        acc = float((logits.argmax(dim=1) == y).double().mean())
    return acc, loss


def load_mlp(state: Mapping[str, Any], hidden: int) -> MLP:
    """The digits :class:`MLP` holding ``state`` (arrays or tensors by parameter name)."""
    model = MLP(hidden=hidden)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=np.float32))
                           for k, v in state.items()})
    return model


def _evaluate(model: nn.Module, data: Dataset) -> tuple[float, float]:
    correct, loss = _predict(model, data)
    return correct.double().mean().item(), loss


def _predict(model: nn.Module, data: Dataset) -> tuple[torch.Tensor, float]:
    """Which test examples ``model`` classifies correctly, and its mean test loss."""
    with torch.no_grad():
        logits = model(data.x_test)
        loss = nn.functional.cross_entropy(logits, data.y_test).item()
        correct = logits.argmax(dim=1) == data.y_test
    return correct, loss


def _share(correct: torch.Tensor, mask: torch.Tensor) -> float:
    return correct[mask].double().mean().item() if bool(mask.any()) else float("nan")


def _local_update(
    state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, cfg: FLConfig, seed: int
) -> tuple[Tree, Tree | None]:
    """One client's contribution (a FedAvg model delta or a FedSGD gradient).

    Under ``cfg.personalize`` the contribution leaves out :data:`PERSONAL_LAYERS`
    (secagg.nn's ``exclude=``), and the client's new head comes back with it
    (``None`` otherwise): after local training (FedAvg) or one SGD step on its
    own gradient (FedSGD).
    """
    torch.manual_seed(seed)
    model = MLP(hidden=cfg.hidden)
    model.load_state_dict(state)
    if cfg.mode == "fedsgd":
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        grads = {k: g.clone() for k, g in snn.gradients(model, exclude=_shared(cfg)).items()}
        if not cfg.personalize:
            return grads, None
        head_grads = snn.gradients(model, include=PERSONAL_LAYERS)
        head = {n: p - cfg.learning_rate * head_grads[n]
                for n, p in snn.parameters(model, include=PERSONAL_LAYERS).items()}
        return grads, head
    before = snn.parameters(model, exclude=_shared(cfg))
    sgd_epochs(model, x, y, epochs=cfg.local_epochs, batch_size=cfg.batch_size,
               lr=cfg.learning_rate)
    new_head = snn.parameters(model, include=PERSONAL_LAYERS) if cfg.personalize else None
    return snn.delta(model, before), new_head


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
        backend: ``"plain"`` or a scheme name (``"paillier"``, ``"ckks"``, ``"bfv"``).
        records: one dict per round: ``round``, ``accuracy``, ``own_accuracy``, ``loss``,
            ``enc_s``, ``agg_s``, ``dec_s`` (seconds, summed over clients),
            ``bytes_per_client``, ``max_abs_update`` (largest client value sent, to
            check ``clip``), ``clipped`` (values saturated by the codec) and
            ``agg_error`` (largest ``|aggregate - exact float64 mean|`` of that
            round's updates). ``accuracy`` and ``loss`` are on the whole test set,
            averaged over the clients' models (for a global model: its own);
            ``own_accuracy`` is the mean over clients of the accuracy on the test
            examples of the labels each client holds (:func:`held_labels`).
        params: the final global model's parameters (under ``personalize``: the
            shared body only).
        keygen_s: seconds to make and publish the keys (0 for ``plain``).
        wall_s: seconds for the whole run.
        public_context_bytes: size of the public context sent to every party.
        epsilon: with distributed DP, the run's epsilon at ``delta``.
        delta: with distributed DP, the ``delta`` of ``epsilon``.
        personalized: whether this is a personalised run (local heads).
        heads: under ``personalize``, every client's final head (``fc2``).
        clients: per client after the last round: ``client``, ``samples``,
            ``labels`` (the labels it holds), ``accuracy`` (its model on the whole
            test set) and ``own_accuracy`` (on the test examples of its labels).
        mode: the run's ``cfg.mode``.
    """

    backend: str
    records: list[dict[str, Any]]
    params: Tree = field(repr=False)
    keygen_s: float = 0.0
    wall_s: float = 0.0
    public_context_bytes: int = 0
    epsilon: float | None = None
    delta: float | None = None
    personalized: bool = False
    heads: list[Tree] | None = field(default=None, repr=False)
    clients: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "fedavg"

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last round (mean over clients' models if personalised)."""
        return float(self.records[-1]["accuracy"])

    @property
    def final_own_accuracy(self) -> float:
        """Mean over clients of the accuracy on their own labels after the last round."""
        return float(self.records[-1]["own_accuracy"])


def _data_and_split(cfg: FLConfig) -> tuple[Dataset, list[np.ndarray]]:
    data = load_digits_data(seed=cfg.seed, test_fraction=cfg.test_fraction, max_train=cfg.max_train)
    split = dirichlet_split(
        data.y_train.numpy(), cfg.clients, cfg.alpha,
        rng=np.random.default_rng(cfg.seed), min_samples=cfg.min_client_samples,
    )
    return data, split


def run_federated(
    backend: str,
    cfg: FLConfig,
    *,
    data: Dataset | None = None,
    split: Sequence[np.ndarray] | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``cfg.rounds`` rounds of FedAvg or FedSGD with one aggregation backend.

    With ``cfg.personalize`` every client keeps its own head (:data:`PERSONAL_LAYERS`)
    and only the rest of the model is aggregated (and encrypted).

    Args:
        backend: ``"plain"`` (exact float mean) or a scheme (``"paillier"``, ``"ckks"``, ...).
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
    if data is None or split is None:
        default_data, default_split = _data_and_split(cfg)
        data = default_data if data is None else data
        split = default_split if split is None else split
    if len(split) != cfg.clients:
        raise ValueError(f"split has {len(split)} clients; the config says {cfg.clients}.")
    sizes = [len(s) for s in split]
    weights = sizes if cfg.weighted else [1] * cfg.clients
    shards = [(data.x_train[torch.from_numpy(s)], data.y_train[torch.from_numpy(s)]) for s in split]
    labels = [held_labels(y.numpy()) for _, y in shards]
    own_masks = [torch.from_numpy(np.isin(data.y_test.numpy(), held)) for held in labels]

    t_start = time.perf_counter()
    with _torch_settings():
        torch.manual_seed(cfg.seed)
        model = MLP(hidden=cfg.hidden)
        heads: list[Tree] | None = None
        if cfg.personalize:
            heads = [snn.parameters(model, include=PERSONAL_LAYERS) for _ in range(cfg.clients)]
            client_model = MLP(hidden=cfg.hidden)  # evaluates global body + one client's head
        sent = snn.parameters(model, exclude=_shared(cfg))  # what clients encrypt
        num_values = sum(t.numel() for t in sent.values())
        agg: _Plain | _Secure
        if backend == "plain":
            agg = _Plain(num_values)
        else:
            agg = _Secure(backend, cfg, max(weights))
        server_opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
        records: list[dict[str, Any]] = []
        rounds: Any = range(cfg.rounds)
        if progress:
            tqdm = require("tqdm.auto", "demo", purpose=PURPOSE).tqdm
            rounds = tqdm(rounds, desc=f"{backend:8s}", unit="round", leave=True)
        for r in rounds:
            updates = []
            for k, (x, y) in enumerate(shards):
                start = model.state_dict() if heads is None else {**model.state_dict(), **heads[k]}
                update, head = _local_update(start, x, y, cfg, _seed(cfg.seed, r, k))
                if heads is not None and head is not None:  # the head stays on the client
                    heads[k] = head
                updates.append(update)
            mean, stats = agg.aggregate(updates, weights, r)
            exact = _plain_mean(updates, weights)
            agg_error = max(
                float(np.max(np.abs(mean[k].double().numpy() - exact[k]))) for k in exact
            )
            if cfg.mode == "fedavg":
                snn.apply_delta(model, mean)
            else:
                snn.apply_gradients(model, mean, server_opt)
            if heads is None:
                correct, loss = _predict(model, data)
                acc_all = [correct.double().mean().item()] * cfg.clients
                acc_own = [_share(correct, m) for m in own_masks]
            else:
                acc_all, acc_own, losses = [], [], []
                for k, head in enumerate(heads):
                    client_model.load_state_dict({**model.state_dict(), **head})
                    correct, loss_k = _predict(client_model, data)
                    acc_all.append(correct.double().mean().item())
                    acc_own.append(_share(correct, own_masks[k]))
                    losses.append(loss_k)
                loss = float(np.mean(losses))
            acc = float(np.mean(acc_all))
            max_abs = max(float(u[k].abs().max()) for u in updates for k in u)
            records.append(
                {"round": r + 1, "accuracy": acc, "own_accuracy": float(np.mean(acc_own)),
                 "loss": loss, **stats, "max_abs_update": max_abs, "agg_error": agg_error}
            )
            if progress:
                rounds.set_postfix(acc=f"{acc:.4f}")
    epsilon = None
    if isinstance(agg, _Secure) and agg.dp is not None:
        epsilon = agg.pub.epsilon(cfg.rounds, cfg.dp_delta, dim=num_values,
                                  reporting_clients=cfg.clients)
    clients = [
        {"client": k, "samples": sizes[k], "labels": labels[k],
         "accuracy": acc_all[k], "own_accuracy": acc_own[k]}
        for k in range(cfg.clients)
    ]
    return RunResult(
        epsilon=epsilon,
        delta=None if epsilon is None else cfg.dp_delta,
        backend=backend,
        records=records,
        params=snn.parameters(model, exclude=_shared(cfg)),
        keygen_s=getattr(agg, "keygen_s", 0.0),
        wall_s=time.perf_counter() - t_start,
        public_context_bytes=len(getattr(agg, "public_bytes", b"")),
        personalized=cfg.personalize,
        heads=heads,
        clients=clients,
        mode=cfg.mode,
    )


def _check_backends(backends: Sequence[str]) -> list[str]:
    backends = list(backends)
    if not backends:
        raise ValueError("give at least one backend.")
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {BACKENDS}.")
    if len(set(backends)) != len(backends):
        raise ValueError(f"backends repeat: {backends}.")
    return backends


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
        backends: ``"plain"`` and any registered scheme (``"paillier"``, ``"ckks"``, ``"bfv"``).
        rounds: communication rounds.
        clients: number of clients.
        alpha: Dirichlet concentration of the label split.
        mode: ``"fedavg"`` or ``"fedsgd"``.
        weighted: weight clients by sample count (DP turns it off: see :class:`FLConfig`).
        seed: seeds everything.
        progress: tqdm progress bars over rounds.
        key_bits: Paillier modulus size.
        dp: distributed differential privacy on the secure backends (see :class:`FLConfig`).
        **options: further :class:`FLConfig` fields (``local_epochs``, ``lr``,
            ``clip``, ``frac_bits``, ``max_train``, ``insecure``, ``personalize``, ...).

    Returns:
        Backend name -> :class:`RunResult`, in the order of ``backends``.
    """
    backends = _check_backends(backends)
    cfg = FLConfig(rounds=rounds, clients=clients, alpha=alpha, mode=mode, weighted=weighted,
                   seed=seed, key_bits=key_bits, dp=dp, **options)
    data, split = _data_and_split(cfg)
    return {
        b: run_federated(b, cfg, data=data, split=split, progress=progress) for b in backends
    }


def run_personalized_experiment(
    backends: Sequence[str] = BACKENDS, *, progress: bool = True, **options: Any
) -> tuple[RunResult, dict[str, RunResult]]:
    """Personalised FL with every backend, and plain FedAvg (or FedSGD) as the baseline.

    Args:
        backends: as for :func:`run_experiment`.
        progress: tqdm progress bars over rounds.
        **options: :class:`FLConfig` fields (``rounds``, ``clients``, ``mode``, ``dp``, ...);
            ``personalize`` is set.

    Returns:
        ``(baseline, results)``: the global model of a plain, non-personalised run
        of the same federation, and backend name -> personalised :class:`RunResult`.
    """
    backends = _check_backends(backends)
    cfg = FLConfig(**{**options, "personalize": True})
    data, split = _data_and_split(cfg)
    baseline = run_federated("plain", dataclasses.replace(cfg, personalize=False),
                             data=data, split=split, progress=progress)
    results = {
        b: run_federated(b, cfg, data=data, split=split, progress=progress) for b in backends
    }
    return baseline, results


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


def max_model_diff(a: RunResult, b: RunResult) -> float:
    """Largest parameter difference between two runs' final models, personal heads included."""
    diff = max_param_diff(a.params, b.params)
    if a.heads is not None and b.heads is not None:
        diff = max([diff, *(max_param_diff(x, y) for x, y in zip(a.heads, b.heads))])
    return diff


def _crypto_s(res: RunResult) -> float:
    """Mean seconds per round spent encrypting, aggregating and decrypting."""
    return float(sum(r["enc_s"] + r["agg_s"] + r["dec_s"] for r in res.records)) / len(res.records)


def _mean_bytes(res: RunResult) -> float:
    return float(sum(r["bytes_per_client"] for r in res.records)) / len(res.records)


def max_differences(
    results: Mapping[str, RunResult], reference: str = "plain"
) -> dict[str, dict[str, float]]:
    """How far every run is from the ``reference`` run (empty without one).

    Returns:
        Name -> ``max_abs_accuracy_diff_pp`` and ``max_abs_own_accuracy_diff_pp``
        (largest over rounds, percentage points), ``final_abs_accuracy_diff_pp``
        and ``max_param_diff`` (final models, heads included).
    """
    ref = results.get(reference)
    if ref is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, res in results.items():
        if name == reference:
            continue
        pairs = list(zip(res.records, ref.records))
        out[name] = {
            "max_abs_accuracy_diff_pp": max(100 * abs(a["accuracy"] - b["accuracy"]) for a, b in pairs),
            "max_abs_own_accuracy_diff_pp": max(
                100 * abs(a["own_accuracy"] - b["own_accuracy"]) for a, b in pairs),
            "final_abs_accuracy_diff_pp": 100 * abs(res.final_accuracy - ref.final_accuracy),
            "max_param_diff": max_model_diff(res, ref),
        }
    return out


def _plotted(results: Mapping[str, RunResult]) -> str:
    """The record key the accuracy panel shows: own-label accuracy for personalised runs."""
    return "own_accuracy" if any(r.personalized for r in results.values()) else "accuracy"


def coincidence_note(results: Mapping[str, RunResult], reference: str = "plain") -> str:
    """Which curves coincide with the reference's, with the measured largest difference.

    For example ``"paillier, ckks, bfv coincide with plain: max |Δacc| = 0.00 pp"``;
    runs that differ get a line each (``"ckks: max |Δacc| vs plain = 3.34 pp (final 1.2 pp)"``).
    The accuracy is the one the plot shows (own-label accuracy when personalised).
    """
    plotted = _plotted(results)
    key = {"accuracy": "max_abs_accuracy_diff_pp",
           "own_accuracy": "max_abs_own_accuracy_diff_pp"}[plotted]
    diffs = {name: d[key] for name, d in max_differences(results, reference).items()}
    if not diffs:
        return ""
    same = [name for name, d in diffs.items() if d < 0.005]
    lines = []
    if same:
        worst = max(diffs[n] for n in same)
        lines.append(f"{', '.join(same)} {'coincides' if len(same) == 1 else 'coincide'} with "
                     f"{reference}: max |Δacc| = {worst:.2f} pp")
    ref = results[reference].records[-1][plotted]
    lines += [f"{name}: max |Δacc| vs {reference} = {d:.2f} pp "
              f"(final {100 * abs(results[name].records[-1][plotted] - ref):.2f} pp)"
              for name, d in diffs.items() if name not in same]
    return "\n".join(lines)


def _fmt_delta(delta: float) -> str:
    """``1e-05`` -> ``1e-5``."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{delta:g}")


def dp_label(epsilon: float, delta: float) -> str:
    """``"DP ε=39.9, δ=1e-5"``, for titles and legends."""
    return f"DP ε={epsilon:.1f}, δ={_fmt_delta(delta)}"


def epsilon_line(epsilon: float, delta: float, rounds: int) -> str:
    """What a DP run's epsilon means, in one line."""
    return (f"ε = {epsilon:.1f} at δ = {delta:g} over {rounds} round{'s' * (rounds != 1)}: "
            f"an observer of the decrypted sums can tell whether one client took part with "
            f"likelihood ratio at most e^ε, except with probability δ "
            f"(no subsampling amplification; the plain backend has no DP)")


def _run_epsilon(results: Mapping[str, RunResult]) -> tuple[float, float] | None:
    """The largest epsilon of the runs (they share one calibration), with its delta."""
    dp = [(r.epsilon, r.delta) for r in results.values()
          if r.epsilon is not None and r.delta is not None]
    return max(dp) if dp else None


def format_table(results: Mapping[str, RunResult]) -> str:
    """A per-round table for each backend and a summary line per backend.

    The summary gives the final test accuracy and, when a ``plain`` run is
    present, ``|acc - plain acc|`` in percentage points and the largest
    difference between the final model's parameters and the plaintext run's.
    The ``plain`` backend's bytes/client are the raw float32 update. Personalised
    runs also show the mean own-label accuracy (``own %``).
    """
    own = any(r.personalized for r in results.values())
    lines: list[str] = []
    head = (f"{'round':>5} {'acc %':>7}" + (f" {'own %':>7}" if own else "")
            + f" {'loss':>7} {'enc s':>7} {'agg s':>7} {'dec s':>7} {'bytes/client':>13}")
    for name, res in results.items():
        lines.append(f"== {name}{' (personalised)' if res.personalized else ''} ==")
        lines.append(head)
        for rec in res.records:
            own_col = f" {100 * rec['own_accuracy']:>7.2f}" if own else ""
            lines.append(
                f"{rec['round']:>5d} {100 * rec['accuracy']:>7.2f}{own_col} {rec['loss']:>7.4f} "
                f"{rec['enc_s']:>7.3f} {rec['agg_s']:>7.3f} {rec['dec_s']:>7.3f} "
                f"{_bytes(rec['bytes_per_client']):>13}"
            )
        lines.append("")
    plain = results.get("plain")
    lines.append("summary:")
    for name, res in results.items():
        line = f"  {name:8s} final acc {100 * res.final_accuracy:6.2f} %"
        if res.personalized:
            line += f", own-label acc {100 * res.final_own_accuracy:6.2f} %"
        if plain is not None:
            line += (
                f", |acc - plain| {100 * abs(res.final_accuracy - plain.final_accuracy):.2f} pp"
                f", max |param - plain| {max_model_diff(res, plain):.1e}"
            )
        line += (
            f", crypto {_crypto_s(res):.3f} s/round, {_bytes(res.records[-1]['bytes_per_client'])}"
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


def _label_list(labels: Sequence[int]) -> str:
    return ",".join(str(v) for v in labels)


def format_client_table(baseline: RunResult, results: Mapping[str, RunResult]) -> str:
    """Per client: the baseline's global model against each personalised run's model.

    Every cell is ``all/own``: accuracy (%) on the whole test set, and on the test
    examples of the labels the client holds (at least :data:`HELD_LABEL_SHARE`
    of its training samples). A personalised model is the global body plus the
    client's own head; the baseline's is the same global model for every client.
    """
    rounds = len(baseline.records)
    names = list(results)
    first = next(iter(results.values()), None)
    head = sorted({n.split(".")[0] for n in (first.heads or [{}])[0]}) if first else []
    body = sorted({n.split(".")[0] for n in first.params}) if first else []
    cols = ["global", *names]
    width = 11
    lines = [
        f"per-client accuracy (%) after {rounds} round{'s' * (rounds != 1)}, each cell all/own:",
        "  all = on the whole test set; own = on the test examples of the labels the client "
        f"holds (>= {HELD_LABEL_SHARE:.0%} of its training samples)",
        f"  global = plain {_MODE_NAMES.get(baseline.mode, baseline.mode)}'s global model "
        "(the same for every client)",
        f"  {', '.join(names)} = personalised with that backend: the global body "
        f"({', '.join(body)}, securely averaged) + the client's own head ({', '.join(head)})",
        f"{'client':>6} {'samples':>7}  {'labels held':<20}"
        + "".join(f" {c:>{width}}" for c in cols),
    ]
    runs = [baseline, *results.values()]
    for k, info in enumerate(baseline.clients):
        cells = "".join(
            f" {_cell(run.clients[k]):>{width}}" for run in runs
        )
        lines.append(f"{info['client']:>6d} {info['samples']:>7d}  "
                     f"{_label_list(info['labels']):<20}{cells}")
    means = "".join(
        f" {_cell({'accuracy': run.final_accuracy, 'own_accuracy': run.final_own_accuracy}):>{width}}"
        for run in runs
    )
    lines.append(f"{'mean':>6} {'':>7}  {'':<20}{means}")
    return "\n".join(lines)


_MODE_NAMES = {"fedavg": "FedAvg", "fedsgd": "FedSGD"}


def _cell(metrics: Mapping[str, Any]) -> str:
    return f"{100 * metrics['accuracy']:.1f}/{100 * metrics['own_accuracy']:.1f}"


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLES = ("-", "--", ":", "-.")


def make_figure(
    results: Mapping[str, RunResult], *, title: str = "", baseline: RunResult | None = None
) -> Figure:
    """The demo's figure: an accuracy panel and a cost panel (two axes).

    Accuracy per round, one curve per backend with its own marker and line
    style; markers are staggered across rounds so that curves that coincide stay
    visible, and the legend's title says which coincide with ``plain`` and by how
    much at most (:func:`coincidence_note`). Personalised runs show the mean
    own-label accuracy, with ``baseline`` (the global model) for comparison.
    The cost panel places every backend by crypto seconds per round (x) and
    bytes per client per round (y), both on log scales. DP runs carry
    epsilon and delta in the title and their legend labels.

    Uses matplotlib's Agg canvas directly, so no display and no global backend change.
    """
    require("matplotlib", "demo", purpose=PURPOSE)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.5, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    acc_ax, cost_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    key = _plotted(results)
    dp = _run_epsilon(results)

    def label(name: str, res: RunResult) -> str:
        notes = ["personalised"] if res.personalized else []
        if res.epsilon is not None and res.delta is not None:
            notes.append(dp_label(res.epsilon, res.delta))
        elif dp is not None:
            notes.append("no DP")
        return f"{name} ({', '.join(notes)})" if notes else name

    n = len(results)
    for i, (name, res) in enumerate(results.items()):
        rounds = [r["round"] for r in res.records]
        every = (i, n) if len(rounds) >= 2 * n else None
        acc_ax.plot(
            rounds, [100 * r[key] for r in res.records], _STYLES[i % len(_STYLES)],
            marker=_MARKERS[i % len(_MARKERS)], markersize=7 - 4 * i / max(n, 1),
            markevery=every, fillstyle="full" if i == 0 else "none", label=label(name, res),
        )
    if baseline is not None:
        acc_ax.plot([r["round"] for r in baseline.records],
                    [100 * r[key] for r in baseline.records], color="black", linewidth=1.2,
                    alpha=0.6, label=f"{baseline.backend} {_MODE_NAMES.get(baseline.mode, '')} "
                                     "global model (not personalised)")
    acc_ax.set_xlabel("round")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.set_ylabel("mean per-client accuracy on own labels (%)" if key == "own_accuracy"
                      else "test accuracy (%)")
    acc_ax.set_title("accuracy")
    acc_ax.grid(alpha=0.3)
    note = coincidence_note(results)
    legend = acc_ax.legend(loc="best", fontsize="small", title=note or None,
                           title_fontsize="small")
    legend.get_title().set_multialignment("left")

    for i, (name, res) in enumerate(results.items()):
        x, y = max(_crypto_s(res), 1e-6), max(_mean_bytes(res), 1.0)
        cost_ax.scatter([x], [y], marker=_MARKERS[i % len(_MARKERS)], s=50, zorder=3)
        what = " (float mean)" if name == "plain" else ""
        cost_ax.annotate(f"{name}{what}\n{x:.2g} s, {_bytes(y)}", (x, y), xytext=(6, 4),
                         textcoords="offset points", fontsize="small")
    xs = [max(_crypto_s(r), 1e-6) for r in results.values()]
    ys = [max(_mean_bytes(r), 1.0) for r in results.values()]
    cost_ax.set_xscale("log")
    cost_ax.set_yscale("log")
    cost_ax.set_xlim(min(xs) / 3, max(xs) * 12)
    cost_ax.set_ylim(min(ys) / 2, max(ys) * 3)
    cost_ax.set_xlabel("crypto seconds per round (encrypt + sum + decrypt)")
    cost_ax.set_ylabel("bytes per client per round")
    cost_ax.set_title("cost per round")
    cost_ax.grid(alpha=0.3)

    full_title = title or "Federated learning on digits: plaintext vs secure aggregation"
    if dp is not None:
        full_title += f" — {dp_label(*dp)}"
    fig.suptitle(full_title)
    fig.tight_layout()
    return fig


def plot_accuracy(
    results: Mapping[str, RunResult], path: str | Path, *, title: str = "",
    baseline: RunResult | None = None,
) -> Path:
    """Write :func:`make_figure` (accuracy and cost panels) as a PNG.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_figure(results, title=title, baseline=baseline).savefig(path, format="png")
    return path


def _summary(res: RunResult, plain: RunResult | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "final_accuracy": res.final_accuracy,
        "final_own_accuracy": res.final_own_accuracy,
        "keygen_s": res.keygen_s,
        "wall_s": res.wall_s,
        "public_context_bytes": res.public_context_bytes,
        "crypto_s_per_round": _crypto_s(res),
        "bytes_per_client_per_round": _mean_bytes(res),
        "epsilon": res.epsilon,
        "delta": res.delta,
        "personalized": res.personalized,
    }
    if plain is not None and plain is not res:
        summary["abs_diff_vs_plain_pp"] = 100 * abs(res.final_accuracy - plain.final_accuracy)
        summary["max_param_diff_vs_plain"] = max_model_diff(res, plain)
    return summary


def save_json(
    results: Mapping[str, RunResult], path: str | Path, *, config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None, baseline: RunResult | None = None,
) -> Path:
    """Write the records, summaries, per-client results and ``config`` of a run as JSON.

    ``metadata`` (see :func:`run_metadata`) is written at the top level; a
    personalised run's ``baseline`` goes under ``"baseline"``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = results.get("plain")
    out: dict[str, Any] = {**dict(metadata or {}), "config": dict(config or {}), "backends": {}}
    for name, res in results.items():
        out["backends"][name] = {"summary": _summary(res, plain), "records": res.records,
                                 "clients": res.clients}
    if baseline is not None:
        out["baseline"] = {"backend": baseline.backend, "summary": _summary(baseline, None),
                           "records": baseline.records, "clients": baseline.clients}
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return path


def run_metadata(
    results: Mapping[str, RunResult], cfg: FLConfig, *,
    options: Mapping[str, Any] | None = None, files: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """What a run's JSON says about itself, beside the records.

    Returns:
        ``mode`` (``"fedavg"``/``"fedsgd"``), ``personalize``, ``weighted`` (as
        run), ``options`` (as given, e.g. the command line's), ``dp`` (``None``,
        or ``epsilon``, ``delta``, ``l2_clip``, ``noise_multiplier`` and
        ``meaning``), ``max_differences`` (:func:`max_differences`),
        ``coincidence`` (:func:`coincidence_note`), ``files`` and ``notes``.
    """
    dp: dict[str, Any] | None = None
    if cfg.dp:
        eps = _run_epsilon(results)
        dp = {
            "epsilon": None if eps is None else eps[0],
            "delta": cfg.dp_delta,
            "l2_clip": cfg.dp_l2_clip,
            "noise_multiplier": cfg.dp_noise_multiplier,
            "meaning": None if eps is None else epsilon_line(eps[0], cfg.dp_delta, cfg.rounds),
        }
    return {
        "mode": cfg.mode,
        "personalize": cfg.personalize,
        "personal_layers": list(PERSONAL_LAYERS) if cfg.personalize else [],
        "weighted": cfg.weighted,
        "options": dict(options or {}),
        "dp": dp,
        "max_differences": max_differences(results),
        "coincidence": coincidence_note(results),
        "files": dict(files or {}),
        "notes": list(notes),
    }


# option -> (file-name label, whether it only matters under DP); in the order they appear
_NAMED_OPTIONS = (
    ("rounds", "rounds", False), ("clients", "clients", False), ("alpha", "alpha", False),
    ("seed", "seed", False), ("local_epochs", "epochs", False), ("batch_size", "batch", False),
    ("lr", "lr", False), ("hidden", "hidden", False), ("max_train", "train", False),
    ("test_fraction", "test", False), ("min_client_samples", "minsamples", False),
    ("clip", "clip", False), ("frac_bits", "fracbits", False), ("key_bits", "keybits", False),
    ("dp_l2_clip", "dpclip", True), ("dp_noise_multiplier", "noise", True),
    ("dp_delta", "delta", True),
)


def output_stem(cfg: FLConfig, backends: Sequence[str] | None = None) -> str:
    """The base name of a run's files: ``fedavg_digits`` plus its mode and options.

    ``fedavg_digits`` is the default run; then, in this order, ``_fedsgd``,
    ``_dp``, ``_unweighted`` (asked for without DP; DP implies it),
    ``_personalize``, ``_<option><value>`` for every other option that differs
    from its default (``_rounds5``, ``_clients3``, ``_lr0.05``, ...),
    ``_insecure``, and the backends joined by ``-`` if not all of them ran.
    """
    default = FLConfig(mode=cfg.mode)
    parts = ["fedavg_digits"]
    if cfg.mode != "fedavg":
        parts.append(cfg.mode)
    if cfg.dp:
        parts.append("dp")
    elif not cfg.weighted:
        parts.append("unweighted")
    if cfg.personalize:
        parts.append("personalize")
    for name, label, dp_only in _NAMED_OPTIONS:
        value = getattr(cfg, name)
        if (cfg.dp or not dp_only) and value != getattr(default, name):
            parts.append(f"{label}{value:g}" if isinstance(value, float) else f"{label}{value}")
    if cfg.insecure:
        parts.append("insecure")
    if backends is not None and set(backends) != set(BACKENDS):
        parts.append("-".join(backends))
    return "_".join(parts)


def plot_title(cfg: FLConfig) -> str:
    """A one-line description of a run, for plot titles."""
    weighting = "sample-weighted" if cfg.weighted else "unweighted"
    layers = ", ".join(p.removesuffix(".*") for p in PERSONAL_LAYERS)
    personal = f", personalised ({layers} local)" if cfg.personalize else ""
    return (f"digits, {cfg.mode}{personal}, {cfg.clients} clients, Dirichlet alpha={cfg.alpha}, "
            f"{weighting}")


def config_dict(cfg: FLConfig) -> dict[str, Any]:
    """A :class:`FLConfig` as plain data (for JSON output)."""
    return asdict(cfg)
