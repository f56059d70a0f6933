"""The masking protocol's primitives, all from ``cryptography``, all keyed from the OS CSPRNG.

* **Key agreement**: X25519 (RFC 7748). Each client holds two fresh key pairs
  per round: ``c`` encrypts the shares relayed through the server, ``s`` makes
  its pairwise masks.
* **Derivation**: HKDF-SHA256 (RFC 5869) with the round configuration's
  fingerprint as salt and an info string naming the purpose, the round id and
  the ordered pair ``(u, v)``, e.g.
  ``secagg/masking/v1|purpose=pairwise-mask|round=0|u=3|v=17``: a seed is bound
  to one round of one configuration, one pair and one use.
* **Mask expansion**: AES-256-CTR keystream (zero IV; every key is used once)
  read as little-endian words: 32-bit words when ``w <= 32``, 64-bit words
  otherwise. A uniform word reduced mod ``2**w`` is exactly uniform in
  ``Z_{2**w}`` because ``2**w`` divides ``2**32`` (``2**64``); the reduction is
  done once, on the final sum.
* **Share encryption**: AES-256-GCM, 96-bit random nonce, with associated data
  naming the configuration, the round, sender, receiver and stage, so that a
  ciphertext cannot be replayed to another receiver, round or stage.
* **Signatures** (optional): Ed25519 over the advertised public keys.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import ShareDecryptionError
from secagg.update import RoundId

__all__ = ["word_dtype", "info", "derive", "MaskExpander", "encrypt_share", "decrypt_share",
           "NONCE_BYTES", "TAG_BYTES"]

NONCE_BYTES = 12
TAG_BYTES = 16
_LABEL = "secagg/masking/v1"


def word_dtype(width: int) -> np.dtype[np.unsignedinteger]:
    """The keystream word: uint32 for ``width <= 32``, uint64 above."""
    return np.dtype(np.uint32) if width <= 32 else np.dtype(np.uint64)


def info(purpose: str, round_id: RoundId, u: int, v: int) -> bytes:
    """The HKDF info string: purpose, round (``repr``, so ``0`` and ``'0'`` differ) and pair."""
    return f"{_LABEL}|purpose={purpose}|round={round_id!r}|u={u}|v={v}".encode()


def derive(secret: bytes, *, salt: bytes, purpose: str, round_id: RoundId, u: int, v: int) -> bytes:
    """A 256-bit key for ``purpose`` between ``u`` and ``v`` in this round (HKDF-SHA256)."""
    return HKDF(hashes.SHA256(), 32, salt, info(purpose, round_id, u, v)).derive(secret)


class MaskExpander:
    """Adds (or subtracts) AES-256-CTR keystream words to a vector, reusing its buffers."""

    def __init__(self, count: int, width: int) -> None:
        self.count = count
        self.dtype = word_dtype(width)
        self._zeros = bytes(count * self.dtype.itemsize)
        self._buf = bytearray(len(self._zeros) + 15)

    def words(self, key: bytes) -> np.ndarray:
        """The first ``count`` keystream words under ``key`` (a view of an internal buffer)."""
        enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        enc.update_into(self._zeros, self._buf)
        return np.frombuffer(self._buf, dtype=self.dtype, count=self.count)

    def add(self, acc: np.ndarray, key: bytes, *, negate: bool = False) -> None:
        """``acc += words(key)`` (or ``-=``), wrapping modulo the word size."""
        if negate:
            np.subtract(acc, self.words(key), out=acc)
        else:
            np.add(acc, self.words(key), out=acc)


def encrypt_share(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """``nonce || AES-256-GCM(key, nonce, plaintext, aad)`` with a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt_share(key: bytes, aad: bytes, blob: bytes) -> bytes:
    """Inverse of :func:`encrypt_share`; ``ShareDecryptionError`` if anything was altered."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise ShareDecryptionError("an encrypted share is too short to hold a nonce and a tag.")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ShareDecryptionError(
            "an encrypted share failed authentication: it was altered, or sent under another "
            "round, sender, receiver or key."
        ) from None
