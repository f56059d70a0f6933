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

from .codec import FixedPointCodec
from .errors import FormatError, NoiseBudgetError
from .lattice import LatticePublic, LatticeSecret, load_context
from .planner import (
    HE_STANDARD_MAX_LOGQ,
    CkksPlan,
    ckks_failure_log2,
    ckks_slot_noise_std,
    plan_ckks,
)
from .wire import Body, show

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


def _plan_from(body: Body, codec: FixedPointCodec) -> CkksPlan:
    """Rebuild a plan from the wire and check that it still guarantees exactness."""
    n = body.int("poly_modulus_degree", 1024, 32768)
    security = body.int("security", 128, 256)
    bits = body.list("coeff_mod_bit_sizes", max_len=2)
    scale_bits = body.int("scale_bits", 1, 60)
    if n not in HE_STANDARD_MAX_LOGQ or security not in (128, 192, 256):
        raise FormatError(f"unsupported CKKS ring degree {n} or security level {security}.")
    if len(bits) != 2 or not all(type(b) is int and 14 <= b <= 60 for b in bits):
        raise FormatError(f"CKKS plan needs two primes of 14..60 bits; found {show(bits)}.")
    if sum(bits) > HE_STANDARD_MAX_LOGQ[n][security]:
        raise FormatError(
            f"CKKS modulus of {sum(bits)} bits exceeds the {security}-bit security bound for N={n}."
        )
    max_summands = codec.max_summands
    one = ckks_slot_noise_std(n, bits[1], scale_bits)
    total = one * max_summands**0.5
    failure_log2 = ckks_failure_log2(total)
    data_ok = 2 * (codec.sum_bound + 1) * 2**scale_bits < 2 ** (bits[0] - 1)
    if failure_log2 > -40 or not data_ok:
        raise FormatError("CKKS plan cannot keep this codec's sums exact; refusing it.")
    return CkksPlan(n, (bits[0], bits[1]), scale_bits, security, codec.sum_bound,
                    max_summands, one, total, failure_log2)


def _check_context_matches(ctx: ts.Context, n: int, bits: tuple[int, ...]) -> None:
    parms = ctx.seal_context().data.key_context_data().parms()
    found = tuple(m.bit_count() for m in parms.coeff_modulus())
    if parms.poly_modulus_degree() != n or found != tuple(bits):
        raise FormatError(
            f"TenSEAL context (N={parms.poly_modulus_degree()}, moduli {found}) does not "
            f"match the plan (N={n}, moduli {tuple(bits)})."
        )


class CkksPublic(LatticePublic):
    """Public half: encrypts integer slot vectors at the planned scale and adds ciphertexts."""

    scheme = "ckks"
    is_ntt_form = True

    def __init__(self, context: ts.Context, plan: CkksPlan, codec: FixedPointCodec,
                 blob: bytes | None = None) -> None:
        super().__init__(context, plan, codec, blob)
        self._scale = 2.0**plan.scale_bits
        self._encoder = sa.CKKSEncoder(self.seal)

    @staticmethod
    def plan_for(codec: FixedPointCodec, security: int) -> CkksPlan:
        return plan_ckks(codec.sum_bound, codec.max_summands, security=security)

    new_context = staticmethod(new_ckks_context)

    @classmethod
    def from_material(cls, body: Body, codec: FixedPointCodec) -> CkksPublic:
        plan = _plan_from(body.map("plan"), codec)
        ctx, blob = cls._context_from_material(body)
        _check_context_matches(ctx, plan.poly_modulus_degree, plan.coeff_mod_bit_sizes)
        if ctx.global_scale != 2.0**plan.scale_bits:
            raise FormatError("TenSEAL context scale does not match the plan.")
        return cls(ctx, plan, codec, blob)

    def encode(self, values: np.ndarray) -> sa.Plaintext:
        pt = sa.Plaintext()
        self._encoder.encode(values.astype(np.float64).tolist(), self._scale, pt)
        return pt

    def check_extra(self, ct: sa.Ciphertext) -> bool:
        return ct.scale == self._scale


class CkksSecret(LatticeSecret):
    """Secret half: decrypts, rounds to integers, checks the residual and the range."""

    public: CkksPublic

    @classmethod
    def from_material(cls, body: Body, public) -> CkksSecret:  # type: ignore[override]
        if not isinstance(public, CkksPublic):
            raise FormatError("CKKS secret material needs a CKKS public context.")
        ctx = cls._context_from_material(body, public)
        _check_context_matches(ctx, public.plan.poly_modulus_degree,
                               public.plan.coeff_mod_bit_sizes)
        return cls(ctx, public)

    def decode(self, pt: sa.Plaintext, ct: sa.Ciphertext) -> np.ndarray:
        raw = np.asarray(self.public._encoder.decode_double(pt), dtype=np.float64)
        rounded = np.rint(raw)
        if raw.size and np.abs(raw - rounded).max() > _MAX_RESIDUAL:
            # no numbers from the unrounded decryption in the message: they leak key information
            raise NoiseBudgetError(
                "CKKS noise is too large to round exactly; the sum is refused rather than "
                "decoded wrongly."
            )
        return rounded.astype(np.int64)


__all__ += ["load_context"]
