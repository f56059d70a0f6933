"""torch helpers: take gradients or model deltas as named trees, apply aggregates back.

torch is imported only when one of these functions runs. Names are the
module's ``named_parameters()`` / ``named_buffers()`` names, so the trees are
compatible across clients holding the same architecture.

FedSGD (mean gradient, then an optimizer step on the server or key holder)::

    upd = pub.encrypt(secagg.nn.gradients(model))
    ...
    secagg.nn.apply_gradients(model, ctx.decrypt(total, reduce="mean"), optimizer)

FedAvg (mean of local model deltas; ``weighted_mean`` with ``weight=n_samples``
for sample-weighted FedAvg)::

    start = secagg.nn.parameters(model)
    train_locally(model)
    upd = pub.encrypt(secagg.nn.delta(model, start), weight=len(local_data))
    ...
    secagg.nn.apply_delta(global_model, ctx.decrypt(total, reduce="weighted_mean"))

Personalised FL (FedPer, FedRep: share the body, keep the head local). ``include=``
and ``exclude=`` take glob patterns (:mod:`fnmatch`, one string or a list) on
the parameter names; a pattern that matches no name is refused, naming the
names there are. ``apply_gradients`` and ``apply_delta`` touch only the leaves
present in the tree, so the head keeps its local weights::

    start = secagg.nn.parameters(model, exclude="head.*")   # the body only
    train_locally(model)
    upd = pub.encrypt(secagg.nn.delta(model, start))
    ...
    secagg.nn.apply_delta(model, ctx.decrypt(total))        # the head is left alone

This plays the part of NVFlare's ``encrypt_layers`` (which picks the layers to
encrypt), except that here the layers left out are not sent at all.

Leaves of a tree to apply may be torch tensors or numpy arrays (a sum of
numpy updates decodes to numpy); each is converted to its parameter's dtype
and device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg._checks import a_or_an
from secagg.errors import ConfigError, TreeError, TreeMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["gradients", "parameters", "delta", "apply_gradients", "apply_delta", "Patterns"]

#: ``include=`` / ``exclude=``: one glob pattern, a sequence of them, or ``None`` (no filter)
Patterns = str | Sequence[str] | None

_SHOW_NAMES = 12  # names listed in an error message at most


def _show_names(names: Sequence[str]) -> str:
    shown = ", ".join(map(repr, names[:_SHOW_NAMES]))
    more = len(names) - _SHOW_NAMES
    return shown + (f", ... ({more} more)" if more > 0 else "") if names else "none"


def _patterns(arg: str, value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(p, str) for p in value):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise ConfigError(
        f"{arg} must be a glob pattern such as 'fc2.*' or a list of them. Found {value!r:.80}."
    )


def _select(
    names: Sequence[str], include: object, exclude: object, *, frozen: Iterable[str] = ()
) -> list[str]:
    """The names kept by ``include`` (default: all) minus those matched by ``exclude``.

    Every pattern must match at least one of ``names``; ``frozen`` are names
    left out because they do not train (named in the hint when a pattern
    matches only those).
    """
    inc, exc = _patterns("include", include), _patterns("exclude", exclude)
    if inc is None and exc is None:
        return list(names)
    frozen = list(frozen)
    for arg, pats in (("include", inc), ("exclude", exc)):
        for pat in pats or ():
            if any(fnmatchcase(n, pat) for n in names):
                continue
            hint = ""
            hidden = [n for n in frozen if fnmatchcase(n, pat)]
            if hidden:
                hint = (f" It matches frozen parameters ({_show_names(hidden)}), left out "
                        f"unless include_frozen=True.")
            raise ConfigError(
                f"{arg} pattern {pat!r} matches no name; the names are {_show_names(names)} "
                f"(patterns are fnmatch globs such as 'fc2.*').{hint}"
            )
    kept = [n for n in names
            if (inc is None or any(fnmatchcase(n, p) for p in inc))
            and not any(fnmatchcase(n, p) for p in exc or ())]
    if not kept:
        raise ConfigError(
            f"include={include!r:.80} and exclude={exclude!r:.80} leave nothing to share out "
            f"of {_show_names(names)}."
        )
    return kept


def _trainable(model: torch.nn.Module, include_frozen: bool) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if include_frozen or p.requires_grad]


def _frozen(model: torch.nn.Module, include_frozen: bool) -> list[str]:
    return [] if include_frozen else [n for n, p in model.named_parameters() if not p.requires_grad]


def _float_buffers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    # integer buffers such as BatchNorm's num_batches_tracked cannot be averaged
    return [(n, b) for n, b in model.named_buffers() if b is not None and b.is_floating_point()]


def gradients(
    model: torch.nn.Module, *, include_frozen: bool = False,
    include: Patterns = None, exclude: Patterns = None,
) -> dict[str, Any]:
    """The ``.grad`` of each trainable parameter (``None`` where no gradient was computed).

    Frozen parameters (``requires_grad=False``) are left out unless
    ``include_frozen``; ``None`` leaves pass through encryption as ``None``.
    ``include`` / ``exclude`` keep only the names matching a glob pattern /
    drop those, e.g. the shared body of a FedPer model::

        pub.encrypt(secagg.nn.gradients(model, exclude=["head.*"]))

    Raises ``ConfigError`` for a pattern that matches no name (the message
    lists the names).
    """
    named = _trainable(model, include_frozen)
    keep = set(_select([n for n, _ in named], include, exclude,
                       frozen=_frozen(model, include_frozen)))
    return {n: (None if p.grad is None else p.grad.detach()) for n, p in named if n in keep}


def parameters(
    model: torch.nn.Module, *, include_frozen: bool = False, include_buffers: bool = False,
    include: Patterns = None, exclude: Patterns = None,
) -> dict[str, Any]:
    """A detached copy of the trainable parameters (and floating buffers, if asked).

    ``include`` / ``exclude`` filter the names with glob patterns (see
    :func:`gradients`); FedRep, sharing the body and keeping the head local::

        start = secagg.nn.parameters(model, include="body.*")
    """
    import torch

    named: list[tuple[str, torch.Tensor]] = list(_trainable(model, include_frozen))
    if include_buffers:
        named += _float_buffers(model)
    keep = set(_select([n for n, _ in named], include, exclude,
                       frozen=_frozen(model, include_frozen)))
    with torch.no_grad():
        return {n: t.detach().clone() for n, t in named if n in keep}


def delta(
    model: torch.nn.Module, reference: dict[str, Any], *, include_buffers: bool = False,
    include: Patterns = None, exclude: Patterns = None,
) -> dict[str, Any]:
    """``current - reference`` for every tensor in ``reference`` (from :func:`parameters`).

    ``include`` / ``exclude`` filter ``reference``'s names with glob patterns
    (see :func:`gradients`), e.g. ``delta(model, start, exclude="head.*")``.
    """
    import torch

    current: dict[str, torch.Tensor] = dict(model.named_parameters())
    if include_buffers:
        current.update(_float_buffers(model))
    missing = [n for n in reference if n not in current]
    if missing:
        raise TreeMismatchError(f"model has no parameter or buffer named {missing[0]!r}.")
    keep = set(_select(list(reference), include, exclude))
    with torch.no_grad():
        return {n: current[n].detach() - ref.to(current[n].device)
                for n, ref in reference.items() if n in keep}


def _targets(model: torch.nn.Module, tree: dict[str, Any]) -> dict[str, Any]:
    """The model's tensors for ``tree``'s names, after checking every leaf (nothing applied yet)."""
    import torch

    if not isinstance(tree, dict):
        raise TreeError(f"expected a dict of name -> tensor. Found {type(tree).__name__}.")
    named: dict[str, torch.Tensor] = dict(model.named_parameters())
    named.update(_float_buffers(model))
    unknown = [n for n in tree if n not in named]
    if unknown:
        raise TreeMismatchError(
            f"model has no parameter or buffer named {unknown[0]!r}; its names are "
            f"{_show_names(list(named))}."
        )
    for n, t in tree.items():
        if t is None:
            continue
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise TreeError(
                f"{n!r} is {a_or_an(type(t).__name__)}; expected a torch tensor, a numpy array "
                f"or None."
            )
        if isinstance(t, np.ndarray) and t.dtype.kind not in "fiu":
            raise TreeError(f"{n!r} is a numpy array of dtype {t.dtype}; expected numbers.")
        if tuple(t.shape) != tuple(named[n].shape):
            raise TreeMismatchError(
                f"{n!r} has shape {tuple(t.shape)}, the model's is {tuple(named[n].shape)}."
            )
    return named


def _like(value: Any, target: torch.Tensor) -> torch.Tensor:
    """``value`` (a tensor or a numpy array) as a tensor of ``target``'s dtype and device."""
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.array(value, copy=True, order="C"))
    out: torch.Tensor = value.detach().to(device=target.device, dtype=target.dtype)
    return out


def apply_gradients(
    model: torch.nn.Module, grads: dict[str, Any], optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Set each named parameter's ``.grad`` (on its device and dtype); then step, if given.

    Only the parameters named in ``grads`` are touched (a personalised model's
    local head keeps its own ``.grad``); a name the model does not have is
    refused. Leaves may be torch tensors or numpy arrays; ``None`` clears a
    ``.grad``.
    """
    named = _targets(model, grads)
    for n, g in grads.items():
        p = named[n]
        p.grad = None if g is None else _like(g, p).clone()
    if optimizer is not None:
        optimizer.step()


def apply_delta(model: torch.nn.Module, update: dict[str, Any], *, scale: float = 1.0) -> None:
    """Add ``scale * update[name]`` to each named parameter or floating buffer, in place.

    Only the tensors named in ``update`` change (for personalised FL: a delta
    of the shared body leaves the local head alone); a name the model does not
    have is refused. Leaves may be torch tensors or numpy arrays, converted to
    each parameter's dtype and device.
    """
    import torch

    named = _targets(model, update)
    with torch.no_grad():
        for n, d in update.items():
            if d is not None:
                named[n].add_(_like(d, named[n]), alpha=scale)
