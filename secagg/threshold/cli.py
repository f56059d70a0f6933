"""``python -m secagg deal``: the threshold ceremony for a cross-silo federation, as files.

Example::

    python -m secagg deal --silos a,b,c,d,e --threshold 3 --combine silos \\
        --out-dir kits/ --max-clients 10 --clip 4.0 --passphrase-file pass.txt

writes ``kits/a.kit`` ... ``kits/e.kit`` (each silo's :class:`SiloKit`: its key
share, Ed25519 signing key and X25519 exchange key; mode 0600, sealed under the
passphrase as ``keygen`` seals a secret context: scrypt + AES-256-GCM) and
``kits/federation.pub`` (the public :class:`Federation`, for the server's
``ThresholdFedAvg``). The passphrase options are ``keygen``'s
(``--passphrase-file``, ``--passphrase-env``, a prompt on a terminal, or
``--no-passphrase``). The process that runs this is the dealer: it sees the
factorization and every silo's keys and exits right after writing the files
(:mod:`secagg.threshold.dealer` says what it is trusted for).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TextIO

from secagg.errors import ConfigError

__all__ = ["add_deal_parser", "cmd_deal", "FEDERATION_FILE"]

#: the public federation's file name in ``--out-dir``
FEDERATION_FILE = "federation.pub"
_SILO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def add_deal_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``deal`` sub-command to ``python -m secagg``'s parser."""
    from secagg.cli import _add_passphrase_arguments

    deal = sub.add_parser(
        "deal", help="threshold ceremony: one sealed kit per silo and the public federation",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    deal.add_argument("--silos", required=True, metavar="ID,ID,...",
                      help="the silo ids in holder order (letters, digits, '.', '_', '-')")
    deal.add_argument("--threshold", type=int, required=True, metavar="T",
                      help="how many silos decrypt together")
    deal.add_argument("--combine", choices=("silos", "server"), default="silos",
                      help="who combines the partial decryptions, and so learns the mean")
    deal.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    deal.add_argument("--max-clients", type=int, default=100)
    deal.add_argument("--clip", type=float, default=1.0)
    deal.add_argument("--frac-bits", type=int, default=16)
    deal.add_argument("--max-weight", type=int, default=1)
    deal.add_argument("--min-clients", type=int, default=2)
    deal.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    deal.add_argument("--require-all", action="store_true",
                      help="share holders decrypt only sums of every silo (no omissions)")
    deal.add_argument("--unverified", action="store_true",
                      help="share holders decrypt any aggregate passing the header checks "
                           "(a decryption oracle for the server; not recommended)")
    deal.add_argument("--insecure", action="store_true",
                      help="allow keys below 2048 bits (tests only)")
    deal.add_argument("--force", action="store_true", help="overwrite existing files")
    _add_passphrase_arguments(deal, new=True)


def _ids(text: str) -> list[str]:
    ids = [s.strip() for s in text.split(",") if s.strip()]
    for s in ids:
        if not _SILO_ID.fullmatch(s):
            raise ConfigError(f"silo id {s!r:.40} must be 1 to 64 letters, digits, '.', '_' or "
                              f"'-' (it names the silo's kit file).")
    return ids


def cmd_deal(args: argparse.Namespace, out: TextIO) -> int:
    """Run the ceremony the arguments describe and write the kits (see the module docstring)."""
    from secagg.cli import _make_kit_dir, _new_passphrase, _write_private
    from secagg.keystore import DEFAULT_SCRYPT_N
    from secagg.threshold.federation import deal_silos

    ids = _ids(args.silos)
    out_dir: Path = args.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} exists and is not a directory.")
    kits = {s: out_dir / f"{s}.kit" for s in ids}
    public_out = out_dir / FEDERATION_FILE
    existing = [p for p in (*kits.values(), public_out) if p.exists()]
    if existing and not args.force:
        raise ConfigError(f"{existing[0]} exists; pass --force to overwrite.")
    if args.passphrase_file is not None and args.passphrase_file.resolve() in {
            p.resolve() for p in (*kits.values(), public_out)}:
        raise ConfigError("--passphrase-file must not be one of the files deal writes.")
    args.out = None  # for keygen's passphrase messages
    passphrase = _new_passphrase(args)  # before the (possibly slow) ceremony
    federation, dealt = deal_silos(
        ids, threshold=args.threshold, combine=args.combine,
        mode="unverified" if args.unverified else "verified", require_all=args.require_all,
        key_bits=args.key_bits, insecure=args.insecure, max_clients=args.max_clients,
        clip=args.clip, frac_bits=args.frac_bits, max_weight=args.max_weight,
        min_clients=args.min_clients)
    created = _make_kit_dir(out_dir)
    for s, path in kits.items():
        kit = dealt[s]
        data = kit.to_bytes() if passphrase is None else kit.to_sealed_bytes(
            passphrase, scrypt_n=DEFAULT_SCRYPT_N)
        _write_private(path, data, force=args.force)
    public_out.write_bytes(federation.to_bytes())
    vk = federation.verification
    sealing = ("passphrase-encrypted" if passphrase is not None
               else "NOT encrypted: --no-passphrase")
    print(f"threshold Paillier {vk.threshold}-of-{vk.parties}, fingerprint "
          f"{federation.public.fingerprint.hex()}, combined by the {args.combine}", file=out)
    if created:
        print(f"directory: {out_dir} (created, mode 0700)", file=out)
    for s, path in kits.items():
        print(f"  {path}  silo {s!r} (holder {dealt[s].index}; mode 0600, {sealing})", file=out)
    print("  give each silo its own kit only; never give a kit to the server", file=out)
    print(f"public federation: {public_out}  (give it to the server: ThresholdFedAvg)", file=out)
    print("  this process was the dealer: let it exit now (it saw every secret)", file=out)
    return 0
