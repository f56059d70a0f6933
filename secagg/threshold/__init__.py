"""t-of-n threshold Paillier: no single party can decrypt (project issue 16).

A dealer makes an ordinary Paillier key (safe primes), splits its decryption
exponent between ``parties`` share holders so that any ``threshold`` of them
decrypt together and fewer learn nothing, and forgets it. Clients and the
aggregator use the public context exactly as with a single key holder::

    from secagg import threshold

    keys = threshold.deal("paillier", parties=5, threshold=3, key_bits=2048,
                          max_clients=100, clip=1.0, frac_bits=16, clients=registry)
    pub = keys.public                                   # a secagg.PublicContext
    env = threshold.sign_update(pub.encrypt(tree, round_id=r).to_bytes(), client_key, r)

    agg = threshold.sum_signed(pub, envelopes, round_id=r)     # the server (or Aggregator)
    part = keys.shares[i].partial_decrypt(agg, signed_payloads=envelopes)   # each holder
    mean = threshold.combine(keys.public, agg, parts, reduce="mean")         # any t partials

Cross-silo (every silo both a client and a share holder; the Flower option
``secagg.flower.ThresholdFedAvg``): :func:`deal_silos` deals a
:class:`Federation` (public) and one :class:`SiloKit` per silo
(:mod:`secagg.threshold.federation`); partials relayed between silos are
encrypted end to end (:mod:`secagg.threshold.relay`).

References: Damgård, Jurik, "A Generalisation, a Simplification and Some
Applications of Paillier's Probabilistic Public-Key System", PKC 2001 (s = 1);
Fouque, Poupard, Stern, "Sharing Decryption in the Context of Voting or
Lotteries", FC 2000; Shoup, "Practical threshold signatures", EUROCRYPT 2000.
See :mod:`secagg.threshold.dealer` (the construction and what the dealer is
trusted for), :mod:`secagg.threshold.proofs` (the proofs and why batching them
is sound), :mod:`secagg.threshold.holder` (verified and unverified modes).
"""

from __future__ import annotations

from secagg.threshold.combine import Combined, Rejection, combine, combine_raw
from secagg.threshold.dealer import ThresholdKeys, deal
from secagg.threshold.federation import COMBINERS, Federation, SiloEntry, SiloKit, deal_silos
from secagg.threshold.holder import MODES, ShareHolder
from secagg.threshold.keys import (
    MAX_PARTIES,
    ThresholdPublicContext,
    VerificationKeys,
    load_public,
)
from secagg.threshold.partial import PROOF_MODES, PartialDecryption, aggregate_id
from secagg.threshold.signed import (
    SignedUpdate,
    client_keypair,
    public_key_bytes,
    sign_update,
    sum_signed,
)

__all__ = [
    "deal",
    "combine",
    "combine_raw",
    "sign_update",
    "sum_signed",
    "client_keypair",
    "public_key_bytes",
    "load_public",
    "ThresholdKeys",
    "ThresholdPublicContext",
    "VerificationKeys",
    "ShareHolder",
    "SignedUpdate",
    "PartialDecryption",
    "Combined",
    "Rejection",
    "aggregate_id",
    "MODES",
    "PROOF_MODES",
    "MAX_PARTIES",
    # cross-silo federations (the Flower option: secagg.flower.ThresholdFedAvg)
    "deal_silos",
    "Federation",
    "SiloEntry",
    "SiloKit",
    "COMBINERS",
]
