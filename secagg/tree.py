"""Tensor trees: nestings of list / tuple / dict around numpy arrays and torch tensors.

``flatten`` turns a tree into a :class:`TreeSpec` and one float64 vector;
``unflatten`` turns a vector back into a tree with each leaf's shape, dtype and
(where it exists here) device. torch is only imported when a torch tensor is
actually seen or has to be rebuilt.

Example::

    spec, flat = flatten({"w": np.ones((2, 2), np.float32), "b": None})
    spec.leaf_names    # ('w',)
    flat.shape         # (4,)
    unflatten(spec, flat)   # {'w': array([[1., 1.], [1., 1.]], dtype=float32), 'b': None}
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from secagg._checks import a_or_an
from secagg.errors import DeviceError, EncodingError, FormatError, TreeError, TreeMismatchError
from secagg.wire import show

__all__ = ["LeafSpec", "TreeSpec", "flatten", "unflatten", "available_devices", "check_device"]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_MAX_DEPTH = 64
_MAX_LEAVES = 1 << 20
_MAX_NAME = 1024


@dataclass(frozen=True)
class LeafSpec:
    """One floating leaf: its name in the tree, shape, dtype, library and device."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    lib: str  # "numpy" or "torch"
    device: str = "cpu"

    @property
    def size(self) -> int:
        """Number of values in the leaf."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class TreeSpec:
    """Structure of a tree with its floating leaves described, values left out.

    ``structure`` is plain nested data: ``["dict", [keys], [children]]``,
    ``["list", [children]]``, ``["tuple", [children]]``, ``["leaf", i]`` or
    ``["none"]``. Two specs are *compatible* when structure, leaf names and
    shapes agree (:meth:`check_compatible`); dtype, library and device steer
    decoding. An :class:`~secagg.Aggregator` also refuses a leaf whose dtype or
    library differs from the first update's (:meth:`type_difference`) unless
    it was made with ``cast=True``; devices may always differ.
    """

    structure: Any
    leaves: tuple[LeafSpec, ...]

    @property
    def num_values(self) -> int:
        """Total number of floating values across all leaves."""
        return sum(leaf.size for leaf in self.leaves)

    @property
    def leaf_names(self) -> tuple[str, ...]:
        """The leaves' names in flattening order."""
        return tuple(leaf.name for leaf in self.leaves)

    def compat_key(self) -> tuple[Any, ...]:
        """What two compatible specs share (computed once)."""
        key = self.__dict__.get("_compat_key")
        if key is None:
            key = (_freeze(self.structure), tuple((x.name, x.shape) for x in self.leaves))
            object.__setattr__(self, "_compat_key", key)
        return key

    def check_compatible(self, other: TreeSpec) -> None:
        """Raise ``TreeMismatchError`` naming the first difference from ``other``."""
        if self.compat_key() == other.compat_key():
            return
        if len(self.leaves) != len(other.leaves):
            raise TreeMismatchError(
                f"tree has {len(other.leaves)} floating leaves, expected {len(self.leaves)} "
                f"(expected leaves {list(self.leaf_names)[:8]}...)."
            )
        for mine, theirs in zip(self.leaves, other.leaves):
            if mine.name != theirs.name:
                raise TreeMismatchError(
                    f"leaf {theirs.name!r} found where {mine.name!r} was expected."
                )
            if mine.shape != theirs.shape:
                raise TreeMismatchError(
                    f"leaf {mine.name!r} has shape {theirs.shape}, expected {mine.shape}."
                )
        raise TreeMismatchError("tree structure (containers or None leaves) differs.")

    def type_difference(self, other: TreeSpec) -> tuple[LeafSpec, LeafSpec] | None:
        """The first pair of leaves (mine, other's) whose dtype or library differ, if any.

        Meant for compatible specs (:meth:`check_compatible`); devices are not compared.
        """
        for mine, theirs in zip(self.leaves, other.leaves):
            if mine.dtype != theirs.dtype or mine.lib != theirs.lib:
                return mine, theirs
        return None

    # -- plain data for the wire -----------------------------------------------
    def to_obj(self) -> list[Any]:
        """Plain nested lists for the wire format."""
        return [
            self.structure,
            [[x.name, list(x.shape), x.dtype, x.lib, x.device] for x in self.leaves],
        ]

    @classmethod
    def from_obj(cls, obj: Any) -> TreeSpec:
        """Validate and rebuild a spec from :meth:`to_obj` data; raises ``FormatError``."""
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[1], list)):
            raise FormatError("tree spec must be [structure, leaves].")
        raw_leaves = obj[1]
        if len(raw_leaves) > _MAX_LEAVES:
            raise FormatError(f"tree spec has {len(raw_leaves)} leaves, more than {_MAX_LEAVES}.")
        leaves = []
        for item in raw_leaves:
            if not (isinstance(item, list) and len(item) == 5):
                raise FormatError(f"malformed leaf entry in tree spec: {show(item)}.")
            name, shape, dtype, lib, device = item
            if not isinstance(name, str) or len(name) > _MAX_NAME:
                raise FormatError("leaf name must be a string of at most 1024 characters.")
            if not isinstance(shape, list) or len(shape) > 32 or not all(
                type(d) is int and 1 <= d < 2**40 for d in shape
            ):
                raise FormatError(f"leaf {name!r} has an invalid shape {show(shape)}.")
            if dtype not in FLOAT_DTYPES:
                raise FormatError(f"leaf {name!r} has unsupported dtype {show(dtype)}.")
            if lib not in ("numpy", "torch") or (lib == "numpy" and dtype == "bfloat16"):
                raise FormatError(f"leaf {name!r} has unsupported library {show(lib)}.")
            if not isinstance(device, str) or len(device) > 64:
                raise FormatError(f"leaf {name!r} has an invalid device entry.")
            leaves.append(LeafSpec(name, tuple(shape), dtype, lib, device))
        n_seen = _check_structure(obj[0], 0)
        if sorted(n_seen) != list(range(len(leaves))):
            raise FormatError("tree spec structure does not reference each leaf exactly once.")
        return cls(obj[0], tuple(leaves))


def _freeze(node: Any) -> Any:
    if isinstance(node, list):
        return tuple(_freeze(x) for x in node)
    return node


def _check_structure(node: Any, depth: int, out: list[int] | None = None) -> list[int]:
    """Validate a structure node from the wire; returns the leaf indices it uses."""
    out = [] if out is None else out
    if depth > _MAX_DEPTH:
        raise FormatError(f"tree spec nests deeper than {_MAX_DEPTH} levels.")
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise FormatError("malformed node in tree spec structure.")
    tag = node[0]
    if tag == "none" and len(node) == 1:
        return out
    if tag == "leaf" and len(node) == 2 and type(node[1]) is int:
        out.append(node[1])
        return out
    if tag in ("list", "tuple") and len(node) == 2 and isinstance(node[1], list):
        for child in node[1]:
            _check_structure(child, depth + 1, out)
        return out
    if (
        tag == "dict"
        and len(node) == 3
        and isinstance(node[1], list)
        and isinstance(node[2], list)
        and len(node[1]) == len(node[2])
        and all(isinstance(k, str) for k in node[1])
        and len(set(node[1])) == len(node[1])
    ):
        for child in node[2]:
            _check_structure(child, depth + 1, out)
        return out
    raise FormatError(f"malformed node {show(tag)} in tree spec structure.")


# -- flatten ---------------------------------------------------------------------
def _torch() -> ModuleType | None:
    """torch, if the process already imported it (a tensor cannot exist otherwise)."""
    return sys.modules.get("torch")


def _is_torch_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _join(prefix: str, key: str) -> str:
    return key if not prefix else f"{prefix}/{key}"


def flatten(tree: Any) -> tuple[TreeSpec, np.ndarray]:
    """Describe ``tree`` and return its floating leaves as one float64 vector.

    Raises ``TreeError`` for unsupported containers or leaves and
    ``EncodingError`` for a non-floating tensor, naming the leaf.
    """
    leaves: list[LeafSpec] = []
    arrays: list[np.ndarray] = []

    def walk(node: Any, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise TreeError(f"tree nests deeper than {_MAX_DEPTH} levels at {path!r}.")
        if node is None:
            return ["none"]
        if isinstance(node, dict):
            keys = list(node.keys())
            for k in keys:
                if not isinstance(k, str):
                    raise TreeError(
                        f"dict keys must be strings; found {type(k).__name__} key {k!r} "
                        f"at {path or '<root>'!r}."
                    )
            return ["dict", keys, [walk(node[k], _join(path, k), depth + 1) for k in keys]]
        if isinstance(node, (list, tuple)):
            tag = "tuple" if isinstance(node, tuple) else "list"
            return [tag, [walk(c, _join(path, str(i)), depth + 1) for i, c in enumerate(node)]]
        name = path or "<root>"
        if _is_torch_tensor(node):
            leaf, arr = _torch_leaf(node, name)
        elif isinstance(node, np.ndarray):
            leaf, arr = _numpy_leaf(node, name)
        else:
            raise TreeError(
                f"leaf {name!r} is {a_or_an(type(node).__name__)}; expected a numpy array, a torch "
                f"tensor, None, or a list / tuple / dict of them."
            )
        if leaf.size == 0:
            raise TreeError(f"leaf {name!r} has no values (shape {leaf.shape}); drop it or use None.")
        leaves.append(leaf)
        arrays.append(arr)
        return ["leaf", len(leaves) - 1]

    structure = walk(tree, "", 0)
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    return TreeSpec(structure, tuple(leaves)), flat


def _numpy_leaf(arr: np.ndarray, name: str) -> tuple[LeafSpec, np.ndarray]:
    if arr.dtype.name not in FLOAT_DTYPES:
        raise EncodingError(
            f"leaf {name!r} has dtype {arr.dtype}; only floating leaves are aggregated. "
            f"Drop integer buffers (e.g. num_batches_tracked) or set them to None."
        )
    return LeafSpec(name, tuple(int(d) for d in arr.shape), arr.dtype.name, "numpy"), arr.astype(
        np.float64, copy=False
    )


def _torch_leaf(t: Any, name: str) -> tuple[LeafSpec, np.ndarray]:
    import torch  # imported already: ``t`` is a tensor

    if not t.is_floating_point():
        raise EncodingError(
            f"leaf {name!r} has dtype {t.dtype}; only floating leaves are aggregated. "
            f"Drop integer buffers (e.g. num_batches_tracked) or set them to None."
        )
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in FLOAT_DTYPES:
        raise EncodingError(f"leaf {name!r} has unsupported floating dtype {t.dtype}.")
    arr = t.detach().to(device="cpu", dtype=torch.float64).numpy()
    return LeafSpec(name, tuple(int(d) for d in t.shape), dtype, "torch", str(t.device)), arr


# -- unflatten -------------------------------------------------------------------
def available_devices() -> list[str]:
    """The devices torch leaves can be decoded to in this process: ``["cpu", "cuda:0", ...]``.

    Only ``"cpu"`` while torch has not been imported (no torch leaf can exist then).
    """
    torch = _torch()
    out = ["cpu"]
    if torch is None:
        return out
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        out += [f"xpu:{i}" for i in range(xpu.device_count())]
    return out


def _device_exists(dev: Any) -> bool:
    """Whether the ``torch.device`` ``dev`` can hold a tensor in this process."""
    import torch  # imported already: ``dev`` is a torch.device

    if dev.type in ("cpu", "meta"):
        return True
    if dev.type == "cuda":
        return bool(torch.cuda.is_available()) and (dev.index or 0) < torch.cuda.device_count()
    if dev.type == "mps":
        return bool(torch.backends.mps.is_available()) and (dev.index or 0) == 0
    try:  # any other backend: ask it
        torch.empty(0, device=dev)
    except Exception:  # torch raises AssertionError, RuntimeError ... for a missing backend
        return False
    return True


def check_device(device: Any) -> Any:
    """``device`` as a ``torch.device`` that exists here; ``DeviceError`` otherwise.

    Accepts a device string (``"cuda"``, ``"cuda:1"``, ``"cpu"``), a
    ``torch.device`` or a CUDA index; the message names the devices there are::

        DeviceError: device 'cuda' is not available here (available: cpu); ...
    """
    import torch

    avail = available_devices()
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str) or (isinstance(device, int) and not isinstance(device, bool)):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(
                f"device {device!r:.80} is not a torch device name such as 'cpu', 'cuda' or "
                f"'cuda:1' (available here: {', '.join(avail)})."
            ) from None
    else:
        raise DeviceError(
            f"device must be a string such as 'cpu' or 'cuda:0', or a torch.device. "
            f"Found {a_or_an(type(device).__name__)}."
        )
    if not _device_exists(dev):
        raise DeviceError(
            f"device {str(dev)!r} is not available here (available: {', '.join(avail)}); pass "
            f"one of those, e.g. device={avail[-1]!r}, or device=None to put each leaf on its "
            f"recorded device where that exists here (else the CPU)."
        )
    return dev


def _resolve_device(device: str) -> str:
    """The leaf's recorded device if it exists in this process, else the CPU."""
    torch = _torch()
    if device == "cpu" or torch is None:
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return "cpu"
    return device if dev.type != "meta" and _device_exists(dev) else "cpu"


def unflatten(spec: TreeSpec, flat: np.ndarray, *, device: Any = None) -> Any:
    """Rebuild the tree described by ``spec`` from a float64 vector.

    Each leaf gets its recorded shape and dtype; torch leaves go to their
    recorded device where that device exists here, else the CPU, unless
    ``device`` overrides it (numpy leaves stay numpy arrays). A ``device``
    that does not exist here raises ``DeviceError`` naming the ones that do.
    """
    flat = np.asarray(flat, dtype=np.float64)
    if flat.size != spec.num_values:
        raise TreeMismatchError(f"got {flat.size} values for a tree of {spec.num_values}.")
    if device is not None and any(leaf.lib == "torch" for leaf in spec.leaves):
        device = check_device(device)
    offsets = np.cumsum([0] + [leaf.size for leaf in spec.leaves])
    built: list[Any] = []
    for i, leaf in enumerate(spec.leaves):
        chunk = flat[offsets[i] : offsets[i + 1]].reshape(leaf.shape)
        built.append(_make_leaf(leaf, chunk, device))

    def build(node: list[Any]) -> Any:
        tag = node[0]
        if tag == "none":
            return None
        if tag == "leaf":
            return built[node[1]]
        if tag == "list":
            return [build(c) for c in node[1]]
        if tag == "tuple":
            return tuple(build(c) for c in node[1])
        return {k: build(c) for k, c in zip(node[1], node[2])}

    return build(spec.structure)


def _make_leaf(leaf: LeafSpec, chunk: np.ndarray, device: Any) -> Any:
    if leaf.lib == "numpy":
        return chunk.astype(leaf.dtype)
    import torch

    target = device if device is not None else _resolve_device(leaf.device)
    return torch.from_numpy(np.ascontiguousarray(chunk)).to(
        device=target, dtype=getattr(torch, leaf.dtype)
    )
