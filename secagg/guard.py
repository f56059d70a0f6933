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

The state is plain data (:meth:`DecryptionGuard.to_state`), so a Flower node
can keep it in its ``Context.state`` across ClientApp processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import AggregateRefusedError, ConfigError, DecryptionCheckError

__all__ = ["DecryptionGuard", "DEFAULT_MAX_REFUSALS"]

#: refusals a guard tolerates in all before it stops decrypting
DEFAULT_MAX_REFUSALS = 3
_KEEP = 64  # refused digests and locked rounds remembered (oldest dropped first)

T = TypeVar("T")
_log = logging.getLogger("secagg")


class DecryptionGuard:
    """Tracks refused aggregates and decides whether the next one may be decrypted.

    Args:
        max_refusals: refusals in all after which nothing more is decrypted
            (``None``: no limit; then a deviating server may probe one bit per
            round indefinitely).

    Example::

        guard = DecryptionGuard()
        tree = guard.decrypt(lambda: ctx.decrypt(data), digest=h, round_key="3")
    """

    def __init__(self, max_refusals: int | None = DEFAULT_MAX_REFUSALS) -> None:
        if max_refusals is not None and (
            isinstance(max_refusals, bool) or not isinstance(max_refusals, int)
            or max_refusals < 1
        ):
            raise ConfigError(
                f"max_refusals must be a positive integer or None. Found {max_refusals!r}."
            )
        self.max_refusals = max_refusals
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
        if digest in self._refused:
            raise AggregateRefusedError("SA-REFUSED")
        if self.exhausted or round_key in self._locked:
            raise AggregateRefusedError("SA-LOCKED")

    def record_refusal(self, digest: bytes, round_key: str) -> None:
        """Remember a hostile aggregate and lock its round."""
        self.refusals += 1
        for items, item in ((self._refused, digest), (self._locked, round_key)):
            if item not in items:
                items.append(item)  # type: ignore[arg-type]
                del items[:-_KEEP]
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
        """Restore :meth:`to_state` output; malformed state counts as exhausted (fail safe)."""
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
        self.refusals, self._refused, self._locked = refusals, refused[-_KEEP:], locked[-_KEEP:]
