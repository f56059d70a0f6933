"""Tensor trees: structure, dtype and device survive; bad leaves are named."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import secagg
from secagg import TreeSpec, flatten, unflatten
from tests.strategies import arrays

NUMPY_DTYPES = [np.float16, np.float32, np.float64]
TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@given(arrays(dtype=np.float32), arrays(dtype=np.float64))
def test_numpy_tree_round_trip(a, b):
    tree = {"layer": [a, None, (b,)], "empty": []}
    spec, flat = flatten(tree)
    out = unflatten(spec, flat)
    assert out["layer"][1] is None and out["empty"] == [] and isinstance(out["layer"][2], tuple)
    np.testing.assert_array_equal(out["layer"][0], a)
    assert out["layer"][0].dtype == np.float32 and out["layer"][2][0].dtype == np.float64
    assert spec.leaf_names == ("layer/0", "layer/2/0")
    assert TreeSpec.from_obj(spec.to_obj()) == spec


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_leaves_keep_dtype_and_device(dtype):
    sd = OrderedDict(weight=torch.randn(3, 4).to(dtype), bias=torch.zeros(4, dtype=dtype))
    spec, flat = flatten(sd)
    out = unflatten(spec, flat)
    assert list(out) == ["weight", "bias"]
    for k in sd:
        assert out[k].dtype == dtype and out[k].device == sd[k].device and out[k].shape == sd[k].shape
        assert torch.equal(out[k], sd[k])


def test_unavailable_device_falls_back_to_cpu():
    spec, flat = flatten([torch.ones(2)])
    leaf = spec.leaves[0]
    fake = TreeSpec(spec.structure, (secagg.LeafSpec(leaf.name, leaf.shape, leaf.dtype, "torch", "cuda:7"),))
    out = unflatten(fake, flat)
    expected = "cuda" if torch.cuda.device_count() > 7 else "cpu"
    assert out[0].device.type == expected
    assert unflatten(spec, flat, device="cpu")[0].device.type == "cpu"


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_numpy_dtypes(dtype):
    spec, flat = flatten(np.arange(6, dtype=dtype).reshape(2, 3))
    out = unflatten(spec, flat)
    assert out.dtype == dtype and out.shape == (2, 3)


def test_integer_leaf_is_refused_by_name():
    sd = {"bn.running_mean": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(5)}
    with pytest.raises(secagg.EncodingError, match=r"bn\.num_batches_tracked"):
        flatten(sd)
    with pytest.raises(secagg.EncodingError, match="counts"):
        flatten({"counts": np.arange(3)})


def test_unsupported_leaves_and_keys():
    with pytest.raises(secagg.TreeError, match="float"):
        flatten({"x": 1.5})
    with pytest.raises(secagg.TreeError, match="keys must be strings"):
        flatten({1: np.zeros(2)})


def test_compatibility_names_the_difference():
    a, _ = flatten({"w": np.zeros((2, 2)), "b": np.zeros(2)})
    b, _ = flatten({"w": np.zeros((2, 3)), "b": np.zeros(2)})
    c, _ = flatten({"v": np.zeros((2, 2)), "b": np.zeros(2)})
    d, _ = flatten({"w": np.zeros((2, 2), np.float32), "b": np.zeros(2)})
    with pytest.raises(secagg.TreeMismatchError, match="shape"):
        a.check_compatible(b)
    with pytest.raises(secagg.TreeMismatchError, match="'v'"):
        a.check_compatible(c)
    a.check_compatible(d)  # dtype does not matter for compatibility


@given(st.recursive(st.just(["none"]), lambda c: st.one_of(
    st.builds(lambda xs: ["list", xs], st.lists(c, max_size=3)),
    st.builds(lambda xs: ["tuple", xs], st.lists(c, max_size=3)))))
def test_spec_from_obj_accepts_only_valid_structures(structure):
    spec = TreeSpec.from_obj([structure, []])
    assert spec.num_values == 0
    with pytest.raises(secagg.FormatError):
        TreeSpec.from_obj([structure, [["x", [1], "float32", "numpy", "cpu"]]])  # leaf 0 unreferenced
