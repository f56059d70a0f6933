"""What the demo writes and prints: file names per mode, JSON metadata, the plot's panels,
the DP lines, personalised FL, and the error for a missing optional dependency.

Runs are tiny (1-2 rounds, 3-4 clients, CKKS or 512-bit Paillier keys) so the file runs in seconds.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import secagg
from secagg import cli
from secagg._extras import require
from secagg.demo import fedavg as fl
from secagg.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ["--rounds", "1", "--clients", "3", "--no-progress"]
EPSILON_LINE = re.compile(
    r"^ε = \d+\.\d at δ = 1e-05 over 1 round: an observer of the decrypted sums can tell whether "
    r"one client took part with likelihood ratio at most e\^ε, except with probability δ "
    r"\(no subsampling amplification; the plain backend has no DP\)$", re.MULTILINE)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- file names ------------------------------------------------------------------------


@pytest.mark.parametrize("options,stem", [
    ({}, "fedavg_digits"),
    ({"mode": "fedsgd"}, "fedavg_digits_fedsgd"),
    ({"mode": "fedsgd", "lr": 1.0}, "fedavg_digits_fedsgd"),  # the mode's default lr
    ({"dp": True}, "fedavg_digits_dp"),
    ({"mode": "fedsgd", "dp": True}, "fedavg_digits_fedsgd_dp"),
    ({"dp": True, "weighted": False}, "fedavg_digits_dp"),  # DP implies unweighted: same run
    ({"weighted": False}, "fedavg_digits_unweighted"),
    ({"personalize": True}, "fedavg_digits_personalize"),
    ({"mode": "fedsgd", "dp": True, "personalize": True}, "fedavg_digits_fedsgd_dp_personalize"),
    ({"rounds": 5, "clients": 3}, "fedavg_digits_rounds5_clients3"),
    ({"dp": True, "dp_noise_multiplier": 2.0}, "fedavg_digits_dp_noise2"),
    ({"dp_noise_multiplier": 2.0}, "fedavg_digits"),  # DP settings matter only under DP
    ({"lr": 0.05, "key_bits": 512, "insecure": True}, "fedavg_digits_lr0.05_keybits512_insecure"),
])
def test_output_stem_names_mode_and_options(options, stem):
    assert fl.output_stem(fl.FLConfig(**options)) == stem
    assert fl.output_stem(fl.FLConfig(**options), fl.BACKENDS) == stem


def test_output_stem_names_a_subset_of_backends():
    assert fl.output_stem(fl.FLConfig(), ["plain", "ckks"]) == "fedavg_digits_plain-ckks"


def test_runs_in_different_modes_do_not_overwrite_each_other(tmp_path, capsys):
    base = [*QUICK, "--backends", "plain,ckks", "--out", str(tmp_path)]
    for extra in ([], ["--mode", "fedsgd", "--unweighted"]):
        assert run_cli(["demo", *base, *extra], capsys)[0] == 0
    stems = {p.stem for p in tmp_path.iterdir()}
    tail = "_rounds1_clients3_plain-ckks"
    assert stems == {f"fedavg_digits{tail}", f"fedavg_digits_fedsgd_unweighted{tail}"}
    assert len(list(tmp_path.glob("*.png"))) == len(list(tmp_path.glob("*.json"))) == 2


# -- JSON and plot ---------------------------------------------------------------------


def test_json_metadata_and_png(tmp_path, capsys):
    code, out, _ = run_cli(["demo", *QUICK, "--backends", "plain,ckks,paillier", "--key-bits", "512",
                            "--insecure", "--out", str(tmp_path)], capsys)
    assert code == 0
    stem = "fedavg_digits_rounds1_clients3_keybits512_insecure_plain-ckks-paillier"
    png, js = tmp_path / f"{stem}.png", tmp_path / f"{stem}.json"
    assert f"wrote {png} and {js}" in out
    meta = json.loads(js.read_text())
    for key in ("mode", "personalize", "weighted", "options", "dp", "max_differences",
                "coincidence", "files", "notes", "config", "backends"):
        assert key in meta
    assert meta["mode"] == "fedavg" and meta["personalize"] is False and meta["dp"] is None
    assert meta["files"] == {"png": str(png), "json": str(js)}
    assert meta["options"]["rounds"] == 1 and meta["options"]["backends"] == ["plain", "ckks", "paillier"]
    assert meta["options"]["out"] == str(tmp_path)
    assert set(meta["max_differences"]) == {"ckks", "paillier"}
    for diff in meta["max_differences"].values():
        assert set(diff) == {"max_abs_accuracy_diff_pp", "max_abs_own_accuracy_diff_pp",
                             "final_abs_accuracy_diff_pp", "max_param_diff"}
        assert diff["max_abs_accuracy_diff_pp"] == 0.0 and 0 < diff["max_param_diff"] < 1e-4
    assert meta["coincidence"] == "ckks, paillier coincide with plain: max |Δacc| = 0.00 pp"
    assert f"accuracy: {meta['coincidence']}" in out
    assert meta["backends"]["ckks"]["summary"]["bytes_per_client_per_round"] > 0
    assert len(meta["backends"]["ckks"]["clients"]) == 3
    assert png_size(png.read_bytes()) == (1380, 552)  # 11.5 x 4.6 in at 120 dpi


@pytest.fixture(scope="module")
def dp_results() -> dict[str, fl.RunResult]:
    return fl.run_experiment(backends=("plain", "ckks"), rounds=2, clients=3, dp=True,
                             max_train=150, progress=False)


def test_figure_has_accuracy_and_cost_panels(dp_results):
    fig = fl.make_figure(dp_results, title="t")
    acc_ax, cost_ax = fig.axes
    assert len(fig.axes) == 2
    assert acc_ax.get_ylabel() == "test accuracy (%)" and len(acc_ax.get_lines()) == 2
    assert cost_ax.get_xscale() == cost_ax.get_yscale() == "log"
    assert "seconds" in cost_ax.get_xlabel() and "bytes" in cost_ax.get_ylabel()
    eps = dp_results["ckks"].epsilon
    assert eps is not None
    label = f"DP ε={eps:.1f}, δ=1e-5"
    assert fig.get_suptitle() == f"t — {label}"
    legend = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert legend == ["plain (no DP)", f"ckks ({label})"]


def test_coinciding_curves_are_named_with_their_difference(dp_results):
    same = {"plain": dp_results["plain"], "copy": dp_results["plain"]}
    assert fl.coincidence_note(same) == "copy coincides with plain: max |Δacc| = 0.00 pp"
    diff = fl.max_differences(dp_results)["ckks"]
    assert diff["max_abs_accuracy_diff_pp"] > 0
    assert fl.coincidence_note(dp_results) == (
        f"ckks: max |Δacc| vs plain = {diff['max_abs_accuracy_diff_pp']:.2f} pp "
        f"(final {diff['final_abs_accuracy_diff_pp']:.2f} pp)")
    assert fl.coincidence_note({"ckks": dp_results["ckks"]}) == ""  # nothing to compare with


def test_dp_label_and_epsilon_line():
    assert fl.dp_label(39.94, 1e-5) == "DP ε=39.9, δ=1e-5"
    assert fl.dp_label(3.0, 2.5e-6) == "DP ε=3.0, δ=2.5e-6"
    assert EPSILON_LINE.match(fl.epsilon_line(39.94, 1e-5, 1))
    assert "over 30 rounds" in fl.epsilon_line(39.94, 1e-5, 30)


# -- DP messages -----------------------------------------------------------------------


def test_dp_run_prints_the_unweighted_switch_and_what_epsilon_means(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--dp", *QUICK, "--backends", "plain,ckks",
                            "--out", str(tmp_path)], capsys)
    assert code == 0
    assert out.splitlines()[0] == fl.DP_UNWEIGHTED_NOTICE
    assert fl.DP_UNWEIGHTED_NOTICE == ("DP: averaging unweighted (each update weight 1; "
                                       "the noise is calibrated for weight 1)")
    match = EPSILON_LINE.search(out)
    assert match is not None
    meta = json.loads(next(tmp_path.glob("fedavg_digits_dp_*.json")).read_text())
    assert meta["weighted"] is False and meta["notes"] == [fl.DP_UNWEIGHTED_NOTICE]
    dp = meta["dp"]
    assert dp["delta"] == 1e-5 and dp["epsilon"] == meta["backends"]["ckks"]["summary"]["epsilon"]
    assert match.group(0) == dp["meaning"] and f"ε = {dp['epsilon']:.1f} " in out
    assert meta["backends"]["plain"]["summary"]["epsilon"] is None


def test_no_unweighted_notice_when_asked_for_or_without_dp(tmp_path, capsys):
    for extra in (["--dp", "--unweighted"], []):
        code, out, _ = run_cli(["demo", *extra, *QUICK, "--backends", "plain,ckks",
                                "--out", str(tmp_path)], capsys)
        assert code == 0 and "averaging unweighted" not in out
        assert (EPSILON_LINE.search(out) is not None) == bool(extra)


# -- personalised FL -------------------------------------------------------------------


@pytest.fixture(scope="module")
def personalized():
    return fl.run_personalized_experiment(backends=("plain", "ckks", "paillier"), rounds=2,
                                          clients=4, max_train=200, local_epochs=1,
                                          key_bits=512, insecure=True, progress=False)


def test_personalized_runs_keep_heads_local(personalized):
    baseline, results = personalized
    assert not baseline.personalized and baseline.heads is None
    assert set(baseline.params) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    for res in results.values():
        assert res.personalized and set(res.params) == {"fc1.weight", "fc1.bias"}
        assert res.heads is not None and len(res.heads) == 4
        assert all(set(h) == {"fc2.weight", "fc2.bias"} for h in res.heads)
        assert fl.max_param_diff(res.heads[0], res.heads[1]) > 0.01  # each client its own head
    for name in ("ckks", "paillier"):  # secure body and heads follow the plain personalised run
        assert fl.max_model_diff(results[name], results["plain"]) < 1e-4
        assert results[name].final_own_accuracy == results["plain"].final_own_accuracy


def test_personalized_secure_runs_encrypt_only_the_body(monkeypatch):
    sent: list[set[str]] = []
    encrypt = secagg.PublicContext.encrypt

    def spy(self, tree, *args, **kwargs):
        sent.append(set(tree))
        return encrypt(self, tree, *args, **kwargs)

    monkeypatch.setattr(secagg.PublicContext, "encrypt", spy)
    _, results = fl.run_personalized_experiment(backends=("ckks",), rounds=1, clients=3,
                                                max_train=150, mode="fedsgd", progress=False)
    assert sent and all(keys == {"fc1.weight", "fc1.bias"} for keys in sent)
    assert results["ckks"].heads is not None


def test_client_metrics_use_the_labels_each_client_holds(personalized):
    baseline, results = personalized
    for run in (baseline, *results.values()):
        assert [c["client"] for c in run.clients] == [0, 1, 2, 3]
        for c in run.clients:
            assert c["labels"] and 0 <= c["accuracy"] <= 1 and 0 <= c["own_accuracy"] <= 1
    assert sum(c["samples"] for c in baseline.clients) == 200
    assert len({c["accuracy"] for c in baseline.clients}) == 1  # one global model
    assert fl.held_labels([1] * 19 + [2]) == [1, 2] and fl.held_labels([1] * 21 + [2]) == [1]


def test_client_table_lists_every_client(personalized):
    baseline, results = personalized
    text = fl.format_client_table(baseline, results)
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert all(len(r) == 3 + 4 for r in rows)  # client, samples, labels, global + 3 backends
    assert re.search(r"global\s+plain\s+ckks\s+paillier", text)
    assert all(re.fullmatch(r"\d+\.\d/\d+\.\d", cell) for r in rows for cell in r[3:])


def test_demo_personalize_prints_per_client_accuracy(tmp_path, capsys):
    code, out, _ = run_cli(["demo", "--personalize", *QUICK, "--backends", "plain,ckks",
                            "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "per-client accuracy (%) after 1 round" in out
    assert "global = plain FedAvg's global model" in out
    assert len(re.findall(r"^\s+[012]\s+\d+\s+[\d,]+\s+[\d./ ]+$", out, re.MULTILINE)) == 3
    stem = "fedavg_digits_personalize_rounds1_clients3_plain-ckks"
    meta = json.loads((tmp_path / f"{stem}.json").read_text())
    assert meta["personalize"] is True and meta["personal_layers"] == ["fc2.*"]
    assert meta["baseline"]["backend"] == "plain" and len(meta["baseline"]["clients"]) == 3
    assert meta["backends"]["ckks"]["summary"]["personalized"] is True
    fig_png = (tmp_path / f"{stem}.png").read_bytes()
    assert png_size(fig_png) == (1380, 552)


def test_personalized_figure_shows_own_label_accuracy_and_the_baseline(personalized):
    baseline, results = personalized
    fig = fl.make_figure(results, baseline=baseline)
    acc_ax = fig.axes[0]
    assert len(fig.axes) == 2 and len(acc_ax.get_lines()) == len(results) + 1
    assert "own labels" in acc_ax.get_ylabel()


# -- missing optional dependencies -----------------------------------------------------


@pytest.mark.parametrize("module,package,extra_args", [
    ("torch", "torch", []),
    ("sklearn", "scikit-learn", []),
    ("matplotlib", "matplotlib", []),
    ("tqdm", "tqdm", ["--rounds", "1"]),  # progress bars are on by default
    ("dp_accounting", "dp-accounting", ["--dp"]),
])
def test_demo_names_the_extra_of_a_missing_module(module, package, extra_args, monkeypatch, capsys,
                                                  tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    code, _, err = run_cli(["demo", *extra_args, "--out", str(tmp_path)], capsys)
    assert code == 1
    assert err == f'error: the demo needs {package} (pip install "secagg[demo]")\n'
    assert not list(tmp_path.iterdir())  # failed before running anything


def test_python_m_secagg_demo_without_torch_exits_1_with_the_extra():
    script = textwrap.dedent("""
        import runpy, sys
        sys.modules["torch"] = None
        sys.argv = ["secagg", "demo"]
        runpy.run_module("secagg", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr == 'error: the demo needs torch (pip install "secagg[demo]")\n'
    assert "Traceback" not in proc.stderr


def test_require_tells_missing_from_broken(tmp_path, monkeypatch):
    (tmp_path / "secagg_broken_mod.py").write_text("raise ImportError('libfoo.so: not found')\n")
    (tmp_path / "secagg_needs_dep.py").write_text("import secagg_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert require("json", "demo") is json
    with pytest.raises(ConfigError, match=r'^this feature needs secagg_absent_mod '
                                          r'\(pip install "secagg\[torch\]"\)$'):
        require("secagg_absent_mod", "torch")
    with pytest.raises(ConfigError, match=r"installed but failed to import.*libfoo"):
        require("secagg_broken_mod", "demo", purpose="the demo")
    with pytest.raises(ConfigError, match=r"installed but failed to import.*no_such_dependency"):
        require("secagg_needs_dep", "demo")
