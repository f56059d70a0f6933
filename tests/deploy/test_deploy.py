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
from tests.deploy.deployment import APP, BIN, Deployment, free_port, tail, wait_for

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
    d.run_app(bad, timeout=RUN_S)  # its rc says little (0 in flwr 1.41): the status does
    out = (d.tmp / "flwr-run.log").read_text()
    assert "cannot be read on the SuperLink's machine" in out, out[-3000:]
    assert not (d.tmp / "bad.json").exists()
    runs = json.loads(d.cli("ls", "test", "--format", "json").stdout)["runs"]
    assert sorted(r["status"] for r in runs) == ["finished:completed", "finished:failed"], runs


# -- TLS and SuperNode authentication ------------------------------------------------------


def make_tls(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secagg test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def node_key(tmp: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's EC key pair in OpenSSH format: (private key, public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = tmp / name, tmp / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    return private, public


def test_tls_and_supernode_authentication(deployment, kits):
    d, port = deployment, free_port()
    ca, cert, key = make_tls(d.tmp)
    superlink(d, port, "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
              "--ssl-keyfile", str(key), "--enable-supernode-auth")
    d.connect(port, root_certificates=ca)
    keys = [node_key(d.tmp, f"node{i}-key") for i in range(3)]
    for _, public in keys[:2]:  # nodes 0 and 1 are registered, node 2 is not
        proc = d.cli("supernode", "register", str(public), "test")
        assert proc.returncode == 0 and "registered successfully" in proc.stdout, proc
    for i, (private, _) in enumerate(keys):
        supernode(d, f"node{i}", port, kits / f"silo-0{i + 1}.secagg", i, 2,
                  "--root-certificates", str(ca), "--auth-supernode-private-key", str(private))
    wait_nodes(d, ["node0", "node1"])

    doc = run(d, run_config(d, kits))
    (h,) = doc["history"]
    assert (h["summed"], h["refused"], h["failed"]) == (2, 0, 0)
    check_model(d, kits, [0, 1], 2)
    # the unregistered node is refused: it never gets a node id and gives up (exit code 305)
    wait_for("the unregistered node to give up", lambda: d.procs["node2"].poll() is not None,
             START_S, [d.log("node2")])
    log = tail(d.log("node2"), 10_000)
    assert "Failed to activate SuperNode" in log and "Exit Code: 305" in log, log[-2000:]
    assert "SuperNode ID" not in log


# -- process isolation, and a SuperNode killed in the middle of a round -----------------------


def test_process_isolation_and_a_node_killed_mid_round(deployment, kits):
    d, port = deployment, free_port()
    superlink(d, port, "--insecure", "--isolation", "process")
    d.start("superlink-exec", "flower-superexec", "--insecure",
            "--runtime-api-address", f"127.0.0.1:{port}")
    for i in range(3):
        # node 2 is a slow silo: it sits in its train function until the test kills it
        runtime = supernode(d, f"node{i}", port, kits / f"silo-0{i + 1}.secagg", i, 3,
                            "--insecure", "--isolation", "process",
                            node_config="slow-start-s=600" if i == 2 else "")
        d.start(f"node{i}-exec", "flower-superexec", "--insecure",
                "--runtime-api-address", f"127.0.0.1:{runtime}")
    d.connect(port)
    wait_nodes(d, ["node0", "node1", "node2"])

    config = run_config(d, kits, **{"min-nodes": 3, "fraction-evaluate": 0.0,
                                    "round-timeout": 90.0})
    proc = subprocess.Popen([str(BIN / "flwr"), "run", str(APP), "test",
                             "--run-config", " ".join(f"{k}={json.dumps(v)}"
                                                      for k, v in config.items()),
                             "--stream"], env=d.env, cwd=d.tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    d.procs["flwr-run"] = proc
    wait_for("node 2 to start training", lambda: "partition 2 round 1: training" in
             tail(d.log("node2-exec"), 200), RUN_S, [d.log("node2"), d.log("node2-exec")])
    d.kill("node2")
    d.kill("node2-exec")
    wait_for("the run to end", lambda: Path(config["history-json"]).exists(), RUN_S,
             [d.log("superlink"), d.log("superlink-exec")])
    proc.wait(timeout=60)
    (h,) = json.loads(Path(config["history-json"]).read_text())["history"]
    # the round completed with the two others; the dead node's message came back as an
    # error reply once the SuperLink saw it offline (or was missing at round-timeout)
    assert h["summed"] == 2 and h["refused"] == 0 and h["failed"] <= 1, h
    check_model(d, kits, [0, 1], 3)
