"""The ``python -m secagg`` command line: ``demo``, ``keygen``, ``inspect``, ``bench``, ``deal``.

Examples::

    python -m secagg demo --rounds 30 --backends plain,paillier,ckks,bfv --out results/
    python -m secagg keygen --scheme paillier --out key.secagg --public-out key.pub \\
        --max-clients 100 --clip 1.0 --frac-bits 16 --passphrase-file pass.txt
    python -m secagg keygen --scheme ckks --silos 5 --out-dir kits/ --passphrase-file pass.txt
    python -m secagg inspect key.pub
    python -m secagg inspect key.secagg --passphrase-env SECAGG_PASSPHRASE
    python -m secagg bench --quick
    python -m secagg deal --silos a,b,c --threshold 2 --out-dir kits/ --passphrase-file pass.txt

``deal`` runs the threshold Paillier ceremony of a cross-silo federation
(:mod:`secagg.threshold.cli`): one sealed kit per silo and the public federation.
``keygen`` writes the secret context with owner-only permissions (0o600),
encrypted under a passphrase (scrypt + AES-256-GCM, as
``SecretContext.save(path, passphrase=...)``). The passphrase comes from
``--passphrase-file`` (one trailing newline stripped), ``--passphrase-env``, or
a prompt when stdin is a terminal; without a terminal and without either
option keygen refuses unless ``--no-passphrase`` asks for an unencrypted file.
With ``--silos N --out-dir DIR`` keygen writes the key kits of a cross-silo
federation instead: ``DIR/silo-01.secagg`` ... ``silo-NN.secagg`` (0600, in a
directory created 0700), one per silo, all holding the one shared secret context
and labelled with their silo, and ``DIR/server.secagg.pub``, the public kit.
``inspect`` shows the header and public parameters of any secagg payload and
never prints secret material; it asks for the passphrase the same way to open
an encrypted secret context. A passphrase is never printed. Only ``demo``
needs torch, scikit-learn, tqdm and matplotlib; they are imported when it runs.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from secagg import __version__, schemes
from secagg.context import PublicContext, SecretContext, generate
from secagg.errors import ConfigError, SecAggError
from secagg.keystore import WrongPassphraseError, is_sealed, kit_label, open_secret
from secagg.tree import TreeSpec
from secagg.wire import Kind, open_payload, peek_kind, seal

__all__ = ["main", "build_parser", "add_demo_arguments", "run_demo", "inspect_payload"]

_BENCH_DIR = Path("benchmarks")
BENCH_SUITES = ("core", "paillier", "lattice")


# -- demo ----------------------------------------------------------------------------


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    allowed = ("plain", *schemes.available())
    bad = [b for b in names if b not in allowed]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"backends must be a comma-separated subset of {','.join(allowed)}; got {text!r}."
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"backends repeat: {text!r}.")
    return names


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the federated-learning demo's flags (shared with ``examples/fedavg_digits.py``)."""
    parser.add_argument("--rounds", type=int, default=30, help="communication rounds (default 30)")
    parser.add_argument("--clients", type=int, default=10, help="number of clients (default 10)")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="Dirichlet concentration of the non-IID label split (default 0.5)")
    parser.add_argument("--mode", choices=("fedavg", "fedsgd"), default="fedavg",
                        help="clients send model deltas (fedavg) or one gradient (fedsgd)")
    every = ["plain", *schemes.available()]
    parser.add_argument("--backends", type=_backends, default=every,
                        help=f"comma-separated: {','.join(every)} (default all)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="directory for the plot and JSON (default results/), named after the "
                             "run: fedavg_digits.png/.json by default, fedavg_digits_fedsgd, _dp, "
                             "_unweighted, _personalize, _rounds5, ... otherwise")
    parser.add_argument("--dp", action="store_true",
                        help="distributed differential privacy on the secure backends "
                             "(L2 clipping + discrete Gaussian noise; prints epsilon)")
    parser.add_argument("--dp-l2-clip", type=float, default=0.5,
                        help="DP: L2 norm bound of one client's update (default 0.5)")
    parser.add_argument("--dp-noise-multiplier", type=float, default=1.0,
                        help="DP: total noise std in units of the L2 clip (default 1.0)")
    parser.add_argument("--dp-delta", type=float, default=1e-5,
                        help="DP: delta at which epsilon is reported (default 1e-5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for everything (default 0)")
    parser.add_argument("--unweighted", action="store_true",
                        help="plain mean instead of the sample-weighted mean")
    parser.add_argument("--local-epochs", type=int, default=2, help="FedAvg local epochs (default 2)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default 0.1 for fedavg, 1.0 for fedsgd)")
    parser.add_argument("--personalize", action="store_true",
                        help="personalised FL: each client keeps its own last layer (fc2), only "
                             "the body (fc1) is securely averaged; prints per-client accuracy "
                             "against plain FedAvg's global model")
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier key size (default 2048)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow Paillier keys below 2048 bits (quick tests only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _demo_options(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's command-line options as JSON data."""
    skip = {"command", "bench_args"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip}


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the side-by-side experiment, print the table, write the PNG and JSON.

    The files are named after the run's mode and options
    (:func:`secagg.demo.fedavg.output_stem`), so different runs do not overwrite
    each other.

    Returns:
        The process exit status (0).

    Raises:
        ConfigError: if a package of the ``demo`` extra is missing (the message
            names it and ``pip install "secagg[demo]"``).
    """
    from secagg.demo import require_demo

    require_demo(dp=args.dp, progress=not args.no_progress)
    from secagg.demo import fedavg as fl

    out = out or sys.stdout
    cfg_kwargs: dict[str, Any] = dict(
        rounds=args.rounds, clients=args.clients, alpha=args.alpha, mode=args.mode,
        weighted=not args.unweighted, seed=args.seed, key_bits=args.key_bits, dp=args.dp,
        local_epochs=args.local_epochs, lr=args.lr, dp_l2_clip=args.dp_l2_clip,
        dp_noise_multiplier=args.dp_noise_multiplier, dp_delta=args.dp_delta,
        personalize=args.personalize, insecure=args.insecure,
    )
    cfg = fl.FLConfig(**cfg_kwargs)  # validates
    notes: list[str] = []
    if cfg.dp and not args.unweighted:
        notes.append(fl.DP_UNWEIGHTED_NOTICE)
        print(fl.DP_UNWEIGHTED_NOTICE, file=out)
    stem = fl.output_stem(cfg, args.backends)
    png_path, json_path = args.out / f"{stem}.png", args.out / f"{stem}.json"
    progress = not args.no_progress
    baseline = None
    if cfg.personalize:
        head = ", ".join(p.removesuffix(".*") for p in fl.PERSONAL_LAYERS)
        print(f"personalised FL: every client keeps its own {head} (the last layer); only the "
              f"other layers are encrypted and averaged", file=out)
        baseline, results = fl.run_personalized_experiment(
            backends=args.backends, progress=progress, **cfg_kwargs)
    else:
        results = fl.run_experiment(backends=args.backends, progress=progress, **cfg_kwargs)
    print(fl.format_table(results), file=out)
    note = fl.coincidence_note(results)
    if note:
        print(f"accuracy: {note.replace(chr(10), '; ')}", file=out)
    if baseline is not None:
        print(file=out)
        print(fl.format_client_table(baseline, results), file=out)
    if cfg.dp:
        eps = [r.epsilon for r in results.values() if r.epsilon is not None]
        if eps:
            print(fl.epsilon_line(max(eps), cfg.dp_delta, cfg.rounds), file=out)
        else:
            print("DP: no secure backend ran and the plain backend adds no noise: no ε to report",
                  file=out)
    png = fl.plot_accuracy(results, png_path, title=fl.plot_title(cfg), baseline=baseline)
    metadata = fl.run_metadata(results, cfg, options=_demo_options(args),
                               files={"png": str(png_path), "json": str(json_path)}, notes=notes)
    js = fl.save_json(results, json_path, config=fl.config_dict(cfg), metadata=metadata,
                      baseline=baseline)
    print(f"wrote {png} and {js}", file=out)
    return 0


# -- passphrases ---------------------------------------------------------------------

_MAX_PASSPHRASE_FILE = 1 << 16  # bytes; a passphrase file is small (and not /dev/zero)
_PASSPHRASE_OPTIONS = "--passphrase-file FILE or --passphrase-env VAR"


def _stdin_is_tty() -> bool:
    """Whether stdin is an interactive terminal (then a passphrase may be prompted for)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _read_passphrase_file(path: Path) -> bytes:
    """A passphrase file's bytes without one trailing ``\\n`` or ``\\r\\n``.

    Raises:
        ConfigError: if the file is too large or the passphrase is empty.
        OSError: if the file cannot be read.
    """
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        data = f.read(_MAX_PASSPHRASE_FILE + 1)
    if len(data) > _MAX_PASSPHRASE_FILE:
        raise ConfigError(f"passphrase file {path} is over {_MAX_PASSPHRASE_FILE} bytes; "
                          f"it should hold the passphrase only.")
    if stat.S_ISREG(mode) and mode & 0o077:
        print(f"warning: passphrase file {path} is readable by other users "
              f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it.", file=sys.stderr)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ConfigError(f"passphrase file {path} holds an empty passphrase; "
                          f"an empty passphrase is refused.")
    return data


def _env_passphrase(var: str) -> bytes:
    value = os.environ.get(var) if var else None
    if value is None:
        raise ConfigError(f"environment variable {var!r} (--passphrase-env) is not set.")
    if not value:
        raise ConfigError(f"environment variable {var!r} (--passphrase-env) is empty; "
                          f"an empty passphrase is refused.")
    return os.fsencode(value)  # the variable's own bytes, as a passphrase file would hold them


def _prompt_passphrase(prompt: str) -> bytes:
    try:
        value = getpass.getpass(prompt)
    except EOFError:
        raise ConfigError("no passphrase was entered.") from None
    if not value:
        raise ConfigError("an empty passphrase is refused.")
    return value.encode("utf-8")


def _given_passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase from ``--passphrase-file`` or ``--passphrase-env``, if either was given."""
    if args.passphrase_file is not None:
        return _read_passphrase_file(args.passphrase_file)
    if args.passphrase_env is not None:
        return _env_passphrase(args.passphrase_env)
    return None


def _keygen_target(args: argparse.Namespace) -> str:
    """What keygen encrypts, for messages: the secret context file or the silo kits."""
    out_dir = getattr(args, "out_dir", None)
    return str(args.out) if out_dir is None else f"the silo kits in {out_dir}"


def _new_passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase to encrypt a new secret context under; ``None`` for ``--no-passphrase``."""
    given = _given_passphrase(args)
    if given is not None or args.no_passphrase:
        return given
    if not _stdin_is_tty():
        raise ConfigError(
            f"keygen needs a passphrase to encrypt {_keygen_target(args)}, and stdin is not a "
            f"terminal to prompt for one: pass {_PASSPHRASE_OPTIONS}, or --no-passphrase to "
            f"write the secret context unencrypted."
        )
    first = _prompt_passphrase(f"Passphrase to encrypt {_keygen_target(args)}: ")
    if _prompt_passphrase("Repeat the passphrase: ") != first:
        raise ConfigError("the two passphrases differ; nothing was written.")
    return first


def _existing_passphrase(args: argparse.Namespace, path: Path) -> bytes:
    """The passphrase that opens the encrypted secret context in ``path``."""
    given = _given_passphrase(args)
    if given is not None:
        return given
    if not _stdin_is_tty():
        raise ConfigError(
            f"{path} is a passphrase-encrypted secret context and stdin is not a terminal to "
            f"prompt for the passphrase: pass {_PASSPHRASE_OPTIONS}."
        )
    return _prompt_passphrase(f"Passphrase for {path}: ")


def _load_secret_bytes(args: argparse.Namespace, path: Path, data: bytes) -> bytes:
    """Decrypt ``data`` (read from ``path``) if it is sealed, asking for the passphrase.

    Every command that reads a secret context goes through this, so all of them take
    the passphrase the same way: ``--passphrase-file``, ``--passphrase-env`` or a prompt.

    Raises:
        WrongPassphraseError: if the passphrase does not open the file.
        ConfigError: if no passphrase is available or it is empty.
    """
    if not is_sealed(data):
        return data
    passphrase = _existing_passphrase(args, path)
    try:
        return open_secret(data, passphrase)
    except WrongPassphraseError as exc:
        raise WrongPassphraseError(f"{path}: {exc}") from None


def _add_passphrase_arguments(parser: argparse.ArgumentParser, *, new: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    what = "encrypt the secret context under" if new else "open an encrypted secret context with"
    group.add_argument("--passphrase-file", type=Path, default=None, metavar="FILE",
                       help=f"{what} the passphrase in FILE (one trailing newline is stripped)")
    group.add_argument("--passphrase-env", default=None, metavar="VAR",
                       help=f"{what} the passphrase in environment variable VAR")
    if new:
        group.add_argument("--no-passphrase", action="store_true",
                           help="write the secret context unencrypted (only mode 0600 protects "
                                "it); without a passphrase option keygen prompts on a terminal "
                                "and refuses otherwise")


# -- keygen --------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to a file only its owner can read (0o600), created that way."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file (with --force) keeps no wider mode
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd != -1:
            os.close(fd)


def _generate_context(args: argparse.Namespace) -> SecretContext:
    """The context keygen's options describe (the slow part of keygen)."""
    kwargs: dict[str, Any] = dict(
        max_clients=args.max_clients, clip=args.clip, frac_bits=args.frac_bits,
        max_weight=args.max_weight, min_clients=args.min_clients,
    )
    kwargs.update(schemes.get(args.scheme).accepted(
        {"key_bits": args.key_bits, "insecure": args.insecure or None, "security": args.security}))
    return generate(args.scheme, **kwargs)


def _cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    if args.out_dir is not None:
        return _keygen_kits(args, out)
    if args.silos is not None:
        raise ConfigError("--silos writes one kit per silo into --out-dir DIR; "
                          "use it with --out-dir instead of --out.")
    public_out = args.public_out or args.out.with_name(args.out.name + ".pub")
    if public_out.resolve() == args.out.resolve():
        raise ConfigError("--public-out must differ from --out.")
    for path in (args.out, public_out):
        if path.exists() and not args.force:
            raise ConfigError(f"{path} exists; pass --force to overwrite it.")
    if args.passphrase_file is not None and args.passphrase_file.resolve() in (
            args.out.resolve(), public_out.resolve()):
        raise ConfigError("--passphrase-file must differ from --out and --public-out.")
    passphrase = _new_passphrase(args)  # before the (possibly slow) key generation
    ctx = _generate_context(args)
    secret = ctx.to_bytes() if passphrase is None else ctx.to_sealed_bytes(passphrase)
    _write_private(args.out, secret, force=args.force)
    public_out.write_bytes(ctx.public.to_bytes())
    sealing = ("passphrase-encrypted" if passphrase is not None
               else "NOT encrypted: --no-passphrase")
    print(f"{ctx.scheme} context, fingerprint {ctx.fingerprint.hex()}", file=out)
    print(f"secret context: {args.out} (mode 0600, {sealing})", file=out)
    print("  give it to the key holder, or to every silo in cross-silo mode; "
          "never to the server", file=out)
    print(f"public context: {public_out}", file=out)
    print("  give it to the server (aggregator) and the clients", file=out)
    return 0


# -- keygen --silos: per-silo key kits -----------------------------------------------

#: the public kit's file name in ``--out-dir``
SERVER_KIT = "server.secagg.pub"
_SILO_KIT = re.compile(r"silo-(\d+)\.secagg")


def silo_kit_name(silo: int, silos: int) -> str:
    """``silo-03.secagg``: the secret kit of silo ``silo`` (1-based) of ``silos``."""
    return f"silo-{silo:0{max(2, len(str(silos)))}d}.secagg"


def _existing_kits(out_dir: Path) -> list[Path]:
    """The key kits already in ``out_dir`` (silo-N.secagg and server.secagg.pub)."""
    if not out_dir.is_dir():
        return []
    numbered = [(int(m.group(1)), p) for p in out_dir.iterdir()
                if (m := _SILO_KIT.fullmatch(p.name)) is not None]
    found = [p for _, p in sorted(numbered)]
    if (out_dir / SERVER_KIT).exists():
        found.append(out_dir / SERVER_KIT)
    return found


def _make_kit_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` owner-only (0700) if it is new; warn if an existing one is open."""
    if out_dir.is_dir():
        mode = stat.S_IMODE(out_dir.stat().st_mode)
        if mode & 0o077:
            print(f"warning: {out_dir} is open to other users (mode {mode:04o}); the secret "
                  f"kits are 0600, but run chmod 700 on it.", file=sys.stderr)
        return False
    out_dir.mkdir(mode=0o700, parents=True)
    os.chmod(out_dir, 0o700)  # whatever the umask
    return True


def _keygen_kits(args: argparse.Namespace, out: TextIO) -> int:
    """``keygen --silos N --out-dir DIR``: one sealed secret kit per silo, one public kit."""
    from secagg import keystore

    out_dir: Path = args.out_dir
    silos = args.silos
    if silos is None:
        raise ConfigError("--out-dir writes one key kit per silo: pass --silos N.")
    if args.public_out is not None:
        raise ConfigError(f"--public-out is for --out; with --out-dir the public kit is "
                          f"{out_dir / SERVER_KIT}.")
    if not 1 <= silos <= keystore.MAX_SILOS:
        raise ConfigError(f"--silos must be in [1, {keystore.MAX_SILOS}]; found {silos}.")
    if silos > args.max_clients:
        raise ConfigError(f"--silos {silos} exceeds --max-clients {args.max_clients}: a sum "
                          f"holds at most max_clients updates; raise --max-clients.")
    if silos < args.min_clients:
        raise ConfigError(f"--silos {silos} is below --min-clients {args.min_clients}: the "
                          f"silos could never decrypt an aggregate; lower --min-clients.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} exists and is not a directory.")
    kits = [out_dir / silo_kit_name(i, silos) for i in range(1, silos + 1)]
    public_out = out_dir / SERVER_KIT
    existing = _existing_kits(out_dir)
    if existing and not args.force:
        names = ", ".join(p.name for p in existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise ConfigError(f"{out_dir} already holds {len(existing)} key kit(s) ({names}); "
                          f"pass --force to replace them all.")
    if args.passphrase_file is not None and args.passphrase_file.resolve() in {
            p.resolve() for p in (*kits, public_out)}:
        raise ConfigError("--passphrase-file must not be one of the kits keygen writes.")
    passphrase = _new_passphrase(args)  # before the (possibly slow) key generation
    ctx = _generate_context(args)
    created = _make_kit_dir(out_dir)
    secret = ctx.to_bytes()
    for i, path in enumerate(kits, 1):
        data = keystore.label_kit(secret, i, silos)
        if passphrase is not None:
            data = keystore.seal_secret(data, passphrase, n=keystore.DEFAULT_SCRYPT_N)
        _write_private(path, data, force=args.force)
    public_out.write_bytes(ctx.public.to_bytes())
    # --force: kits beyond --silos are of the replaced key; none may be mistaken for a new one
    stale = [p for p in _existing_kits(out_dir) if p not in kits and p != public_out]
    for path in stale:
        path.unlink()
    sealing = ("passphrase-encrypted, one passphrase for all" if passphrase is not None
               else "NOT encrypted: --no-passphrase")
    print(f"{ctx.scheme} context, fingerprint {ctx.fingerprint.hex()}", file=out)
    if created:
        print(f"directory: {out_dir} (created, mode 0700)", file=out)
    print(f"silo kits: {silos} secret kits (mode 0600, {sealing})", file=out)
    for i, path in enumerate(kits, 1):
        print(f"  {path}  silo {i} of {silos}", file=out)
    print("  all silos share ONE secret context (cross-silo mode: one shared key); the kits "
          "differ only in their silo label", file=out)
    print("  give each silo its own kit only; never give a kit to the server", file=out)
    print(f"public kit: {public_out}", file=out)
    print("  give it to the server (aggregator) and the clients", file=out)
    if stale:
        print(f"removed {len(stale)} kit(s) of the replaced key: "
              + ", ".join(p.name for p in stale), file=out)
    return 0


# -- inspect -------------------------------------------------------------------------


def _size(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, list):
        return f"list of {len(value)}"
    if isinstance(value, dict):
        return f"map of {len(value)}"
    return type(value).__name__


def _public_lines(body: dict[str, Any]) -> list[str]:
    """Describe a public context body (validated by loading it)."""
    # inspect describes a file, insecure test contexts included (describe() says so)
    pub = PublicContext.from_bytes(seal(Kind.PUBLIC_CONTEXT, body), allow_insecure=True)
    d = pub.describe()
    lines = [
        f"scheme:       {pub.scheme}",
        f"fingerprint:  {pub.fingerprint.hex()}",
        f"min_clients:  {pub.min_clients}",
        "codec:        " + ", ".join(f"{k}={v}" for k, v in pub.codec.params().items()),
        f"slot_bits:    {pub.codec.slot_bits}",
        f"error_bound:  {pub.codec.error_bound:.3g}",
    ]
    skip = set(pub.codec.params()) | {"fingerprint", "min_clients", "scheme", "slot_bits",
                                      "error_bound"}
    extra = {k: v for k, v in d.items() if k not in skip}
    if extra:
        lines.append("backend:      " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()
        ))
    backend = body.get("backend", {})
    if isinstance(backend, dict):
        lines.append("material:     " + ", ".join(f"{k} ({_size(v)})" for k, v in backend.items()))
    return lines


def _update_lines(body: dict[str, Any]) -> list[str]:
    """Describe an update, aggregate or term body (public metadata only)."""
    lines = [f"scheme:       {body.get('scheme')!s:.40}"]
    fp = body.get("fingerprint")
    lines.append(f"fingerprint:  {fp.hex() if isinstance(fp, bytes) else '?'}")
    lines.append(f"count:        {body.get('count')!s:.20} client update(s)")
    lines.append(f"terms:        {body.get('terms')!s:.20}")
    lines.append(f"round id:     {body.get('round')!r:.140}")
    lines.append(f"values:       {body.get('values')!s:.20}")
    cts = body.get("ciphertexts")
    if isinstance(cts, bytes):
        lines.append(f"ciphertexts:  {len(cts)} bytes (packed)")
    elif isinstance(cts, list):
        total = sum(len(c) for c in cts if isinstance(c, bytes))
        lines.append(f"ciphertexts:  {len(cts)}, {total} bytes")
    spec = TreeSpec.from_obj(body.get("spec"))
    lines.append(f"tree spec:    {len(spec.leaves)} leaves, {spec.num_values} values")
    for leaf in spec.leaves:
        shape = "x".join(map(str, leaf.shape)) or "scalar"
        lines.append(f"  {leaf.name:<24.60} {shape:<14} {leaf.dtype:<9} {leaf.lib} {leaf.device}")
    return lines


def _kit_lines(kind: Kind, data: bytes) -> list[str]:
    """What a context holds and for whom (a silo's key kit says which silo)."""
    if kind == Kind.PUBLIC_CONTEXT:
        return ["kit:          public context for the server and clients"]
    if kind != Kind.SECRET_CONTEXT:
        return []
    label = kit_label(data)
    if label is None:
        return ["kit:          secret context for the key holder, or for every silo in "
                "cross-silo mode; never give it to the server"]
    silo, silos = label
    return [f"kit:          secret context for silo {silo} of {silos} (cross-silo shared key); "
            f"give it to that silo only, never to the server",
            f"              all {silos} silo kits hold the same secret context (one shared "
            f"key); only this label differs"]


def inspect_payload(data: bytes) -> list[str]:
    """Describe a secagg payload's header and public fields, one line per item.

    Secret material is never shown: for a secret context only its public half
    is described, with a line saying that secret material is present. A
    context's ``kit:`` line says for whom it is (a silo's kit: which silo).

    Raises:
        SecAggError: (a ``FormatError`` subclass) if ``data`` is not a valid payload.
    """
    kind = peek_kind(data)
    _, body = open_payload(data)
    raw = body.raw()
    body_size = len(data) - 16 - 16
    lines = [
        f"kind:         {kind.name.lower()}",
        f"version:      {data[6]}",
        f"size:         {len(data)} bytes ({body_size} body, 16 header, 16 digest)",
        *_kit_lines(kind, data),
    ]
    if kind == Kind.PUBLIC_CONTEXT:
        lines += _public_lines(raw)
    elif kind == Kind.SECRET_CONTEXT:
        lines += _public_lines(body.section("public").raw())
        secret = raw.get("secret")
        fields = ", ".join(sorted(secret)) if isinstance(secret, dict) else "?"
        lines.append(f"secret:       secret material is present ({fields}) but not shown")
    elif kind in (Kind.UPDATE, Kind.AGGREGATE, Kind.TERM):
        lines += _update_lines(raw)
    else:
        lines.append("fields:       " + ", ".join(f"{k} ({_size(v)})" for k, v in raw.items()))
    return lines


def _sealed_line(data: bytes) -> str:
    _, body = open_payload(data, Kind.SEALED_SECRET)
    raw = body.raw()
    return (f"encryption:   passphrase (scrypt n={raw.get('n')!s:.12}, r={raw.get('r')!s:.4}, "
            f"p={raw.get('p')!s:.4}; AES-256-GCM), {len(data)} bytes on disk")


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    data = args.file.read_bytes()
    lines: list[str] = []
    if is_sealed(data):
        lines.append(_sealed_line(data))
        data = _load_secret_bytes(args, args.file, data)
    lines = inspect_payload(data) + lines
    print(f"file:         {args.file}", file=out)
    for line in lines:
        print(line, file=out)
    return 0


# -- bench ---------------------------------------------------------------------------


def _find_bench(suite: str = "core") -> Path | None:
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        script = root / _BENCH_DIR / f"bench_{suite}.py"
        if script.is_file():
            return script
    return None


def _cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    script = _find_bench(args.suite)
    if script is None:
        print(
            f"error: {_BENCH_DIR / f'bench_{args.suite}.py'} not found next to the secagg "
            f"package or in the current directory; run bench from a source checkout of secagg.",
            file=sys.stderr,
        )
        return 2
    extra = list(args.bench_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return subprocess.run([sys.executable, str(script), *extra], check=False).returncode


# -- entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m secagg`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m secagg",
        description="Secure aggregation for federated learning: demo, keys, payloads, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="FedAvg/FedSGD on digits: plaintext vs secure aggregation")
    add_demo_arguments(demo)

    keygen = sub.add_parser(
        "keygen", help="make a secret context and its public half (or per-silo key kits)",
        description="Make a secret context and its public half: --out FILE writes one secret "
        "context; --silos N --out-dir DIR writes the key kits of a cross-silo federation: "
        "DIR/silo-01.secagg ... (one secret kit per silo, mode 0600; all hold the same shared "
        "key, labelled with their silo) and DIR/server.secagg.pub (the public kit).")
    keygen.add_argument("--scheme", choices=schemes.available(), required=True)
    where = keygen.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, default=None,
                       help="secret context file (written with mode 0600)")
    where.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                       help="with --silos: directory for the key kits (created with mode "
                            "0700 if new)")
    keygen.add_argument("--silos", type=int, default=None, metavar="N",
                        help="with --out-dir: write one secret kit per silo (silo-01.secagg "
                             "...) and the server's public kit (server.secagg.pub)")
    keygen.add_argument("--public-out", type=Path, default=None,
                        help="public context file (default: OUT.pub)")
    keygen.add_argument("--max-clients", type=int, default=100)
    keygen.add_argument("--clip", type=float, default=1.0)
    keygen.add_argument("--frac-bits", type=int, default=16)
    keygen.add_argument("--max-weight", type=int, default=1)
    keygen.add_argument("--min-clients", type=int, default=2)
    keygen.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    keygen.add_argument("--security", type=int, choices=(128, 192, 256), default=None,
                        help="CKKS and BFV security level (default 128)")
    keygen.add_argument("--insecure", action="store_true",
                        help="allow Paillier keys below 2048 bits (tests only)")
    keygen.add_argument("--force", action="store_true",
                        help="overwrite existing files (with --out-dir: replace every kit there)")
    _add_passphrase_arguments(keygen, new=True)

    from secagg.threshold.cli import add_deal_parser  # threshold Paillier across silos

    add_deal_parser(sub)

    insp = sub.add_parser("inspect", help="show a payload's header and public parameters")
    insp.add_argument("file", type=Path)
    _add_passphrase_arguments(insp, new=False)

    bench = sub.add_parser(
        "bench", help="run a benchmark script (benchmarks/bench_SUITE.py) with the given arguments",
        description="Run benchmarks/bench_SUITE.py from a source checkout; every further "
        "argument (e.g. --quick) is passed on to it.",
    )
    bench.add_argument("--suite", choices=BENCH_SUITES, default="core",
                       help="which benchmark: core (schemes vs baselines), paillier or lattice")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
        out: where normal output goes (default stdout); errors go to stderr.
    """
    out = out or sys.stdout
    parser = build_parser()
    # bench passes its unknown arguments on; argparse.REMAINDER cannot take a
    # leading option (--quick) inside a subcommand, hence parse_known_args.
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from secagg.threshold.cli import cmd_deal

    commands = {"demo": lambda a, o: run_demo(a, o), "keygen": _cmd_keygen,
                "inspect": _cmd_inspect, "bench": _cmd_bench, "deal": cmd_deal}
    try:
        return commands[args.command](args, out)
    except (SecAggError, OSError, ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
