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

from secagg.codec import FixedPointCodec
from secagg.errors import ConfigError, FormatError, NoiseBudgetError
from secagg.schemes.lattice.planner import BfvPlan, plan_bfv
from secagg.schemes.lattice.seal import LatticePublic, LatticeSecret
from secagg.wire import Body

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


class BfvPublic(LatticePublic[BfvPlan]):
    """Public half: batch-encodes signed integers modulo ``t`` and adds ciphertexts."""

    scheme = "bfv"
    is_ntt_form = False
    encoder_type = sa.BatchEncoder
    planner = staticmethod(plan_bfv)
    new_context = staticmethod(new_bfv_context)

    @classmethod
    def plan_from(cls, body: Body, codec: FixedPointCodec) -> BfvPlan:
        n, security, bits = cls.ring_from(body)
        t = body.integer("plain_modulus", 3, 2**60)
        reference = plan_bfv(codec.sum_bound, codec.max_summands, security=security)
        if t <= 2 * codec.sum_bound or t % (2 * n) != 1 or bits[0] < reference.coeff_mod_bit_sizes[0]:
            raise FormatError("BFV plan cannot keep this codec's sums exact; refusing it.")
        if (n, bits, t) == (reference.poly_modulus_degree, reference.coeff_mod_bit_sizes,
                            reference.plain_modulus):
            return reference
        return BfvPlan(n, bits, t, security, codec.sum_bound, codec.max_summands,
                       reference.noise_bound_log2, reference.margin_bits)

    @classmethod
    def check_context(cls, ctx: ts.Context, plan: BfvPlan) -> None:
        super().check_context(ctx, plan)
        if ctx.seal_context().data.key_context_data().parms().plain_modulus().value() != plan.plain_modulus:
            raise FormatError("TenSEAL BFV context does not match the plan.")

    def encode(self, values: np.ndarray) -> sa.Plaintext:
        pt = sa.Plaintext()
        chunk = np.zeros(self.slots, dtype=np.int64)
        chunk[: values.size] = values
        self.encoder.encode(chunk.tolist(), pt)
        return pt


    @property
    def plain_size(self) -> int:
        return self.plan.poly_modulus_degree

    def scaled_plain(self, words: np.ndarray) -> np.ndarray:
        """``floor((q*m + floor((t+1)/2)) / t)`` for each coefficient ``m`` (SEAL's rounding).

        With ``q = Δt + r`` this is ``Δm + floor((rm + floor((t+1)/2)) / t)``: every
        product stays below 2**64 for the planner's primes (``t**2`` and ``q``
        below 2**63; checked), so numpy computes it exactly.
        """
        t, (q,) = self.plan.plain_modulus, self.moduli
        if t * t >= 2**63 or q >= 2**63:
            raise ConfigError("this BFV plan is too large for precomputed encryption.")
        delta, r = divmod(q, t)
        m = words.astype(np.uint64)
        out = m * np.uint64(delta)
        out += (m * np.uint64(r) + np.uint64((t + 1) // 2)) // np.uint64(t)
        return out.reshape(1, -1)


class BfvSecret(LatticeSecret):
    """Secret half: checks the noise budget, decrypts, decodes the centred integers."""

    public: BfvPublic
    public_type = BfvPublic

    def decode(self, pt: sa.Plaintext, ct: sa.Ciphertext) -> np.ndarray:
        if self._decryptor.invariant_noise_budget(ct) <= 0:
            raise NoiseBudgetError(
                "BFV noise budget exhausted; the sum is refused rather than decoded wrongly."
            )
        return np.asarray(self.public.encoder.decode_int64(pt), dtype=np.int64)
