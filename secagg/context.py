"""The roles' key material: ``generate``, :class:`PublicContext`, :class:`SecretContext`.

The key holder calls :func:`generate` and keeps the :class:`SecretContext`;
clients and the aggregator receive ``ctx.public.to_bytes()``, which holds the
codec, the packing or lattice parameters and the public key, never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np

from .backend import PublicBackend, SecretBackend, scheme_classes
from .codec import FixedPointCodec, Rounding
from .dp import DistributedDP
from .errors import (
    ConfigError,
    ContextMismatchError,
    CountMismatchError,
    FormatError,
    InsecureContextError,
    InsufficientClientsError,
    TreeError,
    WeightError,
)
from .tree import flatten, unflatten
from .update import EXTRA_SLOTS, EncryptedUpdate, check_round_id
from .wire import Body, Kind, digest, open_payload, seal

__all__ = ["generate", "PublicContext", "SecretContext", "RawSum", "Reduce"]

Reduce = Literal["sum", "mean", "weighted_mean"]


def _check_weight(weight: object, max_weight: int) -> int:
    if isinstance(weight, bool):
        raise WeightError(f"weight must be an integer sample count. Found {weight!r}.")
    if isinstance(weight, (float, np.floating)) and float(weight).is_integer():
        weight = int(weight)
    if not isinstance(weight, (int, np.integer)):
        raise WeightError(f"weight must be an integer sample count. Found {weight!r}.")
    if not 1 <= int(weight) <= max_weight:
        raise WeightError(
            f"weight must be in [1, max_weight={max_weight}]. Found {weight}. Raise "
            f"max_weight in generate() to allow larger sample counts."
        )
    return int(weight)


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer. Found {workers!r}.")
    return workers


def _codec_from(body: Body) -> FixedPointCodec:
    return FixedPointCodec(
        clip=body.float("clip"),
        frac_bits=body.int("frac_bits", 0, 40),
        max_clients=body.int("max_clients", 1, 2**31),
        max_weight=body.int("max_weight", 1, 2**31),
        rounding=body.str("rounding", choices=("nearest", "stochastic")),  # type: ignore[arg-type]
        extra_summands=body.int("extra_summands", 0, 2**20),
        term_clip=None if body.optional("term_clip") is None else body.float("term_clip"),
        noise_bound=body.int("noise_bound", 0, 2**50),
    )


class PublicContext:
    """What clients and the aggregator hold: encrypt and sum, never decrypt.

    Use :meth:`encrypt` on a client and :class:`secagg.Aggregator` on the server.
    """

    def __init__(
        self, backend: PublicBackend, *, min_clients: int = 2, dp: DistributedDP | None = None
    ) -> None:
        self.backend = backend
        self.codec: FixedPointCodec = backend.codec
        self.scheme: str = backend.scheme
        self.min_clients = min_clients
        self.dp = dp
        _check_dp(dp, self.codec, min_clients)
        self.fingerprint: bytes = digest(
            msgpack.packb(
                [self.scheme, self.codec.params(), backend.fingerprint_material(), _dp_params(dp)],
                use_bin_type=True,
            )
        )

    @property
    def public(self) -> PublicContext:
        """The public context itself (so any context has ``.public``)."""
        return self

    def _encryptor(self) -> PublicBackend | SecretBackend:
        return self.backend

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Precompute encryption randomness for ``count`` ciphertexts (Paillier).

        Run it between rounds: online encryption then costs one modular product
        per ciphertext. The pool stays in this process and is never reused.
        """
        precompute = getattr(self.backend, "precompute", None)
        if precompute is None:
            raise ConfigError(f"the {self.scheme!r} scheme has no randomness to precompute.")
        precompute(count, workers=_check_workers(workers), progress=progress)

    def epsilon(
        self, rounds: int, delta: float, *, dim: int,
        reporting_clients: int | list[int] | None = None,
    ) -> float:
        """Distributed DP's ``epsilon`` after ``rounds`` rounds, bound to this context.

        Takes ``frac_bits`` and ``max_weight`` from the codec, so it cannot be
        asked about another calibration than the one the clients use.

        Args:
            rounds: rounds released so far.
            delta: target ``delta``.
            dim: values in one client's update (``TreeSpec.num_values``).
            reporting_clients: clients whose noise was in each round's sum (one
                count or one per round); default ``min_clients``, the fewest the
                key holder decrypts, hence the largest ``epsilon``.

        Raises ``ConfigError`` if the context has no DP.
        """
        if self.dp is None:
            raise ConfigError("this context has no distributed DP (pass dp= to generate()).")
        counts = self.min_clients if reporting_clients is None else reporting_clients
        return self.dp.epsilon(rounds, delta, frac_bits=self.codec.frac_bits, dim=dim,
                               reporting_clients=counts, max_weight=self.codec.max_weight)

    def __repr__(self) -> str:
        return (
            f"PublicContext(scheme={self.scheme!r}, fingerprint={self.fingerprint.hex()[:12]}, "
            f"max_clients={self.codec.max_clients}, clip={self.codec.clip}, "
            f"frac_bits={self.codec.frac_bits})"
        )

    def describe(self) -> dict[str, Any]:
        """Parameters a user may want to see: codec, sizes, security."""
        d: dict[str, Any] = {"fingerprint": self.fingerprint.hex(), "min_clients": self.min_clients}
        d.update(self.codec.params())
        d["slot_bits"] = self.codec.slot_bits
        d["error_bound"] = self.codec.error_bound
        d.update(self.backend.describe())
        return d

    # -- clients -------------------------------------------------------------
    def encrypt(
        self,
        tree: Any,
        weight: int | float = 1,
        *,
        round_id: int | str | None = None,
        rng: np.random.Generator | None = None,
        workers: int = 1,
        progress: bool = False,
    ) -> EncryptedUpdate:
        """Quantize and encrypt a tree of tensors.

        Args:
            tree: a torch tensor, numpy array, or list / tuple / dict nesting of them.
            weight: integer sample count in ``[1, max_weight]``; it multiplies the
                values before encryption and travels encrypted, so the aggregator
                never learns it.
            round_id: optional round the update belongs to.
            rng: generator for stochastic rounding (default: seeded from the OS).
            workers: processes to encrypt with (Paillier; results decode the same
                for any number).
            progress: show a progress bar (needs tqdm).

        Values outside ``[-clip, clip]`` saturate; how many did is in
        ``update.num_clipped`` (client side only). With distributed DP (``dp=`` in
        :func:`generate`) the whole update is first scaled into the L2 ball of
        radius ``dp.l2_clip`` and integer discrete Gaussian noise is added to the
        quantized values before encryption.
        """
        spec, flat = flatten(tree)
        if spec.num_values == 0:
            raise TreeError("the tree has no floating values to encrypt.")
        w = _check_weight(weight, self.codec.max_weight)
        round_id = check_round_id(round_id)
        if self.dp is not None:
            flat, _ = self.dp.clip_update(flat)
        q, clipped = self.codec.raw_encode(flat, rng)
        slots = np.empty(q.size + EXTRA_SLOTS, dtype=np.int64)
        values = slots[: q.size]
        np.multiply(q, w, out=values)
        if self.dp is not None:
            values += self.dp.sample_noise(q.size, self.codec.frac_bits)
        slots[q.size :] = (w, 1)  # encrypted weight and count
        cts = self._encryptor().raw_encrypt(slots, workers=_check_workers(workers),
                                            progress=progress)
        return EncryptedUpdate(self.scheme, self.fingerprint, Kind.UPDATE, 1, spec, round_id,
                               cts, self, num_clipped=clipped)

    def encrypt_term(self, tree: Any, *, round_id: int | str | None = None) -> EncryptedUpdate:
        """Encrypt a tensor to be *added* to an aggregate (a regulariser, a party's noise).

        A term is added once, unweighted, to ``Σ wᵢ·xᵢ``; it counts against
        ``max_terms``, not ``max_clients``, and does not change ``count`` or the
        weight sum. Its values must lie within ``±term_clip`` (default ``clip``):
        a term is never clipped, a larger value raises ``EncodingError``.
        Add it with ``Aggregator.add_term``.
        """
        if self.codec.extra_summands == 0:
            raise ConfigError("this context reserves no room for terms; pass max_terms to generate().")
        spec, flat = flatten(tree)
        if spec.num_values == 0:
            raise TreeError("the tree has no floating values to encrypt.")
        round_id = check_round_id(round_id)
        slots = np.zeros(flat.size + EXTRA_SLOTS, dtype=np.int64)  # weight 0, count 0
        slots[: flat.size] = self.codec.raw_encode_term(flat)
        cts = self._encryptor().raw_encrypt(slots, term=True)
        return EncryptedUpdate(self.scheme, self.fingerprint, Kind.TERM, 0, spec, round_id,
                               cts, self, terms=1)

    # -- bytes ---------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "codec": self.codec.params(),
            "min_clients": self.min_clients,
            "dp": _dp_params(self.dp),
            "backend": self.backend.material(),
        }

    def to_bytes(self) -> bytes:
        """Public material only: safe to send to clients and the aggregator."""
        return seal(Kind.PUBLIC_CONTEXT, PublicContext._body(self))

    @classmethod
    def _from_body(cls, body: Body, *, allow_insecure: bool = False) -> PublicContext:
        scheme = body.str("scheme")
        public_cls, _ = _scheme_or_format_error(scheme)
        try:
            codec = _codec_from(body.map("codec"))
        except ConfigError as exc:
            raise FormatError(f"invalid codec parameters: {exc}") from None
        min_clients = body.int("min_clients", 1, codec.max_clients)
        dp = None
        if body.optional("dp") is not None:
            dpb = body.map("dp")
            try:
                dp = DistributedDP(dpb.float("l2_clip"), dpb.float("noise_multiplier"),
                                   dpb.int("min_clients", 1, codec.max_clients))
                _check_dp(dp, codec, min_clients)
            except (ConfigError, ValueError, ArithmeticError) as exc:
                raise FormatError(f"invalid DP parameters: {exc}") from None
        backend = public_cls.from_material(body.map("backend"), codec)
        if backend.insecure and not allow_insecure:
            raise InsecureContextError(
                "this context is marked as an insecure test context (e.g. a Paillier key below "
                "2048 bits) and is refused; generate a real one, or pass allow_insecure=True "
                "in tests only."
            )
        return PublicContext(backend, min_clients=min_clients, dp=dp)

    @classmethod
    def from_bytes(cls, data: bytes, *, allow_insecure: bool = False) -> PublicContext:
        """Load and validate a public context; raises a ``FormatError`` subclass.

        A context marked insecure (test keys) raises ``InsecureContextError``
        unless ``allow_insecure=True``.
        """
        _, body = open_payload(data, Kind.PUBLIC_CONTEXT)
        return cls._from_body(body, allow_insecure=allow_insecure)


def _dp_params(dp: DistributedDP | None) -> dict[str, Any] | None:
    if dp is None:
        return None
    return {"l2_clip": dp.l2_clip, "noise_multiplier": dp.noise_multiplier,
            "min_clients": dp.min_clients}


def _check_dp(dp: DistributedDP | None, codec: FixedPointCodec, min_clients: int) -> None:
    """The codec must reserve the noise's range, and decryption must wait for enough noise."""
    if dp is None:
        if codec.noise_bound:
            raise ConfigError("the codec reserves room for noise but no DP parameters are set.")
        return
    if codec.noise_bound != dp.noise_bound(codec.frac_bits):
        raise ConfigError(
            f"codec noise_bound {codec.noise_bound} does not match the DP noise bound "
            f"{dp.noise_bound(codec.frac_bits)}."
        )
    if codec.rounding != "nearest":
        raise ConfigError("distributed DP needs rounding='nearest' (its sensitivity assumes it).")
    if min_clients < dp.min_clients:
        raise ConfigError(
            f"min_clients={min_clients} is below the DP calibration target "
            f"dp.min_clients={dp.min_clients}: a smaller sum would carry too little noise."
        )
    if codec.max_weight != 1:
        raise ConfigError(
            f"distributed DP calibrates its noise for updates of weight 1, but max_weight="
            f"{codec.max_weight}: a client weighting by its sample count would multiply its "
            f"sensitivity, and epsilon, by up to that factor. Pass max_weight=1 and average "
            f"with reduce='mean'."
        )


def _scheme_or_format_error(scheme: str) -> tuple[type[PublicBackend], type[SecretBackend]]:
    try:
        return scheme_classes(scheme)
    except ConfigError:
        raise FormatError(f"payload names unknown scheme {scheme!r:.40}.") from None


@dataclass(frozen=True)
class RawSum:
    """A decrypted sum before decoding: exact integers.

    ``values[i] = sum_k w_k * q_k[i]`` (int64), ``weight_sum = sum_k w_k``,
    ``count`` client updates and ``terms`` extra terms.
    """

    values: np.ndarray
    weight_sum: int
    count: int
    terms: int


class SecretContext(PublicContext):
    """The key holder's context: everything a :class:`PublicContext` does, plus decryption.

    Keep it away from the aggregator; share ``ctx.public.to_bytes()`` instead.
    """

    def __init__(
        self, secret: SecretBackend, *, min_clients: int = 2, dp: DistributedDP | None = None
    ) -> None:
        super().__init__(secret.public, min_clients=min_clients, dp=dp)
        self.secret_backend = secret
        self._public = PublicContext(secret.public, min_clients=min_clients, dp=dp)

    @property
    def public(self) -> PublicContext:
        """The public half, holding no secret key."""
        return self._public

    def _encryptor(self) -> PublicBackend | SecretBackend:
        return self.secret_backend  # CRT encryption where the scheme has it

    def __repr__(self) -> str:
        return super().__repr__().replace("PublicContext(", "SecretContext(", 1)

    def _check_total(self, total: EncryptedUpdate | bytes) -> EncryptedUpdate:
        if isinstance(total, (bytes, bytearray, memoryview)):
            total = EncryptedUpdate.from_bytes(bytes(total), self.public)
        if not isinstance(total, EncryptedUpdate):
            raise TreeError(f"expected an EncryptedUpdate or its bytes. Found {type(total).__name__}.")
        if total.fingerprint != self.fingerprint or total.scheme != self.scheme:
            raise ContextMismatchError("this sum was made under another key or codec.")
        if total.count < self.min_clients:
            raise InsufficientClientsError(
                f"refusing to decrypt a sum of {total.count} client update(s); min_clients is "
                f"{self.min_clients}. Decrypting fewer would reveal individual updates."
            )
        return total

    def decrypt_raw(
        self, total: EncryptedUpdate | bytes, *, workers: int = 1, progress: bool = False
    ) -> RawSum:
        """Decrypt to exact integer sums (see :class:`RawSum`); no float rounding involved."""
        total = self._check_total(total)
        sums = self.secret_backend.raw_decrypt(
            total.ciphertexts, total.num_slots, total.count, total.terms,
            workers=_check_workers(workers), progress=progress,
        )
        weight_sum, count = int(sums[-2]), int(sums[-1])
        # After decryption the messages name the check, never the decrypted numbers:
        # a deviating server would otherwise read them off an error reply.
        if count != total.count:
            raise CountMismatchError(
                "the encrypted count does not match the count in the payload's header: the "
                "payload was relabelled or crafted. It is refused."
            )
        if not total.count <= weight_sum <= total.count * self.codec.max_weight:
            raise CountMismatchError(
                "the encrypted weight sum is impossible for the payload's count and the "
                "context's max_weight: the aggregate was crafted. It is refused."
            )
        return RawSum(sums[:-EXTRA_SLOTS], weight_sum, total.count, total.terms)

    def decrypt(
        self,
        total: EncryptedUpdate | bytes,
        reduce: Reduce = "mean",
        *,
        device: Any = None,
        workers: int = 1,
        progress: bool = False,
    ) -> Any:
        """Decrypt a sum and decode it to a tree shaped like the clients' input.

        Args:
            total: ``Aggregator.result()`` or its bytes.
            reduce: ``"sum"`` (Σ wᵢxᵢ), ``"mean"`` (Σ wᵢxᵢ / count) or
                ``"weighted_mean"`` (Σ wᵢxᵢ / Σ wᵢ).
            device: put every torch leaf on this device instead of its own.
            workers: processes to decrypt with (Paillier).
            progress: show a progress bar (needs tqdm).

        Raises ``InsufficientClientsError`` below ``min_clients`` and
        ``SumOverflowError`` if a slot left the range honest clients can reach.
        """
        if reduce not in ("sum", "mean", "weighted_mean"):
            raise ConfigError(
                f"reduce must be 'sum', 'mean' or 'weighted_mean'. Found {reduce!r}."
            )
        total = self._check_total(total)
        raw = self.decrypt_raw(total, workers=workers, progress=progress)
        divisor = {"sum": 1, "mean": raw.count, "weighted_mean": raw.weight_sum}[reduce]
        return unflatten(total.spec, self.codec.raw_decode(raw.values, divisor), device=device)

    def to_bytes(self) -> bytes:
        """Secret and public material, for the key holder's own storage only."""
        return seal(
            Kind.SECRET_CONTEXT,
            {"public": PublicContext._body(self), "secret": self.secret_backend.material()},
        )

    def to_sealed_bytes(self, passphrase: str | bytes, *, scrypt_n: int | None = None) -> bytes:
        """:meth:`to_bytes` encrypted under a passphrase (scrypt + AES-256-GCM)."""
        from .keystore import DEFAULT_SCRYPT_N, seal_secret

        return seal_secret(self.to_bytes(), passphrase, n=scrypt_n or DEFAULT_SCRYPT_N)

    def save(self, path: Any, *, passphrase: str | bytes | None = None,
             overwrite: bool = False, scrypt_n: int | None = None) -> None:
        """Write the secret context to a new owner-only (0600) file, encrypted if a passphrase is given."""
        from .keystore import write_private

        data = self.to_bytes() if passphrase is None else self.to_sealed_bytes(
            passphrase, scrypt_n=scrypt_n)
        write_private(path, data, overwrite=overwrite)

    @classmethod
    def load(cls, path: Any, *, passphrase: str | bytes | None = None,
             allow_insecure: bool = False) -> SecretContext:
        """Read a file written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), passphrase=passphrase, allow_insecure=allow_insecure)

    @classmethod
    def from_bytes(cls, data: bytes, *, passphrase: str | bytes | None = None,
                   allow_insecure: bool = False) -> SecretContext:
        """Load a key holder's context (decrypting it if sealed); raises a ``SecAggError``.

        A context marked insecure (test keys) raises ``InsecureContextError``
        unless ``allow_insecure=True``.
        """
        from .keystore import is_sealed, open_secret

        if is_sealed(data):
            if passphrase is None:
                raise FormatError("this secret context is passphrase-encrypted; pass passphrase=.")
            data = open_secret(data, passphrase)
        _, body = open_payload(data, Kind.SECRET_CONTEXT)
        public = PublicContext._from_body(body.map("public"), allow_insecure=allow_insecure)
        _, secret_cls = scheme_classes(public.scheme)
        secret = secret_cls.from_material(body.map("secret"), public.backend)
        return cls(secret, min_clients=public.min_clients, dp=public.dp)


def generate(
    scheme: str,
    *,
    max_clients: int = 100,
    clip: float = 1.0,
    frac_bits: int = 16,
    max_weight: int = 1,
    min_clients: int = 2,
    key_bits: int = 2048,
    keypair: tuple[Any, Any] | None = None,
    security: int = 128,
    rounding: Rounding = "nearest",
    max_terms: int = 0,
    term_clip: float | None = None,
    dp: DistributedDP | None = None,
    randomness: str = "djn",
    optimized_keys: bool = False,
    insecure: bool = False,
) -> SecretContext:
    """Make keys and parameters for one federation; returns the key holder's context.

    Args:
        scheme: ``"paillier"``, ``"ckks"`` or ``"bfv"``.
        max_clients: most client updates one sum may hold (sizes the headroom).
        clip: values saturate at ``±clip``.
        frac_bits: fixed-point fractional bits (resolution ``2**-frac_bits``).
        max_weight: largest integer weight (sample count) per client.
        min_clients: smallest sum the key holder agrees to decrypt.
        key_bits: Paillier modulus size (2048 or more).
        keypair: Paillier only: a ``(phe.PaillierPublicKey, phe.PaillierPrivateKey)``
            to use instead of generating one.
        security: CKKS and BFV: 128, 192 or 256 bits.
        rounding: ``"nearest"`` or ``"stochastic"``.
        max_terms: how many tensors (plaintext or encrypted, see
            ``PublicContext.encrypt_term``) may be added to one aggregate.
        term_clip: largest magnitude of a term's values (default ``clip``).
        dp: distributed differential privacy (:class:`secagg.dp.DistributedDP`):
            clients clip their whole update in L2 and add integer discrete
            Gaussian noise before encrypting; the bit budget reserves the noise's
            range (overflow probability at most 2**-40). ``min_clients`` must be
            at least ``dp.min_clients``.
        randomness: Paillier only: ``"djn"`` (default; ``hs**a`` with a short
            exponent from a fixed-base table) or ``"standard"`` (full ``r**n``).
        optimized_keys: Paillier only: Ma-Han-Lei keys (ACSAC 2021), whose
            ℓ-bit exponents make encryption and decryption several times faster;
            still ordinary Paillier keys for ``phe``.
        insecure: allow Paillier keys below 2048 bits, for tests only.

    Example::

        ctx = secagg.generate("paillier", max_clients=100, clip=1.0, frac_bits=16)
        blob = ctx.public.to_bytes()    # for clients and the aggregator
    """
    if dp is not None and not isinstance(dp, DistributedDP):
        raise ConfigError(f"dp must be a secagg.dp.DistributedDP. Found {type(dp).__name__}.")
    codec = FixedPointCodec(
        clip=clip, frac_bits=frac_bits, max_clients=max_clients, max_weight=max_weight,
        rounding=rounding, extra_summands=max_terms, term_clip=term_clip,
        noise_bound=0 if dp is None else dp.noise_bound(frac_bits),
    )
    if isinstance(min_clients, bool) or not isinstance(min_clients, int) or not (
        1 <= min_clients <= max_clients
    ):
        raise ConfigError(f"min_clients must be in [1, max_clients={max_clients}]. Found {min_clients!r}.")
    _check_dp(dp, codec, min_clients)
    if scheme == "paillier":
        secret = _generate_paillier(codec, key_bits, keypair, insecure, randomness, optimized_keys)
    elif scheme in ("ckks", "bfv"):
        if keypair is not None or optimized_keys:
            raise ConfigError("keypair and optimized_keys are for the 'paillier' scheme only.")
        public_cls, secret_cls = scheme_classes(scheme)
        public, secret_ctx = public_cls.generate(codec, security=security)  # type: ignore[attr-defined]
        secret = secret_cls(secret_ctx, public)  # type: ignore[call-arg]
    else:
        scheme_classes(scheme)  # raises ConfigError naming the choices
        raise ConfigError(f"unknown scheme {scheme!r}.")
    return SecretContext(secret, min_clients=min_clients, dp=dp)


def _generate_paillier(
    codec: FixedPointCodec,
    key_bits: int,
    keypair: tuple[Any, Any] | None,
    insecure: bool,
    randomness: str,
    optimized_keys: bool,
) -> SecretBackend:
    import phe

    from .paillier import MIN_SECURE_KEY_BITS, RANDOMNESS, PaillierPublic, PaillierSecret
    from .paillier_keys import djn_generator, generate_optimized_keypair

    if randomness not in RANDOMNESS:
        raise ConfigError(f"randomness must be one of {RANDOMNESS}. Found {randomness!r}.")
    if optimized_keys and (keypair is not None or randomness != "djn"):
        raise ConfigError("optimized_keys generates its own keys and needs randomness='djn'.")
    if keypair is None:
        if isinstance(key_bits, bool) or not isinstance(key_bits, int) or key_bits % 8:
            raise ConfigError(f"key_bits must be a multiple of 8. Found {key_bits!r}.")
        if key_bits < MIN_SECURE_KEY_BITS and not insecure:
            raise ConfigError(
                f"Paillier keys below {MIN_SECURE_KEY_BITS} bits are insecure (asked for "
                f"{key_bits}); pass insecure=True only in tests."
            )
        if key_bits > 16384:
            raise ConfigError(f"key_bits must be at most 16384. Found {key_bits}.")
    small = None
    hs = r_bits = None
    if optimized_keys:
        pk, sk, small, hs, r_bits = generate_optimized_keypair(key_bits)
    elif keypair is not None:
        if not (isinstance(keypair, tuple) and len(keypair) == 2):
            raise ConfigError("keypair must be a (phe.PaillierPublicKey, phe.PaillierPrivateKey) tuple.")
        pk, sk = keypair
    else:
        pk, sk = phe.generate_paillier_keypair(n_length=key_bits)
    if randomness == "djn" and hs is None:
        if not isinstance(pk, phe.PaillierPublicKey):
            raise ConfigError(f"public key must be a phe.PaillierPublicKey. Found {type(pk).__name__}.")
        hs = djn_generator(pk.n)
    public = PaillierPublic(pk, codec, insecure=insecure, randomness=randomness, hs=hs,
                            r_bits=r_bits)
    return PaillierSecret(sk, public, small_factors=small)
