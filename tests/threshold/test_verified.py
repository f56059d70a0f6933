"""Verified mode: a share holder decrypts only the sum it recomputes from signed client updates.

The deviating server of SECURITY.md ("A server that deviates") pads a victim's
update with its own encryptions, scales it, relabels it, or tries a second
subset of a round; a verified share holder refuses each before any
exponentiation with its share, and the guard remembers.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import secagg
from secagg import errors, threshold
from secagg.threshold.signed import SignedUpdate, _message
from secagg.update import EXTRA_SLOTS, EncryptedUpdate
from secagg.wire import Kind
from tests.threshold.util import assert_trees_equal, deal_small, tree

ROUND = 7
N_CLIENTS = 4


@pytest.fixture(scope="module")
def client_keys():
    return {f"client-{k}": Ed25519PrivateKey.generate() for k in range(N_CLIENTS)}


@pytest.fixture(scope="module")
def term_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def dealt(client_keys, term_key):
    registry = {cid: threshold.public_key_bytes(k) for cid, k in client_keys.items()}
    return deal_small(5, 3, clients=registry, mode="verified", max_terms=1,
                      term_signers={"noise": threshold.public_key_bytes(term_key)})


def envelopes(pub, client_keys, round_id=ROUND, which=None):
    out = []
    for k, (cid, key) in enumerate(client_keys.items()):
        if which is not None and cid not in which:
            continue
        out.append(threshold.sign_update(pub.encrypt(tree(k), round_id=round_id).to_bytes(),
                                         key, round_id))
    return out


def test_honest_round_decrypts_the_recomputed_sum(dealt, client_keys, term_key):
    keys, single = dealt
    pub = keys.public
    envs = envelopes(pub, client_keys)
    noise = pub.encrypt_term({"w": np.full((10, 2), 0.01, np.float32), "b": np.zeros(7)},
                             round_id=ROUND)
    envs.append(threshold.sign_update(noise, term_key, ROUND))
    total = threshold.sum_signed(pub, envs, round_id=ROUND)  # the server's aggregate
    parts = [keys.shares[i].partial_decrypt(total, signed_payloads=envs) for i in (0, 2, 3)]
    parts.append(keys.shares[4].partial_decrypt(signed_payloads=envs[::-1]))  # any order
    got = threshold.combine(pub, total, parts, report=True)
    assert got.rejected == ()
    assert_trees_equal(got.value, single.decrypt(total))
    assert total.count == N_CLIENTS and total.terms == 1
    # asking again for the same round and the same sum is fine (the same information)
    keys.shares[0].partial_decrypt(total.to_bytes(), signed_payloads=envs, round_id=ROUND)


def test_the_mode_comes_from_the_ceremony(client_keys):
    registry = {cid: threshold.public_key_bytes(k) for cid, k in client_keys.items()}
    keys, _ = deal_small(3, 2, clients=registry, mode=None)
    assert {h.mode for h in keys.shares} == {"verified"}
    with pytest.warns(secagg.SecAggWarning, match="unverified mode"):
        keys, _ = deal_small(3, 2, mode=None)
    assert {h.mode for h in keys.shares} == {"unverified"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deal_small(3, 2, mode="unverified")


def test_verified_holder_refuses_a_bare_aggregate(dealt, client_keys):
    keys, _ = dealt
    total = threshold.sum_signed(keys.public, envelopes(keys.public, client_keys))
    with pytest.raises(errors.UnverifiedAggregateError, match="signed_payloads"):
        keys.shares[0].partial_decrypt(total)
    # the operator may opt out per call: then it is the pinned, unverified behaviour
    keys.shares[0].partial_decrypt(total, verified=False)


def test_deviating_server_padding_a_victim_is_refused(dealt, client_keys):
    """The attack of SECURITY.md: victim + the server's own encryptions of zeros."""
    keys, _single = dealt
    pub = keys.public
    envs = envelopes(pub, client_keys)
    victim = EncryptedUpdate.from_bytes(SignedUpdate.from_bytes(envs[0]).payload, pub)
    slots = np.zeros(victim.spec.num_values + EXTRA_SLOTS, dtype=np.int64)
    slots[-2:] = (1, 1)
    padded = pub.backend.raw_add(victim.ciphertexts, pub.backend.raw_encrypt(slots))
    forged = EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.AGGREGATE, 2, victim.spec,
                             ROUND, padded, pub.backend)
    # unverified, this decrypts to the victim's update: the oracle the mode closes
    parts = [h.partial_decrypt(forged, verified=False) for h in keys.shares[:3]]
    revealed = threshold.combine(pub, forged, parts, reduce="sum")
    np.testing.assert_allclose(revealed["w"], tree(0)["w"], atol=2**-16)
    holder = keys.shares[3]
    with pytest.raises(errors.UnverifiedAggregateError, match="not the sum"):
        holder.partial_decrypt(forged, signed_payloads=envs)
    # remembered: the same request is refused without work, and the round is locked
    with pytest.raises(secagg.AggregateRefusedError, match="SA-REFUSED"):
        holder.partial_decrypt(forged, signed_payloads=envs)
    with pytest.raises(secagg.AggregateRefusedError, match="SA-LOCKED"):
        holder.partial_decrypt(signed_payloads=envs)
    assert holder.guard.refusals == 1
    # scaling the victim (its update counted twice) is refused the same way
    doubled = EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.AGGREGATE, 2, victim.spec, ROUND,
                              pub.backend.raw_add(victim.ciphertexts, victim.ciphertexts),
                              pub.backend)
    with pytest.raises(errors.UnverifiedAggregateError):
        keys.shares[2].partial_decrypt(doubled.to_bytes(), signed_payloads=envs)
    # the server's own "client" is not registered
    server_key = Ed25519PrivateKey.generate()
    own = threshold.sign_update(pub.encrypt(tree(9), round_id=ROUND), server_key, ROUND)
    with pytest.raises(errors.UnknownSignerError):
        keys.shares[4].partial_decrypt(signed_payloads=[envs[0], own])


def test_forged_duplicate_and_foreign_envelopes_are_refused(dealt, client_keys):
    keys, _ = dealt
    pub = keys.public
    envs = envelopes(pub, client_keys)
    first = SignedUpdate.from_bytes(envs[0])
    other = SignedUpdate.from_bytes(envs[1])
    cases = {
        # a payload swapped under a signature
        "forged": [SignedUpdate(first.signer, ROUND, other.payload, first.signature).to_bytes(),
                   *envs[1:]],
        # the signature of another client
        "stolen signature": [SignedUpdate(other.signer, ROUND, first.payload,
                                          first.signature).to_bytes(), *envs[1:]],
        # the same client twice (a new encryption of its tree, signed again)
        "duplicate client": [*envs, threshold.sign_update(pub.encrypt(tree(0), round_id=ROUND),
                                                          client_keys["client-0"], ROUND)],
        # byte-identical replay
        "replay": [*envs, envs[0]],
    }
    expected = {"forged": errors.SignatureError, "stolen signature": errors.SignatureError,
                "duplicate client": secagg.ReplayError, "replay": secagg.ReplayError}
    for i, (name, payloads) in enumerate(cases.items()):
        holder = keys.shares[i]
        with pytest.raises(expected[name]):
            holder.partial_decrypt(signed_payloads=payloads)
        assert holder.guard.refusals == 1, name


def test_wrong_rounds_and_too_few_clients_are_refused(dealt, client_keys):
    keys, _ = dealt
    pub = keys.public
    holder = keys.shares[0]
    old = envelopes(pub, client_keys, round_id=ROUND - 1)
    with pytest.raises(secagg.RoundMismatchError):  # last round's envelopes asked as this round's
        holder.partial_decrypt(signed_payloads=old, round_id=ROUND)
    mixed = [*envelopes(pub, client_keys, which={"client-0", "client-1"}), old[2]]
    with pytest.raises(secagg.RoundMismatchError):
        holder.partial_decrypt(signed_payloads=mixed)
    with pytest.raises(secagg.InsufficientClientsError):
        holder.partial_decrypt(signed_payloads=envelopes(pub, client_keys, which={"client-0"}))
    # an update encrypted for another round cannot be signed for this one
    with pytest.raises(secagg.RoundMismatchError):
        threshold.sign_update(pub.encrypt(tree(0), round_id=3), client_keys["client-0"], ROUND)
    with pytest.raises(secagg.ConfigError, match="name its round"):
        threshold.sign_update(pub.encrypt(tree(0)), client_keys["client-0"], None)  # type: ignore


def test_a_client_cannot_sign_a_sum_as_its_update(dealt, client_keys):
    keys, _ = dealt
    pub = keys.public
    agg = secagg.Aggregator(pub, round_id=ROUND)
    for k in range(2):
        agg.add(pub.encrypt(tree(k), round_id=ROUND))
    with pytest.raises(secagg.FormatError, match="update or term"):
        threshold.sign_update(agg.result().to_bytes(), client_keys["client-0"], ROUND)
    # and a crafted envelope around an aggregate is refused by the holder's aggregator
    key = client_keys["client-0"]
    payload = agg.result().to_bytes()
    env = SignedUpdate(threshold.public_key_bytes(key), ROUND, payload,
                       key.sign(_message(ROUND, payload))).to_bytes()
    with pytest.raises(secagg.FormatError, match="aggregate"):
        keys.shares[0].partial_decrypt(
            signed_payloads=[env, *envelopes(pub, client_keys, which={"client-1"})])


def test_one_sum_per_round_stops_the_subset_attack(dealt, client_keys):
    """Sums of {0,1,2,3} and {1,2,3} of one round would give client 0's update."""
    keys, _ = dealt
    pub = keys.public
    envs = envelopes(pub, client_keys)
    holder = keys.shares[0]
    holder.partial_decrypt(signed_payloads=envs)
    with pytest.raises(errors.RoundAlreadyDecryptedError):
        holder.partial_decrypt(signed_payloads=envs[1:])
    # a new round is a new sum
    holder_next = keys.shares[1]
    holder_next.partial_decrypt(signed_payloads=envs[1:])
    holder_next.partial_decrypt(signed_payloads=envelopes(pub, client_keys, round_id=ROUND + 1))


def test_require_all_needs_every_registered_client(client_keys):
    registry = {cid: threshold.public_key_bytes(k) for cid, k in client_keys.items()}
    keys, _ = deal_small(3, 2, clients=registry, mode="verified", require_all=True)
    envs = envelopes(keys.public, client_keys)
    with pytest.raises(secagg.InsufficientClientsError, match="require_all"):
        keys.shares[0].partial_decrypt(signed_payloads=envs[:-1])
    keys.shares[0].partial_decrypt(signed_payloads=envs)


def test_registration_rules(dealt, client_keys):
    keys, _ = dealt
    holder = keys.shares[0]
    with pytest.raises(secagg.ConfigError, match="another key"):
        holder.register_clients({"client-0": threshold.client_keypair()[1]})
    with pytest.raises(secagg.ConfigError, match="twice"):
        holder.register_clients({"new": holder.clients["client-1"]})
    with pytest.raises(secagg.ConfigError):
        holder.register_clients({"bad": b"short"})
    _, key = threshold.client_keypair()
    holder.register_clients({"late-client": key})
    assert holder.clients["late-client"] == key
    unregistered, _ = deal_small(3, 2, mode="verified")
    with pytest.raises(secagg.ConfigError, match="registered clients"):
        unregistered.shares[0].partial_decrypt(signed_payloads=envelopes(keys.public,
                                                                         client_keys))


def test_state_file_keeps_refusals_and_rounds(dealt, client_keys, tmp_path):
    keys, _ = dealt
    pub = keys.public
    path = tmp_path / "share.state"
    data = keys.shares[0].to_bytes()
    holder = threshold.ShareHolder.from_bytes(data, allow_insecure=True, state_path=path)
    envs = envelopes(pub, client_keys)
    holder.partial_decrypt(signed_payloads=envs)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    restarted = threshold.ShareHolder.from_bytes(data, allow_insecure=True, state_path=path)
    with pytest.raises(errors.RoundAlreadyDecryptedError):
        restarted.partial_decrypt(signed_payloads=envs[1:])
    assert json.loads(path.read_text())["guard"]["refusals"] == 1
    path.write_text("not json")  # unreadable state: fail safe, decrypt nothing
    with pytest.raises(secagg.AggregateRefusedError, match="SA-LOCKED"):
        threshold.ShareHolder.from_bytes(data, allow_insecure=True, state_path=path) \
            .partial_decrypt(signed_payloads=envelopes(pub, client_keys, round_id=99))


def test_every_holder_runs_the_checks_that_need_no_decryption(dealt, client_keys):
    keys, _ = dealt
    pub = keys.public
    holder = keys.shares[0]
    agg = secagg.Aggregator(pub, round_id=3)
    for k in range(2):
        agg.add(pub.encrypt(tree(k), round_id=3))
    total = agg.result()
    other, _ = deal_small(3, 2)
    foreign = secagg.Aggregator(other.public)
    for k in range(2):
        foreign.add(other.public.encrypt(tree(k)))
    with pytest.raises(secagg.ContextMismatchError):
        holder.partial_decrypt(foreign.result().to_bytes(), verified=False)
    with pytest.raises(secagg.RoundMismatchError):
        holder.partial_decrypt(total, verified=False, round_id=4)
    with pytest.raises(secagg.FormatError, match="aggregates only"):
        holder.partial_decrypt(pub.encrypt(tree(0)).to_bytes(), verified=False)
    one = secagg.Aggregator(pub)
    one.add(pub.encrypt(tree(0)))
    with pytest.raises(secagg.InsufficientClientsError):
        holder.partial_decrypt(one.result(), verified=False)
    with pytest.raises(secagg.ConfigError, match="proofs"):
        holder.partial_decrypt(total, verified=False, proofs="none")
    with pytest.raises(secagg.ConfigError, match="workers"):
        holder.partial_decrypt(total, verified=False, workers=0)
    with pytest.raises(secagg.ConfigError, match="signed_payloads"):
        holder.partial_decrypt(total, verified=False, signed_payloads=[])
    with pytest.raises(secagg.FormatError):
        holder.partial_decrypt(signed_payloads=[b"junk", 3])
    assert holder.guard.refusals == 0  # none of these is a hostile request
