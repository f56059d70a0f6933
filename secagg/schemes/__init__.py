"""Encryption schemes as plug-ins: the interface and the registry.

A scheme is one subpackage (``secagg/schemes/paillier``, ``secagg/schemes/lattice``)
that calls :func:`register` once, naming itself, the scheme-specific options
``secagg.generate`` may pass it, and a loader for its public and secret halves
(:class:`~secagg.schemes.base.PublicBackend` / ``SecretBackend``). Loaders run on
first use, so a Paillier user never imports tenseal and vice versa. Nothing
outside a scheme's subpackage branches on its name::

    import secagg.schemes as schemes

    schemes.register(schemes.Scheme(
        name="identity",
        options=frozenset({"note"}),
        generate=lambda codec, options: IdentitySecret(IdentityPublic(codec)),
        load=lambda: (IdentityPublic, IdentitySecret),
    ))
    ctx = secagg.generate("identity", max_clients=10, note="tests only")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from secagg.codec import FixedPointCodec
from secagg.errors import ConfigError
from secagg.schemes.base import PublicBackend, SecretBackend

__all__ = ["Scheme", "register", "available", "get", "PublicBackend", "SecretBackend"]


@dataclass(frozen=True)
class Scheme:
    """One registered scheme.

    Attributes:
        name: what ``secagg.generate(name, ...)`` and payloads call it.
        options: the keyword options of ``generate`` that belong to this scheme
            (anything else is refused with an error naming these).
        generate: ``(codec, options) -> SecretBackend``: make keys for a codec
            from the options the user passed (a subset of ``options``); it
            validates their values.
        load: ``() -> (public class, secret class)``, imported on first use.
        summary: one line for ``--help`` texts.
    """

    name: str
    options: frozenset[str]
    generate: Callable[[FixedPointCodec, Mapping[str, Any]], SecretBackend]
    load: Callable[[], tuple[type[PublicBackend], type[SecretBackend]]]
    summary: str = ""

    def classes(self) -> tuple[type[PublicBackend], type[SecretBackend]]:
        """The public and secret halves (imports the scheme's dependencies)."""
        return self.load()

    def accepted(self, candidates: Mapping[str, Any]) -> dict[str, Any]:
        """The candidates this scheme takes, ``None`` values dropped.

        For front ends (the CLI, the demo) that collect every scheme's options
        and pass each scheme only its own: no front end branches on a name.
        """
        return {k: v for k, v in candidates.items() if k in self.options and v is not None}

    def make(self, codec: FixedPointCodec, options: Mapping[str, Any]) -> SecretBackend:
        """Check the option names, then generate keys."""
        unknown = sorted(set(options) - self.options)
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"the {self.name!r} scheme has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {allowed}."
            )
        return self.generate(codec, options)


_REGISTRY: dict[str, Scheme] = {}
# The built-in schemes' subpackages: importing one registers it (cheaply: the
# heavy dependencies load in Scheme.load).
_BUILTIN = ("secagg.schemes.paillier", "secagg.schemes.lattice")
_loaded = False


def register(scheme: Scheme, *, replace: bool = False) -> None:
    """Add a scheme to the registry (a second one under the same name needs ``replace``)."""
    if not isinstance(scheme, Scheme):
        raise ConfigError(f"register() takes a secagg.schemes.Scheme. Found {type(scheme).__name__}.")
    if not scheme.name or not scheme.name.isidentifier():
        raise ConfigError(f"a scheme name must be a Python identifier. Found {scheme.name!r}.")
    _load_builtins()  # first, so that a plug-in can never shadow a built-in by registering first
    if scheme.name in _REGISTRY and not replace and _REGISTRY[scheme.name] is not scheme:
        raise ConfigError(f"a scheme named {scheme.name!r} is already registered.")
    _REGISTRY[scheme.name] = scheme


def unregister(name: str) -> None:
    """Remove a scheme (tests that register throwaway schemes clean up with this)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(module)


def available() -> list[str]:
    """The registered scheme names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: object) -> Scheme:
    """The scheme registered under ``name``; ``ConfigError`` naming the choices otherwise."""
    _load_builtins()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"unknown scheme {name!r:.40}; choose one of {available()}.")
    return _REGISTRY[name]
