"""BFV through TenSEAL / SEAL: exact integer sums by construction.

Slots hold the signed contributions ``w * q`` modulo a batching-friendly prime
plain modulus ``t > 2 * sum_bound`` (chosen by :func:`secagg.planner.plan_bfv`),
``N`` values per ciphertext. Sums are exact as long as the noise stays below
``Δ/2``; the planner sizes the data prime for ``max_summands`` summands, and
the key holder also checks SEAL's invariant noise budget before decoding.
Ciphertext handling is shared with CKKS in :mod:`secagg.lattice`.
"""

from __future__ import annotations

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from .codec import FixedPointCodec
from .errors import FormatError, NoiseBudgetError
from .lattice import LatticePublic, LatticeSecret
from .planner import HE_STANDARD_MAX_LOGQ, BfvPlan, plan_bfv
from .wire import Body, show

__all__ = ["BfvPublic", "BfvSecret", "new_bfv_context"]


def new_bfv_context(plan: BfvPlan) -> ts.Context:
    """A fresh TenSEAL BFV context with a secret key, following ``plan``."""
    return ts.context(
        ts.SCHEME_TYPE.BFV,
        poly_modulus_degree=plan.poly_modulus_degree,
        plain_modulus=plan.plain_modulus,
        coeff_mod_bit_sizes=list(plan.coeff_mod_bit_sizes),
        n_threads=1,
    )


def _plan_from(body: Body, codec: FixedPointCodec) -> BfvPlan:
    """Rebuild a plan from the wire; refuse one that cannot keep this codec's sums exact."""
    n = body.int("poly_modulus_degree", 1024, 32768)
    security = body.int("security", 128, 256)
    bits = body.list("coeff_mod_bit_sizes", max_len=2)
    t = body.int("plain_modulus", 3, 2**60)
    if n not in HE_STANDARD_MAX_LOGQ or security not in (128, 192, 256):
        raise FormatError(f"unsupported BFV ring degree {n} or security level {security}.")
    if len(bits) != 2 or not all(type(b) is int and 14 <= b <= 60 for b in bits):
        raise FormatError(f"BFV plan needs two primes of 14..60 bits; found {show(bits)}.")
    if sum(bits) > HE_STANDARD_MAX_LOGQ[n][security]:
        raise FormatError(
            f"BFV modulus of {sum(bits)} bits exceeds the {security}-bit security bound for N={n}."
        )
    reference = plan_bfv(codec.sum_bound, codec.max_summands, security=security)
    if t <= 2 * codec.sum_bound or t % (2 * n) != 1 or bits[0] < reference.coeff_mod_bit_sizes[0]:
        raise FormatError("BFV plan cannot keep this codec's sums exact; refusing it.")
    if (n, tuple(bits), t) == (reference.poly_modulus_degree, reference.coeff_mod_bit_sizes,
                               reference.plain_modulus):
        return reference
    return BfvPlan(n, (bits[0], bits[1]), t, security, codec.sum_bound, codec.max_summands,
                   reference.noise_bound_log2, reference.margin_bits)


def _check_context_matches(ctx: ts.Context, plan: BfvPlan) -> None:
    parms = ctx.seal_context().data.key_context_data().parms()
    found = tuple(m.bit_count() for m in parms.coeff_modulus())
    if (parms.poly_modulus_degree() != plan.poly_modulus_degree
            or found != plan.coeff_mod_bit_sizes
            or parms.plain_modulus().value() != plan.plain_modulus):
        raise FormatError("TenSEAL BFV context does not match the plan.")


class BfvPublic(LatticePublic):
    """Public half: batch-encodes signed integers modulo ``t`` and adds ciphertexts."""

    scheme = "bfv"
    is_ntt_form = False

    def __init__(self, context: ts.Context, plan: BfvPlan, codec: FixedPointCodec,
                 blob: bytes | None = None) -> None:
        super().__init__(context, plan, codec, blob)
        self._encoder = sa.BatchEncoder(self.seal)

    @staticmethod
    def plan_for(codec: FixedPointCodec, security: int) -> BfvPlan:
        return plan_bfv(codec.sum_bound, codec.max_summands, security=security)

    new_context = staticmethod(new_bfv_context)

    @classmethod
    def from_material(cls, body: Body, codec: FixedPointCodec) -> BfvPublic:
        plan = _plan_from(body.map("plan"), codec)
        ctx, blob = cls._context_from_material(body)
        _check_context_matches(ctx, plan)
        return cls(ctx, plan, codec, blob)

    def encode(self, values: np.ndarray) -> sa.Plaintext:
        pt = sa.Plaintext()
        chunk = np.zeros(self.slots, dtype=np.int64)
        chunk[: values.size] = values
        self._encoder.encode(chunk.tolist(), pt)
        return pt


class BfvSecret(LatticeSecret):
    """Secret half: checks the noise budget, decrypts, decodes the centred integers."""

    public: BfvPublic

    @classmethod
    def from_material(cls, body: Body, public) -> BfvSecret:  # type: ignore[override]
        if not isinstance(public, BfvPublic):
            raise FormatError("BFV secret material needs a BFV public context.")
        ctx = cls._context_from_material(body, public)
        _check_context_matches(ctx, public.plan)
        return cls(ctx, public)

    def decode(self, pt: sa.Plaintext, ct: sa.Ciphertext) -> np.ndarray:
        if self._decryptor.invariant_noise_budget(ct) <= 0:
            raise NoiseBudgetError(
                "BFV noise budget exhausted; the sum is refused rather than decoded wrongly."
            )
        return np.asarray(self.public._encoder.decode_int64(pt), dtype=np.int64)
