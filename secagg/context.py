"""The roles' key material: ``generate``, :class:`PublicContext`, :class:`SecretContext`.

The key holder calls :func:`generate` and keeps the :class:`SecretContext`;
clients and the aggregator receive ``ctx.public.to_bytes()``, which holds the
codec, the packing or lattice parameters and the public key, never a secret.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, TypeVar, cast, overload

import msgpack
import numpy as np

from secagg import schemes
from secagg._checks import check_choice, check_int, count_of
from secagg.codec import FixedPointCodec, Rounding
from secagg.dp import DistributedDP
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    CountMismatchError,
    EncodingError,
    FormatError,
    InsecureContextError,
    InsufficientClientsError,
    SecAggWarning,
    TreeError,
    WeightError,
)
from secagg.keystore import SavesSealed
from secagg.schemes.base import PublicBackend, SecretBackend
from secagg.tree import flatten, unflatten
from secagg.update import EXTRA_SLOTS, EncryptedUpdate, check_round_id
from secagg.wire import Body, Kind, digest, open_payload, seal

__all__ = ["generate", "PublicContext", "SecretContext", "RawSum", "Reduce", "OnClip",
           "public_only", "raw_sum_from_slots"]

Reduce = Literal["sum", "mean", "weighted_mean"]
#: what ``encrypt`` does with values beyond ``±clip``
OnClip = Literal["saturate", "warn", "raise"]
_ON_CLIP: tuple[OnClip, ...] = ("saturate", "warn", "raise")
#: ``generate``'s ``min_clients`` when none is passed
DEFAULT_MIN_CLIENTS = 2

_T = TypeVar("_T")


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
        clip=body.number("clip"),
        frac_bits=body.integer("frac_bits", 0, 40),
        max_clients=body.integer("max_clients", 1, 2**31),
        max_weight=body.integer("max_weight", 1, 2**31),
        rounding=cast(Rounding, body.text("rounding", choices=("nearest", "stochastic"))),
        extra_summands=body.integer("extra_summands", 0, 2**20),
        term_clip=None if body.optional("term_clip") is None else body.number("term_clip"),
        noise_bound=body.integer("noise_bound", 0, 2**50),
    )


class _Encrypts:
    """What both contexts offer a client: :meth:`encrypt` and :meth:`encrypt_term`.

    A :class:`SecretContext` encrypts with the secret key where the scheme is
    faster with it (CRT encryption for Paillier, seeded symmetric uploads for
    CKKS and BFV); the results decrypt the same.
    """

    def _encryption(self) -> tuple[PublicContext, PublicBackend | SecretBackend]:
        """The public context the updates are made under, and the backend that encrypts."""
        raise NotImplementedError

    def encrypt(
        self,
        tree: Any,
        weight: int | float = 1,
        *,
        round_id: int | str | None = None,
        rng: np.random.Generator | None = None,
        workers: int = 1,
        progress: bool = False,
        on_clip: OnClip = "saturate",
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
            on_clip: what to do with values outside ``[-clip, clip]``:
                ``"saturate"`` (default) clamps them to ``±clip``; ``"warn"``
                clamps them and issues a :class:`secagg.SecAggWarning` saying how
                many (never which values); ``"raise"`` refuses the update with an
                ``EncodingError`` saying how many, before anything is encrypted.

        How many values were clamped is in ``update.num_clipped`` (client side
        only, whatever ``on_clip``). With distributed DP (``dp=`` in
        :func:`generate`) the whole update is first scaled into the L2 ball of
        radius ``dp.l2_clip`` and integer discrete Gaussian noise is added to the
        quantized values before encryption.
        """
        pub, encryptor = self._encryption()
        codec, dp = pub.codec, pub.dp
        check_choice("on_clip", on_clip, _ON_CLIP)
        spec, flat = flatten(tree)
        if spec.num_values == 0:
            raise TreeError("the tree has no floating values to encrypt.")
        w = _check_weight(weight, codec.max_weight)
        round_id = check_round_id(round_id)
        if dp is not None:
            flat, _ = dp.clip_update(flat)
        q, clipped = codec.raw_encode(flat, rng)
        if clipped and on_clip == "raise":
            raise EncodingError(
                f"{_clipped_text(clipped, q.size, codec)}; nothing was encrypted. Scale the "
                f"update down, raise clip in generate(), or pass on_clip='saturate' (or 'warn') "
                f"to clamp such values to ±{codec.clip_value!r}."
            )
        if clipped and on_clip == "warn":
            warnings.warn(
                f"{_clipped_text(clipped, q.size, codec)} and {'was' if clipped == 1 else 'were'} "
                f"clamped to ±{codec.clip_value!r}; if that happens often, scale the update down "
                f"or raise clip in generate() (on_clip='raise' refuses such updates).",
                SecAggWarning, stacklevel=2,
            )
        slots = np.empty(q.size + EXTRA_SLOTS, dtype=np.int64)
        values = slots[: q.size]
        np.multiply(q, w, out=values)
        if dp is not None:
            values += dp.sample_noise(q.size, codec.frac_bits)
        slots[q.size :] = (w, 1)  # encrypted weight and count
        cts = encryptor.raw_encrypt(slots, workers=_check_workers(workers), progress=progress)
        return EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.UPDATE, 1, spec, round_id,
                               cts, pub.backend, num_clipped=clipped)

    def encrypt_term(self, tree: Any, *, round_id: int | str | None = None) -> EncryptedUpdate:
        """Encrypt a tensor to be *added* to an aggregate (a regulariser, a party's noise).

        A term is added once, unweighted, to ``Σ wᵢ·xᵢ``; it counts against
        ``max_terms``, not ``max_clients``, and does not change ``count`` or the
        weight sum. Its values must lie within ``±term_clip`` (default ``clip``):
        a term is never clipped, a larger value raises ``EncodingError``.
        Add it with ``Aggregator.add_term``.
        """
        pub, encryptor = self._encryption()
        if pub.codec.extra_summands == 0:
            raise ConfigError("this context reserves no room for terms; pass max_terms to generate().")
        spec, flat = flatten(tree)
        if spec.num_values == 0:
            raise TreeError("the tree has no floating values to encrypt.")
        round_id = check_round_id(round_id)
        slots = np.zeros(flat.size + EXTRA_SLOTS, dtype=np.int64)  # weight 0, count 0
        slots[: flat.size] = pub.codec.raw_encode_term(flat)
        cts = encryptor.raw_encrypt(slots, term=True)
        return EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.TERM, 0, spec, round_id,
                               cts, pub.backend, terms=1)


def _clipped_text(clipped: int, total: int, codec: FixedPointCodec) -> str:
    """``"3 of 10 values exceeded clip=1.0"``: a count and the clip, never a value."""
    text = f"{clipped} of {count_of(total, 'value')} exceeded clip={codec.clip!r}"
    if codec.clip_value != codec.clip:  # clip * 2**frac_bits is not an integer
        text += f" (the codec saturates at ±{codec.clip_value!r})"
    return text


class PublicContext(_Encrypts):
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

    def _encryption(self) -> tuple[PublicContext, PublicBackend | SecretBackend]:
        return self, self.backend

    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """Precompute encryption randomness for ``count`` ciphertexts.

        Paillier: the ``R`` of each ciphertext; CKKS/BFV: public-key encryptions
        of zero (``pub.backend.num_ciphertexts(values + 2)`` per update). Run it
        between rounds: online encryption then costs one modular product per
        Paillier ciphertext, an encoding and an addition per lattice one. The
        pool stays in this object and is never reused. Schemes declare the
        capability (``"precompute" in backend.capabilities``); the others raise
        ``ConfigError``.
        """
        self.backend.precompute(count, workers=_check_workers(workers), progress=progress)

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
        return seal(Kind.PUBLIC_CONTEXT, self._body())

    @classmethod
    def _from_body(cls, body: Body, *, allow_insecure: bool = False) -> PublicContext:
        scheme = body.text("scheme")
        public_cls, _ = _scheme_or_format_error(scheme)
        try:
            codec = _codec_from(body.section("codec"))
        except ConfigError as exc:
            raise FormatError(f"invalid codec parameters: {exc}") from None
        min_clients = body.integer("min_clients", 1, codec.max_clients)
        dp = None
        if body.optional("dp") is not None:
            dpb = body.section("dp")
            try:
                dp = DistributedDP(dpb.number("l2_clip"), dpb.number("noise_multiplier"),
                                   dpb.integer("min_clients", 1, codec.max_clients))
                _check_dp(dp, codec, min_clients)
            except (ConfigError, ValueError, ArithmeticError) as exc:
                raise FormatError(f"invalid DP parameters: {exc}") from None
        backend = public_cls.from_material(body.section("backend"), codec)
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


def check_dp_codec(dp: DistributedDP | None, codec: FixedPointCodec) -> bool:
    """The codec must reserve exactly the noise's range, and round to nearest; whether DP is on."""
    if dp is None:
        if codec.noise_bound:
            raise ConfigError("the codec reserves room for noise but no DP parameters are set.")
        return False
    if codec.noise_bound != dp.noise_bound(codec.frac_bits):
        raise ConfigError(
            f"codec noise_bound {codec.noise_bound} does not match the DP noise bound "
            f"{dp.noise_bound(codec.frac_bits)}."
        )
    if codec.rounding != "nearest":
        raise ConfigError("distributed DP needs rounding='nearest' (its sensitivity assumes it).")
    return True


def _check_dp(dp: DistributedDP | None, codec: FixedPointCodec, min_clients: int) -> None:
    """The codec must reserve the noise's range, and decryption must wait for enough noise."""
    if not check_dp_codec(dp, codec) or dp is None:
        return
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
        return schemes.get(scheme).classes()
    except ConfigError:
        raise FormatError(f"payload names unknown scheme {scheme!r:.40}.") from None


def public_only(context: object, what: str = "this") -> PublicContext:
    """``context`` if it is a :class:`PublicContext`; a clear error for a secret one.

    The one rule for everything that holds public material only (the
    aggregator, a server-side strategy): a ``SecretContext`` is refused, never
    silently stripped, so a secret cannot reach a server by accident.
    """
    if isinstance(context, SecretContext):
        raise ConfigError(
            f"{what} takes the public context only; pass ctx.public (or "
            f"ctx.public.to_bytes()), never the secret context."
        )
    if not isinstance(context, PublicContext):
        raise ConfigError(f"{what} needs a secagg.PublicContext. Found {type(context).__name__}.")
    return context


def raw_sum_from_slots(sums: np.ndarray, total: EncryptedUpdate,
                       codec: FixedPointCodec) -> RawSum:
    """Check the decrypted weight and count slots of ``total`` and split them off.

    Every way of decrypting (a key holder, threshold share holders) ends here.
    After decryption the messages name the check, never the decrypted numbers:
    a deviating server would otherwise read them off an error reply.
    """
    weight_sum, count = int(sums[-2]), int(sums[-1])
    if count != total.count:
        raise CountMismatchError(
            "the encrypted count does not match the count in the payload's header: the "
            "payload was relabelled or crafted. It is refused."
        )
    if not total.count <= weight_sum <= total.count * codec.max_weight:
        raise CountMismatchError(
            "the encrypted weight sum is impossible for the payload's count and the "
            "context's max_weight: the aggregate was crafted. It is refused."
        )
    return RawSum(sums[:-EXTRA_SLOTS], weight_sum, total.count, total.terms)


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


class _OfPublic(Generic[_T]):
    """A read-only attribute of :class:`SecretContext` that is its public half's."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _OfPublic[_T]:
        ...

    @overload
    def __get__(self, obj: SecretContext, owner: type | None = None) -> _T:
        ...

    def __get__(self, obj: SecretContext | None, owner: type | None = None) -> _T | _OfPublic[_T]:
        if obj is None:
            return self
        value: _T = getattr(obj.public, self._name)
        return value

    def __set__(self, obj: SecretContext, value: _T) -> NoReturn:
        raise AttributeError(f"property {self._name!r} of 'SecretContext' object has no setter")


class SecretContext(_Encrypts, SavesSealed):
    """The key holder's context: the public half (``ctx.public``) plus the secret key.

    It is not a :class:`PublicContext` (nothing that takes public material
    accepts it), but it offers what a client holding a shared key needs
    (:meth:`encrypt`, :meth:`encrypt_term`, :meth:`precompute`, and the public
    attributes ``scheme``, ``codec``, ``fingerprint``, ``min_clients``, ``dp``)
    and what the key holder needs (:meth:`decrypt`, :meth:`decrypt_raw`).
    Keep it away from the aggregator; share ``ctx.public.to_bytes()`` instead.
    """

    def __init__(
        self, secret: SecretBackend, *, min_clients: int = 2, dp: DistributedDP | None = None
    ) -> None:
        self.public = PublicContext(secret.public, min_clients=min_clients, dp=dp)
        self.secret_backend = secret

    # -- the public half's attributes (read-only) ----------------------------------
    scheme: _OfPublic[str] = _OfPublic("The scheme's registered name.")
    codec: _OfPublic[FixedPointCodec] = _OfPublic("The shared codec.")
    backend: _OfPublic[PublicBackend] = _OfPublic("The public half's scheme backend.")
    fingerprint: _OfPublic[bytes] = _OfPublic("16 bytes naming the public context.")
    min_clients: _OfPublic[int] = _OfPublic("The smallest sum this key holder decrypts.")
    dp: _OfPublic[DistributedDP | None] = _OfPublic("Distributed DP parameters, if any.")

    def __repr__(self) -> str:
        return repr(self.public).replace("PublicContext(", "SecretContext(", 1)

    def _encryption(self) -> tuple[PublicContext, PublicBackend | SecretBackend]:
        return self.public, self.secret_backend

    def describe(self) -> dict[str, Any]:
        """The public half's parameters (see :meth:`PublicContext.describe`)."""
        return self.public.describe()

    # -- a client holding the shared key -----------------------------------------
    def precompute(self, count: int, *, workers: int = 1, progress: bool = False) -> None:
        """As :meth:`PublicContext.precompute`."""
        self.public.precompute(count, workers=workers, progress=progress)

    def epsilon(self, rounds: int, delta: float, *, dim: int,
                reporting_clients: int | list[int] | None = None) -> float:
        """As :meth:`PublicContext.epsilon`."""
        return self.public.epsilon(rounds, delta, dim=dim, reporting_clients=reporting_clients)

    # -- the key holder ------------------------------------------------------------
    def _check_total(self, total: EncryptedUpdate | bytes) -> EncryptedUpdate:
        if isinstance(total, (bytes, bytearray, memoryview)):
            total = EncryptedUpdate.from_bytes(bytes(total), self.public)
        if not isinstance(total, EncryptedUpdate):
            raise TreeError(f"expected an EncryptedUpdate or its bytes. Found {type(total).__name__}.")
        if total.fingerprint != self.fingerprint or total.scheme != self.scheme:
            raise ContextMismatchError("this sum was made under another key or codec.")
        if total.count < self.min_clients:
            raise InsufficientClientsError(
                f"refusing to decrypt a sum of {count_of(total.count, 'client update')}; min_clients is "
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
        return raw_sum_from_slots(sums, total, self.codec)

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
            {"public": self.public._body(), "secret": self.secret_backend.material()},
        )

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
        from secagg.keystore import unseal_if_sealed

        data = unseal_if_sealed(data, passphrase, "secret context")
        _, body = open_payload(data, Kind.SECRET_CONTEXT)
        public = PublicContext._from_body(body.section("public"), allow_insecure=allow_insecure)
        _, secret_cls = _scheme_or_format_error(public.scheme)
        secret = secret_cls.from_material(body.section("secret"), public.backend)
        return cls(secret, min_clients=public.min_clients, dp=public.dp)


def make_codec(*, clip: float, frac_bits: int, max_clients: int, max_weight: int,
               rounding: Rounding, max_terms: int, term_clip: float | None,
               dp: DistributedDP | None) -> FixedPointCodec:
    """The codec for :func:`generate`'s options (shared with ``secagg.threshold.deal``)."""
    return FixedPointCodec(
        clip=clip, frac_bits=frac_bits, max_clients=max_clients, max_weight=max_weight,
        rounding=rounding, extra_summands=max_terms, term_clip=term_clip,
        noise_bound=0 if dp is None else dp.noise_bound(frac_bits),
    )


def generate(
    scheme: str,
    *,
    max_clients: int = 100,
    clip: float = 1.0,
    frac_bits: int = 16,
    max_weight: int = 1,
    min_clients: int | None = None,
    rounding: Rounding = "nearest",
    max_terms: int = 0,
    term_clip: float | None = None,
    dp: DistributedDP | None = None,
    **options: Any,
) -> SecretContext:
    """Make keys and parameters for one federation; returns the key holder's context.

    Args:
        scheme: a registered scheme (``secagg.schemes.available()``:
            ``"paillier"``, ``"ckks"``, ``"bfv"``, and any plug-in).
        max_clients: most client updates one sum may hold (sizes the headroom).
        clip: values saturate at ``±clip``.
        frac_bits: fixed-point fractional bits (resolution ``2**-frac_bits``).
        max_weight: largest integer weight (sample count) per client.
        min_clients: smallest sum the key holder agrees to decrypt (default 2;
            at most ``max_clients``; 1 only in tests, as decrypting a single
            update reveals it).
        rounding: ``"nearest"`` or ``"stochastic"``.
        max_terms: how many tensors (plaintext or encrypted, see
            ``PublicContext.encrypt_term``) may be added to one aggregate.
        term_clip: largest magnitude of a term's values (default ``clip``).
        dp: distributed differential privacy (:class:`secagg.dp.DistributedDP`):
            clients clip their whole update in L2 and add integer discrete
            Gaussian noise before encrypting; the bit budget reserves the noise's
            range (overflow probability at most 2**-40). ``min_clients`` must be
            at least ``dp.min_clients`` and ``max_weight`` 1.
        **options: the scheme's own options, validated by the scheme (an unknown
            one is refused with an error naming the allowed ones):

            - ``"paillier"``: ``key_bits`` (2048 or more; default 2048),
              ``keypair`` (a ``(phe.PaillierPublicKey, phe.PaillierPrivateKey)``
              to use instead of generating one), ``randomness`` (``"djn"``,
              default: ``hs**a`` with a short exponent from a fixed-base table;
              or ``"standard"``: full ``r**n``), ``optimized_keys`` (Ma–Han–Lei
              keys, ACSAC 2021: ℓ-bit exponents, several times faster; still
              ordinary Paillier keys for ``phe``), ``insecure`` (allow keys below
              2048 bits, for tests only).
            - ``"ckks"``, ``"bfv"``: ``security`` (128, 192 or 256 bits).

    Example::

        ctx = secagg.generate("paillier", max_clients=100, clip=1.0, frac_bits=16)
        blob = ctx.public.to_bytes()    # for clients and the aggregator
    """
    entry = schemes.get(scheme)
    if dp is not None and not isinstance(dp, DistributedDP):
        raise ConfigError(f"dp must be a secagg.dp.DistributedDP. Found {type(dp).__name__}.")
    codec = make_codec(clip=clip, frac_bits=frac_bits, max_clients=max_clients,
                       max_weight=max_weight, rounding=rounding, max_terms=max_terms,
                       term_clip=term_clip, dp=dp)
    min_clients = _check_min_clients(min_clients, codec.max_clients, dp)
    _check_dp(dp, codec, min_clients)
    return SecretContext(entry.make(codec, options), min_clients=min_clients, dp=dp)


def _check_min_clients(min_clients: object, max_clients: int, dp: DistributedDP | None) -> int:
    """``generate``'s ``min_clients``; the message names what the user passed, or the default."""
    if min_clients is None:
        if max_clients < DEFAULT_MIN_CLIENTS:
            raise ConfigError(
                f"max_clients={max_clients} is below the default min_clients="
                f"{DEFAULT_MIN_CLIENTS} (the smallest sum the key holder decrypts); pass "
                f"min_clients={max_clients} as well. Decrypting a single update reveals it, "
                f"so only do that in tests."
            )
        if dp is not None and dp.min_clients > DEFAULT_MIN_CLIENTS:
            raise ConfigError(
                f"the default min_clients={DEFAULT_MIN_CLIENTS} is below the DP calibration "
                f"target dp.min_clients={dp.min_clients}: a smaller sum would carry too little "
                f"noise. Pass min_clients={dp.min_clients} (or more) as well."
            )
        return DEFAULT_MIN_CLIENTS
    n = check_int("min_clients", min_clients, 1)
    if n > max_clients:
        raise ConfigError(
            f"min_clients={n} is above max_clients={max_clients}: a sum holds at most "
            f"max_clients updates, so the key holder would never decrypt one. Lower "
            f"min_clients or raise max_clients."
        )
    return n
