"""The untrusted server's object: a streaming, validating homomorphic sum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from secagg._checks import a_or_an, check_bool, count_of
from secagg.context import PublicContext, public_only
from secagg.errors import (
    CapacityError,
    ConfigError,
    ContextMismatchError,
    EmptyAggregateError,
    FormatError,
    ReplayError,
    RoundMismatchError,
    TreeMismatchError,
)
from secagg.tree import TreeSpec
from secagg.update import EXTRA_SLOTS, EncryptedUpdate, check_round_id
from secagg.wire import Kind, open_payload, seal

__all__ = ["Aggregator"]


class Aggregator:
    """Sums encrypted updates holding only public material.

    The state is one running sum of ciphertexts (its size does not depend on
    the number of clients), the count, and the 16-byte digests of the payloads
    already summed (at most ``max_clients`` of them, to refuse replays).

    Every update is validated completely before the state is touched, so a
    rejected update leaves the aggregator exactly as it was::

        agg = Aggregator(pub)
        for data in received:          # bytes or EncryptedUpdate objects
            agg.add(data)
        total = agg.result()           # an EncryptedUpdate, count == len(agg)

    Args:
        public: the public context (never the secret one).
        round_id: if given, only updates of this round are summed.
        accept_aggregates: whether :meth:`add` takes partial sums without a
            ``client_id`` (see :meth:`merge`).
        cast: every update's leaves must have the dtype and library (numpy or
            torch) of the first update's, or it is refused with a
            ``TreeMismatchError`` naming the leaf; with ``cast=True`` such
            updates are summed and the sum decodes to the first update's dtypes
            and libraries. Devices may always differ. (A term, see
            :meth:`add_term`, is server-side data: it takes the sum's types.)
    """

    def __init__(
        self,
        public: PublicContext,
        *,
        round_id: int | str | None = None,
        accept_aggregates: bool = True,
        cast: bool = False,
    ) -> None:
        if not isinstance(accept_aggregates, bool):
            raise ConfigError(
                f"accept_aggregates must be True or False. Found {accept_aggregates!r}."
            )
        #: whether updates whose leaf dtypes or libraries differ from the first's are summed
        self.cast = check_bool("cast", cast)
        self.public: PublicContext = public_only(public, "Aggregator")
        self.round_id = check_round_id(round_id)
        #: whether :meth:`add` takes partial sums without a ``client_id`` (see :meth:`merge`)
        self.accept_aggregates = accept_aggregates
        self._spec: TreeSpec | None = None
        self._sum: Sequence[Any] | None = None
        self._count = 0
        self._terms = 0
        self._seen: set[bytes] = set()
        self._clients: set[str] = set()

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Aggregator(scheme={self.public.scheme!r}, count={self._count}, round_id={self.round_id!r})"

    @property
    def terms(self) -> int:
        """Terms added so far (see :meth:`add_term`)."""
        return self._terms

    @property
    def spec(self) -> TreeSpec | None:
        """The tree spec every update must match (set by the first one; the sum decodes to it).

        A term added before any update sets it until the first update replaces it.
        """
        return self._spec

    def _load(self, update: Any) -> tuple[EncryptedUpdate, bytes]:
        if isinstance(update, (bytes, bytearray, memoryview)):
            data = bytes(update)
            upd = EncryptedUpdate.from_bytes(data, self.public)
            return upd, upd.digest()
        if isinstance(update, EncryptedUpdate):
            if update.scheme != self.public.scheme or update.fingerprint != self.public.fingerprint:
                raise ContextMismatchError(
                    "update was made under another key or codec than this aggregator's."
                )
            return update, update.digest()
        raise FormatError(f"expected an EncryptedUpdate or its bytes. Found {type(update).__name__}.")

    def add(self, update: EncryptedUpdate | bytes, *, client_id: str | None = None) -> None:
        """Validate a client update or a partial aggregate (or its bytes) and add it.

        Args:
            update: the update or its bytes.
            client_id: who sent it (any string up to 256 characters); a second
                update from the same id in this round is refused. Without
                signatures this stops duplicated or mistaken deliveries, not a
                sender that lies about its id.

        A payload sent by a client is one client's update: with a ``client_id``
        (or with ``accept_aggregates=False``) only update-kind payloads (count 1)
        are accepted, so no sender can claim to be several clients and push a
        sum past ``min_clients``. Partial sums from a trusted sub-aggregator go
        through :meth:`merge` (or, as before, :meth:`add` without a
        ``client_id`` when ``accept_aggregates`` is left True).

        Raises (state unchanged): a ``FormatError`` subclass for malformed bytes
        or an aggregate where a client update is expected,
        ``ContextMismatchError`` for another key, ``TreeMismatchError`` for
        another tree spec (or, unless ``cast=True``, a leaf whose dtype or
        library differs from the first update's), ``RoundMismatchError``, ``ReplayError`` for an update
        already summed or a client id already seen, ``CapacityError`` past
        ``max_clients``.
        """
        if client_id is not None and (not isinstance(client_id, str) or len(client_id) > 256):
            raise FormatError("client_id must be a string of at most 256 characters.")
        upd, key = self._load(update)
        if upd.kind == Kind.TERM:
            raise FormatError("a term is added with add_term(), not add().")
        if upd.kind != Kind.UPDATE and (client_id is not None or not self.accept_aggregates):
            raise FormatError(
                "a client sends one update, but this payload is an aggregate (a sum of "
                "several): refused. Merge trusted partial sums with Aggregator.merge()."
            )
        self._add_checked(upd, key, client_id)

    def merge(self, aggregate: EncryptedUpdate | bytes) -> None:
        """Add a partial sum (``Aggregator.result()`` of a trusted sub-aggregator).

        Hierarchical aggregation: counts, terms and sums add up. Only merge
        aggregates from parties you trust to have summed real client updates;
        a client's own payload goes through :meth:`add`. Validation and the
        unchanged-state-on-refusal rule are those of :meth:`add`.
        """
        upd, key = self._load(aggregate)
        if upd.kind == Kind.TERM:
            raise FormatError("a term is added with add_term(), not merge().")
        self._add_checked(upd, key, None)

    def _add_checked(self, upd: EncryptedUpdate, key: bytes, client_id: str | None) -> None:
        if client_id is not None and client_id in self._clients:
            raise ReplayError(f"client {client_id!r} already contributed to this round.")
        self._commit(upd, key)
        if client_id is not None:
            self._clients.add(client_id)

    def add_term(self, term: EncryptedUpdate | bytes) -> None:
        """Add an encrypted term (``PublicContext.encrypt_term``) to the sum, unweighted.

        Validated like :meth:`add`; counts against ``max_terms``, not ``len(self)``.
        """
        upd, key = self._load(term)
        if upd.kind != Kind.TERM:
            raise FormatError(
                f"add_term() takes a term payload, got {a_or_an(upd.kind.name.lower())}."
            )
        self._commit(upd, key)

    def add_plain(self, tree: Any) -> None:
        """Encode and encrypt a plaintext tree with the public key, and add it as a term.

        For a proximal or regularisation term known to the server. Values are
        never clipped: outside ``±term_clip`` they raise ``EncodingError``.
        """
        self.add_term(self.public.encrypt_term(tree, round_id=self.round_id))

    def _commit(self, upd: EncryptedUpdate, key: bytes) -> None:
        if self.round_id is not None and upd.round_id != self.round_id:
            raise RoundMismatchError(
                f"update belongs to round {upd.round_id!r}; this aggregator sums round "
                f"{self.round_id!r}."
            )
        if self._spec is not None:
            self._spec.check_compatible(upd.spec)
            if not self.cast and self._count and upd.kind != Kind.TERM:
                self._check_types(self._spec, upd)
        if key in self._seen:
            raise ReplayError("this exact update was already summed; refusing the replay.")
        codec = self.public.codec
        if self._count + upd.count > codec.max_clients:
            raise CapacityError(
                f"adding {count_of(upd.count, 'update')} to {self._count} would exceed "
                f"max_clients={codec.max_clients}."
            )
        if self._terms + upd.terms > codec.extra_summands:
            raise CapacityError(
                f"adding {count_of(upd.terms, 'term')} to {self._terms} would exceed "
                f"max_terms={codec.extra_summands}."
            )
        backend = self.public.backend
        cts = upd.ciphertexts
        new_sum = backend.raw_copy(cts) if self._sum is None else backend.raw_accumulate(self._sum, cts)
        # the sum decodes to the first update's spec (a term's only until an update comes)
        takes_spec = self._spec is None or (upd.kind != Kind.TERM and self._count == 0)
        # commit: nothing below can fail
        self._sum = new_sum
        self._count += upd.count
        self._terms += upd.terms
        self._seen.add(key)
        if takes_spec:
            self._spec = upd.spec

    @staticmethod
    def _check_types(first: TreeSpec, upd: EncryptedUpdate) -> None:
        diff = first.type_difference(upd.spec)
        if diff is None:
            return
        mine, theirs = diff
        what = "aggregate" if upd.kind == Kind.AGGREGATE else "update"
        raise TreeMismatchError(
            f"leaf {mine.name!r} is {theirs.lib} {theirs.dtype} in this {what} but {mine.lib} "
            f"{mine.dtype} in the first update of this sum; send the same dtype and library "
            f"from every client, or pass cast=True to Aggregator to sum it anyway and decode "
            f"the sum to the first update's ({mine.lib} {mine.dtype})."
        )

    # -- checkpoints -----------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A checkpoint of the partial round: count, terms, sums, seen digests and client ids.

        Public material only (the aggregator never holds more); restore with
        :meth:`from_bytes` after a restart and no received update is lost.
        """
        pub = self.public
        return seal(Kind.CHECKPOINT, {
            "scheme": pub.scheme,
            "fingerprint": pub.fingerprint,
            "round": self.round_id,
            "count": self._count,
            "terms": self._terms,
            "spec": None if self._spec is None else self._spec.to_obj(),
            "values": 0 if self._spec is None else self._spec.num_values,
            "ciphertexts": None if self._sum is None else pub.backend.ciphertexts_to_wire(self._sum),
            "seen": sorted(self._seen),
            "clients": sorted(self._clients),
            "accept_aggregates": self.accept_aggregates,
            "cast": self.cast,
        })

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicContext) -> Aggregator:
        """Restore a checkpoint made by :meth:`to_bytes` under the same public context."""
        _, body = open_payload(data, Kind.CHECKPOINT)
        public = public_only(public, "Aggregator.from_bytes")
        if body.text("scheme") != public.scheme or body.blob("fingerprint", size=16) != public.fingerprint:
            raise ContextMismatchError("checkpoint was made under another key or codec.")
        codec = public.codec
        accept = body.optional("accept_aggregates")
        if accept is not None and not isinstance(accept, bool):
            raise FormatError("checkpoint field accept_aggregates must be a boolean.")
        cast = body.optional("cast")
        if cast is not None and not isinstance(cast, bool):
            raise FormatError("checkpoint field cast must be a boolean.")
        agg = cls(public, round_id=check_round_id(body.optional("round")),
                  accept_aggregates=True if accept is None else accept, cast=bool(cast))
        count = body.integer("count", 0, codec.max_clients)
        terms = body.integer("terms", 0, codec.extra_summands)
        seen = body.items("seen", max_len=codec.max_clients + codec.extra_summands)
        clients = body.items("clients", max_len=codec.max_clients)
        if not all(isinstance(d, bytes) and len(d) == 16 for d in seen) or len(set(seen)) != len(seen):
            raise FormatError("checkpoint digests must be distinct 16-byte strings.")
        if not all(isinstance(c, str) and len(c) <= 256 for c in clients):
            raise FormatError("checkpoint client ids must be short strings.")
        if body.optional("ciphertexts") is None:
            if body.optional("spec") is not None or count or terms or seen or clients:
                raise FormatError("a checkpoint without a sum cannot have seen updates.")
            return agg
        if count + terms == 0 or len(seen) < 1:
            raise FormatError("a checkpoint with a sum must have seen an update.")
        n_values = body.integer("values", 1, 2**40)
        public.backend.precheck(body.value("ciphertexts"), n_values + EXTRA_SLOTS)
        spec = TreeSpec.from_obj(body.value("spec"))
        if spec.num_values != n_values:
            raise FormatError("checkpoint value count does not match its tree spec.")
        cts = public.backend.ciphertexts_from_wire(body.value("ciphertexts"), n_values + EXTRA_SLOTS)
        agg._spec, agg._sum, agg._count, agg._terms = spec, cts, count, terms
        agg._seen, agg._clients = set(seen), set(clients)
        return agg

    def result(self) -> EncryptedUpdate:
        """The encrypted sum so far; raises ``EmptyAggregateError`` if nothing was added."""
        if self._count == 0 or self._sum is None or self._spec is None:
            raise EmptyAggregateError("no client update has been added to this aggregator yet.")
        pub = self.public
        return EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.AGGREGATE, self._count,
                               self._spec, self.round_id, pub.backend.raw_copy(self._sum), pub.backend,
                               terms=self._terms)
