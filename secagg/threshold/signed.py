"""Signed client updates: what lets a share holder check the sum it is asked to decrypt.

Each client has an Ed25519 key pair (``cryptography``'s Ed25519, RFC 8032); its
public key is registered with every share holder at the ceremony
(``threshold.deal(..., clients={client_id: public_key_bytes})``) or later
(``ShareHolder.register_clients``). A client signs each update for one round::

    env = threshold.sign_update(pub.encrypt(tree, round_id=7).to_bytes(), client_key, 7)

and the envelope (``Kind.SIGNED_UPDATE``) goes to the server instead of the bare
update::

    {"signer": 32-byte public key, "round": 7, "payload": update bytes,
     "signature": Ed25519(domain || msgpack(round) || SHA-256(payload))}

A share holder in verified mode partially decrypts only the sum it recomputes
itself (:func:`sum_signed`) from envelopes that each verify, come from a
registered client (each at most once), belong to the round, and hold client
updates (count 1): the server can no longer pad a victim's update with its own
encryptions, raise it to a power, or relabel a sum, because it cannot sign
for registered clients. Registering the keys is the trust step: whoever
registers a key the server controls gives the server a client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from secagg.aggregator import Aggregator
from secagg.context import PublicContext, public_only
from secagg.errors import (
    ConfigError,
    EmptyAggregateError,
    FormatError,
    InsufficientClientsError,
    ReplayError,
    RoundMismatchError,
    SignatureError,
    UnknownSignerError,
)
from secagg.update import EncryptedUpdate, RoundId, check_round_id
from secagg.wire import Kind, open_payload, peek_kind, seal

__all__ = ["SignedUpdate", "sign_update", "client_keypair", "public_key_bytes", "sum_signed",
           "check_registry"]

_DOMAIN = b"secagg/threshold-paillier/v1/signed-update\x00"
_MAX_ID = 256
#: the most clients (or term signers) a share holder's registry holds
MAX_REGISTERED = 1_000_000


def _message(round_id: RoundId, payload: bytes) -> bytes:
    packed: bytes = msgpack.packb(round_id, use_bin_type=True)
    return _DOMAIN + packed + hashlib.sha256(payload).digest()


def public_key_bytes(key: Any) -> bytes:
    """The 32 raw bytes of an Ed25519 public key (from a private key, a public key, or bytes)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if isinstance(key, Ed25519PublicKey):
        return bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        try:
            Ed25519PublicKey.from_public_bytes(bytes(key))
        except ValueError:
            raise ConfigError("not an Ed25519 public key.") from None
        return bytes(key)
    raise ConfigError(
        f"expected an Ed25519 public key (32 raw bytes or a cryptography key). Found "
        f"{type(key).__name__}."
    )


def client_keypair() -> tuple[Ed25519PrivateKey, bytes]:
    """A new client signing key and its 32-byte public key (to register with the share holders)."""
    key = Ed25519PrivateKey.generate()
    return key, public_key_bytes(key)


def check_registry(clients: Mapping[str, Any] | None, what: str = "clients") -> dict[str, bytes]:
    """``{client_id: 32-byte key}``, checked: short string ids, valid and distinct keys."""
    if clients is None:
        return {}
    if not isinstance(clients, Mapping):
        raise ConfigError(f"{what} must be a mapping of client id to Ed25519 public key.")
    if len(clients) > MAX_REGISTERED:
        raise ConfigError(f"{what} may hold at most {MAX_REGISTERED} keys.")
    out: dict[str, bytes] = {}
    for cid, key in clients.items():
        if not isinstance(cid, str) or not 0 < len(cid) <= _MAX_ID:
            raise ConfigError(f"{what}: a client id must be a string of 1 to {_MAX_ID} characters.")
        out[cid] = public_key_bytes(key)
    if len(set(out.values())) != len(out):
        raise ConfigError(f"{what}: two ids share one public key.")
    return out


@dataclass(frozen=True, eq=False)
class SignedUpdate:
    """A client's update (or a registered party's term) signed for one round."""

    signer: bytes
    round_id: int | str
    payload: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """The envelope's payload bytes (``Kind.SIGNED_UPDATE``)."""
        return seal(Kind.SIGNED_UPDATE, {"signer": self.signer, "round": self.round_id,
                                         "payload": self.payload, "signature": self.signature})

    @classmethod
    def from_bytes(cls, data: Any) -> SignedUpdate:
        """Parse an envelope (format only; :meth:`verify` checks the signature)."""
        if isinstance(data, SignedUpdate):
            return data
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"a signed update must be bytes. Found {type(data).__name__}.")
        _, body = open_payload(bytes(data), Kind.SIGNED_UPDATE)
        round_id = check_round_id(body.value("round"))
        if round_id is None:
            raise FormatError("a signed update must name its round.")
        return cls(body.blob("signer", size=32), round_id, body.blob("payload"),
                   body.blob("signature", size=64))

    def verify(self) -> None:
        """Raise ``SignatureError`` unless the signature is the signer's, over this round and payload."""
        try:
            Ed25519PublicKey.from_public_bytes(self.signer).verify(
                self.signature, _message(self.round_id, self.payload))
        except (InvalidSignature, ValueError):
            raise SignatureError(
                "a signed update's signature does not verify: it was forged, or altered after "
                "signing (payload, round or signer). It is refused."
            ) from None


def sign_update(update: EncryptedUpdate | bytes, client_private_key: Ed25519PrivateKey | bytes,
                round_id: int | str) -> bytes:
    """Sign an update's bytes for ``round_id`` with the client's Ed25519 key; the envelope's bytes.

    ``client_private_key`` is a ``cryptography`` ``Ed25519PrivateKey`` or its 32
    raw bytes. The update must have been encrypted with the same ``round_id``
    (``pub.encrypt(tree, round_id=round_id)``): a share holder sums it under
    that round only.
    """
    if isinstance(client_private_key, (bytes, bytearray)) and len(client_private_key) == 32:
        client_private_key = Ed25519PrivateKey.from_private_bytes(bytes(client_private_key))
    if not isinstance(client_private_key, Ed25519PrivateKey):
        raise ConfigError("client_private_key must be an Ed25519 private key (or its 32 raw bytes).")
    payload = update.to_bytes() if isinstance(update, EncryptedUpdate) else update
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigError(f"expected an update's bytes. Found {type(update).__name__}.")
    payload = bytes(payload)
    checked = check_round_id(round_id)
    if checked is None:
        raise ConfigError("a signed update must name its round (round_id=...): without one it "
                          "could be replayed into every round.")
    _, body = open_payload(payload, Kind.UPDATE, Kind.TERM)
    if check_round_id(body.optional("round")) != checked:
        raise RoundMismatchError(
            f"the update was encrypted for round {body.optional('round')!r:.40}, not "
            f"{checked!r:.40}; pass round_id={checked!r:.40} to encrypt()."
        )
    signature = client_private_key.sign(_message(checked, payload))
    return SignedUpdate(public_key_bytes(client_private_key), checked, payload,
                        signature).to_bytes()


def sum_signed(public: PublicContext, signed_payloads: Iterable[Any], *,
               round_id: int | str | None = None, clients: Mapping[str, Any] | None = None,
               term_signers: Mapping[str, Any] | None = None,
               require_all: bool = False) -> EncryptedUpdate:
    """The aggregate of signed updates, each checked; what a verified share holder decrypts.

    Every envelope must verify and belong to one round (``round_id`` if given).
    With ``clients`` (the registry) every update must come from a registered
    client, each at most once, and a term (``Kind.TERM`` payload) from a
    registered term signer, each at most once; without it (a server that keeps
    no registry) signers are told apart by their keys. The sum is made by
    ``Aggregator(public, round_id=..., accept_aggregates=False)``, so only
    client updates (count 1) are summed, and it must hold at least
    ``public.min_clients`` updates (all registered clients with
    ``require_all=True``).

    Raises ``SignatureError``, ``UnknownSignerError``, ``ReplayError``
    (a client or term signer twice), ``RoundMismatchError``,
    ``InsufficientClientsError``, or the aggregator's own errors.
    """
    public = public_only(public, "sum_signed")
    registry = check_registry(clients)
    terms_registry = check_registry(term_signers, "term_signers")
    by_key = {key: cid for cid, key in registry.items()}
    terms_by_key = {key: tid for tid, key in terms_registry.items()}
    envelopes = [SignedUpdate.from_bytes(e) for e in signed_payloads]
    if not envelopes:
        raise EmptyAggregateError("no signed update was given.")
    rounds = {e.round_id for e in envelopes}
    wanted = check_round_id(round_id)
    if len(rounds) != 1 or (wanted is not None and rounds != {wanted}):
        raise RoundMismatchError(
            "the signed updates belong to another round, or to several rounds; a share holder "
            "sums one round at a time."
        )
    (the_round,) = rounds
    agg = Aggregator(public, round_id=the_round, accept_aggregates=False)
    seen_terms: set[str] = set()
    for env in envelopes:
        env.verify()
        kind = peek_kind(env.payload)
        if kind == Kind.TERM:
            tid = terms_by_key.get(env.signer) if (registry or terms_registry) else env.signer.hex()
            if tid is None:
                raise UnknownSignerError("a term is signed by a key not registered as a term signer.")
            if tid in seen_terms:
                raise ReplayError(f"term signer {tid!r:.40} already contributed to this round.")
            agg.add_term(env.payload)
            seen_terms.add(tid)
            continue
        cid = by_key.get(env.signer) if (registry or terms_registry) else env.signer.hex()
        if cid is None:
            raise UnknownSignerError("an update is signed by a key that is not a registered client.")
        agg.add(env.payload, client_id=cid)
    if require_all and len(agg) != len(registry):
        raise InsufficientClientsError(
            f"require_all: {len(agg)} of the {len(registry)} registered clients sent a signed "
            f"update; this share holder decrypts only a sum of all of them."
        )
    if len(agg) < public.min_clients:
        raise InsufficientClientsError(
            f"{len(agg)} signed client update(s); min_clients is {public.min_clients}. "
            f"Decrypting fewer would reveal individual updates."
        )
    return agg.result()
