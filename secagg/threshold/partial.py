"""Partial decryptions: computing one (a share holder), its bytes, checking one (a combiner).

A partial decryption of an aggregate with ciphertexts ``c_1 … c_k`` by share
holder ``i`` is ``c_ij = c_j**(2Δ·s_i) mod n²`` for every ``j``, plus a proof
that it is correct (:mod:`secagg.threshold.proofs`). Its payload
(``Kind.PARTIAL_DECRYPTION``)::

    {"keyset": 32 bytes, "fingerprint": 16 bytes, "holder": i,
     "aggregate": 32 bytes (aggregate_id), "round": ..., "count": ..., "terms": ...,
     "values": ..., "partials": k fixed-width ciphertexts,
     "proof": {"mode": "batched" | "each", "e": 16 bytes (per proof), "z": fixed-width (per proof)}}

It names the aggregate by :func:`aggregate_id` (SHA-256 of the fingerprint,
round, count, terms, value count and ciphertexts: not of the tree spec, so
that two aggregators summing the same updates in another order agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gmpy2
import msgpack

from secagg import parallel
from secagg.errors import FormatError, InvalidPartialError
from secagg.threshold import proofs
from secagg.threshold.keys import VerificationKeys
from secagg.update import EncryptedUpdate, RoundId, check_round_id
from secagg.wire import Kind, open_payload, seal

__all__ = ["PROOF_MODES", "PartialDecryption", "aggregate_id", "compute_partial",
           "read_partial", "verify_partial"]

#: how a partial decryption proves itself: one proof over a random linear
#: combination of the ciphertexts (default), or one proof per ciphertext
PROOF_MODES = ("batched", "each")
_E_BYTES = proofs.CHALLENGE_BITS // 8
_MIN_CHUNK = 16  # ciphertexts per forked chunk, at least


def aggregate_id(total: EncryptedUpdate) -> bytes:
    """32 bytes naming an aggregate's ciphertexts and header (see the module docstring)."""
    header = msgpack.packb([total.scheme, total.round_id, total.count, total.terms,
                            total.spec.num_values], use_bin_type=True)
    return proofs.transcript("aggregate", total.fingerprint, header,
                             total.backend.ciphertexts_to_wire(total.ciphertexts))


def _chunks(k: int, workers: int) -> list[tuple[int, int]]:
    parts = max(1, min(workers, k // _MIN_CHUNK))
    size = -(-k // parts)
    return [(i, min(k, i + size)) for i in range(0, k, size)]


@dataclass(frozen=True, eq=False)
class PartialDecryption:
    """One share holder's partial decryption of one aggregate, with its proof."""

    keyset: bytes
    holder: int
    aggregate: bytes
    round_id: RoundId
    count: int
    terms: int
    values: int
    partials: list[gmpy2.mpz]
    mode: str
    e: list[int]
    z: list[gmpy2.mpz]

    def to_bytes(self, vk: VerificationKeys, fingerprint: bytes) -> bytes:
        """The payload (see the module docstring)."""
        width, zw = vk.width, vk.z_width
        return seal(Kind.PARTIAL_DECRYPTION, {
            "keyset": self.keyset,
            "fingerprint": fingerprint,
            "holder": self.holder,
            "aggregate": self.aggregate,
            "round": self.round_id,
            "count": self.count,
            "terms": self.terms,
            "values": self.values,
            "partials": b"".join(int(c).to_bytes(width, "big") for c in self.partials),
            "proof": {
                "mode": self.mode,
                "e": b"".join(e.to_bytes(_E_BYTES, "big") for e in self.e),
                "z": b"".join(int(z).to_bytes(zw, "big") for z in self.z),
            },
        })


# -- a share holder ------------------------------------------------------------------


def compute_partial(total: EncryptedUpdate, vk: VerificationKeys, holder: int,
                    sigma: gmpy2.mpz, *, mode: str = "batched", workers: int = 1,
                    constant_time: bool = True) -> PartialDecryption:
    """Share holder ``holder``'s partial decryption of ``total`` (``sigma = Δ·s_i``)."""
    if mode not in PROOF_MODES:
        raise FormatError(f"proofs must be one of {PROOF_MODES}. Found {mode!r:.40}.")
    n2, width, zw = vk.nsquare, vk.width, vk.z_width
    powmod = gmpy2.powmod_sec if constant_time else gmpy2.powmod
    exponent = 2 * sigma
    cts = total.ciphertexts
    agg = aggregate_id(total)
    index = holder.to_bytes(2, "big")
    g, h = vk.v, vk.key(holder)

    def run(span: tuple[int, int]) -> bytes:
        out = []
        for j in range(*span):
            c = cts[j]
            ci = powmod(c, exponent, n2)
            out.append(int(ci).to_bytes(width, "big"))
            if mode == "each":
                x, y = powmod(c, 4, n2), ci * ci % n2
                ctx = proofs.transcript("each", vk.keyset, index, agg, j.to_bytes(8, "big"))
                e, z = proofs.prove(x, y, g, h, sigma, n2, vk.r_bits, ctx,
                                    constant_time=constant_time)
                out.append(e.to_bytes(_E_BYTES, "big") + int(z).to_bytes(zw, "big"))
        return b"".join(out)

    blob = b"".join(parallel.fork_map(run, _chunks(len(cts), workers), workers))
    step = width + (_E_BYTES + zw if mode == "each" else 0)
    parts = [gmpy2.mpz.from_bytes(blob[o : o + width], "big") for o in range(0, len(blob), step)]
    if mode == "each":
        es = [int.from_bytes(blob[o + width : o + width + _E_BYTES], "big")
              for o in range(0, len(blob), step)]
        zs = [gmpy2.mpz.from_bytes(blob[o + width + _E_BYTES : o + step], "big")
              for o in range(0, len(blob), step)]
    else:
        seed = _batch_seed(vk, index, agg, total, parts)
        rho = proofs.coefficients(seed, len(cts))
        big_c = proofs.multi_pow(cts, rho, n2)
        big_ci = powmod(big_c, exponent, n2)  # = prod c_ij**rho_j, one exponentiation
        x, y = powmod(big_c, 4, n2), big_ci * big_ci % n2
        ctx = proofs.transcript("batched", vk.keyset, index, agg, seed)
        e, z = proofs.prove(x, y, g, h, sigma, n2, vk.r_bits, ctx, constant_time=constant_time)
        es, zs = [e], [z]
    return PartialDecryption(vk.keyset, holder, agg, total.round_id, total.count, total.terms,
                             total.spec.num_values, parts, mode, es, zs)


def _batch_seed(vk: VerificationKeys, index: bytes, agg: bytes, total: EncryptedUpdate,
                parts: list[gmpy2.mpz]) -> bytes:
    """The seed of the batching coefficients: every ciphertext and every partial."""
    width = vk.width
    return proofs.transcript("batch", vk.keyset, index, agg,
                             total.backend.ciphertexts_to_wire(total.ciphertexts),
                             b"".join(int(c).to_bytes(width, "big") for c in parts))


# -- a combiner ----------------------------------------------------------------------


def _invalid(message: str, holder: int | None) -> InvalidPartialError:
    exc = InvalidPartialError(message)
    exc.holder = holder
    return exc


def read_partial(data: Any, vk: VerificationKeys, total: EncryptedUpdate) -> PartialDecryption:
    """Parse and check a partial decryption's bytes against ``vk`` and ``total`` (no proof check).

    Raises ``InvalidPartialError`` (its ``holder`` set once the payload names one).
    """
    if isinstance(data, PartialDecryption):
        data = data.to_bytes(vk, total.fingerprint)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _invalid(f"a partial decryption must be bytes. Found {type(data).__name__}.", None)
    try:
        _, body = open_payload(bytes(data), Kind.PARTIAL_DECRYPTION)
        holder = body.integer("holder", 1, vk.parties)
    except FormatError as exc:
        raise _invalid(f"malformed partial decryption: {exc}", None) from None
    try:
        if body.blob("keyset", size=32) != vk.keyset:
            raise FormatError("made with another key set (or another dealing)")
        if body.blob("fingerprint", size=16) != total.fingerprint:
            raise FormatError("made under another public context")
        if body.blob("aggregate", size=32) != aggregate_id(total):
            raise FormatError("it decrypts another aggregate")
        round_id = check_round_id(body.optional("round"))
        count = body.integer("count", 0, 2**31)
        terms = body.integer("terms", 0, 2**31)
        values = body.integer("values", 1, 2**40)
        if (round_id, count, terms, values) != (total.round_id, total.count, total.terms,
                                                total.spec.num_values):
            raise FormatError("its header does not match the aggregate's")
        k, width, zw = len(total.ciphertexts), vk.width, vk.z_width
        raw = body.blob("partials", size=k * width)
        proof = body.section("proof")
        mode = proof.text("mode", choices=PROOF_MODES)
        n_proofs = k if mode == "each" else 1
        raw_e = proof.blob("e", size=n_proofs * _E_BYTES)
        raw_z = proof.blob("z", size=n_proofs * zw)
    except FormatError as exc:
        raise _invalid(f"partial decryption of holder {holder} refused: {exc}", holder) from None
    parts = [gmpy2.mpz.from_bytes(raw[o : o + width], "big") for o in range(0, len(raw), width)]
    n, n2 = vk.n, vk.nsquare
    if min(parts) < 1 or max(parts) >= n2:
        raise _invalid(f"partial decryption of holder {holder}: a value lies outside [1, n^2).",
                       holder)
    product = gmpy2.mpz(1)
    for c in parts:
        product = product * (c % n) % n
    if gmpy2.gcd(product, n) != 1:
        raise _invalid(f"partial decryption of holder {holder}: a value is not a unit.", holder)
    es = [int.from_bytes(raw_e[o : o + _E_BYTES], "big") for o in range(0, len(raw_e), _E_BYTES)]
    zs = [gmpy2.mpz.from_bytes(raw_z[o : o + zw], "big") for o in range(0, len(raw_z), zw)]
    return PartialDecryption(vk.keyset, holder, aggregate_id(total), round_id, count, terms,
                             values, parts, mode, es, zs)


def verify_partial(part: PartialDecryption, vk: VerificationKeys, total: EncryptedUpdate) -> None:
    """Check ``part``'s proof; ``InvalidPartialError`` naming its holder if it fails."""
    n2 = vk.nsquare
    cts = total.ciphertexts
    index = part.holder.to_bytes(2, "big")
    g, h = vk.v, vk.key(part.holder)
    try:
        if part.mode == "each":
            for j, (c, ci) in enumerate(zip(cts, part.partials)):
                ctx = proofs.transcript("each", vk.keyset, index, part.aggregate,
                                        j.to_bytes(8, "big"))
                if not proofs.verify(gmpy2.powmod(c, 4, n2), ci * ci % n2, g, h, part.e[j],
                                     part.z[j], n2, ctx):
                    raise _invalid(f"the proof of holder {part.holder}'s partial decryption of "
                                   f"ciphertext {j} does not verify.", part.holder)
            return
        seed = _batch_seed(vk, index, part.aggregate, total, part.partials)
        rho = proofs.coefficients(seed, len(cts))
        big_c = proofs.multi_pow(cts, rho, n2)
        big_ci = proofs.multi_pow(part.partials, rho, n2)
        ctx = proofs.transcript("batched", vk.keyset, index, part.aggregate, seed)
        ok = proofs.verify(gmpy2.powmod(big_c, 4, n2), big_ci * big_ci % n2, g, h, part.e[0],
                           part.z[0], n2, ctx)
    except ZeroDivisionError:  # a value without an inverse: read_partial refuses those
        raise _invalid(f"holder {part.holder}'s partial decryption holds a non-unit.",
                       part.holder) from None
    if not ok:
        raise _invalid(f"the proof of holder {part.holder}'s partial decryption does not verify: "
                       f"the holder used a wrong share or the partial was altered.", part.holder)
