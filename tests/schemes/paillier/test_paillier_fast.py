"""Every fast Paillier path makes ordinary ciphertexts: phe's raw_decrypt agrees with ours.

Paths: DJN fixed-base table, optimized (Ma-Han-Lei) keys, CRT encryption with
the secret key, CRT decryption (constant-time or not), the noise pool and
forked workers. Known-answer tests fix the randomness through the private
``obfuscator`` / ``exponent`` seams and recompute the expected ciphertext with
Python's own ``pow``, independently of gmpy2 and of the table.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg.schemes.paillier.fixedbase import FixedBaseTable, choose_window
from secagg.schemes.paillier.keys import OPTIMIZED_EXPONENT_BITS, optimized_exponent_bits
from tests.helpers import make_context

VARIANTS = {
    "djn": dict(),
    "optimized": dict(optimized_keys=True),
    "standard": dict(randomness="standard"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def pctx(request):
    return make_context("paillier", key_bits=512, **VARIANTS[request.param])


def plaintexts(ctx):
    top = 2 ** ctx.public.backend.layout.plaintext_bits - 1
    return st.lists(st.one_of(st.just(0), st.just(top), st.integers(0, top)), min_size=1, max_size=6)


@settings(max_examples=30)
@given(st.data())
def test_every_encryption_path_decrypts_with_phe(pctx, data):
    pub, secret = pctx.public.backend, pctx.secret_backend
    sk = secret.private_key
    ms = data.draw(plaintexts(pctx))
    paths = {
        "public": [pub.raw_encrypt_int(m) for m in ms],
        "fresh": [pub.raw_encrypt_int(m, pub.raw_fresh_obfuscator()) for m in ms],
    }
    if pub.randomness == "djn":
        paths["crt"] = [pub.raw_encrypt_int(m, secret.raw_crt_obfuscator()) for m in ms]
        pub.precompute(len(ms))
        paths["pool"] = [pub.raw_encrypt_int(m) for m in ms]
        assert pub.pool_size == 0
    for name, cts in paths.items():
        assert [sk.raw_decrypt(int(c)) for c in cts] == ms, name
        for constant_time in (True, False):
            secret.constant_time = constant_time
            assert [int(secret.raw_decrypt_int(c)) for c in cts] == ms, name
    secret.constant_time = True


@settings(max_examples=10)
@given(st.integers(0, 2**60), st.data())
def test_known_answer_with_fixed_randomness(pctx, m, data):
    pub, secret = pctx.public.backend, pctx.secret_backend
    n = int(pub.n)
    m %= n
    if pub.randomness == "djn":
        a = data.draw(st.integers(0, 2**pub.r_bits - 1))
        expected = (1 + n * m) * pow(int(pub.hs), a, n * n) % (n * n)
        assert int(pub.raw_encrypt_int(m, pub.table().pow(a))) == expected
        assert int(pub.raw_encrypt_int(m, secret.raw_crt_obfuscator(a))) == expected
    else:
        r = data.draw(st.integers(1, n - 1))
        expected = (1 + n * m) * pow(r, n, n * n) % (n * n)
        assert int(pub.raw_encrypt_int(m, pow(r, n, n * n))) == expected


@given(st.integers(2, 2**128), st.integers(1, 300), st.data())
def test_fixed_base_table_matches_pow(base, bits, data):
    modulus = data.draw(st.integers(3, 2**256)) | 1
    window = data.draw(st.integers(1, 10))
    table = FixedBaseTable(base, modulus, bits, window=min(window, bits))
    e = data.draw(st.integers(0, 2**bits - 1))
    assert int(table.pow(e)) == pow(base, e, modulus)


def test_window_choice_respects_memory():
    n2 = 2**4095
    assert choose_window(n2, 1024) == 10  # 57 MiB at 2048-bit keys
    assert choose_window(2**6143, 1536) == 8  # 3072-bit keys stay under 64 MiB
    assert choose_window(n2, 1024, max_bytes=1 << 20) < 8


def test_workers_decode_identically(pctx):
    pub = pctx.public
    x = np.linspace(-1, 1, 900)  # 43 ciphertexts of 21 slots: enough to fork
    results = []
    for workers in (1, 2):
        agg = secagg.Aggregator(pub)
        for _ in range(2):
            agg.add(pub.encrypt(x, workers=workers).to_bytes())
        results.append(pctx.decrypt(agg.result(), workers=workers))
    assert np.array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], x, atol=pub.codec.error_bound)


def _pool_size_in_child(conn, backend) -> None:
    conn.send(backend.pool_size)


def test_pool_is_never_inherited_by_a_forked_child(pctx):
    backend = pctx.public.backend
    if backend.randomness != "djn":
        pytest.skip("pools are exercised with DJN randomness")
    backend.precompute(5)
    parent, child = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_pool_size_in_child, args=(child, backend))
    proc.start()
    assert parent.recv() == 0  # the child starts with an empty pool
    proc.join()
    assert backend.pool_size == 5
    backend._pool.clear()


def test_pool_values_are_spent_once(pctx):
    backend = pctx.public.backend
    if backend.randomness != "djn":
        pytest.skip("pools are exercised with DJN randomness")
    backend.precompute(3)
    pooled = list(backend._pool)
    used = [backend.raw_obfuscator() for _ in range(3)]
    assert sorted(map(int, used)) == sorted(map(int, pooled)) and backend.pool_size == 0
    assert int(backend.raw_obfuscator()) not in set(map(int, pooled))


def test_secret_context_round_trip_keeps_fast_paths(pctx):
    again = secagg.SecretContext.from_bytes(pctx.to_bytes(), allow_insecure=True)
    assert again.secret_backend.small_factors == pctx.secret_backend.small_factors
    assert again.public.backend.randomness == pctx.public.backend.randomness
    agg = secagg.Aggregator(again.public)
    for v in (0.25, 0.5):
        agg.add(again.encrypt(np.array([v])))
    assert pctx.decrypt(agg.result(), reduce="sum")[0] == 0.75


def test_tampered_generator_is_refused_by_the_key_holder(pctx):
    from secagg import wire

    if pctx.public.backend.randomness != "djn":
        pytest.skip("only DJN contexts carry a generator")
    _, body = wire.open_payload(pctx.to_bytes())
    raw = body.raw()
    n2 = int(pctx.public.backend.nsquare)
    fake = (3).to_bytes(len(raw["public"]["backend"]["hs"]), "big")
    raw["public"]["backend"]["hs"] = fake
    assert n2 > 3
    with pytest.raises(secagg.FormatError, match="generator"):
        secagg.SecretContext.from_bytes(wire.seal(wire.Kind.SECRET_CONTEXT, raw), allow_insecure=True)


def test_optimized_exponent_sizes_follow_the_paper():
    assert OPTIMIZED_EXPONENT_BITS[2048] == 448 and OPTIMIZED_EXPONENT_BITS[3072] == 512
    assert optimized_exponent_bits(2048) == 448
    with pytest.raises(secagg.ConfigError):
        optimized_exponent_bits(8192)


@pytest.mark.parametrize("kwargs", [dict(optimized_keys=True, randomness="standard"),
                                    dict(randomness="rsa")])
def test_bad_paillier_options(kwargs):
    with pytest.raises(secagg.ConfigError):
        make_context("paillier", **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("key_bits", [2048, 3072])
def test_optimized_keys_at_real_sizes(key_bits):
    ctx = secagg.generate("paillier", key_bits=key_bits, optimized_keys=True)
    backend = ctx.public.backend
    assert backend.key_bits == key_bits and backend.r_bits == OPTIMIZED_EXPONENT_BITS[key_bits]
    x = np.linspace(-1, 1, 300)
    agg = secagg.Aggregator(ctx.public)
    for _ in range(2):
        agg.add(ctx.public.encrypt(x).to_bytes())
    np.testing.assert_allclose(ctx.decrypt(agg.result()), x, atol=ctx.codec.error_bound)
    sk = ctx.secret_backend.private_key
    c = ctx.public.encrypt(np.zeros(1)).ciphertexts[0]
    assert sk.raw_decrypt(int(c)) == int(ctx.secret_backend.raw_decrypt_int(c))
