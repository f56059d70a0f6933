"""SEAL ciphertexts through ``tenseal.sealapi``, shared by the CKKS and BFV backends.

TenSEAL makes the keys and (de)serializes contexts; the ciphertexts themselves
are SEAL ``Ciphertext`` objects handled with SEAL's own ``Encryptor``,
``Evaluator`` and ``Decryptor``, one ciphertext per ``slots`` values, the whole
flattened tree packed across layer boundaries. That gives the backends what the
high-level vectors hide:

- **seeded symmetric uploads**: a client that holds the secret key (the
  cross-silo shared-key arrangement) encrypts with ``encrypt_symmetric``, whose
  serialized form stores the seed of the uniform polynomial instead of the
  polynomial itself, halving the upload; loading expands it;
- **SEAL's compressed serialization** (zstd), which drops the unused high bits of
  each 64-bit coefficient word, so a smaller prime means a smaller payload.

SEAL's Python binding saves and loads only through files, so payloads pass
through a private temporary directory (in ``/dev/shm`` where it exists).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from abc import abstractmethod
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from . import parallel
from .backend import PublicBackend, SecretBackend
from .codec import FixedPointCodec
from .errors import (
    SUM_OUT_OF_RANGE,
    CiphertextError,
    ConfigError,
    FormatError,
    SumOverflowError,
)
from .wire import Body

__all__ = ["LatticePublic", "LatticeSecret", "SealCiphertext", "load_context"]

_MAX_CONTEXT_BYTES = 64 << 20
# Measured (benchmarks/bench_lattice.py): forking pays off only for large
# updates; below this many ciphertexts per worker the serial path is faster.
_MIN_PARALLEL_CTS = 128


class _Files:
    """A private scratch directory for SEAL's file-only save/load.

    Made once by the first process that needs it and removed when that process
    exits; forked workers (created after :meth:`ensure`) share it, with their
    pid in every file name, and never create or remove directories of their own.
    """

    def __init__(self) -> None:
        self._dir: str | None = None
        self._names = itertools.count()

    def ensure(self) -> str:
        """The scratch directory, created on first use."""
        if self._dir is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self._dir = path = tempfile.mkdtemp(prefix="secagg-", dir=base)
            owner = os.getpid()
            import atexit

            atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
        return self._dir

    def path(self) -> str:
        return os.path.join(self.ensure(), f"{os.getpid()}-{next(self._names)}.seal")

    def save(self, obj: Any) -> bytes:
        path = self.path()
        try:
            obj.save(path)
            with open(path, "rb") as f:
                return f.read()
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def load_ciphertext(self, context: Any, blob: bytes) -> sa.Ciphertext:
        path = self.path()
        try:
            with open(path, "wb") as f:
                f.write(blob)
            ct = sa.Ciphertext()
            ct.load(context, path)  # SEAL validates the data against the context
            return ct
        finally:
            if os.path.exists(path):
                os.unlink(path)


FILES = _Files()


class SealCiphertext:
    """One SEAL ciphertext, kept as an object, as bytes, or both (seeded uploads are bytes)."""

    __slots__ = ("_ct", "_blob", "_context")

    def __init__(self, ct: sa.Ciphertext | None = None, blob: bytes | None = None,
                 context: Any = None) -> None:
        self._ct, self._blob, self._context = ct, blob, context

    @property
    def ct(self) -> sa.Ciphertext:
        """The ciphertext object (a seeded upload is expanded on first use)."""
        if self._ct is None:
            self._ct = FILES.load_ciphertext(self._context, self._blob)
        return self._ct

    def to_bytes(self) -> bytes:
        """SEAL's compressed serialization (seeded if it was made so)."""
        if self._blob is None:
            self._blob = FILES.save(self._ct)
        return self._blob


def load_context(blob: bytes) -> ts.Context:
    """A TenSEAL context from bytes, single-threaded so that forked workers are safe."""
    try:
        return ts.context_from(blob, n_threads=1)
    except Exception as exc:  # TenSEAL raises ValueError/RuntimeError variously
        raise FormatError(f"cannot load the TenSEAL context: {exc}") from None


def _progress(items: Any, enabled: bool, what: str) -> Any:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=what, unit="ct", leave=False)


class LatticePublic(PublicBackend):
    """Public half shared by CKKS and BFV: encrypt, validate, add SEAL ciphertexts."""

    is_ntt_form: bool  # how fresh ciphertexts of this scheme are stored

    def __init__(self, context: ts.Context, plan: Any, codec: FixedPointCodec,
                 blob: bytes | None = None) -> None:
        self.context = context
        self.plan = plan
        self.codec = codec
        self.slots = plan.slots
        self._blob = blob if blob is not None else context.serialize(
            save_public_key=True, save_secret_key=False,
            save_galois_keys=False, save_relin_keys=False,
        )
        self.seal = context.seal_context().data
        self._parms_id = self.seal.first_parms_id()
        self._evaluator = sa.Evaluator(self.seal)
        self._encryptor: sa.Encryptor | None = None
        self._max_ct_bytes = 2 * plan.poly_modulus_degree * 8 * 2 + 4096

    # -- scheme specifics ----------------------------------------------------
    @staticmethod
    @abstractmethod
    def plan_for(codec: FixedPointCodec, security: int) -> Any:
        """The scheme's parameter plan for ``codec``."""

    @staticmethod
    @abstractmethod
    def new_context(plan: Any) -> ts.Context:
        """A fresh TenSEAL context with a secret key, following ``plan``."""

    @classmethod
    def generate(cls, codec: FixedPointCodec, *, security: int = 128) -> tuple[LatticePublic, ts.Context]:
        """Plan parameters for ``codec``, make keys; returns the public half and the secret context."""
        plan = cls.plan_for(codec, security)
        secret_ctx = cls.new_context(plan)
        public_ctx = secret_ctx.copy()
        public_ctx.make_context_public()
        return cls(public_ctx, plan, codec), secret_ctx

    @abstractmethod
    def encode(self, values: np.ndarray) -> sa.Plaintext:
        """An int64 chunk of at most ``slots`` values as a SEAL plaintext."""

    def check_extra(self, ct: sa.Ciphertext) -> bool:
        """Scheme-specific validity of a loaded ciphertext (e.g. CKKS scale)."""
        return True

    # -- wire ----------------------------------------------------------------
    def material(self) -> dict[str, Any]:
        return {"plan": self.plan.wire_dict(), "seal": self._blob}

    @classmethod
    def _context_from_material(cls, body: Body) -> tuple[ts.Context, bytes]:
        blob = body.bytes("seal", max_size=_MAX_CONTEXT_BYTES)
        ctx = load_context(blob)
        if ctx.is_private():
            raise FormatError(
                "this public context contains a secret key; refusing it. Send only "
                "ctx.public.to_bytes() to clients and the aggregator."
            )
        if not ctx.has_public_key():
            raise FormatError("the public context lacks its public key.")
        return ctx, blob

    def fingerprint_material(self) -> bytes:
        return self._blob

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scheme": self.scheme}
        d.update(self.plan.as_dict())
        return d

    # -- encryption ----------------------------------------------------------
    def num_ciphertexts(self, n_slots: int) -> int:
        return max(1, -(-n_slots // self.slots))

    def _public_encryptor(self) -> sa.Encryptor:
        if self._encryptor is None:
            self._encryptor = sa.Encryptor(self.seal, self.context.public_key().data)
        return self._encryptor

    def _encrypt_chunk(self, values: np.ndarray, seeded_encryptor: Any) -> SealCiphertext:
        pt = self.encode(values)
        if seeded_encryptor is not None:
            blob = FILES.save(seeded_encryptor.encrypt_symmetric(pt))
            return SealCiphertext(blob=blob, context=self.seal)
        ct = sa.Ciphertext()
        self._public_encryptor().encrypt(pt, ct)
        return SealCiphertext(ct=ct, context=self.seal)

    def encrypt_slots(self, slots: np.ndarray, *, workers: int, progress: bool,
                      seeded_encryptor: Any = None) -> list:
        """Encrypt chunk by chunk, in forked workers when there is enough to share."""
        values = np.asarray(slots, dtype=np.int64)
        chunks = [values[i : i + self.slots] for i in range(0, max(values.size, 1), self.slots)]
        if workers <= 1 or len(chunks) < 2 * _MIN_PARALLEL_CTS or not parallel.available():
            return [self._encrypt_chunk(c, seeded_encryptor)
                    for c in _progress(chunks, progress, "encrypt")]
        FILES.ensure()  # before forking, so that workers share one scratch directory
        k = min(workers, len(chunks) // _MIN_PARALLEL_CTS)
        size = -(-len(chunks) // k)
        groups = [chunks[i : i + size] for i in range(0, len(chunks), size)]

        def run(group: list) -> list[bytes]:
            return [self._encrypt_chunk(c, seeded_encryptor).to_bytes() for c in group]

        blobs = [b for part in parallel.fork_map(run, groups, k) for b in part]
        return [SealCiphertext(blob=b, context=self.seal) for b in blobs]

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list:
        return self.encrypt_slots(slots, workers=workers, progress=progress)

    # -- wire ciphertexts ----------------------------------------------------
    def ciphertexts_to_wire(self, cts: list) -> list[bytes]:
        return [c.to_bytes() for c in cts]

    def precheck(self, obj: Any, n_slots: int) -> None:
        n_cts = self.num_ciphertexts(n_slots)
        if not isinstance(obj, list) or len(obj) != n_cts:
            raise CiphertextError(f"expected a list of {n_cts} {self.scheme.upper()} ciphertexts.")

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> list:
        self.precheck(obj, n_slots)
        out = []
        for i, blob in enumerate(obj):
            if not isinstance(blob, bytes) or len(blob) > self._max_ct_bytes:
                raise CiphertextError(f"ciphertext {i} is not bytes of a plausible size.")
            try:
                ct = FILES.load_ciphertext(self.seal, blob)
            except Exception as exc:
                raise CiphertextError(f"ciphertext {i} does not load: {exc}") from None
            ok = (
                ct.size() == 2
                and ct.is_ntt_form() == self.is_ntt_form
                and ct.parms_id() == self._parms_id
                and self.check_extra(ct)
            )
            if not ok:
                raise CiphertextError(
                    f"ciphertext {i} does not match the context (size, level, form or scale)."
                )
            out.append(SealCiphertext(ct=ct, blob=blob, context=self.seal))
        return out

    def raw_add(self, a: list, b: list) -> list:
        out = []
        try:
            for x, y in zip(a, b):
                ct = sa.Ciphertext()
                self._evaluator.add(x.ct, y.ct, ct)
                out.append(SealCiphertext(ct=ct, context=self.seal))
        except Exception as exc:  # validated inputs never get here; keep the contract anyway
            raise CiphertextError(f"ciphertexts cannot be added: {exc}") from None
        return out


class LatticeSecret(SecretBackend):
    """Secret half shared by CKKS and BFV: decrypt, decode to integers, check the range."""

    public: LatticePublic

    def __init__(self, context: ts.Context, public: LatticePublic) -> None:
        if not context.is_private():
            raise ConfigError("a secret backend needs a context with its secret key.")
        self.context = context
        self.public = public
        seal = public.seal
        secret_key = context.secret_key().data
        self._decryptor = sa.Decryptor(seal, secret_key)
        self._symmetric = sa.Encryptor(seal, secret_key)

    @abstractmethod
    def decode(self, pt: sa.Plaintext, ct: sa.Ciphertext) -> np.ndarray:
        """Exact int64 values of a decrypted chunk (raising if they cannot be exact)."""

    def material(self) -> dict[str, Any]:
        return {
            "seal": self.context.serialize(
                save_public_key=False, save_secret_key=True,
                save_galois_keys=False, save_relin_keys=False,
            )
        }

    @classmethod
    def _context_from_material(cls, body: Body, public: LatticePublic) -> ts.Context:
        ctx = load_context(body.bytes("seal", max_size=_MAX_CONTEXT_BYTES))
        if not ctx.is_private():
            raise FormatError("the secret context lacks its secret key.")
        return ctx

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> list:
        """Seeded symmetric encryption: half the upload of public-key encryption."""
        return self.public.encrypt_slots(slots, workers=workers, progress=progress,
                                         seeded_encryptor=self._symmetric)

    def raw_decrypt(
        self, cts: list, n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        parts = []
        for c in _progress(cts, progress, "decrypt"):
            pt = sa.Plaintext()
            try:
                self._decryptor.decrypt(c.ct, pt)
            except Exception:
                raise CiphertextError("a ciphertext does not decrypt under this key.") from None
            parts.append(self.decode(pt, c.ct))
        values = np.concatenate(parts)[:n_slots]
        # After decryption: say what failed, never what was found (no values, no positions).
        if np.any(np.abs(values) > self.public.codec.range_of(count, terms)):
            raise SumOverflowError(SUM_OUT_OF_RANGE)
        return values
