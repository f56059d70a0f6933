"""The command line (secagg.cli): keygen, inspect, bench, ``python -m secagg``.

The passphrase options are in test_cli_passphrase.py; ``demo`` is in tests/demo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import secagg
from secagg import cli
from secagg.wire import Kind, open_payload, peek_kind

ROOT = Path(__file__).resolve().parents[2]  # tests/core/ -> the repository root


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def paillier_files(tmp_path, capsys):
    key, pub = tmp_path / "key.secagg", tmp_path / "key.pub"
    code, out, _ = run_cli(
        ["keygen", "--scheme", "paillier", "--out", str(key), "--public-out", str(pub),
         "--max-clients", "5", "--clip", "2.0", "--frac-bits", "12", "--max-weight", "7",
         "--key-bits", "512", "--insecure", "--no-passphrase"], capsys,
    )
    assert code == 0 and "paillier" in out
    return key, pub


def test_keygen_writes_owner_only_secret_and_loadable_files(paillier_files):
    key, pub = paillier_files
    assert key.stat().st_mode & 0o777 == 0o600
    ctx = secagg.SecretContext.from_bytes(key.read_bytes(), allow_insecure=True)
    public = secagg.PublicContext.from_bytes(pub.read_bytes(), allow_insecure=True)
    assert ctx.fingerprint == public.fingerprint
    assert (public.codec.max_clients, public.codec.clip, public.codec.frac_bits,
            public.codec.max_weight) == (5, 2.0, 12, 7)


def test_keygen_refuses_to_overwrite(paillier_files, capsys):
    key, _ = paillier_files
    before = key.read_bytes()
    code, _, err = run_cli(["keygen", "--scheme", "ckks", "--out", str(key), "--no-passphrase"],
                           capsys)
    assert code == 1 and "exists" in err
    assert key.read_bytes() == before


def test_keygen_ckks_default_public_path(tmp_path, capsys):
    key = tmp_path / "ckks.secagg"
    code, _, _ = run_cli(["keygen", "--scheme", "ckks", "--out", str(key), "--max-clients", "3",
                          "--no-passphrase"], capsys)
    assert code == 0
    assert peek_kind(key.read_bytes()) == Kind.SECRET_CONTEXT
    assert peek_kind((tmp_path / "ckks.secagg.pub").read_bytes()) == Kind.PUBLIC_CONTEXT
    code, out, _ = run_cli(["inspect", str(key)], capsys)
    assert code == 0 and "ckks" in out and "not shown" in out
    secret_blob = open_payload(key.read_bytes())[1].raw()["secret"]["seal"]
    assert secret_blob[:16].hex() not in out


def test_inspect_public_secret_and_update(paillier_files, tmp_path, capsys):
    key, pub = paillier_files
    public_fp = secagg.PublicContext.from_bytes(pub.read_bytes(), allow_insecure=True).fingerprint.hex()
    secret = open_payload(key.read_bytes())[1].raw()["secret"]
    forbidden = [secret[f].hex() for f in ("p", "q")]
    forbidden += [str(int.from_bytes(secret[f], "big")) for f in ("p", "q")]
    forbidden += [h[:16] for h in forbidden[:2]]

    code, out, _ = run_cli(["inspect", str(pub)], capsys)
    assert code == 0
    assert "public_context" in out and "paillier" in out and public_fp in out
    assert "frac_bits=12" in out and "max_weight=7" in out

    code, out, _ = run_cli(["inspect", str(key)], capsys)
    assert code == 0
    assert "secret_context" in out and "paillier" in out and public_fp in out
    assert "secret material is present" in out and "not shown" in out
    for text in forbidden:
        assert text not in out.replace(" ", "")

    public = secagg.PublicContext.from_bytes(pub.read_bytes(), allow_insecure=True)
    update = public.encrypt({"w": np.zeros((3, 4), np.float32), "b": np.ones(2)}, weight=3,
                            round_id=17)
    path = tmp_path / "update.bin"
    path.write_bytes(update.to_bytes())
    code, out, _ = run_cli(["inspect", str(path)], capsys)
    assert code == 0
    for text in ("kind:         update", "paillier", public_fp, "17", "3x4", "float32",
                 "14 values"):
        assert text in out


def test_inspect_rejects_garbage(tmp_path, capsys):
    path = tmp_path / "junk"
    path.write_bytes(b"not a payload at all")
    code, _, err = run_cli(["inspect", str(path)], capsys)
    assert code == 1 and "error:" in err


def test_bench_reports_missing_script(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_find_bench", lambda *suite: None)
    code, _, err = run_cli(["bench", "--quick"], capsys)
    assert code == 2 and "bench_core.py" in err
    code, _, err = run_cli(["bench", "--suite", "paillier", "--quick"], capsys)
    assert code == 2 and "bench_paillier.py" in err


def test_python_dash_m_secagg():
    proc = subprocess.run([sys.executable, "-m", "secagg", "--version"], capture_output=True,
                          text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False)
    assert proc.returncode == 0 and secagg.__version__ in proc.stdout
