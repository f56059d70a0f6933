"""Paillier key material a deviating server could abuse (issue 10, defects 4 and 5).

Defect 4: precomputed randomness ``R`` must never leave its backend. A copy
(``copy.copy``, ``copy.deepcopy``, ``pickle``) that carried the pool would
encrypt with the same ``R`` as the original, and then ``c1 / c2 mod n**2`` is
``1 + n*(m1 - m2)``: anyone reads the difference of two updates without a key.

Defect 5: a public context whose DJN generator ``hs`` has small order (``1``,
``n**2 - 1``, an element of order 2 built by CRT, ...) or whose exponent length
``r_bits`` is too short makes ``R = hs**a`` take few values; such contexts must
be refused on load, by clients (no factors) and by the key holder (factors).
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import random

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg import wire
from secagg.wire import Kind
from tests.helpers import CODEC, make_context

TREE = {"w": np.linspace(-1, 1, 50), "b": np.full(3, 0.25)}

COPIERS = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
}

VARIANTS = {
    "djn": dict(),
    "optimized": dict(optimized_keys=True),
    "standard": dict(randomness="standard"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def pctx(request) -> secagg.SecretContext:
    return make_context("paillier", **VARIANTS[request.param])


@pytest.fixture(scope="module")
def djn() -> secagg.SecretContext:
    return make_context("paillier")


@pytest.fixture(scope="module")
def djn_opt() -> secagg.SecretContext:
    return make_context("paillier", optimized_keys=True)


def _prime(bits: int, rng: random.Random) -> int:
    """A prime of exactly ``bits`` bits with its top two bits set (so p*q has 2*bits bits)."""
    while True:
        p = gmpy2.next_prime(gmpy2.mpz(rng.getrandbits(bits)) | (3 << (bits - 2)))
        if p.bit_length() == bits:
            return int(p)


@pytest.fixture(scope="module")
def big() -> secagg.SecretContext:
    """A real-size (2048-bit) DJN context, from fast next_prime factors instead of phe's keygen."""
    rng = random.Random(10)
    p, q = _prime(1024, rng), _prime(1024, rng)
    pk = phe.PaillierPublicKey(p * q)
    sk = phe.PaillierPrivateKey(pk, p, q)
    ctx = secagg.generate("paillier", keypair=(pk, sk), **CODEC)
    assert ctx.public.backend.key_bits == 2048 and not ctx.public.backend.insecure
    return ctx


def _drain(*backends) -> None:
    for b in backends:
        b._pool.clear()


# -- defect 4: the pool never leaves its object --------------------------------------------


@settings(max_examples=8)
@given(copier=st.sampled_from(sorted(COPIERS)), k=st.integers(1, 6))
def test_a_copied_backend_never_uses_the_originals_pool(pctx, copier, k):
    backend = pctx.public.backend
    _drain(backend)
    backend.precompute(k)
    pooled = {int(r) for r in backend._pool}
    clone = COPIERS[copier](backend)
    try:
        assert clone is not backend and clone.pool_size == 0
        drawn = {int(clone.raw_obfuscator()) for _ in range(k + 2)}
        assert not drawn & pooled
        assert backend.pool_size == k  # the original keeps (only) its own
    finally:
        _drain(backend, clone)


@pytest.mark.parametrize("copier", sorted(COPIERS))
def test_a_copied_secret_backend_never_carries_the_pool(pctx, copier):
    secret = pctx.secret_backend
    _drain(secret.public)
    secret.public.precompute(4)
    pooled = {int(r) for r in secret.public._pool}
    clone = COPIERS[copier](secret)
    try:
        assert clone.public is not secret.public and clone.public.pool_size == 0
        assert not {int(clone.public.raw_obfuscator()) for _ in range(6)} & pooled
        assert secret.public.pool_size == 4
        # the copy still decrypts what the original encrypts, and vice versa
        m = 12345
        assert int(clone.raw_decrypt_int(secret.public.raw_encrypt_int(m))) == m
        assert int(secret.raw_decrypt_int(clone.public.raw_encrypt_int(m))) == m
    finally:
        _drain(secret.public, clone.public)


@pytest.mark.parametrize("copier", ["deepcopy", "pickle"])
@pytest.mark.parametrize("which", ["public", "secret"])
def test_a_copied_context_has_an_empty_pool_and_encrypts_differently(pctx, copier, which):
    ctx = pctx if which == "secret" else pctx.public
    _drain(ctx.backend)
    ctx.precompute(3 * ctx.backend.num_ciphertexts(56))
    clone = COPIERS[copier](ctx)
    try:
        assert clone.backend is not ctx.backend and clone.backend.pool_size == 0
        if which == "secret":
            # one backend object inside the copy, like in the original
            assert clone.secret_backend.public is clone.backend is clone.public.backend
        _assert_fresh_randomness(ctx.backend, ctx.encrypt(TREE), clone.encrypt(TREE))
        agg = secagg.Aggregator(pctx.public)
        agg.add(ctx.encrypt(TREE).to_bytes())
        agg.add(clone.encrypt(TREE).to_bytes())
        out = pctx.decrypt(agg.result())
        np.testing.assert_allclose(out["w"], TREE["w"], atol=pctx.codec.error_bound)
    finally:
        _drain(ctx.backend, clone.backend)


def test_shallow_copies_of_a_context_share_one_pool_and_never_reuse_it(djn):
    """``copy.copy`` of a context shares its backend: one pool, each value spent once."""
    _drain(djn.backend)
    djn.precompute(2 * djn.backend.num_ciphertexts(56))
    clone = copy.copy(djn)
    try:
        _assert_fresh_randomness(djn.backend, djn.encrypt(TREE), clone.encrypt(TREE))
    finally:
        _drain(djn.backend)


def _assert_fresh_randomness(backend, a, b) -> None:
    n, n2 = backend.n, backend.nsquare
    assert len(a.ciphertexts) == len(b.ciphertexts)
    for x, y in zip(a.ciphertexts, b.ciphertexts):
        assert x != y
        # the same R would make x / y == 1 + n*(m1 - m2): readable without a key
        assert x * gmpy2.invert(y, n2) % n2 % n != 1


def _pool_size_in_child(conn, backend) -> None:
    conn.send(backend.pool_size)


@pytest.mark.parametrize("copier", sorted(COPIERS))
def test_copies_are_emptied_in_forked_children(djn, copier):
    clone = COPIERS[copier](djn.public.backend)
    clone.precompute(3)
    fork = multiprocessing.get_context("fork")
    parent, child = fork.Pipe()
    proc = fork.Process(target=_pool_size_in_child, args=(child, clone))
    proc.start()
    try:
        assert parent.recv() == 0
    finally:
        proc.join()
    assert clone.pool_size == 3
    _drain(clone)


# -- defect 5: the generator and the exponent length are checked on load -------------------


def _public_with(ctx, **changes) -> bytes:
    _, body = wire.open_payload(ctx.public.to_bytes())
    raw = body.raw()
    return wire.seal(Kind.PUBLIC_CONTEXT, {**raw, "backend": {**raw["backend"], **changes}})


def _secret_with(ctx, **changes) -> bytes:
    _, body = wire.open_payload(ctx.to_bytes())
    raw = body.raw()
    pub = raw["public"]
    return wire.seal(Kind.SECRET_CONTEXT,
                     {**raw, "public": {**pub, "backend": {**pub["backend"], **changes}}})


def _crt(xp: int, xq: int, p: int, q: int) -> int:
    """The element of Z_{n^2} that is ``xp`` mod p^2 and ``xq`` mod q^2."""
    p2, q2 = p * p, q * q
    return int((xq + q2 * ((xp - xq) * gmpy2.invert(q2, p2) % p2)) % (p2 * q2))


def _smooth_part(m: int, bound: int = 2**16) -> int:
    s, r = 1, 2
    while r < bound:
        while m % r == 0:
            m //= r
            s *= r
        r = int(gmpy2.next_prime(r))
    return s


def _hostile_generators(ctx) -> dict[str, int]:
    b, sk = ctx.public.backend, ctx.secret_backend
    n, n2, hs = int(b.n), int(b.nsquare), int(b.hs)
    p, q = int(sk._p), int(sk._q)
    p2, q2 = p * p, q * q
    # an n-th residue mod p^2 whose order divides the 2^16-smooth part of p - 1
    smooth = pow(3, p * ((p - 1) // _smooth_part(p - 1)), p2)
    return {
        "one": 1,
        "minus_one": n2 - 1,  # order 2
        "n": n,  # not a unit
        "one_plus_n": 1 + n,  # order n, trivial modulo p and q
        "order_two_crt": _crt(1, q2 - 1, p, q),  # 1 mod p^2, -1 mod q^2
        "minus_one_mod_q": _crt(hs % p2, q2 - 1, p, q),  # honest mod p^2, order 2 mod q^2
        "one_mod_q": _crt(hs % p2, 1, p, q),  # honest mod p^2, trivial mod q^2
        "smooth_order_mod_p": _crt(smooth, hs % q2, p, q),
    }


PUBLIC_REFUSES = ["one", "minus_one", "n", "one_plus_n", "order_two_crt", "minus_one_mod_q",
                  "one_mod_q"]


@pytest.mark.parametrize("case", PUBLIC_REFUSES)
def test_public_context_with_a_small_order_generator_is_refused(djn, djn_opt, case):
    for ctx in (djn, djn_opt):
        width = ctx.public.backend.ct_bytes
        hs = _hostile_generators(ctx)[case]
        control = secagg.PublicContext.from_bytes(_public_with(ctx), allow_insecure=True)
        assert control.fingerprint == ctx.fingerprint  # the resealed honest context loads
        with pytest.raises(secagg.FormatError, match="generator"):
            secagg.PublicContext.from_bytes(_public_with(ctx, hs=hs.to_bytes(width, "big")),
                                            allow_insecure=True)


@pytest.mark.parametrize("case", [*PUBLIC_REFUSES, "smooth_order_mod_p"])
def test_secret_context_with_a_small_order_generator_is_refused(djn, djn_opt, case):
    for ctx in (djn, djn_opt):
        width = ctx.public.backend.ct_bytes
        hs = _hostile_generators(ctx)[case]
        control = secagg.SecretContext.from_bytes(_secret_with(ctx), allow_insecure=True)
        assert control.fingerprint == ctx.fingerprint  # the resealed honest context loads
        with pytest.raises(secagg.FormatError, match="generator"):
            secagg.SecretContext.from_bytes(_secret_with(ctx, hs=hs.to_bytes(width, "big")),
                                            allow_insecure=True)


def test_direct_construction_refuses_a_small_order_generator(djn):
    from secagg.schemes.paillier.backend import PaillierPublic

    b = djn.public.backend
    for hs in (1, int(b.nsquare) - 1, 1 + int(b.n)):
        with pytest.raises(secagg.ConfigError, match="generator"):
            PaillierPublic(b.public_key, b.codec, insecure=True, randomness="djn", hs=hs)


@pytest.mark.parametrize("r_bits", [160, 223])
def test_short_exponents_are_refused_at_real_key_sizes(big, r_bits):
    with pytest.raises(secagg.FormatError, match="r_bits"):
        secagg.PublicContext.from_bytes(_public_with(big, r_bits=r_bits))
    with pytest.raises(secagg.FormatError, match="r_bits"):
        secagg.SecretContext.from_bytes(_secret_with(big, r_bits=r_bits))


@pytest.mark.parametrize("r_bits", [224, 448, 1024])
def test_long_enough_exponents_load_at_real_key_sizes(big, r_bits):
    # 224 = 2 x 112 (NIST level of 2048-bit moduli); 448 is Ma-Han-Lei's ℓ at 2048 bits
    assert secagg.PublicContext.from_bytes(_public_with(big, r_bits=r_bits)).backend.r_bits == r_bits
    assert secagg.SecretContext.from_bytes(_secret_with(big, r_bits=r_bits)).backend.r_bits == r_bits


def test_real_size_context_with_a_small_order_generator_is_refused(big):
    width = big.public.backend.ct_bytes
    for case in ("minus_one", "order_two_crt", "minus_one_mod_q", "one_mod_q"):
        hs = _hostile_generators(big)[case].to_bytes(width, "big")
        with pytest.raises(secagg.FormatError, match="generator"):
            secagg.PublicContext.from_bytes(_public_with(big, hs=hs))
        with pytest.raises(secagg.FormatError, match="generator"):
            secagg.SecretContext.from_bytes(_secret_with(big, hs=hs))


def test_direct_construction_refuses_short_exponents(big):
    from secagg.schemes.paillier.backend import PaillierPublic

    b = big.public.backend
    with pytest.raises(secagg.ConfigError, match="r_bits"):
        PaillierPublic(b.public_key, b.codec, randomness="djn", hs=b.hs, r_bits=160)


def test_minimum_exponent_bits_follow_the_nist_levels():
    from secagg.schemes.paillier.backend import min_exponent_bits

    assert [min_exponent_bits(k) for k in (2048, 3072, 4096, 7680, 15360)] == [224, 256, 256, 384, 512]
    assert min_exponent_bits(512) == 160 and min_exponent_bits(256) == 128  # insecure test keys


def test_small_insecure_contexts_still_load(pctx):
    """512-bit test keys keep loading: default DJN (256-bit exponents), optimized (ℓ = 160), standard."""
    again = secagg.SecretContext.from_bytes(pctx.to_bytes(), allow_insecure=True)
    assert again.fingerprint == pctx.fingerprint
    pub = secagg.PublicContext.from_bytes(pctx.public.to_bytes(), allow_insecure=True)
    assert pub.fingerprint == pctx.public.fingerprint
    if pub.backend.randomness == "djn":
        with pytest.raises(secagg.FormatError, match="r_bits"):
            secagg.PublicContext.from_bytes(_public_with(pctx, r_bits=159), allow_insecure=True)
