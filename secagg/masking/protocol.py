"""The masking protocol's parties: :class:`MaskingConfig`, :class:`MaskingClient`, :class:`MaskingServer`.

Every method that takes a message takes its bytes, validates all of it, and only
then changes state: a refused message (any :class:`secagg.SecAggError`) leaves
the party exactly as it was, ready for the right message. See
:mod:`secagg.masking` for the protocol, the messages and the security notes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, cast

import msgpack
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg._checks import check_int
from secagg.codec import FixedPointCodec, Rounding
from secagg.context import RawSum, check_dp_codec
from secagg.dp import DistributedDP
from secagg.errors import (
    ConfigError,
    ContextMismatchError,
    CountMismatchError,
    FormatError,
    InsecureThresholdError,
    KeyAuthenticationError,
    PeerSetError,
    ReconstructionError,
    ReplayError,
    RoundMismatchError,
    StageError,
    SumOverflowError,
    TooFewSurvivorsError,
    TreeError,
    TreeMismatchError,
    UnmaskRefusedError,
    WeightError,
)
from secagg.masking import shamir
from secagg.masking.crypto import (
    NONCE_BYTES,
    TAG_BYTES,
    MaskExpander,
    decrypt_share,
    derive,
    encrypt_share,
    word_dtype,
)
from secagg.masking.graph import Graph
from secagg.masking.packing import MAX_WIDTH, pack, packed_size, unpack_add
from secagg.tree import TreeSpec, flatten, unflatten
from secagg.update import EXTRA_SLOTS, RoundId, check_round_id
from secagg.wire import Body, Kind, digest, open_payload, seal

__all__ = ["MaskingConfig", "MaskingClient", "MaskingServer", "MaskedAggregate", "Stage",
           "STAGES", "Reduce"]

Stage = Literal["keys", "shares", "masked", "unmask"]
#: the client stages, in order; ``run_round``'s ``dropouts`` keys
STAGES: tuple[Stage, ...] = ("keys", "shares", "masked", "unmask")
Reduce = Literal["sum", "mean", "weighted_mean"]

_MAX_CLIENTS = 1 << 24
_KEY_BYTES = 32
_SIG_BYTES = 64
_SHARE_PLAIN = 2 * shamir.LIMBS * 4  # self-mask seed share and mask-key share, uint32 limbs
_SHARE_CT = NONCE_BYTES + _SHARE_PLAIN + TAG_BYTES
_LIMB_BLOB = shamir.LIMBS * 4
_CLIENT_KINDS = {Kind.MASK_KEYS: "keys", Kind.MASK_SHARES: "shares", Kind.MASK_INPUT: "masked",
                 Kind.MASK_CONSISTENCY: "consistency", Kind.MASK_UNMASK: "unmask"}


# ---------------------------------------------------------------------------
# the round configuration
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskingConfig:
    """One round's public parameters, published by the server and checked by every client.

    Build one with :meth:`create`; clients load the server's with :meth:`from_bytes`,
    which refuses a threshold at most half the holders (``InsecureThresholdError``).

    Attributes:
        round_id: the round (int or short string); bound into every key and message.
        num_clients: ``n``; clients are ``0 .. n-1``.
        threshold: ``t``: shares needed to rebuild a secret; ``holders / 2 < t <= holders``.
        neighbors: ``None`` (complete graph, SecAgg) or the degree ``k`` (SecAgg+).
        seed: 32 bytes from the server's CSPRNG: they make this round's configuration (and so
            its fingerprint, the HKDF salt) unique even when every other field repeats, and
            fix the SecAgg+ graph.
        codec: the fixed-point codec (``max_clients >= n``); the masking group is
            ``Z_{2**w}`` with ``w = codec.slot_bits`` (the noise bound included).
        dp: distributed DP, or ``None``; ``dp.min_clients <= threshold``.
    """

    round_id: RoundId
    num_clients: int
    threshold: int
    neighbors: int | None
    seed: bytes
    codec: FixedPointCodec
    dp: DistributedDP | None = None

    def __post_init__(self) -> None:
        check_round_id(self.round_id)
        n = check_int("num_clients", self.num_clients, 2, _MAX_CLIENTS)
        if self.neighbors is not None:
            check_int("neighbors", self.neighbors, 2, n - 1)
        if not isinstance(self.seed, bytes) or len(self.seed) != 32:
            raise ConfigError("a masking round needs a 32-byte seed.")
        holders = self.graph.holders
        t = check_int("threshold", self.threshold, 1, None)
        if 2 * t <= holders or t > holders:
            raise InsecureThresholdError(
                f"threshold={t} must be above half the {holders} holders of each secret and at "
                f"most {holders} (so {holders // 2 + 1} <= threshold <= {holders}): with "
                f"threshold <= holders/2 a server could rebuild both secrets of one client."
            )
        codec = self.codec
        if codec.extra_summands or codec.term_clip is not None:
            raise ConfigError("masked aggregation adds no terms: the codec must reserve none.")
        if codec.max_clients < n:
            raise ConfigError(f"codec max_clients={codec.max_clients} is below num_clients={n}.")
        if codec.slot_bits > MAX_WIDTH:
            raise ConfigError(f"the masking group needs {codec.slot_bits} bits, above {MAX_WIDTH}.")
        _check_dp(self.dp, codec, t)

    @classmethod
    def create(
        cls, num_clients: int, threshold: int, *, neighbors: int | None = None,
        clip: float = 1.0, frac_bits: int = 16, max_weight: int = 1,
        max_clients: int | None = None, dp: DistributedDP | None = None,
        round_id: RoundId = 0, rounding: Rounding = "nearest",
    ) -> MaskingConfig:
        """A configuration with a fresh seed (``os.urandom``) and the codec built as
        ``secagg.generate`` builds it (``noise_bound`` from ``dp``)."""
        if dp is not None and not isinstance(dp, DistributedDP):
            raise ConfigError(f"dp must be a secagg.dp.DistributedDP. Found {type(dp).__name__}.")
        n = check_int("num_clients", num_clients, 2, _MAX_CLIENTS)
        codec = FixedPointCodec(
            clip=clip, frac_bits=frac_bits, max_clients=n if max_clients is None else max_clients,
            max_weight=max_weight, rounding=rounding,
            noise_bound=0 if dp is None else dp.noise_bound(frac_bits),
        )
        k = neighbors
        if k is not None:
            k = check_int("neighbors", k, 2, n - 1)
        return cls(round_id, n, threshold, k, os.urandom(32), codec, dp)

    # -- derived ---------------------------------------------------------------
    @cached_property
    def graph(self) -> Graph:
        """Who masks with whom."""
        return Graph(self.num_clients, self.neighbors, self.seed)

    @property
    def width(self) -> int:
        """``w``: the masking group is ``Z_{2**w}``; every sum of ``max_clients`` fits it."""
        return self.codec.slot_bits

    @property
    def holders(self) -> int:
        """Holders of one client's shares: ``n`` (complete graph) or ``k + 1``."""
        return self.graph.holders

    def _body(self) -> dict[str, Any]:
        dp = self.dp
        return {
            "round": self.round_id,
            "n": self.num_clients,
            "t": self.threshold,
            "k": self.neighbors,
            "seed": self.seed,
            "codec": self.codec.params(),
            "dp": None if dp is None else {"l2_clip": dp.l2_clip,
                                           "noise_multiplier": dp.noise_multiplier,
                                           "min_clients": dp.min_clients},
        }

    @cached_property
    def fingerprint(self) -> bytes:
        """16 bytes naming this configuration (HKDF salt, and carried by every message)."""
        return digest(msgpack.packb(self._body(), use_bin_type=True))

    def to_bytes(self) -> bytes:
        """The configuration as a ``MASK_CONFIG`` payload."""
        return seal(Kind.MASK_CONFIG, self._body())

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskingConfig:
        """Load and check a configuration.

        Raises a ``FormatError`` subclass for malformed bytes and
        ``InsecureThresholdError`` for a threshold at most half the holders.
        """
        _, body = open_payload(data, Kind.MASK_CONFIG)
        round_id = check_round_id(body.optional("round"))
        n = body.integer("n", 2, _MAX_CLIENTS)
        t = body.integer("t", 1, _MAX_CLIENTS)
        k = None if body.optional("k") is None else body.integer("k", 2, n - 1)
        seed = body.blob("seed", size=32)
        try:
            c = body.section("codec")
            codec = FixedPointCodec(
                clip=c.number("clip"), frac_bits=c.integer("frac_bits", 0, 40),
                max_clients=c.integer("max_clients", 1, 2**31),
                max_weight=c.integer("max_weight", 1, 2**31),
                rounding=cast(Rounding, c.text("rounding", choices=("nearest", "stochastic"))),
                extra_summands=c.integer("extra_summands", 0, 0),
                noise_bound=c.integer("noise_bound", 0, 2**50),
            )
            if c.optional("term_clip") is not None:
                raise FormatError("masked aggregation takes no term_clip.")
            dp = None
            if body.optional("dp") is not None:
                d = body.section("dp")
                dp = DistributedDP(d.number("l2_clip"), d.number("noise_multiplier"),
                                   d.integer("min_clients", 1, n))
            return cls(round_id, n, t, k, seed, codec, dp)
        except InsecureThresholdError:
            raise
        except ConfigError as exc:
            raise FormatError(f"invalid masking configuration: {exc}") from None

    def epsilon(self, rounds: int, delta: float, *, dim: int,
                reporting_clients: int | list[int] | None = None) -> float:
        """Distributed DP's ``epsilon`` (as ``PublicContext.epsilon``); default count: ``threshold``.

        ``threshold`` is the fewest clients any unmasked sum can hold, hence the
        largest ``epsilon``; pass the actual counts (``MaskedAggregate.count``) for
        the achieved one. ``ConfigError`` without DP.
        """
        if self.dp is None:
            raise ConfigError("this round has no distributed DP (pass dp=).")
        counts = self.threshold if reporting_clients is None else reporting_clients
        return self.dp.epsilon(rounds, delta, frac_bits=self.codec.frac_bits, dim=dim,
                               reporting_clients=counts, max_weight=self.codec.max_weight)


def _check_dp(dp: DistributedDP | None, codec: FixedPointCodec, threshold: int) -> None:
    if not check_dp_codec(dp, codec) or dp is None:
        return
    if codec.max_weight != 1:
        raise ConfigError("distributed DP calibrates its noise for weight 1: pass max_weight=1.")
    if dp.min_clients > threshold:
        raise ConfigError(
            f"dp.min_clients={dp.min_clients} is above threshold={threshold}: a sum of "
            f"threshold clients, the fewest the protocol unmasks, would carry too little noise."
        )


# ---------------------------------------------------------------------------
# message helpers
# ---------------------------------------------------------------------------
def _header(config: MaskingConfig) -> dict[str, Any]:
    return {"round": config.round_id, "cfg": config.fingerprint}


def _open(data: bytes, kind: Kind, config: MaskingConfig) -> Body:
    _, body = open_payload(data, kind)
    _check_header(body, config)
    return body


def _check_header(body: Body, config: MaskingConfig) -> None:
    round_id = body.optional("round")
    if type(round_id) is not type(config.round_id) or round_id != config.round_id:
        raise RoundMismatchError(
            f"message belongs to round {round_id!r:.40}, this party is in round {config.round_id!r}."
        )
    if body.blob("cfg", size=16) != config.fingerprint:
        raise ContextMismatchError("message was made under another masking configuration.")


def _index(body: Body, name: str, n: int) -> int:
    return body.integer(name, 0, n - 1)


def _index_list(body: Body, name: str, n: int) -> list[int]:
    items = body.items(name, max_len=n)
    if not all(type(x) is int and 0 <= x < n for x in items):
        raise FormatError(f"field {name!r} must list client indices in [0, {n}).")
    if any(a >= b for a, b in itertools.pairwise(items)):
        raise FormatError(f"field {name!r} must be sorted and free of duplicates.")
    return list(items)


def _pairs(body: Body, name: str, n: int, size: int) -> dict[int, bytes]:
    """A list of ``[index, blob]`` entries: distinct indices, blobs of exactly ``size`` bytes."""
    out: dict[int, bytes] = {}
    for item in body.items(name, max_len=n):
        if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int
                and 0 <= item[0] < n and isinstance(item[1], bytes)):
            raise FormatError(f"field {name!r} must hold [client index, bytes] pairs.")
        if len(item[1]) != size:
            raise FormatError(f"an entry of {name!r} is {len(item[1])} bytes, expected {size}.")
        if item[0] in out:
            raise PeerSetError(f"client {item[0]} appears twice in {name!r}.")
        out[item[0]] = item[1]
    return out


def _advert_message(config: MaskingConfig, index: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """What an Ed25519 signature on advertised keys covers."""
    packed: bytes = msgpack.packb([config.round_id, index, c_pk, s_pk], use_bin_type=True)
    return b"secagg/masking/v1|keys|" + config.fingerprint + packed


def _verify_advert(config: MaskingConfig, key: Ed25519PublicKey, index: int, c_pk: bytes,
                   s_pk: bytes, sig: bytes) -> None:
    if len(sig) != _SIG_BYTES:
        raise KeyAuthenticationError(f"the keys advertised for client {index} are not signed.")
    try:
        key.verify(sig, _advert_message(config, index, c_pk, s_pk))
    except InvalidSignature:
        raise KeyAuthenticationError(
            f"the keys advertised for client {index} do not carry its signature: they were "
            f"substituted or altered."
        ) from None


def _consistency_message(config: MaskingConfig, u3: list[int]) -> bytes:
    """What a client's consistency signature covers: the configuration, the round and ``U3``."""
    packed: bytes = msgpack.packb([config.round_id, sorted(u3)], use_bin_type=True)
    return b"secagg/masking/v1|consistency|" + config.fingerprint + packed


def _share_aad(config: MaskingConfig, sender: int, receiver: int) -> bytes:
    packed: bytes = msgpack.packb([config.round_id, sender, receiver, "shares"], use_bin_type=True)
    return b"secagg/masking/v1|share|" + config.fingerprint + packed


def _commitment(config: MaskingConfig, index: int, seed: bytes) -> bytes:
    return hashlib.sha256(b"secagg/masking/v1|self-seed|" + config.fingerprint
                          + index.to_bytes(4, "big") + seed).digest()


def _exchange(sk: X25519PrivateKey, pk: bytes, who: int) -> bytes:
    try:
        return sk.exchange(X25519PublicKey.from_public_bytes(pk))
    except ValueError:
        raise KeyAuthenticationError(
            f"the public key advertised for client {who} is invalid (a low-order point)."
        ) from None


def _pair_key(config: MaskingConfig, secret: bytes, purpose: str, a: int, b: int) -> bytes:
    return derive(secret, salt=config.fingerprint, purpose=purpose, round_id=config.round_id,
                  u=min(a, b), v=max(a, b))


def _self_key(config: MaskingConfig, seed: bytes, index: int) -> bytes:
    return derive(seed, salt=config.fingerprint, purpose="self-mask", round_id=config.round_id,
                  u=index, v=index)


def _limbs_from(blob: bytes, rows: int) -> np.ndarray:
    limbs = np.frombuffer(blob, dtype="<u4").astype(np.int64).reshape(rows, shamir.LIMBS)
    if np.any(limbs >= shamir.P):
        raise FormatError("a share holds a value outside the field.")
    return limbs


def _limb_blob(limbs: np.ndarray) -> bytes:
    return np.ascontiguousarray(limbs, dtype="<u4").tobytes()


def check_weight(weight: object, max_weight: int) -> int:
    """An integer weight in ``[1, max_weight]`` (an integral float is accepted); ``WeightError``."""
    if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
        if isinstance(weight, (float, np.floating)) and float(weight).is_integer():
            weight = int(weight)
        else:
            raise WeightError(f"weight must be an integer sample count. Found {weight!r:.40}.")
    if not 1 <= int(weight) <= max_weight:
        raise WeightError(f"weight must be in [1, max_weight={max_weight}]. Found {weight}.")
    return int(weight)


def _need(have: int, config: MaskingConfig, what: str) -> None:
    if have < config.threshold:
        raise TooFewSurvivorsError(
            f"{what}: {have} of the holders remain, fewer than threshold={config.threshold}; "
            f"the round stops and nothing is unmasked."
        )


# ---------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------
class MaskingClient:
    """One client's side of one round: four stages, bytes in and bytes out.

    ``advertise_keys() -> MASK_KEYS``; ``share_keys(MASK_KEY_LIST) -> MASK_SHARES``;
    ``masked_input(MASK_SHARE_LIST, tree, weight) -> MASK_INPUT``;
    with signing keys ``consistency(MASK_CONSISTENCY_REQUEST) -> MASK_CONSISTENCY`` first;
    ``unmask(MASK_UNMASK_REQUEST) -> MASK_UNMASK`` (may be asked again, never for
    both secrets of one peer). Each stage method runs once; a refused message
    raises and changes nothing.

    Args:
        config: the server's configuration (bytes or :class:`MaskingConfig`).
        index: this client's index in ``[0, num_clients)``.
        signing_key: this client's long-term Ed25519 key; signs its advertised keys.
        peer_keys: the other clients' long-term Ed25519 public keys. When given,
            every advertised key of a neighbour must carry its owner's signature
            (``KeyAuthenticationError`` otherwise): the server cannot substitute keys.
    """

    def __init__(
        self, config: MaskingConfig | bytes, index: int, *,
        signing_key: Ed25519PrivateKey | None = None,
        peer_keys: Mapping[int, Ed25519PublicKey] | None = None,
    ) -> None:
        if isinstance(config, (bytes, bytearray, memoryview)):
            config = MaskingConfig.from_bytes(bytes(config))
        if not isinstance(config, MaskingConfig):
            raise ConfigError(f"config must be a MaskingConfig or its bytes. Found "
                              f"{type(config).__name__}.")
        self.config = config
        self.index = check_int("index", index, 0, config.num_clients - 1)
        if signing_key is not None and not isinstance(signing_key, Ed25519PrivateKey):
            raise ConfigError("signing_key must be an Ed25519PrivateKey.")
        self._signing_key = signing_key
        self._peer_keys = None if peer_keys is None else dict(peer_keys)
        self.neighbours = config.graph.neighbours(self.index)
        #: the next stage this client expects ("keys", "shares", "masked", "unmask")
        self.stage: Stage = "keys"
        self._c_sk = X25519PrivateKey.generate()  # encrypts relayed shares
        self._s_sk = X25519PrivateKey.generate()  # pairwise masks
        self._pair_seeds: dict[int, bytes] = {}
        self._share_keys: dict[int, bytes] = {}
        self._self_seed = b""
        self._own_share = np.zeros((2, shamir.LIMBS), dtype=np.int64)
        self._view: frozenset[int] = frozenset()  # peers that shared with us, and us
        self._held: dict[int, np.ndarray] = {}
        self._revealed_self: set[int] = set()
        self._revealed_key: set[int] = set()
        #: the U3 this client signed in the consistency round (only with signing keys)
        self._signed_u3: frozenset[int] | None = None

    @property
    def checks_consistency(self) -> bool:
        """Whether this client runs [BIK+17]'s consistency round (it holds a signing key and
        its peers' keys): it then unmasks only after :meth:`consistency`."""
        return self._signing_key is not None and self._peer_keys is not None

    def _expect(self, stage: Stage) -> None:
        if self.stage != stage:
            raise StageError(f"client {self.index} is at stage {self.stage!r}, not {stage!r}.")

    # -- stage 1 -----------------------------------------------------------------
    def advertise_keys(self) -> bytes:
        """``MASK_KEYS``: this round's two X25519 public keys, signed if a signing key is held."""
        self._expect("keys")
        c_pk = self._c_sk.public_key().public_bytes_raw()
        s_pk = self._s_sk.public_key().public_bytes_raw()
        sig = b"" if self._signing_key is None else self._signing_key.sign(
            _advert_message(self.config, self.index, c_pk, s_pk))
        body = _header(self.config) | {"from": self.index, "c_pk": c_pk, "s_pk": s_pk, "sig": sig}
        msg = seal(Kind.MASK_KEYS, body)
        self.stage = "shares"
        return msg

    # -- stage 2 -----------------------------------------------------------------
    def share_keys(self, key_list: bytes) -> bytes:
        """``MASK_SHARES`` from the server's ``MASK_KEY_LIST``.

        Checks the list (neighbours only, no duplicates or reflected keys, signatures
        when ``peer_keys`` are held, at least ``threshold`` holders), draws the
        self-mask seed, Shamir-shares it and the mask key among the listed peers and
        itself, and encrypts each peer's share to it.
        """
        self._expect("shares")
        config, me = self.config, self.index
        body = _open(key_list, Kind.MASK_KEY_LIST, config)
        if _index(body, "to", config.num_clients) != me:
            raise PeerSetError("this key list is addressed to another client.")
        peers: dict[int, tuple[bytes, bytes]] = {}
        for item in body.items("peers", max_len=config.num_clients):
            if not (isinstance(item, list) and len(item) == 4 and type(item[0]) is int
                    and all(isinstance(x, bytes) for x in item[1:])
                    and len(item[1]) == _KEY_BYTES and len(item[2]) == _KEY_BYTES
                    and len(item[3]) in (0, _SIG_BYTES)):
                raise FormatError("key list entries must be [index, c_pk, s_pk, signature].")
            v, c_pk, s_pk, sig = item
            if v not in self.neighbours:
                raise PeerSetError(f"client {v} in the key list is not a neighbour of {me}.")
            if v in peers:
                raise PeerSetError(f"client {v} appears twice in the key list.")
            if self._peer_keys is not None:
                if v not in self._peer_keys:
                    raise KeyAuthenticationError(f"no long-term key is known for client {v}.")
                _verify_advert(config, self._peer_keys[v], v, c_pk, s_pk, sig)
            peers[v] = (c_pk, s_pk)
        own = {self._c_sk.public_key().public_bytes_raw(), self._s_sk.public_key().public_bytes_raw()}
        keys = [k for pair in peers.values() for k in pair]
        if len(set(keys) | own) != len(keys) + 2:
            raise PeerSetError("the key list repeats a public key (or reflects this client's own).")
        _need(len(peers) + 1, config, f"key list for client {me}")
        share_keys = {v: _pair_key(config, _exchange(self._c_sk, c, v), "share-encryption", me, v)
                      for v, (c, _) in peers.items()}
        pair_seeds = {v: _pair_key(config, _exchange(self._s_sk, s, v), "pairwise-mask", me, v)
                      for v, (_, s) in peers.items()}
        seed = os.urandom(shamir.SECRET_BYTES)
        secrets = np.stack([shamir.secret_to_limbs(seed),
                            shamir.secret_to_limbs(self._s_sk.private_bytes_raw())])
        holders = sorted([me, *peers])
        shares = shamir.split(secrets, np.array(holders, dtype=np.int64) + 1, config.threshold)
        out = []
        for h, v in enumerate(holders):
            if v != me:
                ct = encrypt_share(share_keys[v], _share_aad(config, me, v), _limb_blob(shares[h]))
                out.append([v, ct])
        msg = seal(Kind.MASK_SHARES, _header(config) | {
            "from": me, "shares": out, "commit": _commitment(config, me, seed)})
        # commit
        self._share_keys, self._pair_seeds, self._self_seed = share_keys, pair_seeds, seed
        self._own_share = shares[holders.index(me)]
        self.stage = "masked"
        return msg

    # -- stage 3 -----------------------------------------------------------------
    def masked_input(self, share_list: bytes, tree: Any, weight: int = 1) -> bytes:
        """``MASK_INPUT``: the quantized, weighted tree plus weight and count slots, masked.

        Decrypts the peers' shares (``ShareDecryptionError`` if any was altered),
        then adds its self mask and, for every peer that shared, the pairwise mask
        (``+`` towards higher indices, ``-`` towards lower), and bit-packs the result
        at ``w`` bits per value.
        """
        self._expect("masked")
        config, me, codec = self.config, self.index, self.config.codec
        body = _open(share_list, Kind.MASK_SHARE_LIST, config)
        if _index(body, "to", config.num_clients) != me:
            raise PeerSetError("this share list is addressed to another client.")
        cts = _pairs(body, "shares", config.num_clients, _SHARE_CT)
        strangers = sorted(set(cts) - set(self._share_keys))
        if strangers:
            raise PeerSetError(f"shares from clients {strangers[:8]} that were not in the key list.")
        held = {v: _limbs_from(decrypt_share(self._share_keys[v], _share_aad(config, v, me), ct), 2)
                for v, ct in cts.items()}
        _need(len(held) + 1, config, f"share list for client {me}")
        spec, flat = flatten(tree)
        if spec.num_values == 0:
            raise TreeError("the tree has no floating values to aggregate.")
        w = check_weight(weight, codec.max_weight)
        if config.dp is not None:
            flat, _ = config.dp.clip_update(flat)
        q, _ = codec.raw_encode(flat)
        slots = np.empty(q.size + EXTRA_SLOTS, dtype=np.int64)
        np.multiply(q, w, out=slots[: q.size])
        if config.dp is not None:
            slots[: q.size] += config.dp.sample_noise(q.size, codec.frac_bits)
        slots[q.size :] = (w, 1)
        width = config.width
        y = slots.astype(word_dtype(width))  # two's complement, modulo the word
        expander = MaskExpander(y.size, width)
        expander.add(y, _self_key(config, self._self_seed, me))
        for v in sorted(held):
            expander.add(y, self._pair_seeds[v], negate=me > v)
        y &= y.dtype.type((1 << width) - 1)
        msg = seal(Kind.MASK_INPUT, _header(config) | {
            "from": me, "spec": spec.to_obj(), "slots": int(y.size), "width": width,
            "data": pack(y, width)})
        # commit
        self._held = held | {me: self._own_share}
        self._view = frozenset(held) | {me}
        self._self_seed = b""
        self.stage = "unmask"
        return msg

    # -- stage 3b: the consistency round (signing keys only) ----------------------
    def consistency(self, request: bytes) -> bytes:
        """``MASK_CONSISTENCY``: this client's Ed25519 signature on the server's ``U3``.

        ``U3`` (``MASK_CONSISTENCY_REQUEST``) is the set of clients that sent masked
        inputs. Refused (nothing signed) unless this client is in it, every
        neighbour in it shared with this client (``U3`` restricted to the
        neighbourhood is a subset of this client's view), and at least ``threshold``
        of this client's view are in it. Signs once per round: the signed ``U3`` is
        the only one :meth:`unmask` will accept. Needs ``signing_key`` and
        ``peer_keys`` (``StageError`` otherwise).
        """
        self._expect("unmask")
        if not self.checks_consistency:
            raise StageError(f"client {self.index} holds no signing key and peer keys: it runs "
                             f"no consistency round.")
        if self._signed_u3 is not None:
            raise StageError(f"client {self.index} already signed this round's U3.")
        config, me = self.config, self.index
        body = _open(request, Kind.MASK_CONSISTENCY_REQUEST, config)
        if _index(body, "to", config.num_clients) != me:
            raise PeerSetError("this consistency request is addressed to another client.")
        u3 = frozenset(_index_list(body, "u3", config.num_clients))
        if me not in u3:
            raise PeerSetError("the consistency request does not list this client.")
        strangers = sorted((u3 & self.neighbours) - self._view)
        if strangers:
            raise PeerSetError(f"U3 lists neighbours {strangers[:8]} that did not share with "
                               f"client {me}: U3 is not a subset of its view.")
        _need(len(u3 & self._view), config, f"U3 in the consistency request to client {me}")
        if self._signing_key is None:  # checks_consistency guarantees it; never trust that
            raise StageError("this client has no signing key for the consistency round.")
        sig = self._signing_key.sign(_consistency_message(config, sorted(u3)))
        msg = seal(Kind.MASK_CONSISTENCY, _header(config) | {"from": me, "sig": sig})
        self._signed_u3 = u3
        return msg

    def _check_signed_u3(self, body: Body) -> None:
        """An unmask request of the consistency round: the signed ``U3`` and ``t`` signatures."""
        config, me = self.config, self.index
        if self._signed_u3 is None:
            raise StageError(f"client {me} unmasks only after signing U3 (the consistency round).")
        u3 = _index_list(body, "u3", config.num_clients)
        if frozenset(u3) != self._signed_u3:
            raise PeerSetError("the unmask request carries another U3 than this client signed.")
        sigs = _pairs(body, "sigs", config.num_clients, _SIG_BYTES)
        outside = sorted(set(sigs) - (self._signed_u3 & self._view))
        if outside:
            raise PeerSetError(f"signatures from clients {outside[:8]} that are not in U3 and "
                               f"this client's view.")
        if self._peer_keys is None:
            raise StageError("this client has no peer keys to check consistency signatures.")
        message = _consistency_message(config, u3)
        for v, sig in sigs.items():
            key = self._peer_keys.get(v)
            if key is None:
                raise KeyAuthenticationError(f"no long-term key is known for client {v}.")
            try:
                key.verify(sig, message)
            except InvalidSignature:
                raise KeyAuthenticationError(
                    f"client {v}'s signature on U3 is invalid: forged, or on another U3."
                ) from None
        if len(sigs) < config.threshold:
            raise UnmaskRefusedError(
                f"the unmask request carries {len(sigs)} valid signatures on U3 from this "
                f"client's view, fewer than threshold={config.threshold}: nothing is revealed.")

    # -- stage 4 -----------------------------------------------------------------
    def unmask(self, request: bytes) -> bytes:
        """``MASK_UNMASK``: shares of survivors' self-mask seeds and of dropped peers' mask keys.

        Refuses (and reveals nothing) unless the request's survivors and dropped
        peers are disjoint and together exactly the peers that shared with this
        client plus itself, this client is a survivor, at least ``threshold``
        survive, and no peer is asked for the other secret than in any earlier answer.
        With signing keys (:attr:`checks_consistency`) it also needs the ``U3`` it
        signed in :meth:`consistency`, at least ``threshold`` valid signatures on it
        from distinct clients of ``U3`` in its view, and survivors ``= U3 ∩ view``,
        dropped ``= view \\ U3``.
        """
        self._expect("unmask")
        config, me = self.config, self.index
        body = _open(request, Kind.MASK_UNMASK_REQUEST, config)
        if _index(body, "to", config.num_clients) != me:
            raise PeerSetError("this unmask request is addressed to another client.")
        survivors = set(_index_list(body, "survivors", config.num_clients))
        dropped = set(_index_list(body, "dropped", config.num_clients))
        both = sorted(survivors & dropped)
        if both:
            raise PeerSetError(f"clients {both[:8]} are listed both as survivors and as dropped.")
        unknown = sorted((survivors | dropped) - self._view)
        if unknown:
            raise PeerSetError(f"clients {unknown[:8]} in the unmask request did not share with "
                               f"client {me}.")
        missing = sorted(self._view - survivors - dropped)
        if missing:
            raise PeerSetError(f"the unmask request says nothing of clients {missing[:8]}.")
        if me not in survivors:
            raise PeerSetError("the unmask request lists this client as dropped.")
        _need(len(survivors), config, f"unmask request to client {me}")
        if self.checks_consistency:
            self._check_signed_u3(body)
            if self._signed_u3 is None:
                raise StageError("unmask before this client signed a survivor set.")
            if survivors != self._view & self._signed_u3:
                raise PeerSetError("the unmask request's survivors are not U3 within this "
                                   "client's view.")
        conflict = sorted((survivors & self._revealed_key) | (dropped & self._revealed_self))
        if conflict:
            raise UnmaskRefusedError(
                f"client {me} already revealed the other secret of clients {conflict[:8]}; it "
                f"never reveals both the self-mask seed and the mask key of one peer."
            )
        msg = seal(Kind.MASK_UNMASK, _header(config) | {
            "from": me,
            "self": [[v, _limb_blob(self._held[v][0])] for v in sorted(survivors)],
            "key": [[v, _limb_blob(self._held[v][1])] for v in sorted(dropped)],
        })
        self._revealed_self |= survivors
        self._revealed_key |= dropped
        return msg


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MaskedAggregate:
    """What the server learns: the unmasked sum of the included clients.

    Attributes:
        tree: the reduced tree (structure, dtypes and libraries of the clients' trees).
        raw: exact integer sums (``values``, ``weight_sum``, ``count``) before decoding.
        included: sorted indices of the clients whose inputs are in the sum.
        spec: the tree spec.
    """

    tree: Any
    raw: RawSum
    included: tuple[int, ...]
    spec: TreeSpec = field(repr=False)


class MaskingServer:
    """The server's side of one round: collects, relays, checks thresholds, unmasks.

    ``receive(data)`` takes any client message of the open stage; ``close_keys()``,
    ``close_shares()``, ``close_masked()`` and (with ``peer_keys``) ``close_consistency()``
    end a stage and return the messages to send (``{client index: bytes}``);
    ``finish(reduce)`` rebuilds the secrets and returns the :class:`MaskedAggregate`.
    The server holds no secret of its own.

    Args:
        config: the round configuration (send ``config.to_bytes()`` to the clients).
        peer_keys: the clients' long-term Ed25519 public keys; when given, adverts
            without a valid signature are refused on receipt, and the round runs
            [BIK+17]'s consistency round between the masked and unmask stages.
    """

    def __init__(self, config: MaskingConfig, *,
                 peer_keys: Mapping[int, Ed25519PublicKey] | None = None) -> None:
        if not isinstance(config, MaskingConfig):
            raise ConfigError(f"config must be a MaskingConfig. Found {type(config).__name__}.")
        self.config = config
        self._peer_keys = None if peer_keys is None else dict(peer_keys)
        self._graph = config.graph
        self._closed: dict[int, frozenset[int]] = {}
        #: the open stage: "keys", "shares", "masked", "consistency" (signing keys only),
        #: "unmask" or "done"
        self.stage: Stage | Literal["consistency", "done"] = "keys"
        self._adverts: dict[int, tuple[bytes, bytes, bytes]] = {}
        self._shares: dict[int, dict[int, bytes]] = {}
        self._commits: dict[int, bytes] = {}
        self._views: dict[int, frozenset[int]] = {}  # what each U2 client was sent, and itself
        self._inputs: set[int] = set()
        self._spec: TreeSpec | None = None
        self._acc: np.ndarray | None = None
        self._requests: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._signatures: dict[int, bytes] = {}  # the consistency round's signatures on U3
        self._answers: dict[int, tuple[dict[int, bytes], dict[int, bytes]]] = {}
        self._result: tuple[RawSum, tuple[int, ...]] | None = None

    def config_bytes(self) -> bytes:
        """The configuration to send to every client."""
        return self.config.to_bytes()

    def _closed_neighbourhood(self, i: int) -> frozenset[int]:
        found = self._closed.get(i)
        if found is None:
            found = self._closed[i] = self._graph.neighbours(i) | {i}
        return found

    # -- receiving -----------------------------------------------------------------
    def receive(self, data: bytes) -> int:
        """Validate and take one client message of the open stage; returns the sender's index.

        Raises a ``FormatError`` subclass (malformed, truncated, corrupted),
        ``RoundMismatchError`` / ``ContextMismatchError`` (another round or
        configuration), ``StageError`` (not the open stage), ``ReplayError`` (the
        sender already sent this stage), ``PeerSetError`` (a sender that is not in
        the round at this stage, or a wrong set of recipients) or
        ``KeyAuthenticationError``; the server is then unchanged.
        """
        kind, body = open_payload(data, *_CLIENT_KINDS)
        _check_header(body, self.config)
        stage = _CLIENT_KINDS[kind]
        if stage != self.stage:
            raise StageError(f"a {stage!r} message arrived while stage {self.stage!r} is open.")
        sender = _index(body, "from", self.config.num_clients)
        if stage == "keys":
            self._take_keys(sender, body)
        elif stage == "shares":
            self._take_shares(sender, body)
        elif stage == "masked":
            self._take_input(sender, body)
        elif stage == "consistency":
            self._take_signature(sender, body)
        else:
            self._take_unmask(sender, body)
        return sender

    def _take_keys(self, sender: int, body: Body) -> None:
        if sender in self._adverts:
            raise ReplayError(f"client {sender} already advertised its keys.")
        c_pk = body.blob("c_pk", size=_KEY_BYTES)
        s_pk = body.blob("s_pk", size=_KEY_BYTES)
        sig = body.blob("sig", max_size=_SIG_BYTES)
        if self._peer_keys is not None:
            if sender not in self._peer_keys:
                raise KeyAuthenticationError(f"no long-term key is known for client {sender}.")
            _verify_advert(self.config, self._peer_keys[sender], sender, c_pk, s_pk, sig)
        self._adverts[sender] = (c_pk, s_pk, sig)

    def _take_shares(self, sender: int, body: Body) -> None:
        if sender not in self._adverts:
            raise PeerSetError(f"client {sender} sent shares but advertised no keys.")
        if sender in self._shares:
            raise ReplayError(f"client {sender} already sent its shares.")
        cts = _pairs(body, "shares", self.config.num_clients, _SHARE_CT)
        expected = self._graph.neighbours(sender) & self._adverts.keys()
        if set(cts) != expected:
            raise PeerSetError(f"client {sender} sent shares for another set of peers than its "
                               f"key list.")
        commit = body.blob("commit", size=32)
        self._shares[sender] = cts
        self._commits[sender] = commit

    def _take_input(self, sender: int, body: Body) -> None:
        if sender not in self._views:
            raise PeerSetError(f"client {sender} sent a masked input but no shares.")
        if sender in self._inputs:
            raise ReplayError(f"client {sender} already sent its masked input.")
        width = self.config.width
        if body.integer("width", 1, MAX_WIDTH) != width:
            raise FormatError(f"masked input is packed at another width than {width} bits.")
        spec = TreeSpec.from_obj(body.value("spec"))
        slots = body.integer("slots", 1 + EXTRA_SLOTS, 2**40)
        if slots != spec.num_values + EXTRA_SLOTS:
            raise FormatError(f"masked input announces {slots} slots for a tree of "
                              f"{spec.num_values} values.")
        if self._spec is not None:
            self._spec.check_compatible(spec)
            for mine, theirs in zip(self._spec.leaves, spec.leaves):
                if (mine.dtype, mine.lib) != (theirs.dtype, theirs.lib):
                    raise TreeMismatchError(
                        f"leaf {mine.name!r} is {theirs.lib} {theirs.dtype}, the round's is "
                        f"{mine.lib} {mine.dtype}.")
        data = body.blob("data")
        if len(data) != packed_size(slots, width):  # before allocating anything of that size
            raise FormatError(f"masked input holds {len(data)} bytes; {slots} slots of {width} "
                              f"bits take {packed_size(slots, width)}.")
        # uint64 whatever w: unpacking adds fastest there; only the residue mod 2**w counts
        acc = self._acc if self._acc is not None else np.zeros(slots, dtype=np.uint64)
        unpack_add(acc, data, slots, width)  # checks the length before adding
        self._acc = acc
        if self._spec is None:
            self._spec = spec
        self._inputs.add(sender)

    def _take_signature(self, sender: int, body: Body) -> None:
        if sender not in self._inputs:
            raise PeerSetError(f"client {sender} signed U3 but sent no masked input.")
        if sender in self._signatures:
            raise ReplayError(f"client {sender} already signed U3.")
        sig = body.blob("sig", size=_SIG_BYTES)
        if self._peer_keys is None:
            raise StageError("this server has no peer keys to check consistency signatures.")
        key = self._peer_keys.get(sender)
        if key is None:
            raise KeyAuthenticationError(f"no long-term key is known for client {sender}.")
        try:
            key.verify(sig, _consistency_message(self.config, sorted(self._inputs)))
        except InvalidSignature:
            raise KeyAuthenticationError(f"client {sender}'s signature on U3 is invalid.") from None
        self._signatures[sender] = sig

    def _take_unmask(self, sender: int, body: Body) -> None:
        if sender not in self._requests:
            raise PeerSetError(f"client {sender} answered an unmask request it was not sent.")
        if sender in self._answers:
            raise ReplayError(f"client {sender} already answered its unmask request.")
        n = self.config.num_clients
        own = _pairs(body, "self", n, _LIMB_BLOB)
        keys = _pairs(body, "key", n, _LIMB_BLOB)
        survivors, dropped = self._requests[sender]
        if tuple(sorted(own)) != survivors or tuple(sorted(keys)) != dropped:
            raise PeerSetError(f"client {sender} answered for other peers than it was asked.")
        _limbs_from(b"".join([*own.values(), *keys.values()]), len(own) + len(keys))
        self._answers[sender] = (own, keys)

    # -- closing stages --------------------------------------------------------------
    def _expect(self, stage: Stage | Literal["consistency"]) -> None:
        if self.stage != stage:
            raise StageError(f"stage {stage!r} is not open (the open stage is {self.stage!r}).")

    def _holders(self, z: int, among: set[int] | Mapping[int, Any]) -> list[int]:
        """The clients of ``among`` that hold shares of ``z``'s secrets (``z`` included), sorted."""
        return sorted(u for u in self._closed_neighbourhood(z)
                      if u in among and z in self._views[u])

    def close_keys(self) -> dict[int, bytes]:
        """End the key stage; ``MASK_KEY_LIST`` for each client that advertised keys.

        ``TooFewSurvivorsError`` if some client's neighbourhood (itself included)
        holds fewer than ``threshold`` clients with keys.
        """
        self._expect("keys")
        u1 = self._adverts.keys()
        if not u1:
            _need(0, self.config, "key stage")
        for u in u1:
            _need(len(self._closed_neighbourhood(u) & u1), self.config,
                  f"key stage, neighbourhood of client {u}")
        out = {}
        for u in sorted(u1):
            peers = [[v, *self._adverts[v]] for v in sorted(self._graph.neighbours(u) & u1)]
            out[u] = seal(Kind.MASK_KEY_LIST, _header(self.config) | {"to": u, "peers": peers})
        self.stage = "shares"
        return out

    def close_shares(self) -> dict[int, bytes]:
        """End the share stage; ``MASK_SHARE_LIST`` (the ciphertexts addressed to it) per client."""
        self._expect("shares")
        u2 = self._shares.keys()
        if not u2:
            _need(0, self.config, "share stage")
        for u in u2:
            _need(len(self._closed_neighbourhood(u) & u2), self.config,
                  f"share stage, neighbourhood of client {u}")
        out, views = {}, {}
        for u in sorted(u2):
            senders = sorted(z for z in self._graph.neighbours(u) & u2 if u in self._shares[z])
            views[u] = frozenset(senders) | {u}
            entries = [[z, self._shares[z][u]] for z in senders]
            out[u] = seal(Kind.MASK_SHARE_LIST, _header(self.config) | {"to": u, "shares": entries})
        self._views = views
        self.stage = "masked"
        return out

    def close_masked(self) -> dict[int, bytes]:
        """End the masked-input stage; for each client that sent one, ``MASK_UNMASK_REQUEST``
        or, with ``peer_keys`` (the consistency round), ``MASK_CONSISTENCY_REQUEST``
        carrying ``U3``; then ``receive`` the signatures and call :meth:`close_consistency`.

        ``TooFewSurvivorsError`` unless every client that shared still has at least
        ``threshold`` holders among the clients that sent masked inputs.
        """
        self._expect("masked")
        u3 = self._inputs
        _need(len(u3), self.config, "masked-input stage")
        for z in self._views:
            _need(len(self._holders(z, u3)), self.config,
                  f"masked-input stage, holders of client {z}'s secrets")
        if self._peer_keys is not None:  # the consistency round: every U3 client signs U3
            u3_list = sorted(u3)
            self.stage = "consistency"
            return {u: seal(Kind.MASK_CONSISTENCY_REQUEST, _header(self.config) | {
                "to": u, "u3": u3_list}) for u in u3_list}
        return self._unmask_requests(sorted(u3), {})

    def close_consistency(self) -> dict[int, bytes]:
        """End the consistency round; ``MASK_UNMASK_REQUEST`` (with ``U3`` and the signatures
        from the client's view) for each client that signed ``U3``.

        ``TooFewSurvivorsError`` unless each signer has ``threshold`` signers in its view
        (clients that do not sign count as dropped at the unmask stage).
        """
        self._expect("consistency")
        signers = self._signatures.keys()
        _need(len(signers), self.config, "consistency round")
        for u in signers:
            _need(len(self._views[u] & signers), self.config,
                  f"consistency round, signers in client {u}'s view")
        return self._unmask_requests(sorted(signers), self._signatures)

    def _unmask_requests(self, to: list[int], sigs: Mapping[int, bytes]) -> dict[int, bytes]:
        u3 = self._inputs
        out = {}
        for u in to:
            view = self._views[u]
            survivors, dropped = tuple(sorted(view & u3)), tuple(sorted(view - u3))
            self._requests[u] = (survivors, dropped)
            extra: dict[str, Any] = {}
            if self._peer_keys is not None:
                extra = {"u3": sorted(u3),
                         "sigs": [[v, sigs[v]] for v in sorted(view & sigs.keys())]}
            out[u] = seal(Kind.MASK_UNMASK_REQUEST, _header(self.config) | {
                "to": u, "survivors": list(survivors), "dropped": list(dropped)} | extra)
        self.stage = "unmask"
        return out

    # -- unmasking -------------------------------------------------------------------
    def _reconstruct(self, targets: list[int], kind: int) -> list[bytes]:
        """Rebuild the self-mask seed (``kind`` 0) or mask key (1) of each target."""
        t = self.config.threshold
        xs = np.empty((len(targets), t), dtype=np.int64)
        blobs: list[bytes] = []
        what = "self-mask seed" if kind == 0 else "mask key"
        for row, z in enumerate(targets):
            holders = [u for u in self._holders(z, self._answers) if z in self._answers[u][kind]]
            _need(len(holders), self.config, f"unmask stage, shares of client {z}'s {what}")
            xs[row] = np.array(holders[:t]) + 1
            blobs.extend(self._answers[u][kind][z] for u in holders[:t])
        shares = _limbs_from(b"".join(blobs), len(targets) * t).reshape(len(targets), t, shamir.LIMBS)
        out = []
        for z, limbs in zip(targets, shamir.combine_many(xs, shares)):
            secret = shamir.limbs_to_secret(limbs)
            if secret is None:
                raise ReconstructionError(f"the shares of client {z}'s secret are inconsistent.")
            out.append(secret)
        return out

    def finish(self, reduce: Reduce = "sum", *, device: Any = None) -> MaskedAggregate:
        """Rebuild the secrets, remove every mask, decode and reduce.

        Raises ``TooFewSurvivorsError`` when some secret has fewer than ``threshold``
        shares among the answers, ``ReconstructionError`` when a rebuilt secret
        contradicts its owner's commitment or public key, and ``CountMismatchError``
        / ``SumOverflowError`` when the unmasked sum is impossible for honest inputs.
        """
        if reduce not in ("sum", "mean", "weighted_mean"):
            raise ConfigError(f"reduce must be 'sum', 'mean' or 'weighted_mean'. Found {reduce!r}.")
        if self._result is None:
            self._expect("unmask")
            self._result = self._unmask()
            self.stage = "done"
        raw, included = self._result
        if self._spec is None:
            raise StageError("no masked input was received in this round.")
        divisor = {"sum": 1, "mean": raw.count, "weighted_mean": raw.weight_sum}[reduce]
        tree = unflatten(self._spec, self.config.codec.raw_decode(raw.values, divisor), device=device)
        return MaskedAggregate(tree, raw, included, self._spec)

    def _unmask(self) -> tuple[RawSum, tuple[int, ...]]:
        config = self.config
        u3 = sorted(self._inputs)
        dropped = sorted(set(self._views) - self._inputs)
        seeds = self._reconstruct(u3, 0)
        keys = self._reconstruct(dropped, 1)
        for z, seed in zip(u3, seeds):
            if _commitment(config, z, seed) != self._commits[z]:
                raise ReconstructionError(f"client {z}'s rebuilt self-mask seed does not match "
                                          f"its commitment: a holder sent a wrong share.")
        sks = []
        for z, raw_key in zip(dropped, keys):
            sk = X25519PrivateKey.from_private_bytes(raw_key)
            if sk.public_key().public_bytes_raw() != self._adverts[z][1]:
                raise ReconstructionError(f"client {z}'s rebuilt mask key does not match its "
                                          f"public key: a holder sent a wrong share.")
            sks.append(sk)
        if self._acc is None:
            raise StageError("no masked input was received in this round.")
        width = config.width
        expander = MaskExpander(self._acc.size, width)
        masks = np.zeros(self._acc.size, dtype=expander.dtype)  # everything to subtract
        for z, seed in zip(u3, seeds):
            expander.add(masks, _self_key(config, seed, z))
        for z, sk in zip(dropped, sks):
            for u in self._holders(z, self._inputs):  # the survivors that masked with z
                secret = _exchange(sk, self._adverts[u][1], u)
                # u added +mask if u < z, -mask if u > z: subtract the same
                expander.add(masks, _pair_key(config, secret, "pairwise-mask", u, z), negate=u > z)
        acc = self._acc - masks.astype(np.uint64)
        values = (acc & np.uint64((1 << width) - 1)).astype(np.int64)
        values[values >= 1 << (width - 1)] -= 1 << width
        count, weight_sum = int(values[-1]), int(values[-2])
        if count != len(u3):
            raise CountMismatchError("the unmasked count slot does not match the number of masked "
                                     "inputs: a client deviated. The sum is refused.")
        if not count <= weight_sum <= count * config.codec.max_weight:
            raise CountMismatchError("the unmasked weight sum is impossible for the count and "
                                     "max_weight: a client deviated. The sum is refused.")
        sums = values[:-EXTRA_SLOTS]
        if sums.size and int(np.abs(sums).max()) > config.codec.range_of(count):
            raise SumOverflowError("an unmasked sum lies outside the range honest inputs reach: "
                                   "a client deviated. The sum is refused.")
        return RawSum(sums, weight_sum, count, 0), tuple(u3)
