"""``python -m secagg keygen`` / ``inspect`` with passphrase-encrypted secret contexts."""

from __future__ import annotations

import getpass
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import secagg
from secagg import cli, keystore
from secagg.keystore import WrongPassphraseError

PASSPHRASE = "c0rrect-h0rse-Ünïcode"


@pytest.fixture(autouse=True)
def _cheap_and_non_interactive(monkeypatch):
    """A cheap scrypt work factor, and no terminal unless a test says otherwise."""
    monkeypatch.setattr(keystore, "DEFAULT_SCRYPT_N", 2**10)
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: False)


def keygen_argv(key: Path, *extra: str) -> list[str]:
    """A fast keygen (512-bit Paillier keys are for tests only)."""
    return ["keygen", "--scheme", "paillier", "--key-bits", "512", "--insecure",
            "--max-clients", "3", "--out", str(key), *extra]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def passphrase_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def test_keygen_passphrase_file_writes_sealed_owner_only_file(tmp_path, capsys):
    key = tmp_path / "key.secagg"
    pw = passphrase_file(tmp_path / "pw", PASSPHRASE.encode() + b"\n")
    code, out, err = run_cli(keygen_argv(key, "--passphrase-file", str(pw)), capsys)
    assert code == 0, err
    data = key.read_bytes()
    assert keystore.is_sealed(data)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # the newline was stripped
    ctx = secagg.SecretContext.load(key, passphrase=PASSPHRASE, allow_insecure=True)
    public = secagg.PublicContext.from_bytes((tmp_path / "key.secagg.pub").read_bytes(), allow_insecure=True)
    assert ctx.fingerprint == public.fingerprint
    with pytest.raises(WrongPassphraseError):
        secagg.SecretContext.load(key, passphrase=PASSPHRASE + "\n", allow_insecure=True)
    assert "passphrase-encrypted" in out
    assert "every silo in cross-silo mode" in out and "never to the server" in out
    assert "give it to the server (aggregator) and the clients" in out
    assert "keep it on the key holder" not in out
    assert PASSPHRASE not in out + err and err == ""


def test_keygen_passphrase_env(tmp_path, capsys, monkeypatch):
    key = tmp_path / "key.secagg"
    monkeypatch.setenv("SECAGG_TEST_PW", PASSPHRASE)
    code, out, err = run_cli(keygen_argv(key, "--passphrase-env", "SECAGG_TEST_PW"), capsys)
    assert code == 0, err
    assert keystore.is_sealed(key.read_bytes())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secagg.SecretContext.load(key, passphrase=PASSPHRASE, allow_insecure=True)
    assert PASSPHRASE not in out + err


@pytest.fixture
def sealed_key(tmp_path, capsys, monkeypatch):
    key = tmp_path / "key.secagg"
    monkeypatch.setenv("SECAGG_TEST_PW", PASSPHRASE)
    code, _, err = run_cli(keygen_argv(key, "--passphrase-env", "SECAGG_TEST_PW"), capsys)
    assert code == 0, err
    return key


def test_inspect_sealed_with_the_passphrase(sealed_key, tmp_path, capsys):
    fp = secagg.SecretContext.load(sealed_key, passphrase=PASSPHRASE, allow_insecure=True).fingerprint.hex()
    pw = passphrase_file(tmp_path / "pw", PASSPHRASE.encode() + b"\r\n")
    for option in (["--passphrase-env", "SECAGG_TEST_PW"], ["--passphrase-file", str(pw)]):
        code, out, err = run_cli(["inspect", str(sealed_key), *option], capsys)
        assert code == 0, err
        assert "secret_context" in out and fp in out and "not shown" in out
        assert "encryption:   passphrase (scrypt n=1024" in out
        assert PASSPHRASE not in out + err


def test_inspect_wrong_passphrase_is_a_clear_error(sealed_key, capsys, monkeypatch):
    monkeypatch.setenv("SECAGG_WRONG_PW", "not-the-passphrase")
    argv = ["inspect", str(sealed_key), "--passphrase-env", "SECAGG_WRONG_PW"]
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and str(sealed_key) in err
    assert "passphrase does not open" in err
    assert "not-the-passphrase" not in err and PASSPHRASE not in err
    with pytest.raises(WrongPassphraseError):  # a SecAggError: tests/core/test_errors.py
        cli._cmd_inspect(cli.build_parser().parse_args(argv), out=None)  # type: ignore[arg-type]


def test_inspect_sealed_without_a_passphrase_non_interactively(sealed_key, capsys):
    code, out, err = run_cli(["inspect", str(sealed_key)], capsys)
    assert code == 1 and out == ""
    assert "passphrase-encrypted" in err
    assert "--passphrase-file FILE" in err and "--passphrase-env VAR" in err


def test_keygen_refuses_non_interactively_without_a_passphrase_option(tmp_path, capsys):
    key = tmp_path / "key.secagg"
    code, out, err = run_cli(keygen_argv(key), capsys)
    assert code == 1 and out == ""
    for option in ("--passphrase-file FILE", "--passphrase-env VAR", "--no-passphrase"):
        assert option in err
    assert not key.exists() and not (tmp_path / "key.secagg.pub").exists()


def test_no_passphrase_writes_an_unsealed_file(tmp_path, capsys):
    key = tmp_path / "key.secagg"
    code, out, err = run_cli(keygen_argv(key, "--no-passphrase"), capsys)
    assert code == 0, err
    assert not keystore.is_sealed(key.read_bytes())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secagg.SecretContext.load(key, allow_insecure=True)
    assert "NOT encrypted" in out and "never to the server" in out


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_passphrase_file_is_refused(tmp_path, capsys, content):
    key = tmp_path / "key.secagg"
    pw = passphrase_file(tmp_path / "pw", content)
    code, _, err = run_cli(keygen_argv(key, "--passphrase-file", str(pw)), capsys)
    assert code == 1 and "empty passphrase is refused" in err
    assert not key.exists()


def test_empty_or_unset_passphrase_env_is_refused(tmp_path, capsys, monkeypatch):
    key = tmp_path / "key.secagg"
    monkeypatch.setenv("SECAGG_TEST_PW", "")
    monkeypatch.delenv("SECAGG_UNSET_PW", raising=False)
    code, _, err = run_cli(keygen_argv(key, "--passphrase-env", "SECAGG_TEST_PW"), capsys)
    assert code == 1 and "empty" in err
    code, _, err = run_cli(keygen_argv(key, "--passphrase-env", "SECAGG_UNSET_PW"), capsys)
    assert code == 1 and "'SECAGG_UNSET_PW'" in err and "not set" in err
    code, _, err = run_cli(keygen_argv(key, "--passphrase-file", str(tmp_path / "none")), capsys)
    assert code == 1 and "error:" in err
    assert not key.exists()


@pytest.mark.parametrize("content, expected", [
    (b"pw\n\n", b"pw\n"), (b"pw\r\n\r\n", b"pw\r\n"), (b"pw\r", b"pw\r"), (b" pw ", b" pw "),
])
def test_only_one_trailing_newline_is_stripped(tmp_path, content, expected):
    assert cli._read_passphrase_file(passphrase_file(tmp_path / "pw", content)) == expected


def test_readable_passphrase_file_warns_without_showing_it(tmp_path, capsys):
    pw = passphrase_file(tmp_path / "pw", PASSPHRASE.encode())
    pw.chmod(0o644)
    code, out, err = run_cli(keygen_argv(tmp_path / "k", "--passphrase-file", str(pw)), capsys)
    assert code == 0 and "readable by other users" in err and "0644" in err
    assert PASSPHRASE not in out + err


def test_passphrase_file_must_not_be_the_output(tmp_path, capsys):
    key = tmp_path / "key.secagg"
    pw = passphrase_file(key, PASSPHRASE.encode())
    code, _, err = run_cli(keygen_argv(key, "--passphrase-file", str(pw), "--force"), capsys)
    assert code == 1 and "must differ" in err
    assert key.read_bytes() == PASSPHRASE.encode()


@pytest.mark.parametrize("options", [
    ["--passphrase-file", "a", "--passphrase-env", "B"],
    ["--passphrase-env", "B", "--no-passphrase"],
    ["--passphrase-file", "a", "--no-passphrase"],
])
def test_passphrase_options_are_mutually_exclusive(tmp_path, options):
    with pytest.raises(SystemExit) as info:
        cli.main(keygen_argv(tmp_path / "k", *options))
    assert info.value.code == 2


def test_prompts_on_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: True)
    answers: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream=None) -> str:
        prompts.append(prompt)
        if not answers:
            raise EOFError
        return answers.pop(0)

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    key = tmp_path / "key.secagg"

    answers[:] = [PASSPHRASE, PASSPHRASE + "x"]
    code, _, err = run_cli(keygen_argv(key), capsys)
    assert code == 1 and "differ" in err and not key.exists()

    answers[:] = [""]
    code, _, err = run_cli(keygen_argv(key), capsys)
    assert code == 1 and "empty passphrase is refused" in err and not key.exists()

    code, _, err = run_cli(keygen_argv(key), capsys)  # end of input at the prompt
    assert code == 1 and "no passphrase was entered" in err and not key.exists()

    answers[:] = [PASSPHRASE, PASSPHRASE]
    prompts.clear()
    code, out, err = run_cli(keygen_argv(key), capsys)
    assert code == 0, err
    assert len(prompts) == 2 and str(key) in prompts[0]
    secagg.SecretContext.load(key, passphrase=PASSPHRASE, allow_insecure=True)

    answers[:] = [PASSPHRASE]
    prompts.clear()
    code, out2, err2 = run_cli(["inspect", str(key)], capsys)
    assert code == 0, err2
    assert len(prompts) == 1 and "secret material is present" in out2
    assert PASSPHRASE not in out + err + out2 + err2 + "".join(prompts)

    answers[:] = ["wrong"]
    code, _, err = run_cli(["inspect", str(key)], capsys)
    assert code == 1 and "passphrase does not open" in err


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passphrase=st.text(min_size=1).filter(lambda p: not p.endswith(("\n", "\r"))),
       ending=st.sampled_from(["", "\n", "\r\n"]))
def test_passphrase_file_round_trip(capsys, passphrase, ending):
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.secagg"
        pw = passphrase_file(Path(tmp) / "pw", (passphrase + ending).encode("utf-8"))
        code, _, err = run_cli(keygen_argv(key, "--passphrase-file", str(pw)), capsys)
        assert code == 0, err
        assert keystore.is_sealed(key.read_bytes())
        ctx = secagg.SecretContext.load(key, passphrase=passphrase, allow_insecure=True)
        code, out, err = run_cli(["inspect", str(key), "--passphrase-file", str(pw)], capsys)
        assert code == 0, err
        assert ctx.fingerprint.hex() in out


def test_stdin_is_tty_tolerates_a_missing_stdin(monkeypatch):
    monkeypatch.undo()  # the real _stdin_is_tty
    monkeypatch.setattr("sys.stdin", None)
    assert cli._stdin_is_tty() is False
