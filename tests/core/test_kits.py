"""Per-silo key kits: ``python -m secagg keygen --silos N --out-dir DIR`` and ``inspect``."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

import secagg
from secagg import cli, keystore
from secagg.keystore import WrongPassphraseError
from secagg.wire import Kind, open_payload, peek_kind, seal

PASSPHRASE = "kit-pässphrase"
FAST = ["--scheme", "paillier", "--key-bits", "512", "--insecure", "--max-clients", "8"]


@pytest.fixture(autouse=True)
def _cheap_and_non_interactive(monkeypatch):
    """A cheap scrypt work factor, and no terminal to prompt on."""
    monkeypatch.setattr(keystore, "DEFAULT_SCRYPT_N", 2**10)
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: False)
    monkeypatch.setenv("SECAGG_KIT_PW", PASSPHRASE)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def kits_argv(out_dir: Path, silos: int, *extra: str, scheme: list[str] = FAST) -> list[str]:
    return ["keygen", *scheme, "--silos", str(silos), "--out-dir", str(out_dir), *extra]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def kits(tmp_path, capsys) -> tuple[Path, str]:
    out_dir = tmp_path / "kits"
    code, out, err = run_cli(kits_argv(out_dir, 3, "--passphrase-env", "SECAGG_KIT_PW"), capsys)
    assert code == 0, err
    return out_dir, out


def test_files_names_and_permissions(kits):
    out_dir, out = kits
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "server.secagg.pub", "silo-01.secagg", "silo-02.secagg", "silo-03.secagg"]
    assert mode(out_dir) == 0o700  # created owner-only
    for i in (1, 2, 3):
        kit = out_dir / f"silo-0{i}.secagg"
        assert mode(kit) == 0o600
        assert keystore.is_sealed(kit.read_bytes())
    assert peek_kind((out_dir / "server.secagg.pub").read_bytes()) == Kind.PUBLIC_CONTEXT
    # the printed summary: which file is whose, and that the silos share one key
    assert "(created, mode 0700)" in out
    assert "3 secret kits (mode 0600, passphrase-encrypted, one passphrase for all)" in out
    for i in (1, 2, 3):
        assert f"{out_dir / f'silo-0{i}.secagg'}  silo {i} of 3" in out
    assert "all silos share ONE secret context" in out and "one shared key" in out
    assert "never give a kit to the server" in out
    assert f"public kit: {out_dir / 'server.secagg.pub'}" in out
    assert "give it to the server (aggregator) and the clients" in out
    assert PASSPHRASE not in out


def test_kit_names_are_numbered_to_sort():
    assert cli.silo_kit_name(3, 5) == "silo-03.secagg"
    assert cli.silo_kit_name(12, 99) == "silo-12.secagg"
    assert cli.silo_kit_name(7, 100) == "silo-007.secagg"


def test_every_kit_loads_to_the_server_kits_fingerprint(kits):
    out_dir, _ = kits
    public = secagg.PublicContext.from_bytes((out_dir / "server.secagg.pub").read_bytes(),
                                             allow_insecure=True)
    contexts = [secagg.SecretContext.load(out_dir / f"silo-0{i}.secagg", passphrase=PASSPHRASE,
                                          allow_insecure=True) for i in (1, 2, 3)]
    assert {c.fingerprint for c in contexts} == {public.fingerprint}
    # one shared secret: the kits differ only in their label
    assert len({c.to_bytes() for c in contexts}) == 1
    for i in (1, 2, 3):
        opened = keystore.open_secret((out_dir / f"silo-0{i}.secagg").read_bytes(), PASSPHRASE)
        assert keystore.kit_label(opened) == (i, 3)
    # and they decrypt each other's sums
    a, b = contexts[0], contexts[2]
    agg = secagg.Aggregator(public)
    for v in (0.25, 0.5):
        agg.add(public.encrypt({"w": np.full(3, v)}))
    np.testing.assert_allclose(b.decrypt(agg.result(), reduce="mean")["w"], 0.375, atol=1e-4)
    np.testing.assert_allclose(a.decrypt(agg.result(), reduce="sum")["w"], 0.75, atol=1e-4)


def test_inspect_says_whose_kit_it_is(kits, capsys):
    out_dir, _ = kits
    fingerprint = secagg.PublicContext.from_bytes(
        (out_dir / "server.secagg.pub").read_bytes(), allow_insecure=True).fingerprint.hex()
    for i in (1, 2, 3):
        code, out, err = run_cli(["inspect", str(out_dir / f"silo-0{i}.secagg"),
                                  "--passphrase-env", "SECAGG_KIT_PW"], capsys)
        assert code == 0, err
        assert (f"kit:          secret context for silo {i} of 3 (cross-silo shared key); "
                f"give it to that silo only, never to the server") in out
        assert "all 3 silo kits hold the same secret context" in out
        assert fingerprint in out and "not shown" in out and "encryption:   passphrase" in out
        assert PASSPHRASE not in out + err
    code, out, _ = run_cli(["inspect", str(out_dir / "server.secagg.pub")], capsys)
    assert code == 0
    assert "kit:          public context for the server and clients" in out
    assert fingerprint in out


def test_inspect_of_a_plain_secret_context(tmp_path, capsys):
    key = tmp_path / "key.secagg"
    code, _, err = run_cli(["keygen", *FAST, "--out", str(key), "--no-passphrase"], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["inspect", str(key)], capsys)
    assert code == 0
    assert "kit:          secret context for the key holder, or for every silo" in out
    assert "silo 1 of" not in out


def test_passphrase_refused_and_accepted(kits, capsys, monkeypatch):
    out_dir, _ = kits
    kit = out_dir / "silo-02.secagg"
    with pytest.raises(WrongPassphraseError):
        secagg.SecretContext.load(kit, passphrase="wrong", allow_insecure=True)
    with pytest.raises(secagg.FormatError):  # sealed: a passphrase is needed
        secagg.SecretContext.load(kit, allow_insecure=True)
    monkeypatch.setenv("SECAGG_WRONG_PW", "wrong")
    code, out, err = run_cli(["inspect", str(kit), "--passphrase-env", "SECAGG_WRONG_PW"], capsys)
    assert code == 1 and out == "" and "passphrase does not open" in err and str(kit) in err
    code, out, err = run_cli(["inspect", str(kit)], capsys)  # no terminal to prompt on
    assert code == 1 and "passphrase-encrypted" in err
    pw = out_dir.parent / "pw"
    pw.write_bytes(PASSPHRASE.encode() + b"\n")
    pw.chmod(0o600)
    code, out, err = run_cli(["inspect", str(kit), "--passphrase-file", str(pw)], capsys)
    assert code == 0 and "silo 2 of 3" in out, err


def test_keygen_without_a_passphrase_option_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "kits"
    code, out, err = run_cli(kits_argv(out_dir, 3), capsys)
    assert code == 1 and out == ""
    assert "the silo kits in" in err and "--no-passphrase" in err
    assert not out_dir.exists()


def test_no_passphrase_ckks_kits(tmp_path, capsys):
    out_dir = tmp_path / "ckks-kits"
    code, out, err = run_cli(kits_argv(out_dir, 2, "--no-passphrase",
                                       scheme=["--scheme", "ckks", "--max-clients", "4"]), capsys)
    assert code == 0, err
    assert "NOT encrypted: --no-passphrase" in out
    kits = [out_dir / "silo-01.secagg", out_dir / "silo-02.secagg"]
    public = secagg.PublicContext.from_bytes((out_dir / "server.secagg.pub").read_bytes())
    for i, kit in enumerate(kits, 1):
        assert mode(kit) == 0o600 and peek_kind(kit.read_bytes()) == Kind.SECRET_CONTEXT
        assert secagg.SecretContext.load(kit).fingerprint == public.fingerprint
        assert keystore.kit_label(kit.read_bytes()) == (i, 2)
    code, out, _ = run_cli(["inspect", str(kits[1])], capsys)
    assert code == 0 and "secret context for silo 2 of 2" in out


def test_refuses_to_overwrite_kits_unless_forced(kits, capsys):
    out_dir, _ = kits
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, out, err = run_cli(kits_argv(out_dir, 3, "--passphrase-env", "SECAGG_KIT_PW"), capsys)
    assert code == 1 and out == ""
    assert "already holds 4 key kit(s)" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    # another --silos: still refused (any kit there)
    code, _, err = run_cli(kits_argv(out_dir, 2, "--no-passphrase"), capsys)
    assert code == 1 and "--force" in err
    # --force replaces them all: a new key, and the kits beyond --silos are removed
    old = secagg.PublicContext.from_bytes(before["server.secagg.pub"],
                                          allow_insecure=True).fingerprint
    (out_dir / "silo-02.secagg").chmod(0o644)
    code, out, err = run_cli(kits_argv(out_dir, 2, "--no-passphrase", "--force"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "server.secagg.pub", "silo-01.secagg", "silo-02.secagg"]
    assert "removed 1 kit(s) of the replaced key: silo-03.secagg" in out
    assert "(created" not in out
    new = secagg.PublicContext.from_bytes((out_dir / "server.secagg.pub").read_bytes(),
                                          allow_insecure=True).fingerprint
    assert new != old
    for kit in ("silo-01.secagg", "silo-02.secagg"):
        assert mode(out_dir / kit) == 0o600
        assert secagg.SecretContext.load(out_dir / kit, allow_insecure=True).fingerprint == new


def test_an_existing_open_directory_is_warned_about(tmp_path, capsys):
    out_dir = tmp_path / "shared"
    out_dir.mkdir()
    out_dir.chmod(0o755)
    (out_dir / "notes.txt").write_text("unrelated")
    code, _, err = run_cli(kits_argv(out_dir, 2, "--no-passphrase"), capsys)
    assert code == 0
    assert "open to other users (mode 0755)" in err and "chmod 700" in err
    assert mode(out_dir / "silo-01.secagg") == 0o600
    assert (out_dir / "notes.txt").read_text() == "unrelated"  # other files are left alone


@pytest.mark.parametrize("argv, message", [
    (["--silos", "3", "--out", "{d}/key.secagg"], "use it with --out-dir"),
    (["--out-dir", "{d}/kits"], "pass --silos N"),
    (["--silos", "9", "--out-dir", "{d}/kits"], "exceeds --max-clients 8"),
    (["--silos", "1", "--out-dir", "{d}/kits"], "below --min-clients 2"),
    (["--silos", "0", "--out-dir", "{d}/kits"], "--silos must be in"),
    (["--silos", "2", "--out-dir", "{d}/kits", "--public-out", "{d}/x.pub"], "--public-out"),
    (["--silos", "2", "--out-dir", "{d}/file"], "not a directory"),
])
def test_bad_options_are_clear_errors(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("")
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    code, out, err = run_cli(["keygen", *FAST, *argv, "--no-passphrase"], capsys)
    assert code == 1 and out == "" and message in err
    assert not (tmp_path / "kits").exists() and not (tmp_path / "key.secagg").exists()


def test_out_and_out_dir_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["keygen", *FAST, "--out", str(tmp_path / "k"), "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main(["keygen", *FAST, "--silos", "2"])
    assert "--out" in capsys.readouterr().err


def test_passphrase_file_may_not_be_a_kit(tmp_path, capsys):
    out_dir = tmp_path / "kits"
    out_dir.mkdir(mode=0o700)
    pw = out_dir / "silo-01.secagg"
    pw.write_bytes(b"pw")
    pw.chmod(0o600)
    code, _, err = run_cli(kits_argv(out_dir, 2, "--passphrase-file", str(pw), "--force"),
                           capsys)
    assert code == 1 and "--passphrase-file must not be one of the kits" in err


# -- the label itself --------------------------------------------------------------------


def test_label_kit_and_kit_label(tmp_path):
    from tests.helpers import make_context

    ctx = make_context("paillier")
    plain = ctx.to_bytes()
    assert keystore.kit_label(plain) is None
    labelled = keystore.label_kit(plain, 4, 7)
    assert keystore.kit_label(labelled) == (4, 7)
    assert keystore.kit_label(keystore.label_kit(labelled, 1, 2)) == (1, 2)  # relabelled
    loaded = secagg.SecretContext.from_bytes(labelled, allow_insecure=True)
    assert loaded.fingerprint == ctx.fingerprint and loaded.to_bytes() == plain
    sealed = keystore.seal_secret(labelled, PASSPHRASE, n=2**10)
    assert secagg.SecretContext.from_bytes(sealed, passphrase=PASSPHRASE,
                                           allow_insecure=True).fingerprint == ctx.fingerprint
    for silo, silos in ((0, 3), (4, 3), (1, 0), (True, 3), (1, keystore.MAX_SILOS + 1)):
        with pytest.raises(secagg.ConfigError):
            keystore.label_kit(plain, silo, silos)
    with pytest.raises(secagg.FormatError):
        keystore.label_kit(ctx.public.to_bytes(), 1, 2)
    body = open_payload(plain)[1].raw()
    for bad in ({"silo": 3, "silos": 2}, {"silo": "1", "silos": 2}, {"silos": 2}, [1, 2]):
        with pytest.raises(secagg.FormatError):
            keystore.kit_label(seal(Kind.SECRET_CONTEXT, {**body, "kit": bad}))


def test_a_kit_loads_in_the_flower_mod(kits, task_identity):
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord

    from secagg.integrations import flower as sf
    from tests.integrations import flower_helpers as fh

    out_dir, _ = kits
    server = sf.SecAggFedAvg((out_dir / "server.secagg.pub").read_bytes(), min_train_nodes=fh.N,
                             min_available_nodes=fh.N, allow_insecure=True)
    app = fh.ClientApp(mods=[sf.secagg_mod(
        lambda c: secagg.SecretContext.load(out_dir / "silo-01.secagg", passphrase=PASSPHRASE,
                                            allow_insecure=True),
        allow_insecure=True)])

    @app.train()
    def train(msg, c):
        return fh.Message(fh.RecordDict({"arrays": msg.content["arrays"], "metrics":
                                         fh.MetricRecord({"num-examples": 1})}), reply_to=msg)

    replies, (arrays, _) = fh.train_round(server, app, 1, ArrayRecord(fh.INIT))
    assert not any(r.has_error() for r in replies)
    kit = secagg.SecretContext.load(out_dir / "silo-03.secagg", passphrase=PASSPHRASE,
                                    allow_insecure=True)
    fh.assert_close(sf.decrypt_arrays(arrays, kit).to_numpy_ndarrays(),
                    [a.astype(np.float64) for a in fh.INIT], kit)
