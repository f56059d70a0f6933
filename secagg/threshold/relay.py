"""Partial decryptions sent from one share holder to another through an untrusted relay.

When the silos combine (the model stays hidden from the server), share holder
``i`` must give its partial decryption to every other holder ``j`` while the
server carries the bytes: the server must not read it (``threshold`` partials
in clear decrypt the aggregate) nor pass off one of its own. Each partial is
therefore encrypted and authenticated end to end:

- **Key agreement**: X25519 (RFC 7748) between the static key pairs of ``i``
  and ``j``, whose public halves were registered at the ceremony
  (:class:`secagg.threshold.federation.Federation`): a holder encrypts only
  to keys it got from the ceremony, never to keys the relay hands it.
- **Derivation**: HKDF-SHA256 (RFC 5869) with the key set's id as salt and
  ``DOMAIN || sender || recipient`` as info, so the key from ``i`` to ``j``
  differs from the key from ``j`` to ``i``.
- **Encryption**: AES-256-GCM (NIST SP 800-38D) with a fresh random 96-bit
  nonce per message (one message per pair and round: far below the 2**32
  messages per key that random nonces allow), and associated data binding the
  context fingerprint, the key set, the round, the sender, the recipient and
  the aggregate's id (:func:`secagg.threshold.aggregate_id`).

The recipient rebuilds the associated data from **its own** expectations (the
round and aggregate it partially decrypted itself, its own index), not from the
header, so a ciphertext that the relay altered, replayed from another round or
aggregate, delivered to another holder, or relabelled with another sender fails
authentication (:class:`secagg.errors.RelayAuthenticationError`, naming the
sender it claims). What the relay can still do is drop or delay ciphertexts:
the recipient then has fewer than ``threshold`` partials and combines nothing.

Payload (``Kind.THRESHOLD_RELAY``; the header fields are for routing only)::

    {"keyset": 32 bytes, "round": r, "from": i, "to": j, "aggregate": 32 bytes,
     "nonce": 12 bytes, "ciphertext": AES-GCM(partial decryption bytes)}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import ConfigError, FormatError, RelayAuthenticationError
from secagg.threshold.keys import MAX_PARTIES
from secagg.update import RoundId, check_round_id
from secagg.wire import Kind, open_payload, seal

__all__ = ["seal_partial", "open_partial", "route", "exchange_public_bytes"]

DOMAIN = b"secagg/threshold-paillier/v1/relay\x00"
_NONCE = 12
#: a relayed partial is at most this large (a partial of 2**24 ciphertexts at 16384 bits ~ 2**35)
_MAX_CIPHERTEXT = 1 << 36


def exchange_public_bytes(key: X25519PrivateKey | X25519PublicKey | bytes) -> bytes:
    """The 32 raw bytes of an X25519 public key (from a private key, a public key or bytes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(key, X25519PrivateKey):
        key = key.public_key()
    if isinstance(key, X25519PublicKey):
        return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        X25519PublicKey.from_public_bytes(bytes(key))
        return bytes(key)
    raise ConfigError(f"expected an X25519 public key (32 raw bytes). Found {type(key).__name__}.")


def _check_index(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTIES:
        raise ConfigError(f"{name} must be a holder index in [1, {MAX_PARTIES}]. Found {value!r:.40}.")
    return value


def _key(own: X25519PrivateKey, peer: bytes, keyset: bytes, sender: int, recipient: int) -> bytes:
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer))  # ValueError on low-order points
    info = DOMAIN + sender.to_bytes(2, "big") + recipient.to_bytes(2, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=keyset, info=info).derive(shared)


def _aad(fingerprint: bytes, keyset: bytes, round_id: RoundId, sender: int, recipient: int,
         aggregate: bytes) -> bytes:
    header: bytes = msgpack.packb([round_id, sender, recipient], use_bin_type=True)
    return DOMAIN + fingerprint + keyset + aggregate + header


def seal_partial(partial: bytes, *, sender: int, recipient: int, sender_key: X25519PrivateKey,
                 recipient_public: bytes, keyset: bytes, fingerprint: bytes, round_id: RoundId,
                 aggregate: bytes) -> bytes:
    """Encrypt holder ``sender``'s partial decryption to holder ``recipient`` (the payload's bytes).

    ``recipient_public`` must come from the ceremony (the federation's
    directory), ``aggregate`` is the 32-byte id of the aggregate the partial
    decrypts and ``round_id`` its round.
    """
    sender, recipient = _check_index("sender", sender), _check_index("recipient", recipient)
    if sender == recipient:
        raise ConfigError("a holder does not relay its partial to itself.")
    if not isinstance(partial, bytes) or not isinstance(aggregate, bytes) or len(aggregate) != 32:
        raise ConfigError("seal_partial takes the partial's bytes and a 32-byte aggregate id.")
    checked = check_round_id(round_id)
    if checked is None:
        raise ConfigError("a relayed partial must name its round.")
    nonce = os.urandom(_NONCE)
    key = _key(sender_key, recipient_public, keyset, sender, recipient)
    body = AESGCM(key).encrypt(nonce, partial,
                               _aad(fingerprint, keyset, checked, sender, recipient, aggregate))
    return seal(Kind.THRESHOLD_RELAY, {"keyset": keyset, "round": checked, "from": sender,
                                       "to": recipient, "aggregate": aggregate, "nonce": nonce,
                                       "ciphertext": body})


def route(data: Any) -> tuple[int, int]:
    """``(sender, recipient)`` from a relayed partial's header (what a relay needs; unauthenticated)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"a relayed partial must be bytes. Found {type(data).__name__}.")
    _, body = open_payload(bytes(data), Kind.THRESHOLD_RELAY)
    return body.integer("from", 1, MAX_PARTIES), body.integer("to", 1, MAX_PARTIES)


def open_partial(data: Any, *, recipient: int, recipient_key: X25519PrivateKey,
                 sender_publics: Mapping[int, bytes], keyset: bytes, fingerprint: bytes,
                 round_id: RoundId, aggregate: bytes) -> tuple[int, bytes]:
    """``(sender, partial bytes)`` of a relayed partial addressed to ``recipient``.

    ``round_id`` and ``aggregate`` are what the recipient itself expects (the
    round and aggregate it partially decrypted), ``sender_publics`` the
    ceremony's X25519 keys by holder index. Raises ``FormatError`` for bytes
    that are not a relayed partial and ``RelayAuthenticationError`` (with
    ``holder`` = the claimed sender) when authentication fails.
    """
    sender, _ = route(data)
    _, body = open_payload(bytes(data), Kind.THRESHOLD_RELAY)
    nonce = body.blob("nonce", size=_NONCE)
    ciphertext = body.blob("ciphertext", max_size=_MAX_CIPHERTEXT)
    peer = sender_publics.get(sender)
    if peer is None or sender == recipient:
        exc = RelayAuthenticationError(
            f"a relayed partial claims to come from holder {sender}, which is not another "
            f"holder of this federation: refused.")
        exc.holder = sender
        raise exc
    key = _key(recipient_key, peer, keyset, sender, recipient)
    try:
        return sender, AESGCM(key).decrypt(
            nonce, ciphertext, _aad(fingerprint, keyset, round_id, sender, recipient, aggregate))
    except InvalidTag:
        exc = RelayAuthenticationError(
            f"the partial relayed from holder {sender} fails AES-GCM authentication: it was "
            f"altered, replayed from another round or aggregate, or misdirected. It is set aside.")
        exc.holder = sender
        raise exc from None
