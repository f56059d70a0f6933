"""SEAL ciphertexts through ``tenseal.sealapi``, shared by the CKKS and BFV backends.

TenSEAL makes the keys and (de)serializes contexts; the ciphertexts themselves
are made by SEAL's own ``Encryptor`` and decrypted by its ``Decryptor``, one
ciphertext per ``slots`` values, the whole flattened tree packed across layer
boundaries. What travels and what the aggregator adds are the ciphertexts'
RNS residues (:mod:`secagg.schemes.lattice.rns`): no SEAL object is made to
sum, and SEAL's zstd compression is paid once, where a client reads back what
SEAL encrypted.

Seeded symmetric uploads: a client that holds the secret key (the cross-silo
shared-key arrangement) encrypts with ``encrypt_symmetric``, whose serialized
form stores the seed of the uniform polynomial instead of the polynomial
itself, halving the upload; the aggregator has SEAL expand it on load.

SEAL's Python binding saves and loads only through files, so ciphertexts pass
through a private temporary directory (in ``/dev/shm`` where it exists).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
from abc import abstractmethod
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from secagg import parallel
from secagg.codec import FixedPointCodec
from secagg.errors import (
    SUM_OUT_OF_RANGE,
    CiphertextError,
    ConfigError,
    FormatError,
    SumOverflowError,
)
from secagg.schemes.base import PublicBackend, SecretBackend
from secagg.schemes.lattice.planner import HE_STANDARD_MAX_LOGQ, LatticePlan
from secagg.schemes.lattice.rns import (
    SEED_RECORD,
    CtBatch,
    CtView,
    SealFormat,
    check_layout,
    check_residues,
    unpack,
)
from secagg.wire import Body, show

__all__ = ["LatticePublic", "LatticeSecret", "CtBatch", "load_context"]

PlanT = TypeVar("PlanT", bound=LatticePlan)

_MAX_CONTEXT_BYTES = 64 << 20
# Measured (benchmarks/bench_lattice.py): forking pays off only for large
# updates; below this many ciphertexts per worker the serial path is faster.
_MIN_PARALLEL_CTS = 128

_LIVE: weakref.WeakSet[LatticePublic[Any]] = weakref.WeakSet()


def _drop_pools_in_child() -> None:
    for backend in list(_LIVE):
        backend._pool.clear()


parallel.on_fork_child(_drop_pools_in_child)


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

            def remove() -> None:
                if os.getpid() == owner:
                    shutil.rmtree(path, ignore_errors=True)

            import atexit

            atexit.register(remove)
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


class LatticePublic(PublicBackend, Generic[PlanT]):
    """Public half shared by CKKS and BFV: encrypt, validate, add SEAL ciphertexts."""

    capabilities = frozenset({"precompute"})
    accepts_views = True
    is_ntt_form: ClassVar[bool]  # how fresh ciphertexts of this scheme are stored
    encoder_type: ClassVar[type[Any]]  # SEAL's encoder for the scheme

    def __init__(self, context: ts.Context, plan: PlanT, codec: FixedPointCodec,
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
        self.encoder = self.encoder_type(self.seal)
        self._encryptor: sa.Encryptor | None = None
        self._format: SealFormat | None = None
        self._plain_prefix: bytes | None = None
        #: precomputed public-key encryptions of zero, as residues (see :meth:`precompute`)
        self._pool: list[np.ndarray] = []
        _LIVE.add(self)
        data = self.seal.get_context_data(self._parms_id).parms()
        #: the data-level primes a fresh ciphertext's residues are taken modulo
        self.moduli: tuple[int, ...] = tuple(m.value() for m in data.coeff_modulus())
        self._q_column = np.array(self.moduli, dtype=np.uint64).reshape(-1, 1)

    # -- scheme specifics ----------------------------------------------------
    @staticmethod
    @abstractmethod
    def planner(sum_bound: int, max_summands: int, *, security: int = 128) -> PlanT:
        """The smallest parameters that sum ``max_summands`` integers up to ``sum_bound`` exactly."""

    @staticmethod
    @abstractmethod
    def new_context(plan: PlanT) -> ts.Context:
        """A fresh TenSEAL context with a secret key, following ``plan``."""

    @classmethod
    @abstractmethod
    def plan_from(cls, body: Body, codec: FixedPointCodec) -> PlanT:
        """Rebuild a plan from the wire; refuse one that cannot keep ``codec``'s sums exact."""

    @classmethod
    def generate(cls, codec: FixedPointCodec, *, security: int = 128) -> tuple[Self, ts.Context]:
        """Plan parameters for ``codec``, make keys; returns the public half and the secret context."""
        plan = cls.planner(codec.sum_bound, codec.max_summands, security=security)
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
    def from_material(cls, body: Body, codec: FixedPointCodec) -> Self:
        plan = cls.plan_from(body.section("plan"), codec)
        ctx, blob = cls._context_from_material(body)
        cls.check_context(ctx, plan)
        return cls(ctx, plan, codec, blob)

    @classmethod
    def ring_from(cls, body: Body) -> tuple[int, int, tuple[int, int]]:
        """A wire plan's ring degree, security level and prime sizes, within the HE standard."""
        name = cls.scheme.upper()
        n = body.integer("poly_modulus_degree", 1024, 32768)
        security = body.integer("security", 128, 256)
        bits = body.items("coeff_mod_bit_sizes", max_len=2)
        if n not in HE_STANDARD_MAX_LOGQ or security not in (128, 192, 256):
            raise FormatError(f"unsupported {name} ring degree {n} or security level {security}.")
        if len(bits) != 2 or not all(type(b) is int and 14 <= b <= 60 for b in bits):
            raise FormatError(f"{name} plan needs two primes of 14..60 bits; found {show(bits)}.")
        if sum(bits) > HE_STANDARD_MAX_LOGQ[n][security]:
            raise FormatError(
                f"{name} modulus of {sum(bits)} bits exceeds the {security}-bit security bound for N={n}."
            )
        return n, security, (bits[0], bits[1])

    @classmethod
    def check_context(cls, ctx: ts.Context, plan: PlanT) -> None:
        """Refuse a TenSEAL context whose ring degree or moduli are not the plan's."""
        parms = ctx.seal_context().data.key_context_data().parms()
        found = tuple(m.bit_count() for m in parms.coeff_modulus())
        if parms.poly_modulus_degree() != plan.poly_modulus_degree or found != plan.coeff_mod_bit_sizes:
            raise FormatError(
                f"TenSEAL context (N={parms.poly_modulus_degree()}, moduli {found}) does not "
                f"match the plan (N={plan.poly_modulus_degree}, moduli {plan.coeff_mod_bit_sizes})."
            )

    @classmethod
    def _context_from_material(cls, body: Body) -> tuple[ts.Context, bytes]:
        blob = body.blob("seal", max_size=_MAX_CONTEXT_BYTES)
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

    def format(self) -> SealFormat:
        """SEAL's serialization at this context's level, learned from one encryption (cached)."""
        if self._format is None:
            sample = sa.Ciphertext()
            self._public_encryptor().encrypt(self.encode(np.zeros(1, dtype=np.int64)), sample)
            self._format = SealFormat(self.seal, sample, FILES, self._evaluator)
        return self._format

    def _encrypt_range(self, values: np.ndarray, lo: int, hi: int, seeded_encryptor: Any,
                       progress: bool) -> CtBatch:
        """Ciphertexts ``lo .. hi`` of ``values``: encode and encrypt, residues read straight back."""
        fmt, s = self.format(), self.slots
        rows = _progress(range(lo, hi), progress, "encrypt")
        if seeded_encryptor is None:
            res = np.empty((hi - lo, fmt.polys, fmt.primes, fmt.degree), dtype=np.uint64)
            ct, enc = sa.Ciphertext(), self._public_encryptor()
            for j, i in enumerate(rows):
                pt = self.encode(values[i * s : (i + 1) * s])
                try:
                    zero = self._pool.pop()  # one atomic pop: no two ciphertexts share a zero
                except IndexError:
                    enc.encrypt(pt, ct)
                    fmt.residues(ct, res[j].reshape(-1))
                else:
                    self._add_plain(zero, pt, res[j])
            return CtBatch(fmt, self.moduli, hi - lo, res=res)
        c0 = np.empty((hi - lo, fmt.primes, fmt.degree), dtype=np.uint64)
        seeds = []
        for j, i in enumerate(rows):
            pt = self.encode(values[i * s : (i + 1) * s])
            part, seed = fmt.seeded_parts(FILES.save(seeded_encryptor.encrypt_symmetric(pt)))
            c0[j].reshape(-1)[:] = part
            seeds.append(seed)
        return CtBatch(fmt, self.moduli, hi - lo, seeded=(c0, seeds))

    def encrypt_slots(self, slots: np.ndarray, *, workers: int, progress: bool,
                      seeded_encryptor: Any = None) -> CtBatch:
        """Encrypt chunk by chunk, in forked workers when there is enough to share."""
        values = np.asarray(slots, dtype=np.int64)
        k = self.num_ciphertexts(values.size)
        if workers <= 1 or self._pool or k < 2 * _MIN_PARALLEL_CTS or not parallel.available():
            # the pool (if any) is spent in this process; forked children empty theirs
            return self._encrypt_range(values, 0, k, seeded_encryptor, progress)
        fmt = self.format()
        FILES.ensure()  # before forking, so that workers share one scratch directory
        n = min(workers, k // _MIN_PARALLEL_CTS)
        size = -(-k // n)
        ranges = [(lo, min(lo + size, k)) for lo in range(0, k, size)]

        def run(span: tuple[int, int]) -> bytes:
            part = self._encrypt_range(values, span[0], span[1], seeded_encryptor, False)
            if seeded_encryptor is None:
                return part.residues().tobytes()
            c0, seeds = part._seeded or (np.empty(0, np.uint64), [])
            return c0.tobytes() + b"".join(seeds)

        parts = parallel.fork_map(run, ranges, n)
        if seeded_encryptor is None:
            res = np.frombuffer(b"".join(parts), dtype=np.uint64).reshape(
                k, fmt.polys, fmt.primes, fmt.degree).copy()
            return CtBatch(fmt, self.moduli, k, res=res)
        c0s, all_seeds, words = [], [], fmt.primes * fmt.degree
        for (lo, hi), blob in zip(ranges, parts):
            c0s.append(np.frombuffer(blob, dtype=np.uint64, count=(hi - lo) * words))
            tail = blob[(hi - lo) * words * 8 :]
            rec = len(tail) // (hi - lo)
            all_seeds += [tail[i * rec : (i + 1) * rec] for i in range(hi - lo)]
        c0 = np.concatenate(c0s).reshape(k, fmt.primes, fmt.degree)
        return CtBatch(fmt, self.moduli, k, seeded=(c0, all_seeds))

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> CtBatch:
        return self.encrypt_slots(slots, workers=workers, progress=progress)

    # -- precomputed encryptions of zero ---------------------------------------
    # A public-key encryption is an encryption of zero plus the plaintext (that is
    # how SEAL computes it: encrypt_zero, then add the plaintext), and the zero
    # does not depend on the data. ``precompute`` makes fresh encryptions of zero
    # off the critical path (they are SEAL's own public-key encryptions of an
    # all-zero plaintext at the planned scale); online encryption then encodes and
    # adds, with no RLWE sampling and no NTT of the randomness. Each zero is
    # popped once and used once: copies and pickles start with an empty pool and
    # forked children empty theirs, exactly as for Paillier's pool.

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Add ``count`` fresh encryptions of zero (one per future ciphertext) to the pool."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"count must be a non-negative integer. Found {count!r}.")
        fmt = self.format()
        zero = self.encode(np.zeros(1, dtype=np.int64))
        FILES.ensure()

        def make(n: int) -> bytes:
            res = np.empty((n, fmt.polys, fmt.primes, fmt.degree), dtype=np.uint64)
            ct, enc = sa.Ciphertext(), self._public_encryptor()
            for j in _progress(range(n), progress and workers <= 1, "precompute"):
                enc.encrypt(zero, ct)
                fmt.residues(ct, res[j].reshape(-1))
            return res.tobytes()

        per = -(-count // max(1, workers)) if count else 0
        chunks = [min(per, count - i) for i in range(0, count, per)] if count else []
        for blob in parallel.fork_map(make, chunks, workers):
            self._pool.extend(np.frombuffer(blob, dtype=np.uint64).reshape(
                -1, fmt.polys, fmt.primes, fmt.degree).copy())

    @property
    def pool_size(self) -> int:
        """How many precomputed encryptions of zero are left."""
        return len(self._pool)

    def __copy__(self) -> Self:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._pool = []
        _LIVE.add(new)
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = []
        return state

    def plain_words(self, pt: sa.Plaintext) -> np.ndarray:
        """A plaintext's coefficients as SEAL holds them (CKKS: NTT residues; BFV: mod t)."""
        body = SealFormat._body(FILES.save(pt))
        n = self.plain_size
        if self._plain_prefix is None:
            self._plain_prefix = body[: len(body) - 8 * n]
        if len(body) != len(self._plain_prefix) + 8 * n or not body.startswith(self._plain_prefix):
            raise CiphertextError("SEAL encoded a plaintext in an unexpected layout.")
        return np.frombuffer(body, dtype="<u8", offset=len(self._plain_prefix))

    @property
    def plain_size(self) -> int:
        """Words of an encoded plaintext."""
        return self.plan.poly_modulus_degree * len(self.moduli)

    @abstractmethod
    def scaled_plain(self, words: np.ndarray) -> np.ndarray:
        """What adding the plaintext adds to ``c0``, residue by residue (shape (primes, degree))."""

    def _add_plain(self, zero: np.ndarray, pt: sa.Plaintext, out: np.ndarray) -> None:
        """``out = zero + (pt, 0)``: a precomputed zero plus the plaintext, modulo each prime."""
        q = self._q_column
        out[...] = zero
        c0 = out[0]
        np.add(c0, self.scaled_plain(self.plain_words(pt)), out=c0)
        np.minimum(c0, c0 - q, out=c0)  # c0 - q wraps above c0 unless c0 >= q: a reduction

    # -- wire ciphertexts ----------------------------------------------------
    def batch(self, cts: Any) -> CtBatch:
        """``cts`` as one batch (a list of a batch's items, e.g. ``list(upd.ciphertexts)``, too)."""
        if isinstance(cts, CtBatch):
            return cts
        items = list(cts)
        if not all(isinstance(c, CtView) for c in items) or not items:
            raise CiphertextError(f"expected {self.scheme.upper()} ciphertexts of this context.")
        first: CtBatch = items[0].batch
        if all(c.batch is first and c.index == i for i, c in enumerate(items)) and len(items) == first.k:
            return first
        fmt = self.format()
        res = np.stack([c.batch.residues()[c.index] for c in items])
        return CtBatch(fmt, self.moduli, len(items), res=res.reshape(len(items), fmt.polys,
                                                                      fmt.primes, fmt.degree))

    def ciphertexts_to_wire(self, cts: Any) -> Any:
        return self.batch(cts).to_wire()

    def precheck(self, obj: Any, n_slots: int) -> None:
        n_cts = self.num_ciphertexts(n_slots)
        if isinstance(obj, dict):
            if obj.get("layout") not in ("rns", "rns-seeded") or obj.get("count") != n_cts:
                raise CiphertextError(
                    f"expected {n_cts} {self.scheme.upper()} ciphertexts in the rns layout."
                )
            return
        if isinstance(obj, list):
            raise CiphertextError(
                f"these {self.scheme.upper()} ciphertexts are in SEAL's own serialization, which "
                "secagg no longer reads (one update could then arrive as two different byte "
                "strings); encrypt the update again with this version of secagg."
            )
        raise CiphertextError(f"expected {n_cts} {self.scheme.upper()} ciphertexts in the rns layout.")

    def _check_loaded(self, ct: sa.Ciphertext, i: int) -> None:
        ok = (
            ct.size() == 2
            and not ct.is_transparent()
            and ct.is_ntt_form() == self.is_ntt_form
            and ct.parms_id() == self._parms_id
            and self.check_extra(ct)
        )
        if not ok:
            raise CiphertextError(
                f"ciphertext {i} does not match the context (size, level, form or scale)."
            )

    def ciphertexts_from_wire(self, obj: Any, n_slots: int) -> CtBatch:
        self.precheck(obj, n_slots)
        k, fmt = self.num_ciphertexts(n_slots), self.format()
        width = check_layout(obj, fmt, self.moduli, k)
        if obj["layout"] == "rns":
            return CtBatch.from_packed(fmt, self.moduli, k, obj["data"], width)
        return self._seeded_from_wire(obj, k, width)

    def _seeded_from_wire(self, obj: dict[str, Any], k: int, width: int) -> CtBatch:
        """Seeded ciphertexts: ``c0`` validated here, ``c1`` expanded from its seed by SEAL."""
        fmt = self.format()
        words = fmt.primes * fmt.degree
        seeds = obj.get("seeds")
        if isinstance(seeds, memoryview):
            seeds = bytes(seeds)  # small next to the residues
        if not isinstance(seeds, bytes) or len(seeds) != k * SEED_RECORD:
            raise CiphertextError(f"seeded ciphertexts need {k} seed records of {SEED_RECORD} bytes.")
        if any(not seeds.startswith(fmt.seed_head, i * SEED_RECORD) for i in range(k)):
            raise CiphertextError("a seed record is not in the form SEAL writes; refusing it.")
        check_residues(obj["data"], k * words, self.moduli, fmt.degree, width)
        out = []
        for i in range(k):
            c0 = np.empty(words, dtype=np.uint64)
            unpack(obj["data"], i * words, words, width, c0)
            ct = fmt.seeded_ciphertext(c0, seeds[i * SEED_RECORD : (i + 1) * SEED_RECORD])
            self._check_loaded(ct, i)
            out.append(ct)
        batch = CtBatch(fmt, self.moduli, k, seal=out)
        batch._wire = {name: obj[name] for name in ("layout", "count", "degree", "moduli", "width",
                                                     "data")} | {"seeds": seeds}
        return batch

    def raw_add(self, a: Any, b: Any) -> CtBatch:
        out = self.batch(a).copy()
        out.add_into(self.batch(b))
        return out

    def raw_copy(self, cts: Any) -> CtBatch:
        return self.batch(cts).copy()

    def raw_accumulate(self, total: Any, cts: Any) -> CtBatch:
        acc = self.batch(total)
        acc.add_into(self.batch(cts))
        return acc


class LatticeSecret(SecretBackend):
    """Secret half shared by CKKS and BFV: decrypt, decode to integers, check the range."""

    public: LatticePublic[Any]
    #: the scheme's public half
    public_type: ClassVar[type[LatticePublic[Any]]]

    def __init__(self, context: ts.Context, public: LatticePublic[Any]) -> None:
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
    def generate(cls, codec: FixedPointCodec, *, security: int = 128) -> Self:
        """Plan parameters for ``codec`` and make keys (see :meth:`LatticePublic.generate`)."""
        public, secret_ctx = cls.public_type.generate(codec, security=security)
        return cls(secret_ctx, public)

    @classmethod
    def from_material(cls, body: Body, public: PublicBackend) -> Self:
        if not isinstance(public, cls.public_type):
            name = cls.public_type.scheme.upper()
            raise FormatError(f"{name} secret material needs a {name} public context.")
        ctx = load_context(body.blob("seal", max_size=_MAX_CONTEXT_BYTES))
        if not ctx.is_private():
            raise FormatError("the secret context lacks its secret key.")
        public.check_context(ctx, public.plan)
        return cls(ctx, public)

    def raw_encrypt(
        self, slots: np.ndarray, *, term: bool = False, workers: int = 1, progress: bool = False
    ) -> CtBatch:
        """Seeded symmetric encryption: half the upload of public-key encryption."""
        return self.public.encrypt_slots(slots, workers=workers, progress=progress,
                                         seeded_encryptor=self._symmetric)

    def raw_decrypt(
        self, cts: Any, n_slots: int, count: int, terms: int, *, workers: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        parts = []
        batch = self.public.batch(cts)
        for i in _progress(range(len(batch)), progress, "decrypt"):
            ct = batch[i].ct
            pt = sa.Plaintext()
            try:
                self._decryptor.decrypt(ct, pt)
            except Exception:
                raise CiphertextError("a ciphertext does not decrypt under this key.") from None
            parts.append(self.decode(pt, ct))
        values = np.concatenate(parts)[:n_slots]
        # After decryption: say what failed, never what was found (no values, no positions).
        if np.any(np.abs(values) > self.public.codec.range_of(count, terms)):
            raise SumOverflowError(SUM_OUT_OF_RANGE)
        return values
