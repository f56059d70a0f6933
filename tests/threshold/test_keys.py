"""Dealing: safe primes, parameter checks, the ceremony's outputs; the benchmark still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gmpy2
import numpy as np
import pytest

import secagg
from secagg import threshold
from secagg.threshold.primes import is_safe_prime, safe_prime
from tests.threshold.util import aggregate, assert_trees_equal, deal_small

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bits", [64, 128, 256])
def test_safe_primes_are_safe_and_exactly_sized(bits):
    for _ in range(3):
        p = safe_prime(bits)
        assert p.bit_length() == bits and p >> (bits - 2) == 3
        assert is_safe_prime(p)
    assert not is_safe_prime(13) and is_safe_prime(23) and not is_safe_prime(gmpy2.next_prime(2**80))
    with pytest.raises(ValueError):
        safe_prime(32)


def test_the_dealt_key_is_an_ordinary_paillier_key_of_safe_primes():
    keys, single = deal_small(4, 2)
    secret = single.secret_backend
    p, q = int(secret._p), int(secret._q)
    assert is_safe_prime(p) and is_safe_prime(q) and p != q
    assert keys.public.backend.n == p * q and keys.public.backend.key_bits == 512
    assert keys.public.backend.randomness == "djn"
    # clients load the ordinary public context from bytes and nothing changes for them
    pub = secagg.PublicContext.from_bytes(keys.public.to_bytes(), allow_insecure=True)
    assert type(pub) is secagg.PublicContext and pub.fingerprint == keys.public.fingerprint
    total = aggregate(pub, 2)
    parts = [h.partial_decrypt(total) for h in keys.shares[2:]]
    assert_trees_equal(threshold.combine(keys.public, total, parts), single.decrypt(total))
    assert (keys.parties, keys.threshold) == (4, 2) and "4" in repr(keys)
    assert [h.index for h in keys.shares] == [1, 2, 3, 4]
    assert len({int(h._share) for h in keys.shares}) == 4


def test_standard_randomness_works_too():
    keys, single = deal_small(3, 2, randomness="standard")
    total = aggregate(keys.public, 2)
    parts = [h.partial_decrypt(total) for h in keys.shares[:2]]
    assert_trees_equal(threshold.combine(keys.public, total, parts), single.decrypt(total))


@pytest.mark.parametrize("kwargs, match", [
    (dict(parties=1, threshold=1), "parties"),
    (dict(parties=3, threshold=4), "above parties"),
    (dict(parties=3, threshold=1), "threshold"),
    (dict(parties=65, threshold=2), "at most 64"),
    (dict(parties=3, threshold=2, key_bits=512), "insecure"),
    (dict(parties=3, threshold=2, key_bits=520, insecure=True), "multiple of 16"),
    (dict(parties=3, threshold=2, key_bits=512, insecure=True, min_clients=200), "min_clients"),
    (dict(parties=3, threshold=2, key_bits=512, insecure=True, mode="open"), "mode"),
    (dict(parties=3, threshold=2, key_bits=512, insecure=True, randomness="weak"), "randomness"),
])
def test_deal_refuses_bad_parameters(kwargs, match):
    with pytest.raises(secagg.ConfigError, match=match):
        threshold.deal("paillier", **{"mode": "unverified", **kwargs})
    with pytest.raises(secagg.ConfigError, match="paillier"):
        threshold.deal("ckks", parties=3, threshold=2)


def test_pinned_deal_call_works_as_written_at_test_size():
    with pytest.warns(secagg.SecAggWarning):
        keys = threshold.deal("paillier", parties=5, threshold=3, key_bits=512, insecure=True,
                              max_clients=100, clip=1.0, frac_bits=16)
    assert isinstance(keys.public, secagg.PublicContext)
    agg = secagg.Aggregator(keys.public)
    for k in range(2):
        agg.add(keys.public.encrypt({"w": np.full(5, 0.1 * (k + 1))}).to_bytes())
    aggregate_ = agg.result()
    parts = [keys.shares[i].partial_decrypt(aggregate_) for i in (4, 0, 2)]
    mean = threshold.combine(keys.public, aggregate_, parts, reduce="mean")
    np.testing.assert_allclose(mean["w"], 0.15, atol=2**-16)


@pytest.mark.slow
def test_2048_bit_threshold_key_decrypts_like_the_single_key():
    keys, single = deal_small(5, 3, key_bits=2048, insecure=False)
    assert keys.public.backend.key_bits == 2048 and not keys.public.backend.insecure
    total = aggregate(keys.public, 2, n=300)
    parts = [keys.shares[i].partial_decrypt(total) for i in (1, 3, 4)]
    assert_trees_equal(threshold.combine(keys.public, total, parts), single.decrypt(total))


def _run_bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_threshold.py"),
                           "--smoke", "--no-progress", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_benchmark_smoke_runs_and_writes_only_with_out(tmp_path):
    before = sorted(p.name for p in (ROOT / "benchmarks").rglob("*") if "__pycache__" not in p.parts)
    proc = _run_bench([], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| step " in proc.stdout and "bit for bit: True" in proc.stdout
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "results"
    proc = _run_bench(["--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["threshold.json", "threshold.md"]
    after = sorted(p.name for p in (ROOT / "benchmarks").rglob("*") if "__pycache__" not in p.parts)
    assert before == after
