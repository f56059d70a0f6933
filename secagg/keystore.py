"""Keeping a secret context at rest: owner-only files, optionally passphrase-encrypted.

Encryption uses the ``cryptography`` package (scrypt to derive a key from the
passphrase, AES-256-GCM to encrypt and authenticate) rather than anything hand
written. The encrypted payload is itself a secagg payload of kind
``SEALED_SECRET``::

    {"kdf": "scrypt", "n": 2**15, "r": 8, "p": 1, "salt": 16 bytes,
     "nonce": 12 bytes, "ciphertext": AES-GCM(secret context bytes)}

The scrypt cost is bounded on load (``n * r <= 2**21``, at most 256 MiB), so
hostile bytes cannot make loading allocate or spin without limit.

Per-silo key kits (``python -m secagg keygen --silos N --out-dir DIR``) are the
one shared secret context of a cross-silo federation, written once per silo
with a label saying whose it is: an extra field of the secret context's body,
``"kit": {"silo": i, "silos": n}`` (:func:`label_kit`, :func:`kit_label`).
Every reader ignores the field, so a kit loads wherever a secret context does
(``SecretContext.load(path, passphrase=...)``, ``secagg_mod``) and has the same
fingerprint; the label is inside the passphrase encryption, so it is
authenticated along with the key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from secagg.errors import ConfigError, FormatError, SecAggError
from secagg.wire import Kind, open_payload, peek_kind, seal

__all__ = ["seal_secret", "open_secret", "write_private", "WrongPassphraseError",
           "DEFAULT_SCRYPT_N", "KIT_FIELD", "MAX_SILOS", "label_kit", "kit_label"]

DEFAULT_SCRYPT_N = 2**15
_MAX_N_TIMES_R = 2**21
#: the field of a secret context's body that labels a per-silo key kit
KIT_FIELD = "kit"
#: the most silos a set of kits may name
MAX_SILOS = 10_000


class WrongPassphraseError(SecAggError, ValueError):
    """Raised when a passphrase does not open an encrypted secret context."""


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not isinstance(passphrase, bytes) or not passphrase:
        raise ConfigError("the passphrase must be a non-empty string or bytes.")
    return passphrase


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def seal_secret(secret: bytes, passphrase: str | bytes, *, n: int = DEFAULT_SCRYPT_N,
                r: int = 8, p: int = 1) -> bytes:
    """Encrypt secret-context bytes under a passphrase (scrypt + AES-256-GCM)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if n < 2 or n & (n - 1) or n * r > _MAX_N_TIMES_R or not 1 <= p <= 16:
        raise ConfigError(f"scrypt parameters out of range (n={n}, r={r}, p={p}).")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key = _derive(_passphrase_bytes(passphrase), salt, n, r, p)
    body = {"kdf": "scrypt", "n": n, "r": r, "p": p, "salt": salt, "nonce": nonce}
    aad = repr(sorted((k, v) for k, v in body.items())).encode()
    body["ciphertext"] = AESGCM(key).encrypt(nonce, secret, aad)
    return seal(Kind.SEALED_SECRET, body)


def open_secret(data: bytes, passphrase: str | bytes) -> bytes:
    """Decrypt :func:`seal_secret` output; ``WrongPassphraseError`` if it does not open."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _, body = open_payload(data, Kind.SEALED_SECRET)
    body.text("kdf", choices=("scrypt",))
    n, r, p = body.integer("n", 2, 2**21), body.integer("r", 1, 64), body.integer("p", 1, 16)
    if n & (n - 1) or n * r > _MAX_N_TIMES_R:
        raise FormatError(f"scrypt parameters out of range (n={n}, r={r}).")
    salt, nonce = body.blob("salt", size=16), body.blob("nonce", size=12)
    ciphertext = body.blob("ciphertext", max_size=1 << 30)
    params = {"kdf": "scrypt", "n": n, "r": r, "p": p, "salt": salt, "nonce": nonce}
    aad = repr(sorted(params.items())).encode()
    key = _derive(_passphrase_bytes(passphrase), salt, n, r, p)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise WrongPassphraseError(
            "the passphrase does not open this secret context (or the file was altered)."
        ) from None


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` is a passphrase-encrypted secret context."""
    return peek_kind(data) == Kind.SEALED_SECRET


def write_private(path: str | Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to a new file readable and writable by its owner only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; pass overwrite=True to replace it.") from None
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        raise


def seal_with(plain: bytes, passphrase: str | bytes, scrypt_n: int | None = None) -> bytes:
    """``plain`` sealed under ``passphrase``, with the default scrypt cost unless ``scrypt_n``."""
    return seal_secret(plain, passphrase, n=scrypt_n or DEFAULT_SCRYPT_N)


def save_secret(path: str | Path, plain: bytes, *, passphrase: str | bytes | None = None,
                overwrite: bool = False, scrypt_n: int | None = None) -> None:
    """Write ``plain`` (sealed if a passphrase is given) to a new owner-only (0600) file."""
    data = plain if passphrase is None else seal_with(plain, passphrase, scrypt_n)
    write_private(path, data, overwrite=overwrite)


class SavesSealed:
    """:meth:`to_sealed_bytes` and :meth:`save` for a class whose :meth:`to_bytes` is secret."""

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def to_sealed_bytes(self, passphrase: str | bytes, *, scrypt_n: int | None = None) -> bytes:
        """:meth:`to_bytes` encrypted under a passphrase (scrypt + AES-256-GCM, ``secagg.keystore``)."""
        return seal_with(self.to_bytes(), passphrase, scrypt_n)

    def save(self, path: Any, *, passphrase: str | bytes | None = None,
             overwrite: bool = False, scrypt_n: int | None = None) -> None:
        """Write :meth:`to_bytes` to a new owner-only (0600) file, encrypted if a passphrase is given."""
        save_secret(path, self.to_bytes(), passphrase=passphrase, overwrite=overwrite,
                    scrypt_n=scrypt_n)


def unseal_if_sealed(data: bytes, passphrase: str | bytes | None, what: str) -> bytes:
    """``data`` opened under ``passphrase`` if it is sealed, else ``data`` unchanged."""
    if not is_sealed(data):
        return data
    if passphrase is None:
        raise FormatError(f"this {what} is passphrase-encrypted; pass passphrase=.")
    return open_secret(data, passphrase)


# -- per-silo key kits -----------------------------------------------------------------


def _check_silo(silo: int, silos: int) -> tuple[int, int]:
    if type(silos) is not int or not 1 <= silos <= MAX_SILOS:
        raise ConfigError(f"silos must be an integer in [1, {MAX_SILOS}]; found {silos!r}.")
    if type(silo) is not int or not 1 <= silo <= silos:
        raise ConfigError(f"silo must be an integer in [1, {silos}]; found {silo!r}.")
    return silo, silos


def label_kit(secret: bytes, silo: int, silos: int) -> bytes:
    """Secret-context bytes labelled as the key kit of silo ``silo`` (1-based) of ``silos``.

    The secret context itself is unchanged (same key, same fingerprint); only
    the label is added (or replaced). Seal the result with :func:`seal_secret`
    to encrypt it under a passphrase.
    """
    silo, silos = _check_silo(silo, silos)
    _, body = open_payload(secret, Kind.SECRET_CONTEXT)
    fields = dict(body.raw())
    fields[KIT_FIELD] = {"silo": silo, "silos": silos}
    return seal(Kind.SECRET_CONTEXT, fields)


def kit_label(secret: bytes) -> tuple[int, int] | None:
    """``(silo, silos)`` of a key kit made by :func:`label_kit`; ``None`` if it has no label.

    Raises:
        FormatError: if ``secret`` is not a secret context, or its label is malformed.
    """
    _, body = open_payload(secret, Kind.SECRET_CONTEXT)
    if body.optional(KIT_FIELD) is None:
        return None
    label = body.section(KIT_FIELD)
    silos = label.integer("silos", 1, MAX_SILOS)
    return label.integer("silo", 1, silos), silos
