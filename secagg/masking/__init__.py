"""No key holder: pairwise-masked secure aggregation (SecAgg and SecAgg+).

The server learns the sum of the clients' quantized updates and nothing else,
and no party ever holds a decryption key. This is the protocol of Bonawitz,
Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal and Seth, "Practical
Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017
([BIK+17]), with the sparse communication graph of Bell, Bonawitz, Gascón,
Lepoint and Raykova, "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", CCS 2020 ([BBG+20], "SecAgg+")::

    from secagg import masking
    result = masking.run_round(trees, threshold=t)            # SecAgg: complete graph
    result = masking.run_round(trees, threshold=25, neighbors=48,
                               dropouts={"masked": [3, 7]})   # SecAgg+, two clients vanish
    result.tree, result.included, result.timings, result.bytes

**How it works.** Client ``u`` quantizes its tree with the same
:class:`secagg.FixedPointCodec` as the homomorphic schemes (so a masked sum
decodes to exactly the numbers ``ctx.decrypt`` gives for the same inputs),
multiplies it by its weight and appends a weight slot and a count slot (as
``PublicContext.encrypt`` does). It then adds, modulo ``2**w``,

* a *self mask* ``PRG(b_u)`` from a fresh random seed ``b_u``, and
* for every neighbour ``v`` that shared in this round, a *pairwise mask*
  ``± PRG(s_uv)``, ``+`` if ``u < v`` and ``-`` if ``u > v``, where ``s_uv`` comes
  from an X25519 agreement between ``u``'s and ``v``'s mask keys.

Pairwise masks cancel in the sum. Both ``b_u`` and ``u``'s mask private key are
Shamir-shared (threshold ``t``) among ``u``'s neighbours and ``u`` itself, so at
the end the server can ask every survivor, for each peer, for one of the two:
the share of ``b_v`` if ``v`` sent its masked input (to remove its self mask),
or the share of ``v``'s mask key if it did not (to remove the pairwise masks
that others added towards it). With ``t > holders / 2`` and each client
refusing to reveal both for one peer, the server never gets both secrets of a
client whose input is in the sum.

``w`` is ``codec.slot_bits``: the bits of ``2 * sum_bound``, where the codec's
``sum_bound`` covers ``max_clients`` weighted contributions plus the DP noise
bound, so the exact sum is recovered from its residue mod ``2**w``. At the
default codec (``clip=1, frac_bits=16``) and 100 clients ``w = 24``, so an
upload costs 3 bytes a value (0.75x float32) plus about 150 bytes (header, tree
spec, the weight and count slots); at 1000 clients ``w = 27``.

**Parties and stages.** One :class:`MaskingConfig` per round (the server builds
it and sends ``config.to_bytes()``; a client refuses one with ``t <= holders / 2``),
one :class:`MaskingServer` per round and one :class:`MaskingClient` per client per
round. Every arrow is bytes in secagg's wire format (:mod:`secagg.wire`:
versioned, digest-checked MessagePack), validated on receipt; a refused message
raises a specific :class:`secagg.SecAggError` and leaves the receiver unchanged,
so a Flower integration only has to carry the bytes::

    stage     server                  message                   client u
              MaskingServer(config)   MASK_CONFIG ->            MaskingClient(config_bytes, u)
    "keys"    receive(.)              <- MASK_KEYS              advertise_keys()
              close_keys()            MASK_KEY_LIST ->
    "shares"  receive(.)              <- MASK_SHARES            share_keys(key_list)
              close_shares()          MASK_SHARE_LIST ->
    "masked"  receive(.)              <- MASK_INPUT             masked_input(share_list, tree, weight)
              close_masked()          MASK_UNMASK_REQUEST ->    (no signing keys)
              close_masked()          MASK_CONSISTENCY_REQUEST -> (signing keys: U3)
              receive(.)              <- MASK_CONSISTENCY       consistency(request)
              close_consistency()     MASK_UNMASK_REQUEST ->    (with U3 and t signatures)
    "unmask"  receive(.)              <- MASK_UNMASK            unmask(request)
              finish(reduce) -> MaskedAggregate(tree, raw, included)

============================  =========  =======================================================
message (``Kind``)            direction  content (all carry the round id and config fingerprint)
============================  =========  =======================================================
``MASK_CONFIG``               s -> c     round, n, t, k, 32-byte seed, codec, DP parameters
``MASK_KEYS``                 c -> s     two X25519 public keys (share encryption, masks), Ed25519
                                         signature (optional)
``MASK_KEY_LIST``             s -> c     the neighbours' adverts (only neighbours: O(k) in SecAgg+)
``MASK_SHARES``               c -> s     per neighbour: AES-GCM(share of ``b_u``, share of ``s_u``);
                                         SHA-256 commitment to ``b_u``
``MASK_SHARE_LIST``           s -> c     the ciphertexts addressed to this client
``MASK_INPUT``                c -> s     tree spec and the masked slots bit-packed at ``w`` bits
``MASK_CONSISTENCY_REQUEST``  s -> c     signing keys only: ``U3``, the clients that sent inputs
``MASK_CONSISTENCY``          c -> s     signing keys only: Ed25519 signature on (config, round, U3)
``MASK_UNMASK_REQUEST``       s -> c     survivors and dropped peers of this client's view (with
                                         signing keys also ``U3`` and the signatures on it)
``MASK_UNMASK``               c -> s     shares of survivors' seeds and dropped peers' mask keys
============================  =========  =======================================================

**Dropouts**, up to ``holders - t`` per neighbourhood, at any stage; the sum is
bit-exact over ``included`` whatever stage clients vanish in: before *keys* a
client never joins; before *shares* its neighbours simply leave it out (nobody
masked with it); before *masked* it shared but sent nothing, so its mask key is
rebuilt and the pairwise masks towards it removed; before *unmask* its input is
in the sum and its self-mask seed is rebuilt from the others' shares (with
signing keys an *unmask* dropout vanishes before signing ``U3``, and one that
signed but does not answer is the same dropout for the sum). Fewer
than ``t`` holders at any point raises :class:`secagg.errors.TooFewSurvivorsError`
(server and clients check independently) and nothing is unmasked.

**Cryptography** (:mod:`secagg.masking.crypto`, all from ``cryptography``, every
random value from ``os.urandom`` / ``X25519PrivateKey.generate``, no seed
parameter anywhere): X25519 key agreement; HKDF-SHA256 with the config
fingerprint as salt and ``purpose, round id, u, v`` in the info string; 256-bit
seeds expanded by AES-256-CTR into uniform words reduced mod ``2**w``;
AES-256-GCM for relayed shares (key from HKDF of the X25519 agreement of the two
clients' encryption keys; associated data: configuration, round, sender,
receiver, stage); Shamir over ``GF(2**31 - 1)`` (:mod:`secagg.masking.shamir`,
vectorized, 9 limbs per 32-byte secret); optional Ed25519 signatures.

**SecAgg+ graph** (:mod:`secagg.masking.graph`): ``neighbors=k`` lays a Harary
graph on a random ordering drawn from a public seed in the configuration;
``t`` then applies to each neighbourhood (``k + 1`` holders). For ``n = 1000``
and 10 % dropout, ``neighbors=48, threshold=25`` meets ``2**-40`` privacy
(up to 5 % colluding clients) and ``2**-30`` correctness
(:func:`recommended_degree`; the table and its derivation are in the graph
module's docstring).

**Distributed DP** (``dp=secagg.dp.DistributedDP(...)``): every client clips
its update in L2 and adds discrete Gaussian noise (``dp.clip_update``,
``dp.sample_noise``) before masking, as with the key-holder schemes; the noise
is calibrated for ``dp.min_clients`` reporting clients and the configuration
requires ``dp.min_clients <= threshold``, the fewest inputs any unmasked sum can
hold; ``w`` includes the noise bound. ``RoundResult.epsilon`` accounts with the
actual count.

**SECURITY: what this buys, and what it does not.** "Holders" of a client's
secrets are its neighbours and itself (``n`` in SecAgg, ``k + 1`` in SecAgg+).

* *Honest-but-curious server*, colluding with up to ``t - 1`` of any client's
  holders: the server learns the sum of the included inputs, their count and
  (with weights) the weight sum, never one client's values or weight. Each
  masked upload alone is uniformly random in ``Z_{2**w}``; fewer than ``t``
  shares are independent of a secret. In SecAgg+ the honest surviving clients
  must also stay connected, or the server learns the sums of the pieces; the
  degree analysis in :mod:`secagg.masking.graph` bounds both events (``2**-40``
  at ``n = 1000``, ``k = 48``, ``t = 25``, 5 % colluding, 10 % dropout).
* *A server that deviates* by telling clients different stories (who survived,
  who dropped): each client reveals, for each peer, at most one of the two
  secrets over the whole round ([BIK+17]'s rule); refuses requests whose round,
  configuration or addressee are wrong, that name a peer that did not share
  with it, list a peer as both survivor and dropped, leave a peer out, or leave
  fewer than ``t`` survivors; and refuses a configuration with
  ``t <= holders / 2``. **Without signing keys this is not enough**, even with
  no colluding client (found by a review, with a working attack, kept as
  ``tests/masking/test_consistency.py``): the server tells a victim ``z`` at
  the share stage that all but ``t - 1`` of its neighbours ``A`` dropped, so
  ``z`` masks with ``A`` only; then tells every holder that ``z`` survived
  (``t`` shares of ``z``'s self-mask seed) and tells different holders that
  different members of ``A`` dropped (``t`` shares of each ``v``'s mask key; no
  holder reveals two secrets of one peer, and each still sees ``t``
  survivors). With the mask keys of ``A`` the server recomputes every pairwise
  mask of ``z`` and reads ``z``'s input. So **without signing keys, treat the
  masking server as honest-but-curious** (it follows the protocol).
* *With signing keys: [BIK+17]'s consistency round.* After the masked stage the
  server sends every client that sent an input the set ``U3`` of those
  clients; a client signs ``(config fingerprint, round, sorted U3)`` with its
  long-term Ed25519 key, once per round, after checking that it is in ``U3``,
  that every neighbour in ``U3`` shared with it (``U3`` is a subset of its view)
  and that ``t`` of its view are in ``U3``. It then unmasks only for a request
  carrying that same ``U3`` and at least ``t`` valid signatures on it from
  distinct clients of ``U3`` in its view, with survivors ``= U3 ∩ view`` and
  dropped ``= view \\ U3``; forged, duplicated, foreign or too few signatures,
  another ``U3`` or other survivors are refused and nothing is revealed. An
  honest client signs one ``U3``, and two different ``U3`` each signed by ``t >
  holders / 2`` holders would need a holder to sign twice, so every holder of
  ``z`` that unmasks works from the same survivor set: the trimming attack
  above fails (a trimmed ``z`` signs only ``U3 ⊆ A ∪ {z}``; a holder told that
  ``v ∈ A`` dropped needs ``t`` signatures on a ``U3`` without ``v``). The
  argument is [BIK+17]'s for the complete graph. In SecAgg+ the ``t``
  signatures come from the client's own neighbourhood (as its shares do): the
  local form of the check, which refuses the attack above (tested on the
  complete graph), but no proof for sparse graphs against a malicious server
  is claimed here ([BBG+20]'s malicious analysis is not reproduced). Signing
  keys also authenticate the advertised keys (below).
  ``run_round(signing_keys=True)`` runs the round; the ``MaskingServer`` runs it
  whenever it is given ``peer_keys``.
* *Long-term signing keys* (``signing_key`` / ``peer_keys``, or
  ``run_round(signing_keys=True)``): advertised X25519 keys are signed, so a
  server cannot substitute its own keys (it would then decrypt the shares sent
  to that client, or own its pairwise masks) or invent clients: a substituted
  key raises :class:`secagg.errors.KeyAuthenticationError`. Without them the
  server can run a man-in-the-middle on the key agreement and recover inputs;
  use them whenever the server is not trusted. They need a PKI outside the
  protocol (the Ed25519 public keys must reach every party authentically).
  **The Flower integration does not use signing keys yet**, so over Flower the
  server must be honest-but-curious.
* **Not implemented**: a joint coin toss for the SecAgg+ graph seed (the server
  draws it, and a review ground a seed placing 11 of 50 colluders among a
  chosen victim's 67 holders at ``n = 1000`` in a few thousand tries: with a
  server-chosen seed the collusion bounds of :mod:`secagg.masking.graph` hold
  only for a server that draws it honestly; the consistency round does not
  change this); [BBG+20]'s semi-malicious defences.
* *Correctness is not protected* against malicious clients: a client can send
  any element of ``Z_{2**w}`` and shift the sum (as with the HE schemes without
  range proofs); the server only checks that the unmasked count, weight sum and
  values lie in the range honest inputs reach. A wrong share is detected (a
  rebuilt seed must match its SHA-256 commitment, a rebuilt key its public key)
  but not attributed. A server can always drop honest inputs, or abort.
* The transport authenticates client and server to each other: the wire digest
  detects corruption, not forgery, and the ``from`` field of a client's message
  is trusted to be its authenticated sender. Everything is bound to the round's
  configuration (its fingerprint covers a fresh 32-byte seed), so messages of
  another round or configuration are refused.

**Carrying it over Flower.** The server side of a ``ServerApp`` workflow creates
``MaskingServer(MaskingConfig.create(...))`` and, for each stage, sends each
node its bytes (``config_bytes()``, then the dicts returned by ``close_*``),
feeds every reply to ``receive`` and calls the next ``close_*``; nodes that time
out are simply absent (they are the dropouts). The ``ClientApp`` keeps one
``MaskingClient(config_bytes, index)`` per round in its state and answers each
message kind with the matching stage method; ``index`` is the node's position
in the round's node list, which the server sends along with the configuration.
"""

from __future__ import annotations

from secagg.masking.driver import RoundResult, run_round
from secagg.masking.graph import Graph, graph_bounds, recommended_degree
from secagg.masking.protocol import (
    STAGES,
    MaskedAggregate,
    MaskingClient,
    MaskingConfig,
    MaskingServer,
)

__all__ = [
    "run_round",
    "RoundResult",
    "MaskingConfig",
    "MaskingClient",
    "MaskingServer",
    "MaskedAggregate",
    "STAGES",
    "Graph",
    "graph_bounds",
    "recommended_degree",
]
