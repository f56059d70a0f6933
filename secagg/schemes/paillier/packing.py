"""Packing many fixed-width slots into one big integer, and back.

Slot ``j`` of a plaintext occupies bits ``[j*slot_bits, (j+1)*slot_bits)``,
slot 0 least significant::

    raw_pack([5, 3], slot_bits=4, slots=2)  ->  [5 + 3 * 2**4] == [53]

Adding two packed integers adds their slots as long as no slot sum reaches
``2**slot_bits``; the codec sizes ``slot_bits`` so that it never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secagg.errors import ConfigError

__all__ = ["SlotLayout"]

# Bound the temporaries: packing shifts each slot into a uint64 per bit (8 bytes
# x up to 64 bits = 512 bytes a slot), so 2**16 slots peak at about 32 MiB.
_CHUNK_SLOTS = 1 << 16


@dataclass(frozen=True)
class SlotLayout:
    """How slots sit in a plaintext: ``slots`` slots of ``slot_bits`` bits each."""

    slot_bits: int
    slots: int

    def __post_init__(self) -> None:
        if not 1 <= self.slot_bits <= 64:
            raise ConfigError(f"slot_bits must be in [1, 64]. Found {self.slot_bits}.")
        if self.slots < 1:
            raise ConfigError(
                f"a plaintext must hold at least one slot of {self.slot_bits} bits. "
                f"Found room for {self.slots}; use a larger key."
            )

    @property
    def plaintext_bits(self) -> int:
        """Bits used by the slots of one plaintext."""
        return self.slot_bits * self.slots

    def num_plaintexts(self, n_values: int) -> int:
        """How many plaintexts hold ``n_values`` slots."""
        return max(1, -(-n_values // self.slots))

    def raw_pack(self, values: np.ndarray) -> list[int]:
        """Pack non-negative integers ``< 2**slot_bits`` into Python ints."""
        v = np.ascontiguousarray(values, dtype=np.uint64)
        n_pt = self.num_plaintexts(v.size)
        padded = np.zeros(n_pt * self.slots, dtype=np.uint64)
        padded[: v.size] = v
        out: list[int] = []
        rows_per_chunk = max(1, _CHUNK_SLOTS // self.slots)
        shifts = np.arange(self.slot_bits, dtype=np.uint64)
        for start in range(0, n_pt, rows_per_chunk):
            block = padded[start * self.slots : (start + rows_per_chunk) * self.slots]
            bits = ((block[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
            rows = np.packbits(bits.reshape(-1, self.plaintext_bits), axis=1, bitorder="little")
            out.extend(int.from_bytes(r.tobytes(), "little") for r in rows)
        return out

    def raw_unpack(self, packed: list[int], n_values: int) -> np.ndarray:
        """Unpack Python ints into ``n_values`` uint64 slots (inverse of :meth:`raw_pack`)."""
        nbytes = -(-self.plaintext_bits // 8)
        out = np.empty(len(packed) * self.slots, dtype=np.uint64)
        rows_per_chunk = max(1, _CHUNK_SLOTS // self.slots)
        for start in range(0, len(packed), rows_per_chunk):
            chunk = packed[start : start + rows_per_chunk]
            buf = b"".join(int(m).to_bytes(nbytes, "little") for m in chunk)
            raw = np.frombuffer(buf, dtype=np.uint8).reshape(len(chunk), nbytes)
            bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : self.plaintext_bits]
            bits = bits.reshape(-1, self.slot_bits)
            wide = np.zeros((bits.shape[0], 64), dtype=np.uint8)
            wide[:, : self.slot_bits] = bits
            words = np.packbits(wide, axis=1, bitorder="little").view("<u8").reshape(-1)
            out[start * self.slots : start * self.slots + words.size] = words
        return out[:n_values]
