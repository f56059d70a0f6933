"""Every error secagg raises on bad input or misuse.

All of them derive from :class:`SecAggError` and also from the built-in that
matches the problem (``ValueError``, ``OverflowError``, ``TypeError``), so code
that already catches ``ValueError`` keeps working. Messages name the offending
value and, where there is one, what to do next.
"""

from __future__ import annotations

__all__ = [
    "SecAggError",
    "ConfigError",
    "PlanningError",
    "EncodingError",
    "TreeError",
    "TreeMismatchError",
    "WeightError",
    "FormatError",
    "TruncatedPayloadError",
    "CorruptPayloadError",
    "UnsupportedVersionError",
    "CiphertextError",
    "ContextMismatchError",
    "RoundMismatchError",
    "ReplayError",
    "CapacityError",
    "EmptyAggregateError",
    "InsufficientClientsError",
    "SumOverflowError",
    "NoiseBudgetError",
    "MissingSecretKeyError",
]


class SecAggError(Exception):
    """Base class of every error raised by secagg on bad input or misuse."""


class ConfigError(SecAggError, ValueError):
    """Raised when parameters given to ``generate`` or a codec are out of range."""


class PlanningError(ConfigError):
    """Raised when no lattice parameter set can guarantee an exact decoded sum."""


class EncodingError(SecAggError, ValueError):
    """Raised when a value cannot be quantized (NaN, inf, a non-floating leaf)."""


class TreeError(SecAggError, TypeError):
    """Raised when a tensor tree has an unsupported container, key or leaf type."""


class TreeMismatchError(SecAggError, ValueError):
    """Raised when an update's tree spec (structure, leaf names, shapes) differs."""


class WeightError(SecAggError, ValueError):
    """Raised when a weight is not an integer in ``[1, max_weight]``."""


class FormatError(SecAggError, ValueError):
    """Raised when bytes are not a well-formed secagg payload of the expected kind."""


class TruncatedPayloadError(FormatError):
    """Raised when a payload is shorter than its own header says."""


class CorruptPayloadError(FormatError):
    """Raised when a payload's integrity digest does not match its content."""


class UnsupportedVersionError(FormatError):
    """Raised when a payload was written by a wire-format version we cannot read."""


class CiphertextError(FormatError):
    """Raised when a ciphertext is out of range or does not match the context."""


class ContextMismatchError(SecAggError, ValueError):
    """Raised when a payload was made under another key, scheme or codec."""


class RoundMismatchError(SecAggError, ValueError):
    """Raised when an update carries another round identifier than the aggregator's."""


class ReplayError(SecAggError, ValueError):
    """Raised when the aggregator already summed this exact update."""


class CapacityError(SecAggError, OverflowError):
    """Raised when an update would take the sum past ``max_clients`` contributions."""


class EmptyAggregateError(SecAggError, ValueError):
    """Raised when ``result()`` is asked of an aggregator that summed nothing."""


class InsufficientClientsError(SecAggError, ValueError):
    """Raised when decrypting a sum of fewer than ``min_clients`` updates."""


class SumOverflowError(SecAggError, OverflowError):
    """Raised when a decrypted slot lies outside the range honest inputs can reach."""


class NoiseBudgetError(SecAggError, ArithmeticError):
    """Raised when a lattice decryption is too noisy to round to an exact integer."""


class MissingSecretKeyError(SecAggError, TypeError):
    """Raised when an operation needs the secret key and only public material is held."""
