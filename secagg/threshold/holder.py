"""A share holder: one share of the decryption key, and the rules for using it.

A share holder never sees a plaintext: its partial decryption reveals nothing
on its own. What it must still decide is *which* aggregates to partially
decrypt, because ``threshold`` partials of any ciphertext decrypt it, and a
server colluding with ``threshold - 1`` share holders needs just one honest
holder's partial. So each holder runs, before any exponentiation, the checks a
key holder runs that need no decryption (context fingerprint, round id, kind
``aggregate``, ``count >= min_clients``), and, in **verified mode** (the
default whenever clients are registered), it decrypts only a sum it recomputed
itself from signed updates of registered clients (:mod:`secagg.threshold.signed`),
and at most one such sum per round.

What verified mode does **not** stop, plainly:

- The server chooses which signed updates go into a round's sum (dropouts are
  indistinguishable from omissions). With ``c`` registered clients colluding
  with it, a sum of ``min_clients`` updates holds only ``min_clients - c``
  honest ones; at ``c = min_clients - 1`` that is one victim. Pick
  ``min_clients`` for the collusion you expect, or ``require_all=True`` (every
  registered client in every sum; no dropouts).
- Paillier is malleable and clients prove nothing about their ciphertexts:
  a registered client colluding with the server can sign a ciphertext built
  from the other clients' (``E(junk) · Π c_j**-1``) that cancels all but a
  victim. Stopping that needs proofs of plaintext knowledge bound to the
  client's id (not implemented). Without colluding clients the server alone can
  do neither.
- Share holders do not talk to each other: a server colluding with
  ``threshold - 1`` share holders could show each honest holder a different
  subset of one round's signed updates; each honest holder still decrypts one
  sum per round, but two honest holders may decrypt two different sums. With
  ``require_all=True`` there is only one.
- Post-decryption checks (count slot, ranges) run in :func:`combine`, i.e.
  wherever the partials are combined; a server that combines skips them at will.
  In threshold mode the share holders' checks are the only ones that bind.

In **unverified mode** it decrypts any aggregate that passes the checks: it is
then the same decryption oracle as a single key holder (SECURITY.md, "A server
that deviates"), only spread over ``threshold`` parties. A server that pads one
victim's update with ``min_clients - 1`` encryptions of zeros it made itself
(each with an encrypted count of 1), or raises it to a power, gets a valid
aggregate whose combination *is* the victim's update.

Refusals follow :class:`secagg.guard.DecryptionGuard`, as the Flower
``KeyHolder`` does: an aggregate (or set of signed updates) refused as hostile
(forged or unregistered signatures, a client twice, an aggregate that is not
the recomputed sum, a second aggregate in a decrypted round) is remembered and
refused again without work (``SA-REFUSED``), its round is locked
(``SA-LOCKED``), and after ``max_refusals`` nothing more is decrypted. Errors
never carry a decrypted number (a share holder has none); a service answering
a server should still send only :func:`secagg.errors.public_reason` of them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gmpy2

from secagg._checks import check_bool, check_choice
from secagg.context import PublicContext
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    FormatError,
    InsufficientClientsError,
    ReplayError,
    RoundAlreadyDecryptedError,
    RoundMismatchError,
    SignatureError,
    UnverifiedAggregateError,
)
from secagg.guard import (
    DEFAULT_MAX_REFUSALS,
    DecryptionGuard,
    read_state_file,
    state_from_json,
    state_to_json,
    write_state_file,
)
from secagg.keystore import SavesSealed
from secagg.threshold.keys import ThresholdPublicContext, VerificationKeys
from secagg.threshold.partial import PROOF_MODES, aggregate_id, compute_partial
from secagg.threshold.signed import MAX_REGISTERED, SignedUpdate, check_registry, sum_signed
from secagg.update import EncryptedUpdate, check_round_id
from secagg.wire import Kind, open_payload, seal

__all__ = ["ShareHolder", "MODES"]

#: ``"verified"``: decrypt only sums recomputed from signed updates; ``"unverified"``: any aggregate
MODES = ("verified", "unverified")
_log = logging.getLogger("secagg.threshold")
# refusals that mean the request was crafted: remembered, and they lock the round
_HOSTILE = (SignatureError, ReplayError, UnverifiedAggregateError)


def _round_key(round_id: object) -> str:
    return repr(round_id)


def _work(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer. Found {workers!r}.")
    return workers


class ShareHolder(SavesSealed):
    """One share holder's key share and policy (made by :func:`secagg.threshold.deal`).

    Attributes:
        index: this holder's number, 1 to ``parties``.
        public: the :class:`~secagg.threshold.ThresholdPublicContext`.
        mode: ``"verified"`` or ``"unverified"`` (see the module docstring).
        clients, term_signers: the registered Ed25519 public keys, by id.
        require_all: decrypt only sums of *every* registered client.
        guard: the :class:`secagg.guard.DecryptionGuard`.
        constant_time: exponentiate with the secret share through GMP's
            ``powmod_sec`` (default). On the 2-core CI machine that is about 2x
            slower than ``powmod``: 43 s against 20 s for one holder's partial
            decryption of a 100k-value aggregate at 2048 bits with 2 workers.

    The share itself is never shown (``repr`` names the index only). Keep the
    object, and the file :meth:`save` writes, away from the server and from the
    other share holders.
    """

    def __init__(self, public: ThresholdPublicContext, index: int, share: int, *,
                 mode: str = "verified", clients: Mapping[str, Any] | None = None,
                 term_signers: Mapping[str, Any] | None = None, require_all: bool = False,
                 max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                 state_path: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(public, ThresholdPublicContext):
            raise ConfigError("a share holder needs a secagg.threshold.ThresholdPublicContext.")
        vk = public.verification
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= vk.parties:
            raise ConfigError(f"index must be in [1, {vk.parties}]. Found {index!r}.")
        share = gmpy2.mpz(share)
        if not 0 < share < vk.nsquare:
            raise ConfigError("the share is out of range.")
        if gmpy2.powmod(vk.v, vk.delta * share, vk.nsquare) != vk.key(index):
            raise ConfigError(
                f"this share does not match share holder {index}'s verification key."
            )
        self.public = public
        self.index = index
        self._share = share
        self._sigma = vk.delta * share
        self.mode = check_choice("mode", mode, MODES)
        self.clients: dict[str, bytes] = {}
        self.term_signers: dict[str, bytes] = {}
        self.register_clients(clients or {}, term_signers=term_signers)
        self.require_all = check_bool("require_all", require_all)
        self.guard = DecryptionGuard(max_refusals)
        self.state_path = None if state_path is None else Path(state_path)
        self.constant_time = True
        #: round key -> aggregate id, for every round this holder decrypted in verified mode
        self._rounds: dict[str, str] = {}

    def __repr__(self) -> str:
        vk = self.verification
        return (f"ShareHolder(index={self.index}, threshold={vk.threshold}-of-{vk.parties}, "
                f"mode={self.mode!r}, clients={len(self.clients)})")

    @property
    def verification(self) -> VerificationKeys:
        """The key set's public verification keys."""
        return self.public.verification

    # -- the registry ---------------------------------------------------------------
    def register_clients(self, clients: Mapping[str, Any], *,
                         term_signers: Mapping[str, Any] | None = None) -> None:
        """Add clients (``{client_id: Ed25519 public key}``) and term signers to the registry.

        An id already registered keeps its key (registering it with another key
        is refused), and no key may serve two ids. The registry is the trust
        anchor of verified mode: it must come from the ceremony (or another
        channel the holder trusts), never from the server.
        """
        new = check_registry(clients)
        new_terms = check_registry(term_signers, "term_signers")
        merged = dict(self.clients)
        merged_terms = dict(self.term_signers)
        for target, incoming in ((merged, new), (merged_terms, new_terms)):
            for cid, key in incoming.items():
                if target.get(cid, key) != key:
                    raise ConfigError(f"client id {cid!r:.40} is already registered with "
                                      f"another key.")
                target[cid] = key
        keys = list(merged.values()) + list(merged_terms.values())
        if len(set(keys)) != len(keys):
            raise ConfigError("a public key is registered twice (for two ids, or as a client and "
                              "as a term signer).")
        if len(keys) > MAX_REGISTERED:
            raise ConfigError(f"the registry may hold at most {MAX_REGISTERED} keys.")
        self.clients, self.term_signers = merged, merged_terms

    # -- partial decryption -----------------------------------------------------------
    def partial_decrypt(self, aggregate: EncryptedUpdate | bytes | None = None, *,
                        signed_payloads: Iterable[Any] | None = None,
                        round_id: int | str | None = None, verified: bool | None = None,
                        proofs: str = "batched", workers: int = 1) -> bytes:
        """This holder's partial decryption (bytes, with its proof) of an aggregate.

        Args:
            aggregate: the aggregate (``Aggregator.result()`` or its bytes). In
                verified mode it is optional; if given it must equal the sum this
                holder recomputes from ``signed_payloads``.
            signed_payloads: verified mode: the envelopes of
                :func:`~secagg.threshold.sign_update`, one per client (and per
                registered term signer) of the round.
            round_id: the round; required to match the aggregate's (or the
                envelopes') when given.
            verified: override the holder's ``mode`` for this call (``False``:
                unverified; see the module docstring for what that exposes).
            proofs: ``"batched"`` (one proof for the whole aggregate, default)
                or ``"each"`` (one per ciphertext).
            workers: forked processes to exponentiate with.

        Raises ``AggregateRefusedError`` (``SA-REFUSED`` / ``SA-LOCKED``) when the
        guard refuses, ``UnverifiedAggregateError`` in verified mode without
        signed updates or with an aggregate that is not their sum,
        ``SignatureError`` / ``UnknownSignerError`` / ``ReplayError`` for bad
        envelopes, ``RoundAlreadyDecryptedError`` for a second sum in a round,
        ``InsufficientClientsError`` below ``min_clients``, and the loaders'
        ``FormatError`` / ``ContextMismatchError`` / ``RoundMismatchError``.
        """
        check_choice("proofs", proofs, PROOF_MODES)
        workers = _work(workers)
        use_verified = self.mode == "verified" if verified is None else check_bool(
            "verified", verified)
        self._read_state()
        if use_verified:
            total, request, round_key = self._verified_total(aggregate, signed_payloads, round_id)
        else:
            if signed_payloads is not None:
                raise ConfigError("signed_payloads is for verified mode (verified=True).")
            total = self._check_aggregate(aggregate, round_id)
            request, round_key = aggregate_id(total), _round_key(total.round_id)
            self.guard.check(request, round_key)
        part = compute_partial(total, self.verification, self.index, self._sigma, mode=proofs,
                               workers=workers, constant_time=self.constant_time)
        if use_verified:
            self._rounds[round_key] = aggregate_id(total).hex()
            self._write_state()
        return part.to_bytes(self.verification, self.public.fingerprint)

    def _check_aggregate(self, aggregate: Any, round_id: Any) -> EncryptedUpdate:
        """The checks a key holder runs that need no decryption."""
        if aggregate is None:
            raise ConfigError("pass the aggregate to partially decrypt.")
        pub = self.public
        if isinstance(aggregate, (bytes, bytearray, memoryview)):
            aggregate = EncryptedUpdate.from_bytes(bytes(aggregate), pub)
        if not isinstance(aggregate, EncryptedUpdate):
            raise FormatError(
                f"expected an EncryptedUpdate or its bytes. Found {type(aggregate).__name__}.")
        if aggregate.fingerprint != pub.fingerprint or aggregate.scheme != pub.scheme:
            raise ContextMismatchError("this aggregate was made under another key or codec.")
        if aggregate.kind != Kind.AGGREGATE:
            raise FormatError(
                f"a share holder decrypts aggregates only; this is a "
                f"{aggregate.kind.name.lower()} payload."
            )
        wanted = check_round_id(round_id)
        if wanted is not None and aggregate.round_id != wanted:
            raise RoundMismatchError(
                f"the aggregate belongs to round {aggregate.round_id!r:.40}, not {wanted!r:.40}."
            )
        if aggregate.count < pub.min_clients:
            raise InsufficientClientsError(
                f"refusing to decrypt a sum of {aggregate.count} client update(s); min_clients is "
                f"{pub.min_clients}. Decrypting fewer would reveal individual updates."
            )
        return aggregate

    def _verified_total(self, aggregate: Any, signed_payloads: Iterable[Any] | None,
                        round_id: Any) -> tuple[EncryptedUpdate, bytes, str]:
        if signed_payloads is None:
            raise UnverifiedAggregateError(
                "this share holder is in verified mode: it partially decrypts only a sum it "
                "recomputes from signed client updates. Pass signed_payloads=[...] (the "
                "envelopes of threshold.sign_update), or verified=False to decrypt any "
                "aggregate (a decryption oracle for the server; see the threshold docs)."
            )
        if not self.clients:
            raise ConfigError("verified mode needs registered clients (register_clients()).")
        if isinstance(signed_payloads, (bytes, bytearray, memoryview, str)) or not isinstance(
                signed_payloads, Iterable):
            raise FormatError("signed_payloads must be a list of signed updates.")
        envelopes = [bytes(e) if isinstance(e, (bytearray, memoryview)) else e
                     for e in signed_payloads]
        if not all(isinstance(e, (bytes, SignedUpdate)) for e in envelopes):
            raise FormatError("each signed payload must be the bytes of threshold.sign_update().")
        # the request: the envelopes (in any order) and the aggregate they came with, if any
        if isinstance(aggregate, (bytes, bytearray, memoryview)):
            given = hashlib.sha256(bytes(aggregate)).digest()
        else:
            given = b"" if not isinstance(aggregate, EncryptedUpdate) else aggregate.digest()
        request = hashlib.sha256(given + b"".join(
            sorted(hashlib.sha256(e if isinstance(e, bytes) else e.to_bytes()).digest()
                   for e in envelopes))).digest()
        wanted = check_round_id(round_id)
        round_key = _round_key(wanted) if wanted is not None else self._envelope_round(envelopes)
        self.guard.check(request, round_key)
        try:
            total = sum_signed(self.public, envelopes, round_id=wanted, clients=self.clients,
                               term_signers=self.term_signers, require_all=self.require_all)
            round_key = _round_key(total.round_id)
            if aggregate is not None:
                claimed = self._check_aggregate(aggregate, total.round_id)
                if aggregate_id(claimed) != aggregate_id(total):
                    raise UnverifiedAggregateError(
                        "the aggregate is not the sum of the signed client updates it came "
                        "with (padded, scaled, relabelled or partial): refused."
                    )
            done = self._rounds.get(round_key)
            if done is not None and done != aggregate_id(total).hex():
                raise RoundAlreadyDecryptedError(
                    "this share holder already partially decrypted another sum of this round; "
                    "two sums of one round would give their difference away. Refused."
                )
        except _HOSTILE as exc:
            self.guard.record_refusal(request, round_key)
            self._write_state()
            _log.warning("share holder %d refused a request: %s: %s", self.index,
                         type(exc).__name__, exc)
            raise
        return total, request, round_key

    @staticmethod
    def _envelope_round(envelopes: list[Any]) -> str:
        try:
            rounds = {SignedUpdate.from_bytes(e).round_id for e in envelopes}
        except FormatError:
            rounds = set()
        return _round_key(next(iter(rounds)) if len(rounds) == 1 else None)

    # -- state (refusals and decrypted rounds) --------------------------------------
    def fresh(self, *, max_refusals: int | None = DEFAULT_MAX_REFUSALS,
              state_path: str | os.PathLike[str] | None = None) -> ShareHolder:
        """This holder's share and policy with an empty guard and no decrypted rounds.

        For a service whose state lives elsewhere (a Flower node's
        ``Context.state``, a file): load it with :meth:`load_state` before each
        request and save :meth:`to_state` after it.
        """
        clone = copy.copy(self)
        clone.guard = DecryptionGuard(max_refusals)
        clone.state_path = None if state_path is None else Path(state_path)
        clone._rounds = {}
        clone.clients = dict(self.clients)
        clone.term_signers = dict(self.term_signers)
        return clone

    def to_state(self) -> dict[str, Any]:
        """The guard's state and the rounds decrypted in verified mode, as plain data."""
        return {"guard": self.guard.to_state(), "rounds": dict(self._rounds)}

    def load_state(self, state: Any) -> None:
        """Merge :meth:`to_state` output in; malformed state stops all decryption (fail safe)."""
        try:
            guard, rounds = state["guard"], state["rounds"]
            if not isinstance(rounds, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in rounds.items()):
                raise TypeError
        except (KeyError, TypeError):
            self.guard.load_state(None)
            return
        self.guard.load_state(guard)
        for key, value in rounds.items():
            self._rounds.setdefault(key, value)

    def _read_state(self) -> None:
        state = read_state_file(
            self.state_path,
            lambda raw: {"guard": state_from_json(raw["guard"]), "rounds": raw["rounds"]})
        if state is not None:
            self.load_state(state)

    def _write_state(self) -> None:
        if self.state_path is None:
            return
        state = self.to_state()
        data = json.dumps({"guard": state_to_json(state["guard"]), "rounds": state["rounds"]})
        write_state_file(self.state_path, data)

    # -- bytes and files --------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """This holder's share, index, policy and the public material (for its own storage only)."""
        vk = self.verification
        return seal(Kind.THRESHOLD_SHARE, {
            "public": self.public.to_bytes(),
            "verification": vk.to_bytes(),
            "index": self.index,
            "share": int(self._share).to_bytes(vk.width, "big"),
            "mode": self.mode,
            "clients": sorted([cid, key] for cid, key in self.clients.items()),
            "term_signers": sorted([cid, key] for cid, key in self.term_signers.items()),
            "require_all": self.require_all,
        })

    @classmethod
    def load(cls, path: Any, *, passphrase: str | bytes | None = None,
             allow_insecure: bool = False, max_refusals: int | None = DEFAULT_MAX_REFUSALS,
             state_path: str | os.PathLike[str] | None = None) -> ShareHolder:
        """Read a file written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), passphrase=passphrase, allow_insecure=allow_insecure,
                                  max_refusals=max_refusals, state_path=state_path)

    @classmethod
    def from_bytes(cls, data: bytes, *, passphrase: str | bytes | None = None,
                   allow_insecure: bool = False, max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                   state_path: str | os.PathLike[str] | None = None) -> ShareHolder:
        """Load a share (decrypting it if sealed); raises a ``SecAggError`` on any input.

        ``state_path`` keeps the guard's refusals and the decrypted rounds in a
        file across restarts (read before every request, written after every
        change; an unreadable file stops all decryption).
        """
        from secagg.keystore import unseal_if_sealed

        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"expected bytes, got {type(data).__name__}.")
        data = unseal_if_sealed(bytes(data), passphrase, "share")
        _, body = open_payload(data, Kind.THRESHOLD_SHARE)
        public = PublicContext.from_bytes(body.blob("public"), allow_insecure=allow_insecure)
        vk = VerificationKeys.from_bytes(body.blob("verification"), public)
        index = body.integer("index", 1, vk.parties)
        share = int.from_bytes(body.blob("share", size=vk.width), "big")
        mode = body.text("mode", choices=MODES)
        registries = []
        for name in ("clients", "term_signers"):
            entries = body.items(name, max_len=MAX_REGISTERED)
            if not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                       and isinstance(e[1], bytes) for e in entries):
                raise FormatError(f"share field {name!r} must hold [id, key] pairs.")
            registries.append({e[0]: e[1] for e in entries})
            if len(registries[-1]) != len(entries):
                raise FormatError(f"share field {name!r} names an id twice.")
        require_all = body.optional("require_all")
        if not isinstance(require_all, bool):
            raise FormatError("share field 'require_all' must be a boolean.")
        try:
            holder = cls(ThresholdPublicContext(public, vk), index, share, mode=mode,
                         clients=registries[0], term_signers=registries[1],
                         require_all=require_all, max_refusals=max_refusals,
                         state_path=state_path)
        except ConfigError as exc:
            raise FormatError(f"invalid share: {exc}") from None
        return holder
