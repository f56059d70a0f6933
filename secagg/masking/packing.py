"""Bit-packing of masked vectors: ``n`` elements of ``Z_{2**w}`` in ``ceil(n * w / 8)`` bytes.

Element ``i`` occupies bits ``[i*w, (i+1)*w)`` of the little-endian bit stream.
Eight elements fill exactly ``w`` bytes, so element ``8g + j`` starts in byte
``g*w + (j*w) // 8`` at bit ``(j*w) % 8``. For ``8 <= w <= 57`` every element
lies inside one unaligned little-endian 64-bit window at that byte, and the
windows of one ``j`` never overlap (their stride is ``w >= 8`` bytes), so
packing and unpacking are eight strided numpy operations each, whatever ``n``
(numpy handles the unaligned views). Widths below 8 fall back to
``numpy.packbits``.
"""

from __future__ import annotations

import numpy as np

from secagg.errors import FormatError

__all__ = ["MAX_WIDTH", "packed_size", "pack", "unpack", "unpack_add"]

MAX_WIDTH = 57


def packed_size(count: int, width: int) -> int:
    """Bytes of ``count`` packed elements of ``width`` bits."""
    return -(-count * width // 8)


def _check_width(width: int) -> None:
    if not 1 <= width <= MAX_WIDTH:
        raise FormatError(f"packing width must be in [1, {MAX_WIDTH}] bits; found {width}.")


def _window(buf: np.ndarray, j: int, width: int, groups: int) -> np.ndarray:
    return np.ndarray((groups,), dtype="<u8", buffer=buf, offset=(j * width) >> 3,
                      strides=(width,))


def pack(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned integers below ``2**width`` (any unsigned dtype) into bytes."""
    _check_width(width)
    v = np.asarray(values).ravel()
    n = v.size
    if n == 0:
        return b""
    if width < 8:
        bits = np.unpackbits(v.astype("<u8").view(np.uint8).reshape(n, 8), axis=1,
                             bitorder="little")[:, :width]
        return np.packbits(bits.ravel(), bitorder="little").tobytes()
    groups = -(-n // 8)
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:n] = v
    cols = padded.reshape(groups, 8)
    out = np.zeros(groups * width + 8, dtype=np.uint8)
    for j in range(8):
        view = _window(out, j, width, groups)
        view |= cols[:, j] << np.uint64((j * width) & 7)
    return out[: packed_size(n, width)].tobytes()


def _check_length(data: bytes, count: int, width: int) -> None:
    if len(data) != packed_size(count, width):
        raise FormatError(
            f"packed vector is {len(data)} bytes; {count} values of {width} bits take "
            f"{packed_size(count, width)}."
        )


def _unpack_small(data: bytes, count: int, width: int) -> np.ndarray:
    """Any width, any count, through a zero-padded copy (used for short vectors and tails)."""
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    if width < 8:
        stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        bits = stream[: count * width].reshape(count, width).astype(np.uint64)
        weights = np.uint64(1) << np.arange(width, dtype=np.uint64)
        out: np.ndarray = (bits * weights).sum(axis=1, dtype=np.uint64)
        return out
    groups = -(-count // 8)
    buf = np.zeros(groups * width + 8, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    out = np.empty((groups, 8), dtype=np.uint64)
    for j in range(8):
        np.right_shift(_window(buf, j, width, groups), np.uint64((j * width) & 7), out=out[:, j])
    out &= np.uint64((1 << width) - 1)
    return out.ravel()[:count]


def _split(count: int, width: int) -> int:
    """Groups of 8 read in place: all but the last two, whose 64-bit windows may run past the end."""
    return 0 if width < 8 else max(-(-count // 8) - 2, 0)


def _shifted(data: bytes, width: int, main: int) -> np.ndarray:
    """``(8, main)`` uint64: element ``8g + j`` in ``[j, g]``, garbage above bit ``width``."""
    src = np.frombuffer(data, dtype=np.uint8)
    out = np.empty((8, main), dtype=np.uint64)
    for j in range(8):
        np.right_shift(_window(src, j, width, main), np.uint64((j * width) & 7), out=out[j])
    return out


def unpack(data: bytes, count: int, width: int) -> np.ndarray:
    """The ``count`` uint64 elements packed by :func:`pack`."""
    _check_width(width)
    _check_length(data, count, width)
    main = _split(count, width)
    out = np.empty(count, dtype=np.uint64)
    if main:
        head = out[: main * 8].reshape(main, 8)
        np.bitwise_and(_shifted(data, width, main).T, np.uint64((1 << width) - 1), out=head)
    out[main * 8 :] = _unpack_small(data[main * width :], count - main * 8, width)
    return out


def unpack_add(acc: np.ndarray, data: bytes, count: int, width: int) -> None:
    """``acc += unpack(data)`` modulo ``2**width``, in place (the length is checked first).

    ``acc`` is a uint32 (``width <= 32``) or uint64 array of ``count`` elements whose
    values are only meaningful modulo ``2**width``: the bits of the next element that
    each 64-bit window also holds are multiples of ``2**width`` and vanish in that
    ring, so no masking is needed until the caller reduces.
    """
    _check_width(width)
    _check_length(data, count, width)
    main = _split(count, width)
    if main:
        head = acc[: main * 8].reshape(main, 8)
        np.add(head, _shifted(data, width, main).T, out=head, casting="unsafe")
    tail = _unpack_small(data[main * width :], count - main * 8, width)
    np.add(acc[main * 8 :], tail, out=acc[main * 8 :], casting="unsafe")
