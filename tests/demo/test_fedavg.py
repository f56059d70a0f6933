"""The federated-learning demo (secagg.demo.fedavg), directly and through ``python -m secagg demo``.

Secure runs are compared with plaintext runs of the same federation (same data,
split, initial model and client seeds; deterministic torch), on a small slice
of the digits data so that the whole file runs in seconds.

Error bounds used below (nearest rounding, ``frac_bits=16``, nothing clipped):

* One aggregate. Each client value ``x`` is encoded as ``q = round(x * 2**16)``,
  ``|q / 2**16 - x| <= 2**-17``; the decrypted (weighted) mean of the ``q``s is a
  convex combination of them, so it is within ``2**-17`` of the exact mean. The
  decoded float64 is then rounded to float32, which for ``|value| < 1`` adds at
  most half an ulp, ``2**-25``. Hence ``AGG_BOUND = 2**-17 + 2**-24`` against the
  exact float64 mean of the same updates (the plaintext backend's own float32
  rounding is inside the ``2**-24`` too).
* One round from the same global model. Both runs add a float32 mean update
  (FedAvg) or take an SGD step ``θ - lr * g`` (FedSGD) on float32 parameters of
  magnitude < 1: each side rounds once more (``2**-25``), so after one round the
  parameters differ by at most ``ROUND_BOUND(lr) = s * (2**-17 + 2**-24) + 2**-24``
  with ``s = 1`` for FedAvg and ``s = lr`` for FedSGD.
* Several rounds. Round ``r+1`` applies the smooth map ``F`` (local training of
  the tanh MLP, or a gradient step) to models that differ by ``e_r``, so
  ``e_{r+1} <= L * e_r + ROUND_BOUND`` where ``L`` is ``F``'s Lipschitz constant
  around the trajectory. ``L`` is not known a priori; measured with random
  ``±2**-17`` perturbations of the global model on this slice it is at most 1.7
  (FedAvg) and 2.6 (FedSGD, lr 1). Taking ``L <= 3`` gives, for two rounds,
  ``e_2 <= (1 + L) * ROUND_BOUND <= 4 * ROUND_BOUND = rounds * 2 * ROUND_BOUND``.
  A codec that lost one fractional bit, truncated instead of rounding, or a wrong
  reduction (``mean`` for ``weighted_mean``: an error of ~1e-2) breaks it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from secagg import cli
from secagg.demo import fedavg as fl

AGG_BOUND = 2**-17 + 2**-24

# Small and fast: 200 training samples over 4 clients, 512-bit Paillier (tests only).
SMALL = dict(clients=4, alpha=0.5, max_train=200, local_epochs=1, progress=False,
             key_bits=512, insecure=True)


def round_bound(mode: str, lr: float) -> float:
    """Largest parameter difference after one round from the same model (module docstring)."""
    scale = 1.0 if mode == "fedavg" else lr
    return scale * (2**-17 + 2**-24) + 2**-24


@pytest.fixture(scope="module")
def runs() -> dict:
    """Plain, Paillier and CKKS runs of 1 and 2 rounds per (mode, weighted)."""
    out = {}
    for mode, weighted in (("fedavg", True), ("fedavg", False), ("fedsgd", True)):
        for rounds in (1, 2):
            out[mode, weighted, rounds] = fl.run_experiment(
                backends=("plain", "paillier", "ckks"), rounds=rounds, mode=mode,
                weighted=weighted, **SMALL,
            )
    return out


@pytest.mark.parametrize("mode,weighted", [("fedavg", True), ("fedavg", False), ("fedsgd", True)])
@pytest.mark.parametrize("backend", ["paillier", "ckks"])
class TestSecureMatchesPlain:
    def test_every_aggregate_within_codec_bound(self, runs, mode, weighted, backend):
        res = runs[mode, weighted, 2][backend]
        for rec in res.records:
            assert rec["clipped"] == 0
            assert rec["max_abs_update"] < 1.0  # the clip
            assert rec["agg_error"] <= AGG_BOUND
            assert rec["enc_s"] > 0 and rec["bytes_per_client"] > 0

    def test_one_round_within_codec_bound(self, runs, mode, weighted, backend):
        res = runs[mode, weighted, 1]
        lr = fl.DEFAULT_LR[mode]
        assert fl.max_param_diff(res[backend].params, res["plain"].params) <= round_bound(mode, lr)

    def test_two_rounds_within_compounded_bound(self, runs, mode, weighted, backend):
        res = runs[mode, weighted, 2]
        lr = fl.DEFAULT_LR[mode]
        diff = fl.max_param_diff(res[backend].params, res["plain"].params)
        assert diff <= 2 * 2 * round_bound(mode, lr)
        assert abs(res[backend].final_accuracy - res["plain"].final_accuracy) <= 0.005


def test_runs_are_deterministic(runs):
    again = fl.run_experiment(backends=("plain",), rounds=2, mode="fedavg", **SMALL)
    assert fl.max_param_diff(again["plain"].params, runs["fedavg", True, 2]["plain"].params) == 0
    assert again["plain"].records[-1]["accuracy"] == runs["fedavg", True, 2]["plain"].final_accuracy


def test_paillier_and_ckks_decode_identically(runs):
    # Both schemes sum the same integers exactly, so the models agree bit for bit.
    res = runs["fedavg", True, 2]
    assert fl.max_param_diff(res["paillier"].params, res["ckks"].params) == 0


def test_weighting_changes_the_aggregate(runs):
    a = runs["fedavg", True, 1]["plain"].params
    b = runs["fedavg", False, 1]["plain"].params
    assert fl.max_param_diff(a, b) > 100 * AGG_BOUND


def test_dirichlet_split_partitions_and_is_seeded():
    labels = np.repeat(np.arange(10), 30)
    a = fl.dirichlet_split(labels, 5, 0.5, rng=np.random.default_rng(3), min_samples=8)
    b = fl.dirichlet_split(labels, 5, 0.5, rng=np.random.default_rng(3), min_samples=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(labels.size))
    assert min(len(x) for x in a) >= 8
    with pytest.raises(ValueError, match="cannot give"):
        fl.dirichlet_split(labels, 40, 0.5, rng=np.random.default_rng(0), min_samples=10)


def test_data_is_standardized():
    data = fl.load_digits_data(seed=0)
    assert data.x_train.shape[1] == 64 and len(data.y_test) == 359
    assert float(data.x_train.mean(0).abs().max()) < 1e-5


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(clients=1), "clients"), (dict(mode="fedprox"), "mode"), (dict(alpha=0.0), "alpha"),
     (dict(rounds=0), "rounds"), (dict(backends=("plain", "rsa")), "backend")],
)
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fl.run_experiment(**{**dict(rounds=1, progress=False), **kwargs})


def test_dp_run_adds_noise_and_reports_epsilon():
    res = fl.run_experiment(backends=("plain", "ckks"), rounds=2, clients=4, dp=True,
                            max_train=200, progress=False, dp_noise_multiplier=2.0)
    assert res["plain"].epsilon is None
    eps = res["ckks"].epsilon
    assert eps is not None and 0 < eps < 50
    # the decrypted mean now differs from the exact mean by the DP noise, far above the codec bound
    assert max(r["agg_error"] for r in res["ckks"].records) > 1e-3


def test_table_plot_and_json(runs, tmp_path):
    res = runs["fedavg", True, 2]
    text = fl.format_table(res)
    for name in ("plain", "paillier", "ckks", "|acc - plain|", "pp"):
        assert name in text
    png = fl.plot_accuracy(res, tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    js = json.loads(fl.save_json(res, tmp_path / "a.json").read_text())
    assert set(js["backends"]) == {"plain", "paillier", "ckks"}
    assert len(js["backends"]["ckks"]["records"]) == 2


# -- the demo command ------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_runs_and_writes_outputs(tmp_path, capsys):
    code, out, _ = run_cli(
        ["demo", "--rounds", "1", "--clients", "3", "--backends", "plain,ckks",
         "--out", str(tmp_path), "--no-progress"], capsys,
    )
    assert code == 0
    assert "ckks" in out and "|acc - plain|" in out
    stem = "fedavg_digits_rounds1_clients3_plain-ckks"  # named after the run's options
    assert (tmp_path / f"{stem}.png").stat().st_size > 0
    js = json.loads((tmp_path / f"{stem}.json").read_text())
    assert js["config"]["clients"] == 3 and set(js["backends"]) == {"plain", "ckks"}


def test_demo_dp_flag_prints_epsilon(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--dp", "--rounds", "1", "--clients", "3", "--backends",
                            "plain,ckks", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 0 and "DP epsilon" in out
