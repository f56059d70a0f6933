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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secagg.errors import TreeError, TreeMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["gradients", "parameters", "delta", "apply_gradients", "apply_delta"]


def _trainable(model: torch.nn.Module, include_frozen: bool) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if include_frozen or p.requires_grad]


def _float_buffers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    # integer buffers such as BatchNorm's num_batches_tracked cannot be averaged
    return [(n, b) for n, b in model.named_buffers() if b is not None and b.is_floating_point()]


def gradients(model: torch.nn.Module, *, include_frozen: bool = False) -> dict[str, Any]:
    """The ``.grad`` of each trainable parameter (``None`` where no gradient was computed).

    Frozen parameters (``requires_grad=False``) are left out unless
    ``include_frozen``; ``None`` leaves pass through encryption as ``None``.
    """
    return {n: (None if p.grad is None else p.grad.detach()) for n, p in _trainable(model, include_frozen)}


def parameters(
    model: torch.nn.Module, *, include_frozen: bool = False, include_buffers: bool = False
) -> dict[str, Any]:
    """A detached copy of the trainable parameters (and floating buffers, if asked)."""
    import torch

    with torch.no_grad():
        out = {n: p.detach().clone() for n, p in _trainable(model, include_frozen)}
        if include_buffers:
            out.update({n: b.detach().clone() for n, b in _float_buffers(model)})
    return out


def delta(
    model: torch.nn.Module, reference: dict[str, Any], *, include_buffers: bool = False
) -> dict[str, Any]:
    """``current - reference`` for every tensor in ``reference`` (from :func:`parameters`)."""
    import torch

    current: dict[str, torch.Tensor] = dict(model.named_parameters())
    if include_buffers:
        current.update(_float_buffers(model))
    missing = [n for n in reference if n not in current]
    if missing:
        raise TreeMismatchError(f"model has no parameter or buffer named {missing[0]!r}.")
    with torch.no_grad():
        return {n: current[n].detach() - ref.to(current[n].device) for n, ref in reference.items()}


def _targets(model: torch.nn.Module, tree: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise TreeError(f"expected a dict of name -> tensor. Found {type(tree).__name__}.")
    named: dict[str, torch.Tensor] = dict(model.named_parameters())
    named.update(_float_buffers(model))
    unknown = [n for n in tree if n not in named]
    if unknown:
        raise TreeMismatchError(f"model has no parameter or buffer named {unknown[0]!r}.")
    for n, t in tree.items():
        if t is not None and tuple(t.shape) != tuple(named[n].shape):
            raise TreeMismatchError(
                f"{n!r} has shape {tuple(t.shape)}, the model's is {tuple(named[n].shape)}."
            )
    return named


def apply_gradients(
    model: torch.nn.Module, grads: dict[str, Any], optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Set each named parameter's ``.grad`` (on its device and dtype); then step, if given."""
    named = _targets(model, grads)
    for n, g in grads.items():
        p = named[n]
        p.grad = None if g is None else g.detach().to(device=p.device, dtype=p.dtype).clone()
    if optimizer is not None:
        optimizer.step()


def apply_delta(model: torch.nn.Module, update: dict[str, Any], *, scale: float = 1.0) -> None:
    """Add ``scale * update[name]`` to each named parameter or floating buffer, in place."""
    import torch

    named = _targets(model, update)
    with torch.no_grad():
        for n, d in update.items():
            if d is not None:
                named[n].add_(d.to(device=named[n].device, dtype=named[n].dtype), alpha=scale)
