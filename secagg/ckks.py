"""CKKS through TenSEAL, used for exact integer sums.

Clients encrypt the *quantized integers* ``w * q`` (not the floats) at the
planned scale, ``N/2`` values per ciphertext; the aggregator adds ciphertexts;
the key holder decrypts, rounds to the nearest integer and checks the rounding
residual. With the parameters from :func:`secagg.planner.plan_ckks` the
rounded sum equals the exact integer sum, so CKKS decodes to the same numbers
as Paillier. The unrounded decryption never leaves this module: it leaks
information about the secret key (Li and Micciancio, EUROCRYPT 2021).

The public context is TenSEAL's context serialized with the public key only
(no secret, relinearization or Galois keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi  # noqa: F401  (registers SEAL types such as Modulus for inspection)

from .backend import PublicBackend, SecretBackend
from .codec import FixedPointCodec
from .errors import (
    CiphertextError,
    ConfigError,
    FormatError,
    NoiseBudgetError,
    SumOverflowError,
)
from .planner import HE_STANDARD_MAX_LOGQ, CkksPlan, ckks_slot_noise_std, plan_ckks
from .wire import Body, show

__all__ = ["CkksPublic", "CkksSecret", "new_ckks_context"]

# A rounding residual this large means the noise model was violated: refuse
# rather than decode a possibly wrong integer (honest sums stay below 0.5/z).
_MAX_RESIDUAL = 0.45
_MAX_CONTEXT_BYTES = 64 << 20


def new_ckks_context(plan: CkksPlan) -> ts.Context:
    """A fresh TenSEAL CKKS context with a secret key, following ``plan``."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=plan.poly_modulus_degree,
        coeff_mod_bit_sizes=list(plan.coeff_mod_bit_sizes),
    )
    ctx.global_scale = 2.0**plan.scale_bits
    return ctx


def _load_context(blob: bytes) -> ts.Context:
    try:
        return ts.context_from(blob)
    except Exception as exc:  # TenSEAL raises ValueError/RuntimeError variously
        raise FormatError(f"cannot load the TenSEAL context: {exc}") from None


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
    failure_log2 = -((0.5 / total) ** 2) / 2 / np.log(2)
    data_ok = 2 * (codec.sum_bound + 1) * 2**scale_bits < 2 ** (bits[0] - 1)
    if failure_log2 > -40 or not data_ok:
        raise FormatError("CKKS plan cannot keep this codec's sums exact; refusing it.")
    return CkksPlan(n, (bits[0], bits[1]), scale_bits, security, codec.sum_bound,
                    max_summands, one, total, failure_log2)


class CkksPublic(PublicBackend):
    """Public half: encrypts integer slot vectors and adds ciphertexts."""

    scheme = "ckks"

    def __init__(self, context: ts.Context, plan: CkksPlan, codec: FixedPointCodec,
                 blob: bytes | None = None) -> None:
        self.context = context
        self.plan = plan
        self.codec = codec
        self.slots = plan.slots
        self._blob = blob if blob is not None else context.serialize(
            save_public_key=True, save_secret_key=False,
            save_galois_keys=False, save_relin_keys=False,
        )
        data = context.seal_context().data
        self._parms_id = data.first_parms_id()
        self._max_ct_bytes = 2 * plan.poly_modulus_degree * 8 * 2 + 4096

    @classmethod
    def generate(cls, codec: FixedPointCodec, *, security: int = 128) -> tuple[CkksPublic, ts.Context]:
        """Plan parameters for ``codec``, make keys; returns the public half and the secret context."""
        plan = plan_ckks(codec.sum_bound, codec.max_summands, security=security)
        secret_ctx = new_ckks_context(plan)
        public_ctx = secret_ctx.copy()
        public_ctx.make_context_public()
        return cls(public_ctx, plan, codec), secret_ctx

    # -- wire ----------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        return {
            "plan": {
                "poly_modulus_degree": self.plan.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.plan.coeff_mod_bit_sizes),
                "scale_bits": self.plan.scale_bits,
                "security": self.plan.security,
            },
            "seal": self._blob,
        }

    @classmethod
    def from_material(cls, body: Body, codec: FixedPointCodec) -> CkksPublic:
        plan = _plan_from(body.map("plan"), codec)
        blob = body.bytes("seal", max_size=_MAX_CONTEXT_BYTES)
        ctx = _load_context(blob)
        if ctx.is_private():
            raise FormatError(
                "this public CKKS context contains a secret key; refusing it. Send only "
                "ctx.public.to_bytes() to clients and the aggregator."
            )
        if not ctx.has_public_key():
            raise FormatError("the public CKKS context lacks its public key.")
        _check_context_matches(ctx, plan)
        return cls(ctx, plan, codec, blob)

    def fingerprint_material(self) -> bytes:
        return self._blob

    def describe(self) -> dict[str, Any]:
        d = {"scheme": "ckks"}
        d.update(self.plan.as_dict())
        return d

    # -- encryption ----------------------------------------------------------
    def num_ciphertexts(self, n_slots: int) -> int:
        return max(1, -(-n_slots // self.slots))

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list:
        values = np.asarray(slots, dtype=np.int64).astype(np.float64)
        return [
            ts.ckks_vector(self.context, values[i : i + self.slots].tolist())
            for i in range(0, max(values.size, 1), self.slots)
        ]

    def ciphertexts_to_wire(self, cts: list) -> list[bytes]:
        return [v.serialize() for v in cts]

    def precheck(self, obj: Any, n_slots: int) -> None:
        n_cts = self.num_ciphertexts(n_slots)
        if not isinstance(obj, list) or len(obj) != n_cts:
            raise CiphertextError(f"expected a list of {n_cts} CKKS ciphertexts.")

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list:
        self.precheck(obj, n_slots)
        out = []
        last = len(obj) - 1
        for i, blob in enumerate(obj):
            size = self.slots if i < last else n_slots - last * self.slots
            if not isinstance(blob, bytes) or len(blob) > self._max_ct_bytes:
                raise CiphertextError(f"CKKS ciphertext {i} is not bytes of a plausible size.")
            try:
                vec = ts.ckks_vector_from(self.context, blob)
            except Exception as exc:
                raise CiphertextError(f"CKKS ciphertext {i} does not load: {exc}") from None
            self._check_vector(vec, size, i)
            out.append(vec)
        return out

    def _check_vector(self, vec: ts.CKKSVector, size: int, i: int) -> None:
        cts = vec.data.ciphertext()
        ok = (
            len(cts) == 1
            and vec.size() == size
            and cts[0].size() == 2
            and cts[0].is_ntt_form()
            and cts[0].parms_id() == self._parms_id
            and cts[0].scale == 2.0**self.plan.scale_bits
        )
        if not ok:
            raise CiphertextError(
                f"CKKS ciphertext {i} does not match the context (size, level or scale)."
            )

    def raw_add(self, a: list, b: list) -> list:
        try:
            return [x + y for x, y in zip(a, b)]
        except Exception as exc:  # validated inputs never get here; keep the contract anyway
            raise CiphertextError(f"CKKS ciphertexts cannot be added: {exc}") from None


def _check_context_matches(ctx: ts.Context, plan: CkksPlan) -> None:
    parms = ctx.seal_context().data.key_context_data().parms()
    bits = tuple(m.bit_count() for m in parms.coeff_modulus())
    if parms.poly_modulus_degree() != plan.poly_modulus_degree or bits != plan.coeff_mod_bit_sizes:
        raise FormatError(
            f"TenSEAL context (N={parms.poly_modulus_degree()}, moduli {bits}) does not "
            f"match the plan (N={plan.poly_modulus_degree}, moduli {plan.coeff_mod_bit_sizes})."
        )
    if ctx.global_scale != 2.0**plan.scale_bits:
        raise FormatError("TenSEAL context scale does not match the plan.")


class CkksSecret(SecretBackend):
    """Secret half: decrypts, rounds to integers, checks the residual and the range."""

    def __init__(self, context: ts.Context, public: CkksPublic) -> None:
        if not context.is_private():
            raise ConfigError("a CKKS secret backend needs a context with its secret key.")
        self.context = context
        self.public = public

    def material(self) -> dict[str, Any]:
        return {
            "seal": self.context.serialize(
                save_public_key=False, save_secret_key=True,
                save_galois_keys=False, save_relin_keys=False,
            )
        }

    @classmethod
    def from_material(cls, body: Body, public: PublicBackend) -> CkksSecret:
        if not isinstance(public, CkksPublic):
            raise FormatError("CKKS secret material needs a CKKS public context.")
        ctx = _load_context(body.bytes("seal", max_size=_MAX_CONTEXT_BYTES))
        if not ctx.is_private():
            raise FormatError("the CKKS secret context lacks its secret key.")
        _check_context_matches(ctx, public.plan)
        return cls(ctx, public)

    def raw_decrypt(
        self, cts: list, n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        parts = []
        for vec in cts:
            mine = vec.copy()
            mine.link_context(self.context)
            try:
                parts.append(np.asarray(mine.decrypt(), dtype=np.float64))
            except Exception as exc:
                raise CiphertextError(f"CKKS ciphertext does not decrypt: {exc}") from None
        raw = np.concatenate(parts)[:n_slots]
        rounded = np.rint(raw)
        residual = np.abs(raw - rounded)
        if residual.size and residual.max() > _MAX_RESIDUAL:
            worst = int(residual.argmax())
            # no numbers from the unrounded decryption in the message: they leak key information
            raise NoiseBudgetError(
                f"CKKS noise in slot {worst} is too large to round exactly; the sum is "
                f"refused rather than decoded wrongly."
            )
        bound = self.public.codec.range_of(count, terms)
        bad = np.flatnonzero(np.abs(rounded) > bound)
        if bad.size:
            raise SumOverflowError(
                f"{bad.size} slot sums exceed the range of {count} honest updates and {terms} terms "
                f"(first positions {bad[:8].tolist()}); some client encoded out of range."
            )
        return rounded.astype(np.int64)
