"""Combining partial decryptions: verify every one, then decrypt with any ``threshold`` valid ones.

Whoever holds ``threshold`` valid partials of an aggregate learns its plaintext
(in key-holder deployments: the server, which gets the mean as with a single
key holder). :func:`combine` checks every partial's proof
(:func:`secagg.threshold.partial.verify_partial`); a malformed, foreign or
wrong partial is set aside and named (:class:`Rejection`); the first
``threshold`` valid ones, by holder index, are combined
(``c' = Π c_i**(2μ_i)``, ``M = L(c')·(4Δ²)^-1 mod n``) and the plaintexts go
down the same path as a key holder's decryption:
``PaillierPublic.unpack_plaintexts`` (range checks), then
``secagg.context.raw_sum_from_slots`` (the encrypted count and weight checks),
then ``codec.raw_decode`` and ``unflatten``. Results equal a single-key
decryption of the same aggregate bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gmpy2

from secagg import parallel
from secagg.context import PublicContext, RawSum, Reduce, public_only, raw_sum_from_slots
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    FormatError,
    InsufficientClientsError,
    InvalidPartialError,
    NotEnoughPartialsError,
    TreeError,
)
from secagg.threshold.dealer import _lagrange_times_delta
from secagg.threshold.keys import ThresholdPublicContext, VerificationKeys, paillier_backend
from secagg.threshold.partial import PartialDecryption, read_partial, verify_partial
from secagg.tree import unflatten
from secagg.update import EncryptedUpdate
from secagg.wire import Kind

__all__ = ["combine", "combine_raw", "Combined", "Rejection"]

_log = logging.getLogger("secagg.threshold")
_REDUCE = ("sum", "mean", "weighted_mean")


@dataclass(frozen=True)
class Rejection:
    """A partial decryption :func:`combine` set aside.

    ``position`` is its place in ``parts`` (or the key it was given under, for a
    mapping), ``holder`` the share holder it names (``None`` when unreadable),
    ``reason`` why. With a mapping ``{holder: partial}`` the sender is the key:
    a partial claiming another holder's index is rejected under its sender.
    """

    position: int
    holder: int | None
    reason: str


@dataclass(frozen=True)
class Combined:
    """``combine(..., report=True)``: the decoded tree, who was used, who was rejected."""

    value: Any
    used: tuple[int, ...]
    rejected: tuple[Rejection, ...]


def _verification(public: Any, verification: VerificationKeys | bytes | None) -> VerificationKeys:
    if isinstance(verification, VerificationKeys):
        vk = verification
    elif isinstance(verification, (bytes, bytearray, memoryview)):
        vk = VerificationKeys.from_bytes(bytes(verification), public)
    elif verification is None and isinstance(public, ThresholdPublicContext):
        vk = public.verification
    else:
        raise ConfigError(
            "combine needs the verification keys: pass keys.public (a ThresholdPublicContext), "
            "or verification=keys.verification (or its bytes) with an ordinary public context."
        )
    if vk.fingerprint != public.fingerprint:
        raise ContextMismatchError("the verification keys belong to another public context.")
    return vk


def _total(public: PublicContext, aggregate: Any) -> EncryptedUpdate:
    if isinstance(aggregate, (bytes, bytearray, memoryview)):
        aggregate = EncryptedUpdate.from_bytes(bytes(aggregate), public)
    if not isinstance(aggregate, EncryptedUpdate):
        raise TreeError(f"expected an EncryptedUpdate or its bytes. Found {type(aggregate).__name__}.")
    if aggregate.fingerprint != public.fingerprint or aggregate.scheme != public.scheme:
        raise ContextMismatchError("this aggregate was made under another key or codec.")
    if aggregate.kind != Kind.AGGREGATE:
        raise FormatError(f"combine takes an aggregate; this is a {aggregate.kind.name.lower()} "
                          f"payload.")
    if aggregate.count < public.min_clients:
        raise InsufficientClientsError(
            f"refusing to decrypt a sum of {aggregate.count} client update(s); min_clients is "
            f"{public.min_clients}."
        )
    return aggregate


def _entries(parts: Any) -> list[tuple[int, int | None, Any]]:
    """``(position, sender, data)``: a mapping names each sender, a list does not."""
    if isinstance(parts, Mapping):
        out: list[tuple[int, int | None, Any]] = []
        for key, data in parts.items():
            if isinstance(key, bool) or not isinstance(key, int):
                raise ConfigError("a mapping of partials must be keyed by holder index (int).")
            out.append((key, key, data))
        return out
    if isinstance(parts, (bytes, bytearray, str)) or not isinstance(parts, Iterable):
        raise ConfigError("parts must be a list of partial decryptions (bytes) or a mapping "
                          "{holder index: bytes}.")
    return [(i, None, data) for i, data in enumerate(parts)]


def _check_one(vk: VerificationKeys, total: EncryptedUpdate, data: Any,
               sender: int | None) -> PartialDecryption:
    part = read_partial(data, vk, total)
    if sender is not None and part.holder != sender:
        exc = InvalidPartialError(
            f"the partial sent by holder {sender} claims to be holder {part.holder}'s.")
        exc.holder = sender
        raise exc
    verify_partial(part, vk, total)
    return part


def _verify_all(vk: VerificationKeys, total: EncryptedUpdate,
                entries: list[tuple[int, int | None, Any]],
                workers: int) -> tuple[dict[int, PartialDecryption], list[Rejection]]:
    def run(entry: tuple[int, int | None, Any]) -> tuple[int | None, str]:
        _position, sender, data = entry
        try:
            return _check_one(vk, total, data, sender).holder, ""
        except InvalidPartialError as exc:
            return exc.holder if exc.holder is not None else sender, str(exc)

    outcomes = parallel.fork_map(run, entries, workers)
    valid: dict[int, PartialDecryption] = {}
    rejected: list[Rejection] = []
    for (position, _sender, data), (holder, reason) in zip(entries, outcomes):
        if reason:
            rejected.append(Rejection(position, holder, reason))
            continue
        if holder is None:  # a partial that passed its checks names its holder
            rejected.append(Rejection(position, holder, "the partial names no holder."))
            continue
        if holder in valid:
            rejected.append(Rejection(position, holder, f"a second partial from holder {holder}."))
            continue
        valid[holder] = read_partial(data, vk, total)  # parsed again: children return no objects
    for r in rejected:
        _log.warning("threshold combine: rejected the partial at %s (holder %s): %s",
                     r.position, r.holder, r.reason)
    return valid, rejected


def _combine_plaintexts(vk: VerificationKeys, total: EncryptedUpdate,
                        chosen: list[PartialDecryption], workers: int) -> list[gmpy2.mpz]:
    n, n2, delta = vk.n, vk.nsquare, vk.delta
    mus = _lagrange_times_delta([p.holder for p in chosen], delta)
    inv = gmpy2.invert(4 * delta * delta, n)
    k = len(total.ciphertexts)
    width = (int(n.bit_length()) + 7) // 8

    def run(span: tuple[int, int]) -> bytes:
        out = []
        for j in range(*span):
            pos, neg = gmpy2.mpz(1), gmpy2.mpz(1)
            for part, mu in zip(chosen, mus):
                if mu > 0:
                    pos = pos * gmpy2.powmod(part.partials[j], 2 * mu, n2) % n2
                else:
                    neg = neg * gmpy2.powmod(part.partials[j], -2 * mu, n2) % n2
            c = pos * gmpy2.invert(neg, n2) % n2 if neg != 1 else pos
            if c % n != 1:  # cannot happen with verified partials
                raise InvalidPartialError("the verified partials do not combine to a plaintext.")
            out.append(int((c - 1) // n * inv % n).to_bytes(width, "big"))
        return b"".join(out)

    size = max(16, -(-k // max(1, workers)))
    spans = [(i, min(k, i + size)) for i in range(0, k, size)]
    blob = b"".join(parallel.fork_map(run, spans, workers))
    return [gmpy2.mpz.from_bytes(blob[o : o + width], "big") for o in range(0, len(blob), width)]


def _combine(public: Any, aggregate: Any, parts: Any, verification: Any,
             workers: int) -> tuple[RawSum, EncryptedUpdate, tuple[int, ...], tuple[Rejection, ...]]:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer. Found {workers!r}.")
    pub = public_only(public, "threshold.combine")
    backend = paillier_backend(pub)
    vk = _verification(pub, verification)
    total = _total(pub, aggregate)
    valid, rejected = _verify_all(vk, total, _entries(parts), workers)
    if len(valid) < vk.threshold:
        named = "; ".join(f"holder {r.holder} (at {r.position}): {r.reason.rstrip('.')}"
                          for r in rejected)
        exc = NotEnoughPartialsError(
            f"{vk.threshold} valid partial decryptions are needed ({vk.threshold} of "
            f"{vk.parties}); got {len(valid)} valid"
            + (f", rejected {len(rejected)}: {named}" if rejected else "") + "."
        )
        exc.rejected = tuple(rejected)
        raise exc
    chosen = [valid[h] for h in sorted(valid)[: vk.threshold]]
    plain = _combine_plaintexts(vk, total, chosen, workers)
    sums = backend.unpack_plaintexts(plain, total.num_slots, total.count, total.terms)
    raw = raw_sum_from_slots(sums, total, pub.codec)
    return raw, total, tuple(p.holder for p in chosen), tuple(rejected)


def combine_raw(public: PublicContext, aggregate: EncryptedUpdate | bytes, parts: Any, *,
                verification: VerificationKeys | bytes | None = None,
                workers: int = 1) -> RawSum:
    """:func:`combine` to exact integer sums (``secagg.RawSum``), like ``SecretContext.decrypt_raw``."""
    return _combine(public, aggregate, parts, verification, workers)[0]


def combine(public: PublicContext, aggregate: EncryptedUpdate | bytes, parts: Any,
            reduce: Reduce = "mean", *, verification: VerificationKeys | bytes | None = None,
            report: bool = False, device: Any = None, workers: int = 1) -> Any:
    """Decrypt an aggregate from partial decryptions and decode it to the clients' tree.

    Args:
        public: ``keys.public`` (a ``ThresholdPublicContext``), or an ordinary
            public context together with ``verification``.
        aggregate: the aggregate the partials decrypt (or its bytes).
        parts: the partial decryptions' bytes: a list (any order, any holders),
            or ``{holder index: bytes}`` to name who sent each.
        reduce: ``"sum"``, ``"mean"`` or ``"weighted_mean"`` (as ``SecretContext.decrypt``).
        verification: the verification keys, when ``public`` does not carry them.
        report: return a :class:`Combined` (tree, holders used, rejections)
            instead of the tree alone.
        device: put every torch leaf on this device.
        workers: forked processes (partials are verified in parallel).

    Every partial's proof is checked; the rejected ones are logged (logger
    ``secagg.threshold``) and listed in the report. Raises
    ``NotEnoughPartialsError`` (with ``rejected``) below ``threshold`` valid
    partials, ``InsufficientClientsError`` below ``min_clients``, and after
    combining the checks of a key holder's decryption (``SumOverflowError``,
    ``CountMismatchError``), whose messages never hold a decrypted number.
    """
    if reduce not in _REDUCE:
        raise ConfigError(f"reduce must be 'sum', 'mean' or 'weighted_mean'. Found {reduce!r}.")
    raw, total, used, rejected = _combine(public, aggregate, parts, verification, workers)
    divisor = {"sum": 1, "mean": raw.count, "weighted_mean": raw.weight_sum}[reduce]
    codec = public_only(public).codec
    tree = unflatten(total.spec, codec.raw_decode(raw.values, divisor), device=device)
    return Combined(tree, used, rejected) if report else tree
