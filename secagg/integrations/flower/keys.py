"""Loading contexts for Flower (cached per process), decrypting aggregates, the key holder."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from secagg._checks import a_or_an
from secagg.context import PublicContext, SecretContext, public_only
from secagg.errors import (
    AggregateRefusedError,
    ConfigError,
    MissingSecretKeyError,
    SecAggError,
)
from secagg.guard import DEFAULT_MAX_REFUSALS, DecryptionGuard
from secagg.integrations.flower.records import _tree_to_arrays, aggregate_from_arrays
from secagg.update import EncryptedUpdate
from secagg.wire import Kind, peek_kind

if TYPE_CHECKING:  # pragma: no cover
    from flwr.app import ArrayRecord

__all__ = ["KeyHolder", "decrypt_arrays"]

AnyContext = PublicContext | SecretContext


def decrypt_arrays(record: ArrayRecord, secret_context: SecretContext | bytes) -> ArrayRecord:
    """Decrypt an encrypted global model (e.g. ``Result.arrays``) into plain weights.

    For a client or key holder that holds the secret context; a plain
    ArrayRecord is returned unchanged.
    """
    data = aggregate_from_arrays(record)
    if data is None:
        return record
    ctx = secret_context if isinstance(secret_context, SecretContext) else _load_context(
        bytes(secret_context))
    if not isinstance(ctx, SecretContext):
        raise MissingSecretKeyError("decrypting needs the secret context, not the public one.")
    return _tree_to_arrays(ctx.decrypt(data, reduce="weighted_mean"))


# -- contexts --------------------------------------------------------------------------

# Contexts loaded in this process, by digest of their bytes. Flower ships the
# ClientApp (and so this mod) to its workers with every message; caching here
# loads each key once per worker process instead of once per message.
_CACHE: OrderedDict[bytes, AnyContext] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _load_context(data: bytes, *, allow_insecure: bool = False) -> AnyContext:
    key = hashlib.blake2b(data + bytes([allow_insecure]), digest_size=16).digest()
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    kind = peek_kind(data)
    ctx: AnyContext
    if kind == Kind.PUBLIC_CONTEXT:
        ctx = PublicContext.from_bytes(data, allow_insecure=allow_insecure)
    elif kind == Kind.SECRET_CONTEXT:
        ctx = SecretContext.from_bytes(data, allow_insecure=allow_insecure)
    else:
        raise ConfigError(
            f"expected a secagg context, got {a_or_an(kind.name.lower())} payload (a passphrase-sealed "
            f"secret context is loaded by a function: secagg_mod(lambda context: "
            f"SecretContext.load(path, passphrase=...)))."
        )
    with _CACHE_LOCK:
        _CACHE[key] = ctx
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return ctx


# The latest decrypted aggregates, by key and digest: a node decrypts the same
# aggregate for ``evaluate`` in round r and for ``train`` in round r + 1, and the
# nodes that a simulation runs in one worker process share it.
_DECRYPTED: OrderedDict[tuple[bytes, bytes], Any] = OrderedDict()
_DECRYPTED_SIZE = 2


def _decrypt_cached(ctx: SecretContext, data: bytes, guard: DecryptionGuard | None = None,
                    round_key: str = "") -> Any:
    digest = hashlib.sha256(data).digest()
    key = (ctx.fingerprint, digest)
    with _CACHE_LOCK:
        tree = _DECRYPTED.get(key)
    if tree is None:
        # weighted_mean is right for both reductions: with every weight 1 it is the mean
        def run() -> Any:
            return ctx.decrypt(data, reduce="weighted_mean")

        tree = run() if guard is None else guard.decrypt(run, digest=digest, round_key=round_key)
        with _CACHE_LOCK:
            _DECRYPTED[key] = tree
            while len(_DECRYPTED) > _DECRYPTED_SIZE:
                _DECRYPTED.popitem(last=False)
    return tree


def _public_only(context: Any, *, allow_insecure: bool = False) -> PublicContext:
    """The server's context: public material only (one rule: :func:`secagg.context.public_only`)."""
    if isinstance(context, (bytes, bytearray, memoryview)):
        data = bytes(context)
        kind = peek_kind(data)
        if kind != Kind.PUBLIC_CONTEXT:
            raise ConfigError(
                f"the server-side strategy takes public context bytes "
                f"(ctx.public.to_bytes()); got {a_or_an(kind.name.lower())} payload."
            )
        return PublicContext.from_bytes(data, allow_insecure=allow_insecure)
    pub = public_only(context, "the server-side strategy")
    if pub.backend.insecure and not allow_insecure:
        raise ConfigError(
            "this public context is an insecure test context; pass allow_insecure=True in "
            "tests only."
        )
    return pub


class KeyHolder:
    """An in-process key holder for ``SecAggFedAvg(key_holder=...)``.

    It holds the secret context, so **the process that calls it holds the
    key**: use it in simulations and tests. In a deployment the callback
    forwards the aggregate's bytes to the key holder's own service (which can
    run exactly this) and returns its answer; the server then learns the
    aggregate, never an individual update or weight.
    """

    def __init__(self, secret_context: SecretContext | bytes, *,
                 max_refusals: int | None = DEFAULT_MAX_REFUSALS,
                 allow_insecure: bool = False, guard_path: str | None = None,
                 allow_unverified_lattice: bool = False) -> None:
        if isinstance(secret_context, (bytes, bytearray, memoryview)):
            secret_context = SecretContext.from_bytes(bytes(secret_context),
                                                      allow_insecure=allow_insecure)
        if not isinstance(secret_context, SecretContext):
            raise ConfigError("KeyHolder needs the secret context.")
        if not secret_context.public.backend.oracle_safe_key and not allow_unverified_lattice:
            raise ConfigError(
                f"a key holder that decrypts {secret_context.scheme.upper()} aggregates a server "
                f"assembled can be made to decrypt functions of its secret key and hand the key "
                f"to that server (decryption-oracle attacks; SECURITY.md). Use the 'paillier' "
                f"scheme for key-holder mode, or pass allow_unverified_lattice=True only if the "
                f"server is trusted to forward real sums."
            )
        self._secret = secret_context
        self._guard = DecryptionGuard(max_refusals, path=guard_path)

    def __call__(self, data: bytes) -> dict[str, Any]:
        """Decrypt an aggregate to the (sample-weighted) mean model.

        Raises ``AggregateRefusedError`` whose text is one fixed line from
        :data:`secagg.errors.PUBLIC_REASONS` (it goes back to the server); the
        details are logged here, never a decrypted number. A refused aggregate
        locks its round (see :class:`secagg.guard.DecryptionGuard`).
        """
        try:
            data = bytes(data)
            total = EncryptedUpdate.from_bytes(data, self._secret.public)
            digest = hashlib.sha256(data).digest()
            return self._guard.decrypt(
                lambda: self._secret.decrypt(total, reduce="weighted_mean"),
                digest=digest, round_key=str(total.round_id)[:64])
        except Exception as exc:
            logging.getLogger("secagg").warning("KeyHolder: %s: %s", type(exc).__name__, exc)
            code = exc.code if isinstance(exc, SecAggError) else "SA-INTERNAL"
            raise AggregateRefusedError(code) from None
