"""The error contract: every error is a SecAggError *and* the built-in that matches it.

Code that already catches ``ValueError`` (or ``OverflowError``, ``TypeError`` ...)
keeps working; each error names a fixed public reason (``PUBLIC_REASONS``).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import secagg
from secagg import errors

ERRORS = [getattr(errors, name) for name in errors.__all__
          if isinstance(getattr(errors, name), type)]
# Bases only: never raised themselves (checked below), so every raised error has a built-in.
BASES = (errors.SecAggError, errors.DecryptionCheckError)
CONCRETE = [cls for cls in ERRORS if cls not in BASES]


def builtin_bases(cls: type) -> list[type]:
    """The built-in exception classes ``cls`` derives from, other than (Base)Exception."""
    return [c for c in cls.__mro__
            if c.__module__ == "builtins" and c not in (Exception, BaseException, object)]


def test_the_error_list_is_complete():
    assert len(CONCRETE) >= 20 and set(BASES) <= set(ERRORS)


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_each_error_is_a_secagg_error_and_a_builtin(cls):
    assert issubclass(cls, errors.SecAggError)
    assert builtin_bases(cls), f"{cls.__name__} derives from no built-in besides Exception"
    assert cls.code in errors.PUBLIC_REASONS


@pytest.mark.parametrize("cls, builtin", [
    (secagg.FormatError, ValueError),
    (secagg.CapacityError, OverflowError),
    (secagg.SumOverflowError, OverflowError),
    (secagg.ConfigError, ValueError),
    (secagg.TreeError, TypeError),
], ids=lambda x: x.__name__)
def test_pinned_builtins(cls, builtin):
    assert issubclass(cls, builtin)


@pytest.mark.parametrize("cls", [secagg.SumOverflowError, secagg.NoiseBudgetError,
                                 secagg.CountMismatchError], ids=lambda c: c.__name__)
def test_errors_after_decryption_are_decryption_check_errors(cls):
    assert issubclass(cls, secagg.DecryptionCheckError)


def _secagg_modules():
    """Every importable secagg module (optional dependencies missing: skipped)."""
    for info in pkgutil.walk_packages(secagg.__path__, "secagg."):
        if info.name.endswith("__main__"):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:
            continue


def test_every_public_exception_class_in_the_package_is_a_secagg_error():
    found = {}
    for module in [secagg, *_secagg_modules()]:
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("secagg") and not name.startswith("_")):
                found[obj.__qualname__] = obj
    assert "WrongPassphraseError" in found  # secagg.keystore's own error is walked too
    for name, cls in found.items():
        assert issubclass(cls, errors.SecAggError), name
        if cls not in BASES:
            assert builtin_bases(cls), name


def test_the_bases_are_never_raised_directly():
    root = Path(secagg.__file__).parent
    names = {cls.__name__ for cls in BASES}
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in names:
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
