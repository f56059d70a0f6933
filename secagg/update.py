"""Encrypted updates: one client's contribution, a sum of them, or an added term."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from secagg.codec import FixedPointCodec
from secagg.errors import ContextMismatchError, FormatError
from secagg.schemes.base import PublicBackend
from secagg.tree import TreeSpec
from secagg.wire import Kind, open_payload, seal, show


class _Public(Protocol):
    """What loading an update needs of a public context."""

    scheme: str
    fingerprint: bytes
    codec: FixedPointCodec
    backend: PublicBackend

__all__ = ["EncryptedUpdate", "RoundId"]

RoundId = int | str | None
# after the values: the weight (sum of client weights) and the count (1 per client
# update, 0 per term), both encrypted, so that neither can be relabelled in clear
EXTRA_SLOTS = 2
_MAX_ROUND_STR = 128


def check_round_id(round_id: object) -> RoundId:
    """Validate a round identifier: ``None``, a non-negative int or a short string."""
    if round_id is None or (type(round_id) is int and 0 <= round_id < 2**63):
        return round_id
    if isinstance(round_id, str) and len(round_id) <= _MAX_ROUND_STR:
        return round_id
    raise FormatError(
        f"round_id must be None, an integer in [0, 2**63) or a string of at most "
        f"{_MAX_ROUND_STR} characters. Found {show(round_id)}."
    )


@dataclass(frozen=True, eq=False)
class EncryptedUpdate:
    """Ciphertexts of a tree's quantized values, plus what is needed to use them.

    Attributes:
        scheme: ``"paillier"`` or ``"ckks"``.
        fingerprint: 16 bytes naming the public context (key and codec) it was made under.
        kind: ``Kind.UPDATE`` (one client), ``Kind.AGGREGATE`` (a sum) or ``Kind.TERM``.
        count: client updates summed into it (1 for a client's own update).
        spec: the tree's structure, leaf names, shapes, dtypes and devices.
        round_id: the round it belongs to, or ``None``.
        terms: extra terms (plaintext or encrypted tensors) added to the sum.
        num_clipped: client-side statistic: inputs clamped to ``±clip`` during
            encoding. Never serialized (it would tell the aggregator about the values).

    Everything here but the ciphertexts is visible to the aggregator; a client's
    weight travels encrypted in the last slot.
    """

    scheme: str
    fingerprint: bytes
    kind: Kind
    count: int
    spec: TreeSpec
    round_id: RoundId
    ciphertexts: Sequence[Any] = field(repr=False)
    backend: PublicBackend = field(repr=False)
    terms: int = 0
    num_clipped: int = 0
    _digest: list[bytes] = field(default_factory=list, repr=False)  # lazily cached wire digest

    @property
    def num_slots(self) -> int:
        """Slots carried: every value, then the weight slot and the count slot."""
        return self.spec.num_values + EXTRA_SLOTS

    def to_bytes(self) -> bytes:
        """Serialize as a versioned, self-describing payload (see :mod:`secagg.wire`)."""
        backend = self.backend
        data = seal(
            self.kind,
            {
                "scheme": self.scheme,
                "fingerprint": self.fingerprint,
                "count": self.count,
                "terms": self.terms,
                "round": self.round_id,
                "spec": self.spec.to_obj(),
                "values": self.spec.num_values,
                "ciphertexts": backend.ciphertexts_to_wire(self.ciphertexts),
            },
        )
        if not self._digest:
            self._digest.append(data[-16:])
        return data

    def digest(self) -> bytes:
        """16 bytes identifying this exact payload (used to refuse replays)."""
        if not self._digest:
            self.to_bytes()
        return self._digest[0]

    @classmethod
    def from_bytes(cls, data: bytes, public: _Public) -> EncryptedUpdate:
        """Load and fully validate an update, aggregate or term made under ``public``.

        Raises a ``FormatError`` subclass for malformed, truncated or corrupted
        bytes and ``ContextMismatchError`` for another scheme, key or codec.
        """
        # large byte strings as views of ``data``: a lattice update is not held twice
        kind, body = open_payload(data, Kind.UPDATE, Kind.AGGREGATE, Kind.TERM,
                                  views=public.backend.accepts_views)
        scheme = body.text("scheme")
        if scheme != public.scheme:
            raise ContextMismatchError(
                f"update was made for scheme {scheme!r:.40}, this context is {public.scheme!r}."
            )
        fp = body.blob("fingerprint", size=16)
        if fp != public.fingerprint:
            raise ContextMismatchError(
                f"update was made under another key or codec (fingerprint {fp.hex()}, "
                f"expected {public.fingerprint.hex()})."
            )
        codec = public.codec
        count = body.integer("count", 1, codec.max_clients) if kind != Kind.TERM else body.integer(
            "count", 0, 0
        )
        if kind == Kind.UPDATE and count != 1:
            raise FormatError(f"a client update must have count 1; found {count}.")
        terms = body.integer("terms", 0, codec.extra_summands)
        if kind == Kind.TERM and terms != 1:
            raise FormatError(f"a term payload must have terms 1; found {terms}.")
        if kind == Kind.UPDATE and terms != 0:
            raise FormatError(f"a client update must have terms 0; found {terms}.")
        round_id = check_round_id(body.optional("round"))
        n_values = body.integer("values", 1, 2**40)
        n_slots = n_values + EXTRA_SLOTS
        public.backend.precheck(body.value("ciphertexts"), n_slots)  # before parsing the spec
        spec = TreeSpec.from_obj(body.value("spec"))
        if n_values != spec.num_values:
            raise FormatError(
                f"payload announces {n_values} values but its tree spec holds {spec.num_values}."
            )
        cts = public.backend.ciphertexts_from_wire(body.value("ciphertexts"), n_slots)
        return cls(scheme, fp, kind, count, spec, round_id, cts, public.backend, terms,
                   _digest=[bytes(data[-16:])])

    def describe(self) -> dict[str, Any]:
        """What the aggregator can see of this update."""
        return {
            "scheme": self.scheme,
            "kind": self.kind.name.lower(),
            "fingerprint": self.fingerprint.hex(),
            "count": self.count,
            "terms": self.terms,
            "round_id": self.round_id,
            "values": self.spec.num_values,
            "leaves": [(x.name, x.shape, x.dtype) for x in self.spec.leaves],
            "ciphertexts": len(self.ciphertexts),
        }
