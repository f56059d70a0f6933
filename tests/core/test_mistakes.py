"""Mistakes caught with the fix in the message (issue 12).

Mixed trees, devices that do not exist, ``min_clients`` against ``max_clients``,
values beyond the clip, and the grammar of messages built from names. Each test
pins the text a user reads.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import TreeSpec, flatten, unflatten
from secagg._checks import a_or_an, count_of
from secagg.tree import FLOAT_DTYPES, available_devices, check_device
from secagg.wire import Kind, open_payload, seal
from tests.helpers import make_context, snapshot
from tests.strategies import arrays

MIXED = ("leaf 'fc.weight' is torch float64 in this update but numpy float32 in the first "
         "update of this sum; send the same dtype and library from every client, or pass "
         "cast=True to Aggregator to sum it anyway and decode the sum to the first update's "
         "(numpy float32).")


@pytest.fixture(scope="module")
def mctx() -> secagg.SecretContext:
    return make_context("ckks", max_terms=2)


def _two(ctx, first, second, **agg_options):
    agg = secagg.Aggregator(ctx.public, **agg_options)
    agg.add(ctx.public.encrypt(first))
    agg.add(ctx.public.encrypt(second))
    return agg


# -- 1. mixed trees ----------------------------------------------------------------
def test_mixed_library_and_dtype_is_refused_naming_leaf_and_both(mctx):
    pub = mctx.public
    agg = secagg.Aggregator(pub)
    agg.add(pub.encrypt({"fc.weight": np.zeros((2, 3), np.float32), "fc.bias": np.zeros(3, np.float32)}))
    before = snapshot(agg)
    with pytest.raises(secagg.TreeMismatchError) as exc:
        agg.add(pub.encrypt({"fc.weight": torch.zeros(2, 3, dtype=torch.float64),
                             "fc.bias": torch.zeros(3, dtype=torch.float64)}))
    assert str(exc.value) == MIXED
    assert snapshot(agg) == before  # refused: state unchanged


def test_mixed_dtype_same_library_is_refused(mctx):
    agg = secagg.Aggregator(mctx.public)
    agg.add(mctx.public.encrypt({"w": np.zeros(3, np.float32)}))
    with pytest.raises(secagg.TreeMismatchError) as exc:
        agg.add(mctx.public.encrypt({"w": np.zeros(3, np.float64)}))
    assert str(exc.value).startswith(
        "leaf 'w' is numpy float64 in this update but numpy float32 in the first update")


def test_mixed_library_same_dtype_is_refused(mctx):
    agg = secagg.Aggregator(mctx.public)
    agg.add(mctx.public.encrypt({"w": torch.zeros(3)}))
    with pytest.raises(secagg.TreeMismatchError, match="numpy float32 in this update but torch float32"):
        agg.add(mctx.public.encrypt({"w": np.zeros(3, np.float32)}))


def test_merge_of_a_mixed_aggregate_says_aggregate(mctx):
    part = _two(mctx, {"w": torch.zeros(3, dtype=torch.float16)}, {"w": torch.zeros(3, dtype=torch.float16)})
    agg = secagg.Aggregator(mctx.public)
    agg.add(mctx.public.encrypt({"w": torch.zeros(3)}))
    with pytest.raises(secagg.TreeMismatchError,
                       match=r"^leaf 'w' is torch float16 in this aggregate but torch float32"):
        agg.merge(part.result())


@pytest.mark.parametrize("first_lib", ["numpy", "torch"])
def test_cast_true_sums_and_decodes_to_the_first_update(mctx, first_lib):
    a = {"w": np.full(3, 0.25, np.float32)}
    b = {"w": torch.full((3,), 0.75, dtype=torch.float64)}
    first, second = (a, b) if first_lib == "numpy" else (b, a)
    agg = _two(mctx, first, second, cast=True)
    out = mctx.decrypt(agg.result(), reduce="mean")["w"]
    if first_lib == "numpy":
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    else:
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), 0.5, atol=2**-16)


def test_cast_must_be_a_bool(mctx):
    with pytest.raises(secagg.ConfigError) as exc:
        secagg.Aggregator(mctx.public, cast="yes")
    assert str(exc.value) == "cast must be True or False. Found 'yes'."


def test_devices_may_differ(mctx):
    """A client on a GPU and one on the CPU send compatible trees."""
    pub = mctx.public
    upd = pub.encrypt({"w": torch.zeros(3)})
    leaf = upd.spec.leaves[0]
    on_gpu = TreeSpec(upd.spec.structure, (dataclasses.replace(leaf, device="cuda:0"),))
    agg = secagg.Aggregator(pub)
    agg.add(upd)
    agg.add(dataclasses.replace(pub.encrypt({"w": torch.zeros(3)}), spec=on_gpu, _digest=[]))
    assert len(agg) == 2


def test_a_term_takes_the_sums_types_and_never_sets_them(mctx):
    pub = mctx.public
    agg = secagg.Aggregator(pub)
    agg.add_plain({"w": np.full(3, 0.5)})  # numpy float64 term before any update
    agg.add(pub.encrypt({"w": torch.zeros(3)}))  # the first update decides
    agg.add(pub.encrypt({"w": torch.zeros(3)}))
    agg.add_plain({"w": np.full(3, 0.5)})  # after the updates: still fine
    assert agg.spec is not None and agg.spec.leaves[0].lib == "torch"
    out = mctx.decrypt(agg.result(), reduce="sum")["w"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones(3))


def test_cast_survives_a_checkpoint_and_old_checkpoints_read_as_false(mctx):
    pub = mctx.public
    agg = secagg.Aggregator(pub, cast=True)
    agg.add(pub.encrypt({"w": np.zeros(3, np.float32)}))
    restored = secagg.Aggregator.from_bytes(agg.to_bytes(), pub)
    assert restored.cast is True
    restored.add(pub.encrypt({"w": np.zeros(3)}))  # float64 after float32: cast
    _, body = open_payload(agg.to_bytes(), Kind.CHECKPOINT)
    fields = dict(body.raw())
    del fields["cast"]  # written before the field existed
    old = secagg.Aggregator.from_bytes(seal(Kind.CHECKPOINT, fields), pub)
    assert old.cast is False
    with pytest.raises(secagg.TreeMismatchError):
        old.add(pub.encrypt({"w": np.zeros(3)}))
    fields["cast"] = 1
    with pytest.raises(secagg.FormatError, match="cast must be a boolean"):
        secagg.Aggregator.from_bytes(seal(Kind.CHECKPOINT, fields), pub)


KINDS = [(lib, dtype) for lib in ("numpy", "torch") for dtype in FLOAT_DTYPES
         if not (lib == "numpy" and dtype == "bfloat16")]


def _leaf(lib: str, dtype: str, shape: tuple[int, ...]):
    if lib == "numpy":
        return np.zeros(shape, dtype=dtype)
    return torch.zeros(shape, dtype=getattr(torch, dtype))


@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), st.data())
def test_type_difference_is_the_first_leaf_whose_dtype_or_library_differ(kinds, data):
    other = [data.draw(st.sampled_from(KINDS)) for _ in kinds]
    a, _ = flatten({f"l{i}": _leaf(*k, (2,)) for i, k in enumerate(kinds)})
    b, _ = flatten({f"l{i}": _leaf(*k, (2,)) for i, k in enumerate(other)})
    a.check_compatible(b)  # types never make specs incompatible
    diff = a.type_difference(b)
    differing = [i for i, (x, y) in enumerate(zip(kinds, other)) if x != y]
    if not differing:
        assert diff is None
    else:
        mine, theirs = diff
        assert mine.name == theirs.name == f"l{differing[0]}"
        assert (mine.lib, mine.dtype) == kinds[differing[0]]
        assert (theirs.lib, theirs.dtype) == other[differing[0]]


# -- 2. devices --------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_decrypting_to_a_missing_device_names_the_available_ones(mctx):
    agg = _two(mctx, {"w": torch.zeros(3)}, {"w": torch.zeros(3)})
    with pytest.raises(secagg.DeviceError) as exc:
        mctx.decrypt(agg.result(), device="cuda")
    assert str(exc.value) == (
        "device 'cuda' is not available here (available: cpu); pass one of those, e.g. "
        "device='cpu', or device=None to put each leaf on its recorded device where that "
        "exists here (else the CPU)."
    )
    assert isinstance(exc.value, secagg.ConfigError) and isinstance(exc.value, ValueError)
    assert secagg.errors.public_reason(exc.value).startswith("SA-CONFIG")


def test_a_device_index_past_the_last_gpu_is_refused():
    dev = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(secagg.DeviceError, match=rf"^device '{dev}' is not available here "
                                                 rf"\(available: {', '.join(available_devices())}\)"):
        check_device(dev)


def test_simulated_gpus_are_listed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    assert check_device("cuda:1") == torch.device("cuda:1")
    assert check_device("cuda") == torch.device("cuda")
    with pytest.raises(secagg.DeviceError, match=r"available: cpu, cuda:0, cuda:1\b"):
        check_device("cuda:2")


def test_device_names_and_types_are_checked():
    with pytest.raises(secagg.DeviceError) as exc:
        check_device("gpu")
    assert str(exc.value) == (
        f"device 'gpu' is not a torch device name such as 'cpu', 'cuda' or 'cuda:1' "
        f"(available here: {', '.join(available_devices())})."
    )
    with pytest.raises(secagg.DeviceError) as exc:
        check_device(1.5)
    assert str(exc.value) == (
        "device must be a string such as 'cpu' or 'cuda:0', or a torch.device. Found a float."
    )
    assert check_device("cpu") == check_device(torch.device("cpu")) == torch.device("cpu")


def test_explicit_cpu_works_and_recorded_devices_still_fall_back(mctx):
    agg = _two(mctx, {"w": torch.ones(3)}, {"w": torch.ones(3)})
    assert mctx.decrypt(agg.result(), device=torch.device("cpu"))["w"].device.type == "cpu"
    spec, flat = flatten([torch.ones(2)])
    leaf = spec.leaves[0]
    for recorded in ("cuda:7", "mps", "xpu:3", "meta"):
        fake = TreeSpec(spec.structure, (dataclasses.replace(leaf, device=recorded),))
        out = unflatten(fake, flat)[0]
        if out.device.type == "cpu":  # unless this machine really has it
            assert torch.equal(out, torch.ones(2))


def test_numpy_leaves_ignore_the_device(mctx):
    agg = _two(mctx, {"w": np.ones(3)}, {"w": np.ones(3)})
    out = mctx.decrypt(agg.result(), device="cuda:99")["w"]  # documented: numpy stays numpy
    assert isinstance(out, np.ndarray)


# -- 4. min_clients against max_clients ---------------------------------------------
def test_max_clients_below_the_default_min_clients_says_so():
    with pytest.raises(secagg.ConfigError) as exc:
        secagg.generate("ckks", max_clients=1)
    assert str(exc.value) == (
        "max_clients=1 is below the default min_clients=2 (the smallest sum the key holder "
        "decrypts); pass min_clients=1 as well. Decrypting a single update reveals it, so only "
        "do that in tests."
    )
    ctx = secagg.generate("ckks", max_clients=1, min_clients=1)
    assert ctx.min_clients == 1


def test_an_explicit_min_clients_is_named():
    with pytest.raises(secagg.ConfigError) as exc:
        secagg.generate("ckks", max_clients=3, min_clients=5)
    assert str(exc.value) == (
        "min_clients=5 is above max_clients=3: a sum holds at most max_clients updates, so the "
        "key holder would never decrypt one. Lower min_clients or raise max_clients."
    )
    with pytest.raises(secagg.ConfigError, match=r"^min_clients must be >= 1\. Found 0\.$"):
        secagg.generate("ckks", min_clients=0)
    with pytest.raises(secagg.ConfigError, match=r"^min_clients must be an integer\. Found True\.$"):
        secagg.generate("ckks", min_clients=True)
    assert secagg.generate("ckks").min_clients == 2  # the default


def test_the_default_min_clients_against_dp_says_default():
    from secagg.dp import DistributedDP

    with pytest.raises(secagg.ConfigError) as exc:
        secagg.generate("ckks", dp=DistributedDP(1.0, 1.0, 5))
    assert str(exc.value) == (
        "the default min_clients=2 is below the DP calibration target dp.min_clients=5: a "
        "smaller sum would carry too little noise. Pass min_clients=5 (or more) as well."
    )
    with pytest.raises(secagg.ConfigError, match=r"^min_clients=3 is below the DP calibration"):
        secagg.generate("ckks", dp=DistributedDP(1.0, 1.0, 5), min_clients=3)


# -- 5. on_clip --------------------------------------------------------------------
@pytest.fixture(scope="module", params=["public", "secret"])
def encryptor(request, mctx):
    return mctx.public if request.param == "public" else mctx


@settings(max_examples=40)
@given(arrays(clip=1.0))
def test_num_clipped_counts_values_beyond_clip_whatever_on_clip(encryptor, x):
    expected = int(np.count_nonzero(np.abs(x) > 1.0))
    assert encryptor.encrypt(x).num_clipped == expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert encryptor.encrypt(x, on_clip="warn").num_clipped == expected
    clip_warnings = [w for w in caught if issubclass(w.category, secagg.SecAggWarning)]
    assert len(clip_warnings) == (1 if expected else 0)
    if expected:
        assert str(clip_warnings[0].message).startswith(
            f"{expected} of {count_of(x.size, 'value')} exceeded clip=1.0 and ")
        assert clip_warnings[0].filename == __file__  # points at the caller's line
    if expected:
        with pytest.raises(secagg.EncodingError,
                           match=rf"^{expected} of {count_of(x.size, 'value')} exceeded clip=1\.0; "):
            encryptor.encrypt(x, on_clip="raise")
    else:
        assert encryptor.encrypt(x, on_clip="raise").num_clipped == 0


def test_on_clip_messages_name_count_and_clip_never_values(encryptor):
    x = np.array([0.5, 123.456, -7.25, 0.1])
    with pytest.warns(secagg.SecAggWarning) as record:
        encryptor.encrypt(x, on_clip="warn")
    text = str(record[0].message)
    assert text == (
        "2 of 4 values exceeded clip=1.0 and were clamped to ±1.0; if that happens often, "
        "scale the update down or raise clip in generate() (on_clip='raise' refuses such "
        "updates)."
    )
    with pytest.raises(secagg.EncodingError) as exc:
        encryptor.encrypt(x, on_clip="raise")
    assert str(exc.value) == (
        "2 of 4 values exceeded clip=1.0; nothing was encrypted. Scale the update down, raise "
        "clip in generate(), or pass on_clip='saturate' (or 'warn') to clamp such values to ±1.0."
    )
    for message in (text, str(exc.value)):
        assert "123" not in message and "7.25" not in message and "0.5" not in message
    with pytest.warns(secagg.SecAggWarning, match=r"^1 of 4 values exceeded clip=1\.0 and was "):
        encryptor.encrypt(np.array([0.0, 0.0, 0.0, 2.0]), on_clip="warn")
    with pytest.raises(secagg.ConfigError) as exc:
        encryptor.encrypt(x, on_clip="clip")
    assert str(exc.value) == "on_clip must be one of 'saturate', 'warn', 'raise'. Found 'clip'."


def test_the_warning_is_a_user_warning_and_a_secagg_error():
    assert issubclass(secagg.SecAggWarning, UserWarning)
    assert issubclass(secagg.SecAggWarning, secagg.SecAggError)
    assert secagg.SecAggWarning.code in secagg.errors.PUBLIC_REASONS


def test_an_inexact_clip_names_the_saturation_point():
    ctx = make_context("bfv", clip=0.3, frac_bits=2)
    with pytest.raises(secagg.EncodingError) as exc:
        ctx.encrypt(np.array([0.27, 0.1]), on_clip="raise")
    assert str(exc.value).startswith(
        "1 of 2 values exceeded clip=0.3 (the codec saturates at ±0.25); nothing was encrypted.")


# -- 6. grammar --------------------------------------------------------------------
def test_articles_and_counts():
    assert [a_or_an(w) for w in ("update", "aggregate", "term", "int", "uint8", "float")] == [
        "an update", "an aggregate", "a term", "an int", "a uint8", "a float"]
    assert count_of(1, "value") == "1 value" and count_of(3, "value") == "3 values"


def test_messages_built_from_names_use_the_right_article(mctx):
    agg = secagg.Aggregator(mctx.public)
    with pytest.raises(secagg.FormatError) as exc:
        agg.add_term(mctx.public.encrypt(np.zeros(2)))
    assert str(exc.value) == "add_term() takes a term payload, got an update."
    with pytest.raises(secagg.FormatError, match=r"got an aggregate\.$"):
        agg.add_term(_two(mctx, np.zeros(2), np.zeros(2)).result())
    with pytest.raises(secagg.TreeError, match=r"^leaf 'x' is an int; expected a numpy array"):
        flatten({"x": 3})


def test_no_a_before_a_vowel_sound_in_the_package():
    root = Path(secagg.__file__).parent
    slip = re.compile(r"\ba (update|aggregate|aggregator|error|integer|int|array|object|input|"
                      r"encrypted|empty|unknown|extra|other|element|item|honest|individual)\b",
                      re.IGNORECASE)
    offenders = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if slip.search(line)]
    assert offenders == []
