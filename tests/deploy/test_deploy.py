"""Deployment smoke test: the Flower App of examples/flower_app on Flower's deployment engine.

``make test-deploy`` (marker ``deploy``, left out of ``make test``). Each test starts a
SuperLink and SuperNodes on free 127.0.0.1 ports, runs the App with ``flwr run`` and checks
its own output (the history JSON and the final encrypted aggregate, decrypted here with a
silo's kit) against plain FedAvg computed in this process from the same split and seeds.
The commands are those of the README's "Flower" section.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

import secagg
from secagg.flower import aggregate_to_arrays, decrypt_arrays
from tests.deploy.deployment import APP, Deployment, free_port, tail, wait_for

pytestmark = pytest.mark.deploy

sys.path.insert(0, str(APP))
from secagg_app import task  # noqa: E402  (the App's own task code, for the reference)

START_S = 90  # a process coming up on a loaded 2-core machine
RUN_S = 240  # one flwr run, to its end


@pytest.fixture(scope="module")
def kits(tmp_path_factory) -> Path:
    """Key kits made with the CLI: BFV (exact), three silos, unsealed (mode 0600)."""
    out = tmp_path_factory.mktemp("kits") / "kits"
    subprocess.run([sys.executable, "-m", "secagg", "keygen", "--scheme", "bfv", "--clip", "4",
                    "--max-weight", "1000", "--max-clients", "8", "--min-clients", "2",
                    "--silos", "3", "--out-dir", str(out), "--no-passphrase"],
                   check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        d.close()


def superlink(d: Deployment, port: int, *extra: str) -> None:
    d.start("superlink", "flower-superlink", *extra, "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(port))
    wait_for("the SuperLink", lambda: "Application startup complete" in tail(d.log("superlink")),
             START_S, [d.log("superlink")])


def supernode(d: Deployment, name: str, port: int, kit: Path, pid: int, parts: int,
              *extra: str, node_config: str = "") -> int:
    """Start a SuperNode serving partition ``pid``; returns its Runtime API port."""
    runtime = free_port()
    d.start(name, "flower-supernode", *extra, "--superlink", f"127.0.0.1:{port}",
            "--port", str(runtime), "--node-config",
            f'secagg-key="{kit}" partition-id={pid} num-partitions={parts} {node_config}'.strip())
    return runtime


def wait_nodes(d: Deployment, names: list[str]) -> None:
    for name in names:
        wait_for(f"SuperNode {name} to connect", lambda n=name: "SuperNode ID" in tail(d.log(n)),
                 START_S, [d.log(n) for n in ("superlink", name)])


def run_config(d: Deployment, kits: Path, **extra) -> dict:
    return {"public-key": str(kits / "server.secagg.pub"), "num-server-rounds": 1,
            "min-nodes": 2, "history-json": str(d.tmp / "history.json"),
            "final-aggregate": str(d.tmp / "final.bin"), "round-timeout": 120.0, **extra}


def run(d: Deployment, config: dict) -> dict:
    proc = d.run_app(config, timeout=RUN_S)
    history = Path(config["history-json"])
    assert proc.returncode == 0 and history.exists(), (
        f"flwr run: rc {proc.returncode}\n{tail(d.tmp / 'flwr-run.log', 40)}\n"
        f"--- superlink:\n{tail(d.log('superlink'))}")
    return json.loads(history.read_text())


def check_model(d: Deployment, kits: Path, partitions: list[int], parts: int) -> None:
    """The final aggregate, decrypted with a silo's kit, is plain FedAvg within the codec bound."""
    ctx = secagg.SecretContext.load(kits / "silo-01.secagg")
    got = decrypt_arrays(aggregate_to_arrays((d.tmp / "final.bin").read_bytes()), ctx)
    ref = task.plain_fedavg_round(task.Settings(), parts, partitions=partitions)
    bound = 2.0 ** -(ctx.codec.frac_bits + 1) + 1e-6  # nearest rounding, then float32
    assert list(got.keys()) == list(ref)
    for name, want in ref.items():
        err = float(np.max(np.abs(got[name].numpy().astype(np.float64) - want)))
        assert err <= bound, (name, err, bound)


def test_insecure_two_nodes_and_a_misconfigured_run(deployment, kits):
    d, port = deployment, free_port()
    superlink(d, port, "--insecure")
    for i in range(2):
        supernode(d, f"node{i}", port, kits / f"silo-0{i + 1}.secagg", i, 2, "--insecure")
    d.connect(port)
    wait_nodes(d, ["node0", "node1"])

    doc = run(d, run_config(d, kits))
    (h,) = doc["history"]
    assert doc["mode"] == "secagg" and doc["scheme"] == "bfv"
    assert (h["summed"], h["refused"], h["failed"]) == (2, 0, 0)
    assert h["bytes_in"] > 0 and h["bytes_out"] > 0
    assert doc["evaluate"]["1"]["accuracy"] > 0.5  # the nodes evaluated the decrypted model
    check_model(d, kits, [0, 1], 2)

    # a ServerApp without its public key fails loudly: the run is marked failed, the
    # reason (what to do) is in its log, and no history is written
    bad = run_config(d, kits, **{"public-key": str(d.tmp / "missing.pub"),
                                 "history-json": str(d.tmp / "bad.json")})
    proc = d.run_app(bad, timeout=RUN_S)
    out = (d.tmp / "flwr-run.log").read_text()
    assert "cannot be read on the SuperLink's machine" in out, out[-3000:]
    assert not (d.tmp / "bad.json").exists()
    runs = json.loads(d.cli("ls", "test", "--format", "json").stdout)["runs"]
    assert sorted(r["status"] for r in runs) == ["finished:completed", "finished:failed"], runs
    del proc
