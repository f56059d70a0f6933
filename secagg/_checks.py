"""The one set of argument checks; every message carries the offending value.

Each returns the value normalised (``int``/``float``) or raises the given
``SecAggError`` subclass (``ConfigError`` by default), e.g.::

    >>> check_int("rounds", 0, 1)
    Traceback (most recent call last):
    ...
    secagg.errors.ConfigError: rounds must be >= 1. Found 0.
"""

from __future__ import annotations

import math

import numpy as np

from secagg.errors import ConfigError, SecAggError

__all__ = ["check_int", "check_positive", "check_bool", "check_choice", "a_or_an", "count_of"]


def check_int(name: str, value: object, lo: int, hi: int | None = None, *,
              error: type[SecAggError] = ConfigError) -> int:
    """An integer (not a bool) in ``[lo, hi]`` (``hi=None``: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{name} must be an integer. Found {value!r:.80}.")
    if int(value) < lo or (hi is not None and int(value) > hi):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise error(f"{name} must be {bounds}. Found {value!r}.")
    return int(value)


def check_positive(name: str, value: object, *, error: type[SecAggError] = ConfigError) -> float:
    """A finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error(f"{name} must be a number. Found {value!r:.80}.")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise error(f"{name} must be positive and finite. Found {value!r}.")
    return float(value)


def check_bool(name: str, value: object, *, error: type[SecAggError] = ConfigError) -> bool:
    """``True`` or ``False`` (not 0/1, not None)."""
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False. Found {value!r:.80}.")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...], *,
                 error: type[SecAggError] = ConfigError) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}. Found {value!r:.80}.")
    return value


_A_NOT_AN = ("uni", "use", "usu", "uint", "uuid", "one")  # vowel letter, consonant sound


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article, for messages: ``"an update"``, ``"a term"``."""
    w = word.lower()
    vowel = w[:1] in ("a", "e", "i", "o", "u") and not w.startswith(_A_NOT_AN)
    return f"{'an' if vowel else 'a'} {word}"



def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 update"``, ``"3 updates"``: a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
