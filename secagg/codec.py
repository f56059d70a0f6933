"""Fixed-point quantization shared by every backend.

A float ``x`` becomes the integer ``q = round(clamp(x) * 2**frac_bits)`` with
``|q| <= qmax``. A client's weighted contribution is ``w * q`` with
``1 <= w <= max_weight``, so the sum of up to ``max_clients`` contributions is
bounded by ``sum_bound = max_clients * max_weight * qmax``. Every backend is
sized from that bound, which is why a sum can never wrap.

Worked example (``clip=1.0, frac_bits=16, max_clients=100, max_weight=1``)::

    qmax      = 65536                  # 1.0 * 2**16
    x = 0.3   -> q = round(19660.8) = 19661, decodes to 0.3000030...
    sum_bound = 100 * 1 * 65536 = 6_553_600
    slot_bits = bit_length(2 * sum_bound) = 24   # offset slots for Paillier

Error bound: with nearest rounding each decoded value is within
``2**-(frac_bits + 1)`` of its clamped input; with stochastic rounding it is
strictly within ``2**-frac_bits`` and unbiased. A decoded weighted mean is
within the same bound of the weighted mean of the clamped inputs, because
rounding errors average rather than add.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Literal

import numpy as np

from secagg.errors import ConfigError, EncodingError

__all__ = ["FixedPointCodec", "Rounding"]

Rounding = Literal["nearest", "stochastic"]

# Slots are unpacked into uint64 words, and CKKS encodes sums as float64:
# keep every sum exactly representable in both.
_MAX_SUM_BITS = 52


def _positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number. Found {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be positive and finite. Found {value!r}.")
    return float(value)


def _int_in_range(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer. Found {value!r}.")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}]. Found {value!r}.")
    return int(value)


@dataclass(frozen=True)
class FixedPointCodec:
    """Clamps, scales and rounds floats to integers with sum headroom.

    Args:
        clip: values saturate at ``±qmax / 2**frac_bits`` where
            ``qmax = floor(clip * 2**frac_bits)`` (that is ``±clip`` whenever
            ``clip * 2**frac_bits`` is an integer).
        frac_bits: fractional bits of the fixed-point representation.
        max_clients: most contributions a sum may hold.
        max_weight: largest integer weight (sample count) a client may use.
        rounding: ``"nearest"`` (default) or ``"stochastic"`` (unbiased).
        extra_summands: how many terms (plaintext or encrypted tensors such as
            a regularisation term or a party's noise) one sum may hold besides
            the clients' updates.
        term_clip: largest magnitude of a term's values (default ``clip``).
            Terms are never clipped: a larger value is refused.
        noise_bound: largest magnitude, in quantized units, of the integer
            noise one client adds to each value (distributed DP); part of each
            contribution's range.

    Contract: for integer vectors ``q_i = encode(x_i)`` and weights ``w_i``,
    ``decode(sum_i w_i * q_i) == sum_i w_i * q_i / 2**frac_bits`` exactly in
    float64, and ``|decode(encode(x)) - clamp(x)| <= error_bound``.
    """

    clip: float = 1.0
    frac_bits: int = 16
    max_clients: int = 100
    max_weight: int = 1
    rounding: Rounding = "nearest"
    extra_summands: int = 0
    term_clip: float | None = None
    noise_bound: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", _positive_number("clip", self.clip))
        _int_in_range("frac_bits", self.frac_bits, 0, 40)
        _int_in_range("max_clients", self.max_clients, 1, 2**31)
        _int_in_range("max_weight", self.max_weight, 1, 2**31)
        _int_in_range("extra_summands", self.extra_summands, 0, 2**20)
        _int_in_range("noise_bound", self.noise_bound, 0, 2**50)
        if self.term_clip is not None:
            object.__setattr__(self, "term_clip", _positive_number("term_clip", self.term_clip))
        if self.rounding not in ("nearest", "stochastic"):
            raise ConfigError(
                f"rounding must be 'nearest' or 'stochastic'. Found {self.rounding!r}."
            )
        for name, c in (("clip", self.clip), ("term_clip", self.term_clip)):
            if c is not None and c * self.scale >= 2.0**_MAX_SUM_BITS:
                raise ConfigError(
                    f"{name} * 2**frac_bits must stay below 2**{_MAX_SUM_BITS}. Found {name}={c}, "
                    f"frac_bits={self.frac_bits}."
                )
        if self.qmax < 1:
            raise ConfigError(
                f"clip * 2**frac_bits must be at least 1 so that a value can be "
                f"represented. Found clip={self.clip}, frac_bits={self.frac_bits}."
            )
        if self.sum_bound.bit_length() + 1 > _MAX_SUM_BITS:
            raise ConfigError(
                f"a sum needs {self.sum_bound.bit_length() + 1} bits (signed), more than "
                f"the supported {_MAX_SUM_BITS}; lower frac_bits, clip, max_clients or "
                f"max_weight."
            )

    # -- derived sizes -------------------------------------------------------
    @property
    def scale(self) -> int:
        """The fixed-point scale ``2**frac_bits``."""
        return 1 << self.frac_bits

    @property
    def qmax(self) -> int:
        """Largest magnitude of one quantized value."""
        return math.floor(self.clip * self.scale)

    @property
    def contribution_bound(self) -> int:
        """Largest magnitude of one client's slot: weighted value ``w * q`` plus its noise."""
        return self.max_weight * self.qmax + self.noise_bound

    @property
    def term_bound(self) -> int:
        """Largest magnitude of one term's quantized value."""
        clip = self.clip if self.term_clip is None else self.term_clip
        return math.floor(clip * self.scale)

    @property
    def max_summands(self) -> int:
        """Clients plus extra terms that one sum may hold."""
        return self.max_clients + self.extra_summands

    def range_of(self, count: int, terms: int = 0) -> int:
        """Largest magnitude a slot of ``count`` client updates and ``terms`` terms reaches."""
        return count * self.contribution_bound + terms * self.term_bound

    @property
    def sum_bound(self) -> int:
        """Largest magnitude any slot of a full sum (clients and terms) reaches."""
        return self.range_of(self.max_clients, self.extra_summands)

    @property
    def slot_bits(self) -> int:
        """Bits of one slot holding an offset (non-negative) sum: ``[0, 2*sum_bound]``."""
        return (2 * self.sum_bound).bit_length()

    @property
    def error_bound(self) -> float:
        """Largest ``|decode(encode(x)) - clamp(x)|`` for one value."""
        if self.rounding == "nearest":
            return 2.0 ** -(self.frac_bits + 1)
        return 2.0 ** -self.frac_bits

    @property
    def clip_value(self) -> float:
        """The saturation point ``qmax / 2**frac_bits`` actually applied."""
        return self.qmax / self.scale

    # -- encoding ------------------------------------------------------------
    def raw_encode(
        self, values: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, int]:
        """Quantize a float array to int64 in ``[-qmax, qmax]``.

        Returns the integers and how many inputs were clamped. Raises
        ``EncodingError`` on NaN or infinity rather than clamping them.
        """
        x = np.asarray(values, dtype=np.float64)
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.ravel()))[0])
            raise EncodingError(
                f"cannot encode non-finite value {x.ravel()[bad]!r} at flat index {bad}; "
                f"check the update for NaN or inf before encrypting."
            )
        y = x * self.scale  # exact: scale is a power of two
        qmax = float(self.qmax)
        clipped = int(np.count_nonzero(np.abs(y) > qmax))
        np.clip(y, -qmax, qmax, out=y)
        if self.rounding == "nearest":
            q = np.rint(y)
        else:
            if rng is None:
                rng = np.random.default_rng(secrets.randbits(128))
            q = np.floor(y + rng.random(y.shape))
            # y + u can round up to qmax + 1 in float64 when u is within an ulp of 1
            np.clip(q, -qmax, qmax, out=q)
        return q.astype(np.int64), clipped

    def raw_decode(self, ints: np.ndarray, divisor: float | int = 1) -> np.ndarray:
        """Map integer sums back to float64: ``ints / (2**frac_bits * divisor)``."""
        return np.asarray(ints, dtype=np.float64) / (float(self.scale) * float(divisor))

    def raw_encode_term(self, values: np.ndarray) -> np.ndarray:
        """Quantize a term's values with nearest rounding, refusing (never clipping) outliers."""
        x = np.asarray(values, dtype=np.float64)
        if not np.isfinite(x).all():
            raise EncodingError("cannot encode a term with NaN or inf values.")
        q = np.rint(x * self.scale)
        over = np.flatnonzero(np.abs(q) > self.term_bound)
        if over.size:
            raise EncodingError(
                f"{over.size} term values exceed the reserved range ±{self.term_bound / self.scale} "
                f"(first at flat index {int(over[0])}: {x.ravel()[over[0]]!r}); terms are never "
                f"clipped. Raise term_clip in generate()."
            )
        return q.astype(np.int64)

    def encode(self, values: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Quantize a float array (see :meth:`raw_encode`), dropping the clip count."""
        return self.raw_encode(values, rng)[0]

    def decode(self, ints: np.ndarray, divisor: float | int = 1) -> np.ndarray:
        """Alias of :meth:`raw_decode` for symmetry with :meth:`encode`."""
        return self.raw_decode(ints, divisor)

    def params(self) -> dict[str, object]:
        """The parameters as plain data, in a fixed order (wire format, fingerprints)."""
        return {
            "clip": self.clip,
            "frac_bits": self.frac_bits,
            "max_clients": self.max_clients,
            "max_weight": self.max_weight,
            "rounding": self.rounding,
            "extra_summands": self.extra_summands,
            "term_clip": self.term_clip,
            "noise_bound": self.noise_bound,
        }
