"""The wire format: versioned, self-describing, validated bytes.

Every payload secagg writes (contexts, updates, aggregates, terms) is::

    offset  size  field
    0       6     magic  b"SECAGG"
    6       1     format version (2; version 1 is still read, see below)
    7       1     kind (see :class:`Kind`)
    8       8     body length L, unsigned big-endian
    16      L     body: a MessagePack map (strings, integers, floats, bytes, lists)
    16+L    16    digest of bytes [0, 16+L): SHA-256 truncated to 16 bytes
                  (version 1: BLAKE2b-128)

The digest detects truncation and accidental corruption anywhere in the
payload before any field is trusted; it is not a signature (see SECURITY in
the README). Version 2 changed only the digest: SHA-256 runs in the CPU's SHA
extensions (x86 SHA-NI, ARMv8 crypto) at about 1.4 GB/s on our machines
against 0.56 GB/s for BLAKE2b, and every byte a server sums goes through it
(``benchmarks/bench_round.py``). Version-1 payloads are still read, except
updates, aggregates and terms: those are summed and their replays refused by
their bytes, so each may come in one envelope only.

MessagePack was chosen over a hand-written format because it is
self-describing, carries byte strings without base64, has a C decoder with
length limits derived from the input size, and decodes only data, never code.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import Any

import msgpack

from secagg._checks import a_or_an
from secagg.errors import (
    CorruptPayloadError,
    FormatError,
    TruncatedPayloadError,
    UnsupportedVersionError,
)

__all__ = ["Kind", "MAGIC", "VERSION", "READABLE_VERSIONS", "seal", "open_payload", "peek_kind",
           "digest", "envelope_digest", "show", "Body"]

MAGIC = b"SECAGG"
VERSION = 2  # what seal() writes
READABLE_VERSIONS = (1, 2)
_HEADER = struct.Struct(">6sBBQ")
_DIGEST_SIZE = 16


class Kind(IntEnum):
    """What a payload holds."""

    PUBLIC_CONTEXT = 1
    SECRET_CONTEXT = 2
    UPDATE = 3
    AGGREGATE = 4
    TERM = 5
    CHECKPOINT = 6
    SEALED_SECRET = 7
    # secagg.masking: pairwise-masked aggregation (no key holder)
    MASK_CONFIG = 8
    MASK_KEYS = 9
    MASK_KEY_LIST = 10
    MASK_SHARES = 11
    MASK_SHARE_LIST = 12
    MASK_INPUT = 13
    MASK_UNMASK_REQUEST = 14
    MASK_UNMASK = 15
    # secagg.threshold: t-of-n threshold Paillier (no single key holder)
    THRESHOLD_SHARE = 16
    THRESHOLD_PUBLIC = 17
    PARTIAL_DECRYPTION = 18
    SIGNED_UPDATE = 19
    # secagg.masking: the consistency round (with long-term signing keys)
    MASK_CONSISTENCY_REQUEST = 20
    MASK_CONSISTENCY = 21
    # secagg.threshold.federation / relay: threshold Paillier across silos (Flower option)
    THRESHOLD_FEDERATION = 22
    THRESHOLD_KIT = 23
    THRESHOLD_RELAY = 24


#: kinds whose payloads are summed (and whose replays are refused by their bytes)
_SUMMED = frozenset({Kind.UPDATE, Kind.AGGREGATE, Kind.TERM})


def show(value: object, limit: int = 40) -> str:
    """A short description of an untrusted value that never recurses into containers."""
    if isinstance(value, (bool, int, float)):
        text = repr(value)
    elif isinstance(value, (str, bytes)):
        text = repr(value[:limit])
    else:
        text = f"a {type(value).__name__}"
    return text[:limit]


def digest(data: bytes | memoryview) -> bytes:
    """BLAKE2b-128 of ``data``: fingerprints and ids (a payload's own digest is :func:`envelope_digest`)."""
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).digest()


def _envelope_hash(version: int) -> Any:
    if version == 1:
        return hashlib.blake2b(digest_size=_DIGEST_SIZE)
    return hashlib.sha256()


def envelope_digest(data: bytes | memoryview) -> bytes:
    """The digest a payload's last 16 bytes must hold, for its header and body ``data``."""
    check = _envelope_hash(data[6] if len(data) > 6 else VERSION)
    check.update(data)
    out: bytes = check.digest()[:_DIGEST_SIZE]
    return out


#: byte strings at least this long are not copied into MessagePack's buffer (see :func:`seal`)
_BIG = 1 << 16  # (and so always MessagePack's bin 32 format)
_BIN32 = struct.Struct(">BI")


def _pieces(obj: Any, packer: msgpack.Packer, out: list[Any]) -> None:
    """MessagePack of ``obj`` as pieces: what ``packb`` writes, big byte strings by reference.

    Maps are written as their header and then their items in order, and byte
    strings as their ``bin`` header and then the bytes themselves, exactly as
    ``msgpack.packb(obj, use_bin_type=True)`` writes them; only the copy of a
    large ciphertext blob into the packer's growing buffer is saved.
    """
    if isinstance(obj, dict):
        out.append(packer.pack_map_header(len(obj)))
        for key, value in obj.items():
            out.append(packer.pack(key))
            _pieces(value, packer, out)
    elif isinstance(obj, (bytes, bytearray, memoryview)) and memoryview(obj).nbytes >= _BIG:
        view = memoryview(obj).cast("B")
        if view.nbytes >= 1 << 32:
            raise FormatError("a byte string of 4 GiB or more cannot be serialized.")
        out.append(_BIN32.pack(0xC6, view.nbytes))  # MessagePack's bin 32 header
        out.append(view)
    else:
        out.append(packer.pack(obj))


def seal(kind: Kind, body: dict[str, Any]) -> bytes:
    """Serialize ``body`` as a payload of ``kind``."""
    pieces: list[Any] = []
    _pieces(body, msgpack.Packer(use_bin_type=True), pieces)
    head = _HEADER.pack(MAGIC, VERSION, int(kind), sum(len(p) for p in pieces))
    check = _envelope_hash(VERSION)
    check.update(head)
    for piece in pieces:  # the digest of head + body without building head + body
        check.update(piece)
    return b"".join((head, *pieces, check.digest()[:_DIGEST_SIZE]))  # the one copy


def peek_kind(data: bytes | bytearray | memoryview) -> Kind:
    """The kind of a payload, read from its header only (for ``inspect`` and routing)."""
    _check_bytes(data)
    if len(data) < _HEADER.size:
        raise TruncatedPayloadError(
            f"payload is {len(data)} bytes, shorter than the {_HEADER.size}-byte header."
        )
    magic, version, kind, _ = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a secagg payload: magic bytes are {magic!r}, expected {MAGIC!r}.")
    if version not in READABLE_VERSIONS:
        raise UnsupportedVersionError(
            f"payload has wire-format version {version}; this secagg reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}."
        )
    try:
        found = Kind(kind)
    except ValueError:
        raise FormatError(f"unknown payload kind {kind}.") from None
    if version != VERSION and found in _SUMMED:
        raise UnsupportedVersionError(
            f"this {found.name.lower()} has wire-format version {version}, written by an older "
            f"secagg; updates, aggregates and terms are read in version {VERSION} only (one "
            "envelope per update, so that a replay is always the same bytes): encrypt it again "
            "with this version."
        )
    return found


def open_payload(data: bytes | bytearray | memoryview, *expected: Kind,
                 views: bool = False) -> tuple[Kind, Body]:
    """Check the envelope of ``data`` and decode its body.

    With ``views=True`` byte strings of 64 KiB or more come back as read-only
    memoryviews of ``data`` instead of copies (see below); the caller must accept
    them wherever it expects bytes. Raises a ``FormatError`` subclass for wrong
    magic, version or kind, truncation, trailing bytes, a digest mismatch or an
    undecodable body.
    """
    kind = peek_kind(data)
    if views and not isinstance(data, bytes):
        data = bytes(data)  # views of a buffer the caller could change after validation: no
    if expected and kind not in expected:
        names = " or ".join(k.name.lower() for k in expected)
        raise FormatError(f"expected {a_or_an(names)} payload, got {a_or_an(kind.name.lower())} "
                          f"payload.")
    (length,) = struct.unpack_from(">Q", data, 8)
    end = _HEADER.size + length
    if len(data) < end + _DIGEST_SIZE:
        raise TruncatedPayloadError(
            f"payload is {len(data)} bytes but its header announces {end + _DIGEST_SIZE}."
        )
    if len(data) > end + _DIGEST_SIZE:
        raise FormatError(
            f"payload has {len(data) - end - _DIGEST_SIZE} unexpected trailing bytes."
        )
    view = memoryview(data)
    if envelope_digest(view[:end]) != bytes(view[end:]):
        raise CorruptPayloadError(
            "payload digest does not match its content: the bytes were corrupted or "
            "truncated in transit."
        )
    packed = view[_HEADER.size : end]
    big = _big_binaries(packed) if views else []
    try:
        if big:
            shadow, hook = _shadow(packed, big)
            body = msgpack.unpackb(shadow, raw=False, strict_map_key=True, ext_hook=hook)
        else:
            body = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FormatError(f"payload body is not valid MessagePack: {exc}") from None
    if not isinstance(body, dict):
        raise FormatError("payload body must be a map.")
    return kind, Body(body, kind.name.lower())


# -- large byte strings without a copy ----------------------------------------------------
# MessagePack's decoder copies every byte string into a new bytes object. For a
# lattice update that is the whole payload again, held next to the payload and the
# aggregator's running sum. With ``views=True``, :func:`open_payload` finds the byte
# strings of at least ``_BIG`` bytes first (walking the MessagePack structure), has
# the decoder parse a copy of the body in which each is replaced by a 6-byte
# placeholder, and puts read-only memoryviews of the payload in their place. The
# structure walked is MessagePack's own (https://github.com/msgpack/msgpack/blob/master/spec.md);
# a body holding any extension type is decoded the ordinary way.

_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
          0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin8..32, str8..32: length bytes
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # array/map16/32: count, per item
_EXT = frozenset({0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8})
_PLACEHOLDER = 0  # extension type code of a placeholder (never in a secagg body)


def _big_binaries(buf: memoryview) -> list[tuple[int, int, int]]:
    """``(object start, data start, length)`` of every byte string of ``_BIG`` bytes or more.

    Walks the objects iteratively (a count of objects still to skip, no recursion)
    with every length checked against the buffer; returns ``[]`` for a body that is
    malformed or holds an extension type, which the ordinary decoder then handles.
    """
    end, pos, todo, found = len(buf), 0, 1, []
    if end < _BIG:
        return []
    while todo:
        if pos >= end or todo > end - pos:
            return []
        b = buf[pos]
        todo -= 1
        if b <= 0x7F or b >= 0xE0:  # positive and negative fixint
            pos += 1
        elif b <= 0x8F:  # fixmap
            todo += 2 * (b & 0x0F)
            pos += 1
        elif b <= 0x9F:  # fixarray
            todo += b & 0x0F
            pos += 1
        elif b <= 0xBF:  # fixstr
            pos += 1 + (b & 0x1F)
        elif b in _FIXED:
            pos += 1 + _FIXED[b]
        elif b in _SIZED:
            width = _SIZED[b]
            if pos + 1 + width > end:
                return []
            n = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
            start = pos + 1 + width
            if b in (0xC4, 0xC5, 0xC6) and n >= _BIG:
                found.append((pos, start, n))
            pos = start + n
        elif b in _COUNTED:
            width, per = _COUNTED[b]
            if pos + 1 + width > end:
                return []
            todo += per * int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
            pos += 1 + width
        else:  # 0xC1 (never used) or an extension type
            return []
    return found if pos == end else []


def _shadow(buf: memoryview, big: list[tuple[int, int, int]]) -> tuple[bytes, Any]:
    """The body with each big byte string replaced by a placeholder, and the hook restoring it."""
    pieces: list[Any] = []
    last, views = 0, []
    for index, (obj, start, n) in enumerate(big):
        pieces += [buf[last:obj], bytes([0xD6, _PLACEHOLDER]) + index.to_bytes(4, "big")]  # fixext 4
        views.append(buf[start : start + n].toreadonly())
        last = start + n
    pieces.append(buf[last:])

    def hook(code: int, data: bytes) -> Any:
        if code != _PLACEHOLDER or len(data) != 4:  # cannot happen: bodies with extensions are
            raise FormatError("payload body holds an extension type.")  # never shadowed
        return views[int.from_bytes(data, "big")]

    return b"".join(pieces), hook


def _check_bytes(data: object) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected bytes, got {type(data).__name__}.")


class Body:
    """Typed, validating access to a decoded payload body."""

    def __init__(self, fields: dict[str, Any], what: str) -> None:
        self._fields = fields
        self._what = what

    def raw(self) -> dict[str, Any]:
        """The decoded map, for display."""
        return self._fields

    def _get(self, name: str) -> Any:
        if name not in self._fields:
            raise FormatError(f"{self._what} payload lacks the field {name!r}.")
        return self._fields[name]

    def text(self, name: str, *, choices: tuple[str, ...] | None = None) -> str:
        """A string field, optionally one of ``choices``."""
        value = self._get(name)
        if not isinstance(value, str) or len(value) > 256:
            raise FormatError(f"{self._what} field {name!r} must be a short string.")
        if choices is not None and value not in choices:
            raise FormatError(
                f"{self._what} field {name!r} is {show(value)}; expected one of {choices}."
            )
        return value

    def integer(self, name: str, lo: int, hi: int) -> int:
        """An integer field in ``[lo, hi]``."""
        value = self._get(name)
        if type(value) is not int or not lo <= value <= hi:
            raise FormatError(
                f"{self._what} field {name!r} must be an integer in [{lo}, {hi}]; "
                f"found {show(value)}."
            )
        return value

    def number(self, name: str) -> float:
        """A float field."""
        value = self._get(name)
        if type(value) not in (float, int):
            raise FormatError(f"{self._what} field {name!r} must be a number.")
        return float(value)

    def blob(self, name: str, *, size: int | None = None, max_size: int | None = None) -> bytes:
        """A byte-string field of an exact or bounded size."""
        value = self._get(name)
        if not isinstance(value, bytes):
            raise FormatError(f"{self._what} field {name!r} must be bytes.")
        if size is not None and len(value) != size:
            raise FormatError(
                f"{self._what} field {name!r} must be {size} bytes; found {len(value)}."
            )
        if max_size is not None and len(value) > max_size:
            raise FormatError(f"{self._what} field {name!r} exceeds {max_size} bytes.")
        return value

    def section(self, name: str) -> Body:
        """A nested map field."""
        value = self._get(name)
        if not isinstance(value, dict):
            raise FormatError(f"{self._what} field {name!r} must be a map.")
        return Body(value, f"{self._what}.{name}")

    def items(self, name: str, *, max_len: int) -> list[Any]:
        """A list field of at most ``max_len`` items."""
        value = self._get(name)
        if not isinstance(value, list) or len(value) > max_len:
            raise FormatError(
                f"{self._what} field {name!r} must be a list of at most {max_len} items."
            )
        return value

    def value(self, name: str) -> Any:
        """A field of any type (validated by the caller)."""
        return self._get(name)

    def optional(self, name: str) -> Any:
        """A field that may be absent (``None``)."""
        return self._fields.get(name)
