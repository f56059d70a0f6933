"""Threshold Paillier across silos: the ceremony's output for a cross-silo federation.

In a cross-silo federation every silo is both a client (it trains and sends a
signed encrypted update) and a share holder (it holds one share of the key).
:func:`deal_silos` runs the one-time ceremony for ``n`` silos::

    from secagg.threshold import deal_silos

    federation, kits = deal_silos(["a", "b", "c", "d", "e"], threshold=3, combine="silos",
                                  max_clients=10, clip=4.0, frac_bits=16)
    federation.to_bytes()          # public: to the server (and every silo has it in its kit)
    kits["a"].save("a.kit", passphrase=...)   # to silo "a" only

:class:`Federation` is the public part: the public context, the verification
keys, and the directory of silos (index, id, Ed25519 signing key, X25519
exchange key), plus who combines: ``"server"`` (the server combines the
partials and learns the mean, as with a key holder) or ``"silos"`` (partials
travel encrypted between the silos, :mod:`secagg.threshold.relay`, and only
the silos learn the mean). That choice is made at the ceremony and sits in every
kit, so a server cannot switch a silo to sending its partial in clear.

:class:`SiloKit` is one silo's secret part: its :class:`ShareHolder` (verified
mode by default, with every silo registered as a client), its Ed25519 signing
key and its X25519 key, and the federation. The dealer generates all of them
here, so it is trusted with the silos' signing and exchange keys exactly as it
is with the shares (see :mod:`secagg.threshold.dealer`): it must hand each kit
to its silo only and erase everything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from secagg.context import PublicContext
from secagg.errors import ConfigError, ContextMismatchError, FormatError, RelayAuthenticationError
from secagg.guard import DEFAULT_MAX_REFUSALS
from secagg.keystore import SavesSealed
from secagg.threshold.dealer import deal
from secagg.threshold.holder import ShareHolder
from secagg.threshold.keys import MAX_PARTIES, ThresholdPublicContext, VerificationKeys
from secagg.threshold.relay import exchange_public_bytes, open_partial, seal_partial
from secagg.threshold.signed import public_key_bytes, sign_update
from secagg.update import EncryptedUpdate, RoundId
from secagg.wire import Kind, open_payload, seal

__all__ = ["COMBINERS", "Federation", "SiloEntry", "SiloKit", "deal_silos"]

#: who combines the partial decryptions: the server (it learns the mean) or the silos
COMBINERS = ("server", "silos")
_MAX_ID = 256


@dataclass(frozen=True)
class SiloEntry:
    """One silo in the federation's directory (public)."""

    index: int  # its share holder index, 1 to parties
    silo_id: str
    signing_key: bytes  # Ed25519 public key: its signed updates
    exchange_key: bytes  # X25519 public key: partials relayed to it


class Federation:
    """The public side of a threshold federation (see the module docstring).

    Attributes:
        public: the :class:`~secagg.threshold.ThresholdPublicContext`.
        silos: the directory, by holder index (``silos[0]`` is holder 1).
        combine: ``"server"`` or ``"silos"``.
    """

    def __init__(self, public: ThresholdPublicContext, silos: Sequence[SiloEntry],
                 combine: str) -> None:
        if not isinstance(public, ThresholdPublicContext):
            raise ConfigError("a federation needs a secagg.threshold.ThresholdPublicContext.")
        if combine not in COMBINERS:
            raise ConfigError(f"combine must be one of {COMBINERS}. Found {combine!r:.40}.")
        vk = public.verification
        entries = tuple(silos)
        if len(entries) != vk.parties or [e.index for e in entries] != list(
                range(1, vk.parties + 1)):
            raise ConfigError(f"the directory must list holders 1 to {vk.parties} in order.")
        for e in entries:
            if not isinstance(e.silo_id, str) or not 0 < len(e.silo_id) <= _MAX_ID:
                raise ConfigError(f"a silo id must be a string of 1 to {_MAX_ID} characters.")
            public_key_bytes(e.signing_key)
            exchange_public_bytes(e.exchange_key)
        for what, values in (("id", [e.silo_id for e in entries]),
                             ("signing key", [e.signing_key for e in entries]),
                             ("exchange key", [e.exchange_key for e in entries])):
            if len(set(values)) != len(values):
                raise ConfigError(f"two silos share one {what}.")
        self.public = public
        self.silos = entries
        self.combine = combine

    def __repr__(self) -> str:
        vk = self.public.verification
        return (f"Federation({vk.threshold}-of-{vk.parties}, combine={self.combine!r}, "
                f"keyset={vk.keyset.hex()[:12]})")

    @property
    def verification(self) -> VerificationKeys:
        """The verification keys."""
        return self.public.verification

    @property
    def threshold(self) -> int:
        """How many partials decrypt."""
        return self.verification.threshold

    @property
    def registry(self) -> dict[str, bytes]:
        """``{silo id: Ed25519 public key}``: the clients every share holder registered."""
        return {e.silo_id: e.signing_key for e in self.silos}

    @property
    def exchange_keys(self) -> dict[int, bytes]:
        """``{holder index: X25519 public key}``."""
        return {e.index: e.exchange_key for e in self.silos}

    def entry(self, silo_id: str) -> SiloEntry:
        """The directory entry of ``silo_id``; ``ConfigError`` if there is none."""
        for e in self.silos:
            if e.silo_id == silo_id:
                return e
        raise ConfigError(f"no silo {silo_id!r:.40} in this federation.")

    @property
    def digest(self) -> bytes:
        """16 bytes naming this federation (its bytes' SHA-256, truncated)."""
        return hashlib.sha256(self.to_bytes()).digest()[:16]

    def to_bytes(self) -> bytes:
        """The public payload (``Kind.THRESHOLD_FEDERATION``)."""
        return seal(Kind.THRESHOLD_FEDERATION, {
            "public": self.public.to_bytes(),
            "verification": self.verification.to_bytes(),
            "combine": self.combine,
            "silos": [[e.silo_id, e.signing_key, e.exchange_key] for e in self.silos],
        })

    @classmethod
    def from_bytes(cls, data: Any, *, allow_insecure: bool = False) -> Federation:
        """Load and validate a federation's public payload; raises a ``FormatError``."""
        if isinstance(data, Federation):
            return data
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"expected a federation's bytes. Found {type(data).__name__}.")
        _, body = open_payload(bytes(data), Kind.THRESHOLD_FEDERATION)
        public = PublicContext.from_bytes(body.blob("public"), allow_insecure=allow_insecure)
        vk = VerificationKeys.from_bytes(body.blob("verification"), public)
        combine = body.text("combine", choices=COMBINERS)
        raw = body.items("silos", max_len=MAX_PARTIES)
        if not all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
                   and isinstance(e[1], bytes) and isinstance(e[2], bytes) for e in raw):
            raise FormatError("federation field 'silos' must hold [id, signing key, exchange key].")
        try:
            return cls(ThresholdPublicContext(public, vk),
                       [SiloEntry(i, e[0], e[1], e[2]) for i, e in enumerate(raw, start=1)],
                       combine)
        except ConfigError as exc:
            raise FormatError(f"invalid federation: {exc}") from None


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return bytes(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


class SiloKit(SavesSealed):
    """One silo's secrets: its share holder, signing key and exchange key (see the module docstring).

    Attributes:
        federation: the public :class:`Federation`.
        holder: this silo's :class:`ShareHolder`.
        silo_id, index: its id and holder index.

    ``repr`` shows no secret; keep the object, and the file :meth:`save`
    writes, on the silo.
    """

    def __init__(self, federation: Federation, holder: ShareHolder, silo_id: str,
                 signing_key: Ed25519PrivateKey, exchange_key: X25519PrivateKey) -> None:
        if not isinstance(federation, Federation) or not isinstance(holder, ShareHolder):
            raise ConfigError("a silo kit needs a Federation and a ShareHolder.")
        entry = federation.entry(silo_id)
        if holder.public.fingerprint != federation.public.fingerprint or (
                holder.verification.keyset != federation.verification.keyset):
            raise ContextMismatchError("this share belongs to another key set than the federation.")
        if holder.index != entry.index:
            raise ConfigError(f"silo {silo_id!r:.40} is holder {entry.index} in the directory, "
                              f"but its share is holder {holder.index}'s.")
        if public_key_bytes(signing_key) != entry.signing_key or (
                exchange_public_bytes(exchange_key) != entry.exchange_key):
            raise ConfigError(f"silo {silo_id!r:.40}'s keys do not match the directory.")
        missing = {cid for cid, key in federation.registry.items()
                   if holder.clients.get(cid) != key}
        if holder.mode == "verified" and missing:
            raise ConfigError("the share holder's registry lacks silos of the directory.")
        self.federation = federation
        self.holder = holder
        self.silo_id = silo_id
        self.index = entry.index
        self._signing = signing_key
        self._exchange = exchange_key

    def __repr__(self) -> str:
        return (f"SiloKit(silo={self.silo_id!r:.40}, holder={self.index}, "
                f"federation={self.federation!r})")

    @property
    def public(self) -> ThresholdPublicContext:
        """The threshold public context."""
        return self.federation.public

    @property
    def combine(self) -> str:
        """Who combines: ``"server"`` or ``"silos"`` (fixed at the ceremony)."""
        return self.federation.combine

    # -- a silo's operations ----------------------------------------------------------
    def sign(self, update: EncryptedUpdate | bytes, round_id: int | str) -> bytes:
        """This silo's signed envelope of ``update`` for ``round_id`` (:func:`sign_update`)."""
        return sign_update(update, self._signing, round_id)

    def seal_partials(self, partial: bytes, *, round_id: RoundId, aggregate: bytes) -> list[bytes]:
        """``partial`` encrypted to every other holder of the directory (one payload each)."""
        vk = self.federation.verification
        return [seal_partial(partial, sender=self.index, recipient=e.index,
                             sender_key=self._exchange, recipient_public=e.exchange_key,
                             keyset=vk.keyset, fingerprint=vk.fingerprint, round_id=round_id,
                             aggregate=aggregate)
                for e in self.federation.silos if e.index != self.index]

    def open_partials(self, relayed: Sequence[Any], *, round_id: RoundId, aggregate: bytes
                      ) -> tuple[dict[int, bytes], list[tuple[int | None, str]]]:
        """The relayed partials addressed to this silo that authenticate, by sender.

        Returns ``({sender: partial bytes}, [(claimed sender, reason), ...])``:
        one that fails authentication, is malformed, or repeats a sender is set
        aside and named, never raised.
        """
        vk = self.federation.verification
        keys = self.federation.exchange_keys
        opened: dict[int, bytes] = {}
        rejected: list[tuple[int | None, str]] = []
        for data in relayed:
            try:
                sender, part = open_partial(data, recipient=self.index,
                                            recipient_key=self._exchange, sender_publics=keys,
                                            keyset=vk.keyset, fingerprint=vk.fingerprint,
                                            round_id=round_id, aggregate=aggregate)
            except RelayAuthenticationError as exc:
                rejected.append((exc.holder, str(exc)))
                continue
            except (FormatError, ValueError) as exc:
                rejected.append((None, f"not a relayed partial: {exc}"))
                continue
            if sender in opened:
                rejected.append((sender, f"a second partial relayed from holder {sender}."))
                continue
            opened[sender] = part
        return opened, rejected

    # -- bytes and files --------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The kit (``Kind.THRESHOLD_KIT``; secret: for this silo's own storage only)."""
        return seal(Kind.THRESHOLD_KIT, {
            "federation": self.federation.to_bytes(),
            "silo": self.silo_id,
            "share": self.holder.to_bytes(),
            "signing": _raw_private(self._signing),
            "exchange": _raw_private(self._exchange),
        })

    @classmethod
    def load(cls, path: Any, *, passphrase: str | bytes | None = None,
             allow_insecure: bool = False, max_refusals: int | None = DEFAULT_MAX_REFUSALS,
             state_path: str | os.PathLike[str] | None = None) -> SiloKit:
        """Read a file written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), passphrase=passphrase, allow_insecure=allow_insecure,
                                  max_refusals=max_refusals, state_path=state_path)

    @classmethod
    def from_bytes(cls, data: Any, *, passphrase: str | bytes | None = None,
                   allow_insecure: bool = False, max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                   state_path: str | os.PathLike[str] | None = None) -> SiloKit:
        """Load a kit (decrypting it if sealed); raises a ``SecAggError`` on any input.

        ``max_refusals`` and ``state_path`` are the share holder's
        (:meth:`ShareHolder.from_bytes`).
        """
        from secagg.keystore import unseal_if_sealed

        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"expected a silo kit's bytes. Found {type(data).__name__}.")
        data = unseal_if_sealed(bytes(data), passphrase, "silo kit")
        _, body = open_payload(data, Kind.THRESHOLD_KIT)
        federation = Federation.from_bytes(body.blob("federation"), allow_insecure=allow_insecure)
        holder = ShareHolder.from_bytes(body.blob("share"), allow_insecure=allow_insecure,
                                        max_refusals=max_refusals, state_path=state_path)
        signing = Ed25519PrivateKey.from_private_bytes(body.blob("signing", size=32))
        exchange = X25519PrivateKey.from_private_bytes(body.blob("exchange", size=32))
        silo = body.text("silo")
        try:
            return cls(federation, holder, silo, signing, exchange)
        except ConfigError as exc:
            raise FormatError(f"invalid silo kit: {exc}") from None


def _silo_ids(silos: object) -> list[str]:
    if isinstance(silos, bool):
        raise ConfigError(f"silos must be a count or a list of ids. Found {silos!r}.")
    if isinstance(silos, int):
        if not 2 <= silos <= MAX_PARTIES:
            raise ConfigError(f"silos must be in [2, {MAX_PARTIES}]. Found {silos}.")
        return [f"silo-{i}" for i in range(1, silos + 1)]
    if isinstance(silos, (str, bytes)) or not isinstance(silos, Sequence):
        raise ConfigError("silos must be a count or a list of silo ids (strings).")
    ids = list(silos)
    if not all(isinstance(s, str) and 0 < len(s) <= _MAX_ID for s in ids):
        raise ConfigError(f"a silo id must be a string of 1 to {_MAX_ID} characters.")
    if len(set(ids)) != len(ids):
        raise ConfigError("silo ids must be distinct.")
    return ids


def deal_silos(silos: int | Sequence[str], *, threshold: int, combine: str = "silos",
               mode: str = "verified", require_all: bool = False,
               **deal_options: Any) -> tuple[Federation, dict[str, SiloKit]]:
    """The ceremony for a cross-silo federation: a federation and one kit per silo.

    Args:
        silos: how many silos (ids ``"silo-1"``, ...) or their ids, in holder order.
        threshold: how many silos decrypt together.
        combine: ``"silos"`` (default: the partials travel encrypted between
            the silos and only they learn the mean; the server never does) or
            ``"server"`` (the silos send their partials to the server, which
            combines and learns the mean, as with a key holder).
        mode: the share holders' mode, ``"verified"`` (default: each silo
            partially decrypts only the sum it recomputed from the silos' signed
            updates) or ``"unverified"`` (any aggregate passing the header
            checks: a decryption oracle for the server; see
            :mod:`secagg.threshold.holder`).
        require_all: verified holders decrypt only sums of every silo.
        **deal_options: :func:`secagg.threshold.deal`'s other options
            (``key_bits``, ``max_clients``, ``clip``, ``frac_bits``,
            ``max_weight``, ``min_clients``, ...).

    The silos' Ed25519 and X25519 keys are generated here, by the dealer, so the
    dealer's duty to erase (``secagg.threshold.dealer``) covers them too.
    """
    ids = _silo_ids(silos)
    if combine not in COMBINERS:
        raise ConfigError(f"combine must be one of {COMBINERS}. Found {combine!r:.40}.")
    for forbidden in ("parties", "clients", "scheme"):
        if forbidden in deal_options:
            raise ConfigError(f"deal_silos sets {forbidden}= itself (from silos=).")
    signing = {s: Ed25519PrivateKey.generate() for s in ids}
    exchange = {s: X25519PrivateKey.generate() for s in ids}
    registry: Mapping[str, bytes] = {s: public_key_bytes(signing[s]) for s in ids}
    keys = deal("paillier", parties=len(ids), threshold=threshold, clients=registry, mode=mode,
                require_all=require_all, **deal_options)
    entries = [SiloEntry(i, s, registry[s], exchange_public_bytes(exchange[s]))
               for i, s in enumerate(ids, start=1)]
    federation = Federation(keys.public, entries, combine)
    kits = {s: SiloKit(federation, keys.shares[i], s, signing[s], exchange[s])
            for i, s in enumerate(ids)}
    return federation, kits
