"""Lattice ciphertexts as RNS residues in numpy: what the aggregator sums.

A fresh SEAL ciphertext of our plans is two polynomials of ``N`` coefficients,
each coefficient kept as its residues modulo the data primes ``q_1..q_L`` (the
residue number system, RNS; CKKS keeps them in NTT form, BFV in coefficient
form). Adding ciphertexts is adding those residues modulo each prime, slot by
slot, whatever the form; it needs no SEAL object and no NTT. So the wire
carries the residues themselves and the aggregator validates (every residue
below its prime) and adds them with numpy, in place and in blocks, at the
speed of memory.

Layout on the wire (``"layout": "rns"``): the ``k * 2 * L * N`` residues in
(ciphertext, polynomial, prime, coefficient) order, each little-endian in
``width`` bytes, ``width`` being the bytes of the largest prime (6 for the
planner's 44- and 48-bit primes: 24 B per CKKS value, 12 B per BFV value).
The map beside them names the ring degree, the primes, the form and the CKKS
scale, and each is checked against the context before a byte is added.

Seeded uploads (the cross-silo shared-key arrangement, Lyubashevsky, Peikert
and Regev's symmetric RLWE encryption with the uniform polynomial ``c1``
replaced by the seed of the PRNG that made it, as SEAL does) carry ``c0`` in the
same layout plus SEAL's seed record per ciphertext (``"layout": "rns-seeded"``);
the aggregator has SEAL expand the seed (the one step that needs it) and
validates the result like any ciphertext.

SEAL's own serialization (Laine et al., *Simple Encrypted Arithmetic Library*,
and the SEAL 4 sources) is used only at the two ends, and without its zstd
compression on the way in: a ciphertext SEAL made is read back through its
compressed save; one SEAL must decrypt is handed to it as an uncompressed blob
built from the residues and a prefix learned from SEAL itself (see
:class:`SealFormat`), which SEAL validates again on load.

Sums are reduced lazily: ``pending`` counts the unreduced summands held in a
64-bit word, and a reduction runs before the word could overflow (every
``2**64 // q`` additions; 2**20 additions for a 44-bit prime).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tenseal.sealapi as sa

from secagg.errors import CiphertextError, FormatError

__all__ = ["CtBatch", "SealFormat", "BLOCK"]

#: residues handled per numpy pass: fits the L2 cache, amortizes the Python loop
BLOCK = 1 << 16
_HEADER = struct.Struct("<HBBBBHQ")  # SEAL's SEALHeader: magic, size, version, compression, size
_SEAL_MAGIC = 0xA15E
_COMPR_NONE, _COMPR_ZSTD = 0, 2
#: bytes of SEAL's record of the seed that expands to ``c1``: its 16-byte header, the PRNG
#: type (1: BLAKE2xb, what SEAL uses) and the 512-bit seed
SEED_RECORD = 81
_BLAKE2XB = 1
_MAX_SEAL_BYTES = 1 << 24


def width_of(moduli: Sequence[int]) -> int:
    """Bytes per residue on the wire: enough for the largest prime."""
    return (max(moduli).bit_length() + 7) // 8


def pack(res: np.ndarray, width: int) -> bytes | memoryview:
    """Residues (uint64, any shape) as little-endian ``width``-byte words."""
    flat = np.ascontiguousarray(res, dtype="<u8").reshape(-1)
    if width == 8:
        return flat.tobytes()
    out = np.empty((flat.size, width), dtype=np.uint8)  # not zeroed: every byte is written
    out[:] = flat.view(np.uint8).reshape(-1, 8)[:, :width]
    return memoryview(out.reshape(-1).data)  # bytes-like; the wire takes it without a copy


def unpack(blob: bytes | bytearray | memoryview, start: int, count: int, width: int,
           out: np.ndarray | None = None) -> np.ndarray:
    """Residues ``start .. start+count`` of a packed blob as uint64 (into ``out`` if given).

    Reads unaligned 8-byte words at a ``width``-byte stride and masks the excess
    bytes: one numpy pass. The last residues of the blob (whose 8-byte word
    would run past its end) go through a byte copy instead.
    """
    dest = np.empty(count, dtype=np.uint64) if out is None else out[:count]
    if width == 8:
        dest[:] = np.frombuffer(blob, dtype="<u8", count=count, offset=start * 8)
        return dest
    total = len(blob) // width
    fast = max(0, min(count, total - start - (8 + width - 1) // width))
    if fast:
        words = np.ndarray((fast,), dtype="<u8", buffer=blob, offset=start * width,
                           strides=(width,))
        np.bitwise_and(words, np.uint64((1 << (8 * width)) - 1), out=dest[:fast])
    if fast < count:
        tail = np.frombuffer(blob, dtype=np.uint8, count=(count - fast) * width,
                             offset=(start + fast) * width).reshape(-1, width)
        wide = np.zeros((count - fast, 8), dtype=np.uint8)
        wide[:, :width] = tail
        dest[fast:] = wide.view("<u8").reshape(-1)
    return dest


_DECOMPRESSOR: list[Any] = []


def _decompressor(zstandard: Any) -> Any:
    if not _DECOMPRESSOR:
        _DECOMPRESSOR.append(zstandard.ZstdDecompressor())
    return _DECOMPRESSOR[0]


class SealFormat:
    """SEAL's serialization of ciphertexts at one level, learned from SEAL itself.

    ``prefix`` is every byte of an uncompressed serialized ciphertext before its
    residues (level, form, size, degree, scale, the inner array's header); it is
    the same for every fresh or summed ciphertext of a context, so it is taken
    from one encryption of zero made with the public key and checked against
    every ciphertext read back.
    """

    def __init__(self, seal: Any, sample: sa.Ciphertext, files: Any, evaluator: Any) -> None:
        self.seal, self._files, self.evaluator = seal, files, evaluator
        self.polys, self.primes = sample.size(), sample.coeff_modulus_size()
        self.degree = sample.poly_modulus_degree()
        self.words = self.polys * self.primes * self.degree
        blob = files.save(sample)
        _, _, self._major, self._minor, _, _, _ = _HEADER.unpack_from(blob)
        body = self._body(blob)
        self.prefix = body[: len(body) - 8 * self.words]
        # the seeded form: same prefix, inner array of one polynomial, then SEAL's seed record
        # (the prefix ends with the inner array's 16-byte header, whose last 8 bytes
        # are its size, and the array's word count)
        self.seeded_prefix = self.prefix[:-16] + struct.pack(
            "<QQ", _HEADER.size + 8 + 8 * self.words // self.polys, self.words // self.polys)
        #: how every seed record SEAL writes begins: one encoding only, so that the same
        #: ciphertext cannot arrive as different bytes (replays are refused by their bytes)
        self.seed_head = _HEADER.pack(_SEAL_MAGIC, _HEADER.size, self._major, self._minor,
                                      _COMPR_NONE, 0, SEED_RECORD) + bytes([_BLAKE2XB])

    @staticmethod
    def _body(blob: bytes) -> bytes:
        """The uncompressed members of a SEAL-saved object."""
        magic, _, _, _, mode, _, size = _HEADER.unpack_from(blob)
        if magic != _SEAL_MAGIC or size != len(blob):
            raise CiphertextError("SEAL wrote an unexpected serialization; cannot read it.")
        if mode == _COMPR_NONE:
            return blob[_HEADER.size:]
        if mode != _COMPR_ZSTD:
            raise CiphertextError(f"SEAL compression mode {mode} is not supported.")
        import zstandard

        body: bytes = _decompressor(zstandard).decompress(blob[_HEADER.size:],
                                                          max_output_size=_MAX_SEAL_BYTES)
        return body

    @staticmethod
    def each(op: Any, *columns: Any) -> list[sa.Ciphertext]:
        """``op(a, b, ..., dest)`` on SEAL ciphertexts into new objects (errors: ``CiphertextError``)."""
        out = []
        for args in zip(*columns):
            dest = sa.Ciphertext()
            try:
                op(*args, dest)
            except Exception as exc:  # e.g. a sum SEAL calls transparent (all zero)
                raise CiphertextError(f"ciphertexts cannot be added: {exc}") from None
            out.append(dest)
        return out

    def residues(self, ct: sa.Ciphertext, out: np.ndarray) -> None:
        """Copy a SEAL ciphertext's residues into ``out`` (``polys*primes*degree`` uint64)."""
        body = self._body(self._files.save(ct))
        if body[: len(self.prefix)] != self.prefix or len(body) != len(self.prefix) + 8 * self.words:
            raise CiphertextError("ciphertext does not match the context (size, level, form or scale).")
        out[:] = np.frombuffer(body, dtype="<u8", offset=len(self.prefix))

    def seeded_parts(self, blob: bytes) -> tuple[np.ndarray, bytes]:
        """``c0``'s residues and SEAL's seed record from a seeded SEAL save."""
        body = self._body(blob)
        n = 8 * self.words // self.polys
        start = len(self.seeded_prefix)
        seed = body[start + n:]
        if (body[:start] != self.seeded_prefix or len(seed) != SEED_RECORD
                or not seed.startswith(self.seed_head)):
            raise CiphertextError("SEAL's seeded ciphertext has an unexpected layout.")
        return np.frombuffer(body, dtype="<u8", count=n // 8, offset=start), seed

    def _load(self, body: bytes) -> sa.Ciphertext:
        head = _HEADER.pack(_SEAL_MAGIC, _HEADER.size, self._major, self._minor, _COMPR_NONE, 0,
                            _HEADER.size + len(body))
        try:
            return self._files.load_ciphertext(self.seal, head + body)
        except Exception as exc:  # SEAL validates residues, level and form again
            raise CiphertextError(f"a ciphertext does not load into SEAL: {exc}") from None

    def ciphertext(self, res: np.ndarray) -> sa.Ciphertext:
        """A SEAL ciphertext holding ``res`` (``polys*primes*degree`` reduced residues)."""
        return self._load(self.prefix + np.ascontiguousarray(res, dtype="<u8").tobytes())

    def seeded_ciphertext(self, c0: np.ndarray, seed: bytes) -> sa.Ciphertext:
        """SEAL expands a seeded ciphertext (``c0`` and its seed record) to a full one."""
        return self._load(self.seeded_prefix + np.ascontiguousarray(c0, dtype="<u8").tobytes() + seed)


class CtBatch(Sequence[Any]):
    """The ``k`` ciphertexts of one update or sum, as residues (or SEAL objects until needed).

    A batch read from the wire keeps the packed bytes it was validated from and
    unpacks them block by block when added (so that summing ``m`` payloads holds
    one accumulator and one payload, never ``m``); a batch that SEAL made keeps
    its SEAL objects until residues are asked for. Items are :class:`CtView`
    objects whose ``.ct`` is the SEAL ciphertext.
    """

    __slots__ = ("_fmt", "_moduli", "_packed", "_pending", "_res", "_seal", "_seeded", "_shared", "_wire",
                 "k", "width")

    def __init__(self, fmt: SealFormat, moduli: tuple[int, ...], k: int, *,
                 res: np.ndarray | None = None, packed: bytes | memoryview | None = None,
                 width: int = 8,
                 seal: list[sa.Ciphertext] | None = None,
                 seeded: tuple[np.ndarray, list[bytes]] | None = None, pending: int = 1) -> None:
        self._fmt, self._moduli, self.k, self.width = fmt, moduli, k, width
        self._res, self._packed, self._seal, self._pending = res, packed, seal, pending
        self._seeded = seeded
        self._shared = False  # whether ``_res`` is also another batch's (copied before a write)
        self._wire: Any = None  # the wire data this batch was read from, re-sent unchanged

    # -- shape -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        f = self._fmt
        return (self.k, f.polys, f.primes, f.degree)

    def __len__(self) -> int:
        return self.k

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.k))]
        if not -self.k <= i < self.k:
            raise IndexError(i)
        return CtView(self, i % self.k)

    def __iter__(self) -> Iterator[CtView]:
        return (CtView(self, i) for i in range(self.k))

    def _q(self) -> np.ndarray:
        return np.array(self._moduli, dtype=np.uint64).reshape(1, 1, -1, 1)

    # -- residues --------------------------------------------------------------
    def residues(self) -> np.ndarray:
        """The reduced residues, shape (k, polys, primes, degree); the batch's own array."""
        if self._res is None:
            self._res = self._materialize()
            self._packed, self._seal, self._seeded = None, None, None
        if self._pending > 1:
            self._own()
            np.remainder(self._res, self._q(), out=self._res)
            self._pending = 1
        return self._res

    def _own(self) -> None:
        if self._shared and self._res is not None:
            self._res, self._shared = np.array(self._res), False

    def _materialize(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.uint64)
        flat = out.reshape(-1)
        if self._res is not None:
            out[:] = self._res
        elif self._packed is not None:
            for s in range(0, flat.size, BLOCK):
                unpack(self._packed, s, min(BLOCK, flat.size - s), self.width, flat[s:])
        else:
            for i in range(self.k):  # SEAL objects: read back through SEAL (the slow path)
                self._fmt.residues(self._ciphertext(i), out[i].reshape(-1))
        return out

    def _ciphertext(self, i: int) -> sa.Ciphertext:
        if self._seal is not None:
            return self._seal[i]
        if self._seeded is not None:
            c0, seeds = self._seeded
            return self._fmt.seeded_ciphertext(c0[i], seeds[i])
        return self._fmt.ciphertext(self.residues()[i])

    @property
    def in_seal(self) -> bool:
        """Whether the batch is held as SEAL objects (summed by SEAL until residues are needed)."""
        return self._res is None and self._seal is not None

    def copy(self) -> CtBatch:
        """An independent batch holding the same ciphertexts (the aggregator's accumulator)."""
        if self.in_seal:  # SEAL objects are never changed in place (sums are made out of place)
            return CtBatch(self._fmt, self._moduli, self.k, seal=list(self._seal or ()))
        if self._seeded is not None and self._res is None:
            c0, seeds = self._seeded
            return CtBatch(self._fmt, self._moduli, self.k, seeded=(np.array(c0), list(seeds)))
        if self._res is not None:  # share the array; whichever writes first copies it
            self.residues()  # reduced first, so that neither twin must copy just to reduce
            twin = CtBatch(self._fmt, self._moduli, self.k, res=self._res, pending=self._pending)
            twin._shared = self._shared = True
            return twin
        return CtBatch(self._fmt, self._moduli, self.k, res=self._materialize(),
                       pending=self._pending)

    def add_into(self, other: CtBatch) -> None:
        """``self += other`` in place, slot-wise modulo each prime; ``other`` unchanged.

        ``self`` must own its residues (see :meth:`copy`). Nothing here can fail
        once both batches are validated, so a caller may commit state after it.
        """
        if self.in_seal and other.in_seal:  # seeded uploads: SEAL expanded them, SEAL adds them
            # out of place, swapped in only when every ciphertext added: a refusal changes nothing
            self._seal = self._fmt.each(self._fmt.evaluator.add, self._seal or (), other._seal or ())
            self._wire = None
            return
        self._wire = None
        q_max = max(self._moduli)
        if self._res is None:
            self._res = self._materialize()
            self._packed, self._seal, self._seeded = None, None, None
        self._own()
        if self._pending + other._pending > (2**64 - 1) // (q_max - 1):
            self.residues()  # reduce before a word could overflow
            if 1 + other._pending > (2**64 - 1) // (q_max - 1):
                other = other.copy()
                other.residues()
        flat = self._res.reshape(-1)
        if other._res is not None or other._packed is None:
            np.add(flat, other._res.reshape(-1) if other._res is not None else
                   other._materialize().reshape(-1), out=flat)
        else:
            tmp = np.empty(min(BLOCK, flat.size), dtype=np.uint64)
            for s in range(0, flat.size, BLOCK):
                n = min(BLOCK, flat.size - s)
                np.add(flat[s:s + n], unpack(other._packed, s, n, other.width, tmp), out=flat[s:s + n])
        self._pending += other._pending

    # -- wire ------------------------------------------------------------------
    def to_wire(self) -> Any:
        """The residues as the ``rns`` (or ``rns-seeded``) layout (see the module docstring)."""
        if self._wire is not None:
            return self._wire
        f = self._fmt
        width = width_of(self._moduli)
        if self._seeded is not None and self._res is None:
            c0, seeds = self._seeded
            return {"layout": "rns-seeded", "count": self.k, "degree": f.degree,
                    "moduli": list(self._moduli), "width": width, "data": pack(c0, width),
                    "seeds": b"".join(seeds)}
        if self._packed is not None and self.width == width:
            data = self._packed
        else:
            data = pack(self.residues(), width)
        return {"layout": "rns", "count": self.k, "degree": f.degree, "moduli": list(self._moduli),
                "width": width, "data": data}

    @classmethod
    def from_packed(cls, fmt: SealFormat, moduli: tuple[int, ...], k: int, data: bytes | memoryview,
                    width: int) -> CtBatch:
        """Validate packed residues (every one below its prime) without keeping an unpacked copy."""
        check_residues(data, k * fmt.polys * fmt.primes * fmt.degree, moduli, fmt.degree, width)
        return cls(fmt, moduli, k, packed=data, width=width)


def check_residues(data: bytes | memoryview, words: int, moduli: tuple[int, ...], degree: int,
                   width: int) -> None:
    """Refuse packed data of the wrong length or with a residue not below its prime."""
    if len(data) != words * width:
        raise CiphertextError(
            f"ciphertext data holds {len(data)} bytes; the update needs {words * width}."
        )
    if len(moduli) == 1 and width >= 3:
        _check_one_prime(data, words, moduli[0], width)
        return
    q = np.array(moduli, dtype=np.uint64)
    tmp = np.empty(min(BLOCK, words), dtype=np.uint64)
    for s in range(0, words, BLOCK):
        n = min(BLOCK, words - s)
        block = unpack(data, s, n, width, tmp)
        prime = (np.arange(s, s + n) // degree) % len(moduli)
        if bool(np.any(block >= q[prime])):
            raise CiphertextError(_NOT_BELOW)


_NOT_BELOW = "a ciphertext residue is not below its prime; the payload is malformed."


def _check_one_prime(data: bytes | bytearray | memoryview, words: int, q: int, width: int) -> None:
    """Every residue below ``q``, reading only the top bytes of almost all of them.

    A residue whose top 32 bits (16 for 3-byte residues) are below ``q``'s is
    below ``q``, one whose top bits are above is not; only those whose top bits
    equal ``q``'s (for random residues about ``2**(8*width - 32) / q`` of them:
    2**-28 for a 44-bit prime in 6 bytes) are gathered and compared whole.
    """
    top_bytes = 4 if width >= 4 else 2
    q_top = q >> (8 * (width - top_bytes))
    grid = np.frombuffer(data, dtype=np.uint8, count=words * width).reshape(words, width)
    tops = grid[:, width - top_bytes :].view(f"<u{top_bytes}").reshape(-1)
    for s in range(0, words, BLOCK):
        top = tops[s : s + BLOCK]
        high = int(top.max())
        if high < q_top:
            continue
        if high > q_top:
            raise CiphertextError(_NOT_BELOW)
        idx = np.flatnonzero(top == q_top) + s
        wide = np.zeros((idx.size, 8), dtype=np.uint8)
        wide[:, :width] = grid[idx]
        if int(wide.view("<u8").max()) >= q:
            raise CiphertextError(_NOT_BELOW)


class CtView:
    """Ciphertext ``i`` of a batch; ``.ct`` is it as a SEAL object."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: CtBatch, index: int) -> None:
        self.batch, self.index = batch, index

    @property
    def ct(self) -> sa.Ciphertext:
        return self.batch._ciphertext(self.index)


def check_layout(obj: dict[str, Any], fmt: SealFormat, moduli: tuple[int, ...], k: int) -> int:
    """Check an ``rns`` map's fields against the context; returns the residue width."""
    want = {"count": k, "degree": fmt.degree, "moduli": list(moduli), "width": width_of(moduli)}
    for name, value in want.items():
        found = obj.get(name)
        exact = (type(found) is int if name != "moduli" else
                 type(found) is list and all(type(q) is int for q in found))
        if not exact or found != value:
            raise CiphertextError(
                f"ciphertext field {name!r} does not match the context (want {value})."
            )
    if not isinstance(obj.get("data"), (bytes, memoryview)):
        raise FormatError("ciphertext data must be bytes.")
    return int(want["width"])
