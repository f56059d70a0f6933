"""The rule a secret holder follows when an untrusted sender asks it to decrypt.

A party that holds a decryption key and decrypts aggregates chosen by someone
else (a Flower node sharing the cross-silo key, a key holder serving the
server) is an oracle unless it limits what its answers say and how often it
answers. Error texts are already fixed (:func:`secagg.errors.public_reason`);
this module limits the queries:

1. An aggregate whose decryption fails a consistency check
   (:class:`~secagg.errors.DecryptionCheckError`) is hostile. Its digest is
   remembered and it is never decrypted again: the same crafted ciphertext
   gets the same refusal without a second decryption.
2. After a refusal, nothing else is decrypted in the same round: a second
   crafted query about the same ciphertexts gets ``SA-LOCKED``.
3. After ``max_refusals`` refusals in all, nothing is decrypted any more until
   the operator looks at the node's log and resets its state. An honest round
   never fails a check, so an honest federation never gets there; a server
   probing one bit per refusal gets at most ``max_refusals`` of them.

What this does not stop, and SECURITY.md says so: the round is named by the
sender, so a deviating server can move to a new round id at will (the cap in
rule 3 is what bounds it); and aggregates that pass every check are decrypted,
however they were made (a victim's update padded with the server's own
encryptions, or, for CKKS/BFV, ciphertexts crafted to decrypt to functions of
the secret key).

The state is plain data (:meth:`DecryptionGuard.to_state`): a Flower node
keeps it in its ``Context.state`` (one run), and ``path=`` keeps it in a file
so that the cap survives new runs and restarts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from secagg.errors import AggregateRefusedError, ConfigError, DecryptionCheckError

__all__ = ["DecryptionGuard", "DEFAULT_MAX_REFUSALS"]

#: refusals a guard tolerates in all before it stops decrypting
DEFAULT_MAX_REFUSALS = 3
_KEEP = 64  # refused digests and locked rounds remembered (oldest dropped first)

T = TypeVar("T")
_log = logging.getLogger("secagg")


def _remember(items: list[T], new: Iterable[T]) -> None:
    """Append what ``items`` lacks of ``new``, then keep the latest ``_KEEP``."""
    items.extend(x for x in new if x not in items)
    del items[:-_KEEP]


def state_to_json(state: dict[str, Any]) -> dict[str, Any]:
    """A guard's :meth:`~DecryptionGuard.to_state` as JSON-ready values (digests in hex)."""
    return {"refusals": state["refusals"],
            "refused": [d.hex() for d in state.get("refused", [])],
            "locked": state.get("locked", [])}


def state_from_json(raw: Any) -> dict[str, Any]:
    """The inverse of :func:`state_to_json`; raises ``KeyError``/``ValueError``/... on a bad file."""
    return {"refusals": raw["refusals"],
            "refused": [bytes.fromhex(d) for d in raw.get("refused", [])],
            "locked": list(raw.get("locked", []))}


def read_state_file(path: Path | None,
                    decode: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
    """The decoded JSON state at ``path``: None with no path or file, ``{}`` if unreadable."""
    if path is None or not path.exists():
        return None
    try:
        return decode(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_state_file(path: Path, data: str) -> None:
    """Replace ``path`` with ``data`` at once, through an owner-only (0600) temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, path)


class DecryptionGuard:
    """Tracks refused aggregates and decides whether the next one may be decrypted.

    Args:
        max_refusals: refusals in all after which nothing more is decrypted
            (``None``: no limit; then a deviating server may probe one bit per
            round indefinitely).
        path: a file that keeps the state across runs and restarts (read
            before every check, written after every refusal, owner-only). An
            unreadable or malformed file counts as exhausted: fail safe.

    Example::

        guard = DecryptionGuard()
        tree = guard.decrypt(lambda: ctx.decrypt(data), digest=h, round_key="3")
    """

    def __init__(self, max_refusals: int | None = DEFAULT_MAX_REFUSALS, *,
                 path: str | os.PathLike[str] | None = None) -> None:
        if max_refusals is not None and (
            isinstance(max_refusals, bool) or not isinstance(max_refusals, int)
            or max_refusals < 1
        ):
            raise ConfigError(
                f"max_refusals must be a positive integer or None. Found {max_refusals!r}."
            )
        self.max_refusals = max_refusals
        self.path = None if path is None else Path(path)
        self.refusals = 0
        self._refused: list[bytes] = []
        self._locked: list[str] = []

    def __repr__(self) -> str:
        return f"DecryptionGuard(refusals={self.refusals}, max_refusals={self.max_refusals})"

    @property
    def exhausted(self) -> bool:
        """Whether the guard refuses everything (``max_refusals`` reached)."""
        return self.max_refusals is not None and self.refusals >= self.max_refusals

    def check(self, digest: bytes, round_key: str) -> None:
        """Raise ``AggregateRefusedError`` if this aggregate must not be decrypted."""
        self._read()
        if digest in self._refused:
            raise AggregateRefusedError("SA-REFUSED")
        if self.exhausted or round_key in self._locked:
            raise AggregateRefusedError("SA-LOCKED")

    def record_refusal(self, digest: bytes, round_key: str) -> None:
        """Remember a hostile aggregate and lock its round."""
        self.refusals += 1
        _remember(self._refused, [digest])
        _remember(self._locked, [round_key])
        self._write()
        _log.warning(
            "secagg: refused an aggregate that failed a consistency check after decryption "
            "(round %s, refusal %d of %s); nothing more is decrypted this round.",
            round_key[:32], self.refusals, self.max_refusals or "unlimited",
        )
        if self.exhausted:
            _log.error(
                "secagg: %d aggregates refused; this party decrypts nothing more. Check the "
                "server and the clients, then reset this node's state.", self.refusals,
            )

    def decrypt(self, fn: Callable[[], T], *, digest: bytes, round_key: str) -> T:
        """Run ``fn`` (a decryption) under the rules above; re-raise its check failure."""
        self.check(digest, round_key)
        try:
            return fn()
        except DecryptionCheckError:
            self.record_refusal(digest, round_key)
            raise

    # -- state as plain data ---------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The state as ints, bytes and strings (for Flower's ``ConfigRecord``; no empty lists)."""
        state: dict[str, Any] = {"refusals": self.refusals}
        if self._refused:
            state["refused"] = list(self._refused)
        if self._locked:
            state["locked"] = list(self._locked)
        return state

    def load_state(self, state: Any) -> None:
        """Merge :meth:`to_state` output in; malformed state counts as exhausted (fail safe)."""
        try:
            refusals = state["refusals"]
            refused = list(state.get("refused", []))
            locked = list(state.get("locked", []))
            if isinstance(refusals, bool) or not isinstance(refusals, int) or refusals < 0:
                raise TypeError
            if not all(isinstance(d, bytes) for d in refused) or not all(
                    isinstance(r, str) for r in locked):
                raise TypeError
        except (KeyError, TypeError, AttributeError):
            self.refusals = max(self.refusals, self.max_refusals or 1)
            return
        # merge, never forget: the larger count and the union of what was refused
        self.refusals = max(self.refusals, refusals)
        _remember(self._refused, refused)
        _remember(self._locked, locked)

    # -- a file, for a cap that outlives a run -----------------------------------
    def _read(self) -> None:
        state = read_state_file(self.path, state_from_json)
        if state is not None:
            self.load_state(state)

    def _write(self) -> None:
        if self.path is None:
            return
        write_state_file(self.path, json.dumps(state_to_json(self.to_state())))
