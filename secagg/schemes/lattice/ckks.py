"""CKKS through TenSEAL / SEAL, used for exact integer sums.

Clients encrypt the *quantized integers* ``w * q`` (not the floats) at the
planned scale, ``N/2`` values per ciphertext; the aggregator adds ciphertexts;
the key holder decrypts, rounds to the nearest integer and checks the rounding
residual. With the parameters from :func:`secagg.planner.plan_ckks` the
rounded sum equals the exact integer sum, so CKKS decodes to the same numbers
as Paillier. The unrounded decryption never leaves this module: it leaks
information about the secret key (Li and Micciancio, EUROCRYPT 2021).

The public context is TenSEAL's context serialized with the public key only
(no secret, relinearization or Galois keys). Ciphertext handling is shared with
BFV in :mod:`secagg.lattice`.
"""

from __future__ import annotations

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from secagg.codec import FixedPointCodec
from secagg.errors import SUM_OUT_OF_RANGE, FormatError, NoiseBudgetError, SumOverflowError
from secagg.schemes.lattice.planner import (
    CkksPlan,
    ckks_failure_log2,
    ckks_slot_noise_std,
    plan_ckks,
)
from secagg.schemes.lattice.seal import LatticePublic, LatticeSecret, load_context
from secagg.wire import Body

__all__ = ["CkksPublic", "CkksSecret", "new_ckks_context"]

# A rounding residual this large means the noise model was violated: refuse
# rather than decode a possibly wrong integer (honest sums stay below 0.5/z).
_MAX_RESIDUAL = 0.45


def new_ckks_context(plan: CkksPlan) -> ts.Context:
    """A fresh TenSEAL CKKS context with a secret key, following ``plan``."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=plan.poly_modulus_degree,
        coeff_mod_bit_sizes=list(plan.coeff_mod_bit_sizes),
        n_threads=1,
    )
    ctx.global_scale = 2.0**plan.scale_bits
    return ctx


class CkksPublic(LatticePublic[CkksPlan]):
    """Public half: encrypts integer slot vectors at the planned scale and adds ciphertexts."""

    scheme = "ckks"
    is_ntt_form = True
    encoder_type = sa.CKKSEncoder
    planner = staticmethod(plan_ckks)
    new_context = staticmethod(new_ckks_context)

    def __init__(self, context: ts.Context, plan: CkksPlan, codec: FixedPointCodec,
                 blob: bytes | None = None) -> None:
        super().__init__(context, plan, codec, blob)
        self._scale = 2.0**plan.scale_bits

    @classmethod
    def plan_from(cls, body: Body, codec: FixedPointCodec) -> CkksPlan:
        n, security, bits = cls.ring_from(body)
        scale_bits = body.integer("scale_bits", 1, 60)
        max_summands = codec.max_summands
        one = ckks_slot_noise_std(n, bits[1], scale_bits)
        total = one * max_summands**0.5
        failure_log2 = ckks_failure_log2(total)
        data_ok = 2 * (codec.sum_bound + 1) * 2**scale_bits < 2 ** (bits[0] - 1)
        if failure_log2 > -40 or not data_ok:
            raise FormatError("CKKS plan cannot keep this codec's sums exact; refusing it.")
        return CkksPlan(n, bits, scale_bits, security, codec.sum_bound, max_summands, one, total,
                        failure_log2)

    @classmethod
    def check_context(cls, ctx: ts.Context, plan: CkksPlan) -> None:
        super().check_context(ctx, plan)
        if ctx.global_scale != 2.0**plan.scale_bits:
            raise FormatError("TenSEAL context scale does not match the plan.")

    def encode(self, values: np.ndarray) -> sa.Plaintext:
        pt = sa.Plaintext()
        self.encoder.encode(values.astype(np.float64).tolist(), self._scale, pt)
        return pt

    def scaled_plain(self, words: np.ndarray) -> np.ndarray:
        # CKKS adds the NTT-form plaintext to c0 as it is (same scale, same level)
        return words.reshape(len(self.moduli), -1)

    def check_extra(self, ct: sa.Ciphertext) -> bool:
        scale: float = ct.scale
        return scale == self._scale


class CkksSecret(LatticeSecret):
    """Secret half: decrypts, rounds to integers, checks the residual and the range."""

    public: CkksPublic
    public_type = CkksPublic

    def decode(self, pt: sa.Plaintext, ct: sa.Ciphertext) -> np.ndarray:
        raw = np.asarray(self.public.encoder.decode_double(pt), dtype=np.float64)
        if raw.size and not np.all(np.abs(raw) < 2.0**62):  # int64 could not hold it (or NaN)
            raise SumOverflowError(SUM_OUT_OF_RANGE)
        rounded = np.rint(raw)
        if raw.size and np.abs(raw - rounded).max() > _MAX_RESIDUAL:
            # no numbers from the unrounded decryption in the message: they leak key information
            raise NoiseBudgetError(
                "CKKS noise is too large to round exactly; the sum is refused rather than "
                "decoded wrongly."
            )
        return rounded.astype(np.int64)


__all__ += ["load_context"]
