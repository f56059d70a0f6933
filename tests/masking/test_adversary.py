"""A deviating server, tampered bytes and malicious holders: refused with specific errors, state kept.

Each test plays the server (or the network) by hand with the real client and server
objects; after every refusal the refused party still completes the round with the
right message, and the sum is exact.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from secagg import masking
from secagg.errors import (
    ContextMismatchError,
    CorruptPayloadError,
    FormatError,
    InsecureThresholdError,
    KeyAuthenticationError,
    PeerSetError,
    ReconstructionError,
    ReplayError,
    RoundMismatchError,
    ShareDecryptionError,
    StageError,
    TooFewSurvivorsError,
    TreeMismatchError,
    TruncatedPayloadError,
    UnmaskRefusedError,
)
from secagg.wire import Kind, open_payload, seal
from tests.masking.util import Round, field, reseal


def request(r: Round, to: int, survivors, dropped) -> bytes:
    return reseal(r.requests[to], survivors=sorted(survivors), dropped=sorted(dropped))


# -- the unmask rules ------------------------------------------------------------------
def test_client_never_reveals_both_secrets_of_one_peer():
    r = Round(5, 3)
    r.keys(), r.shares(), r.masked()
    victim = r.clients[0]
    first = victim.unmask(r.requests[0])                        # 1 survived: seed share revealed
    assert 1 in dict(field(first, "self"))
    with pytest.raises(UnmaskRefusedError):                     # now "1 dropped": key share too?
        victim.unmask(request(r, 0, {0, 2, 3, 4}, {1}))
    assert victim.unmask(r.requests[0]) == first                # the same request is answered again
    r.check(r.unmask())


def test_client_never_reveals_a_seed_share_after_a_key_share():
    r = Round(5, 3)
    r.keys(), r.shares(), r.masked(drop=[4])                    # 4 shared, sent no input
    r.clients[0].unmask(r.requests[0])                          # reveals 4's mask-key share
    with pytest.raises(UnmaskRefusedError):
        r.clients[0].unmask(request(r, 0, {0, 1, 2, 3, 4}, set()))
    r.check(r.unmask())


@pytest.mark.parametrize("forge, error", [
    (lambda r: request(r, 0, {0, 1}, {2, 3, 4}), TooFewSurvivorsError),     # fewer than t survivors
    (lambda r: request(r, 0, {0, 1, 2, 3, 4}, {4}), PeerSetError),         # overlapping sets
    (lambda r: request(r, 0, {0, 1, 2, 3}, set()), PeerSetError),          # silent about peer 4
    (lambda r: request(r, 0, {1, 2, 3, 4}, {0}), PeerSetError),            # "you dropped"
    (lambda r: request(r, 0, {0, 1, 2, 3, 4, 5}, set()), PeerSetError),    # 5 never shared
    (lambda r: reseal(r.requests[0], to=1), PeerSetError),                 # addressed to another
    (lambda r: reseal(r.requests[0], round=1), RoundMismatchError),        # another round
    (lambda r: reseal(r.requests[0], round="0"), RoundMismatchError),      # 0 is not "0"
    (lambda r: reseal(r.requests[0], cfg=bytes(16)), ContextMismatchError),
    (lambda r: reseal(r.requests[0], survivors=[4, 3, 2, 1, 0]), FormatError),  # unsorted
    (lambda r: r.share_lists[0], FormatError),                             # wrong kind
    (lambda r: r.requests[0][:-1], TruncatedPayloadError),
    (lambda r: r.requests[0][:40] + bytes([r.requests[0][40] ^ 1]) + r.requests[0][41:],
     CorruptPayloadError),
])
def test_bad_unmask_requests_are_refused_and_change_nothing(forge, error):
    r = Round(6, 4)
    r.keys(), r.shares(drop=[5]), r.masked()                   # 5 vanished before sharing
    with pytest.raises(error):
        r.clients[0].unmask(forge(r))
    r.check(r.unmask())                                         # client 0 still answers correctly


def test_configuration_with_a_low_threshold_is_refused_by_clients():
    good = masking.MaskingConfig.create(6, 4).to_bytes()
    with pytest.raises(InsecureThresholdError):
        masking.MaskingClient(reseal(good, t=3), 0)
    plus = masking.MaskingConfig.create(10, 4, neighbors=6).to_bytes()
    with pytest.raises(InsecureThresholdError):
        masking.MaskingClient(reseal(plus, t=3), 0)             # 7 holders: t = 3 is too low
    masking.MaskingClient(plus, 0)


# -- authenticated keys -------------------------------------------------------------------
def _substitute(key_list: bytes, peer: int, slot: int) -> bytes:
    peers = [list(p) for p in field(key_list, "peers")]
    for p in peers:
        if p[0] == peer:
            p[slot] = X25519PrivateKey.generate().public_key().public_bytes_raw()
    return reseal(key_list, peers=peers)


@pytest.mark.parametrize("slot", [1, 2])  # the share-encryption key, the mask key
def test_substituted_public_key_is_refused_with_signing_keys(slot):
    r = Round(5, 3, signing=True)
    r.keys()
    with pytest.raises(KeyAuthenticationError):
        r.clients[0].share_keys(_substitute(r.key_lists[0], 2, slot))
    unsigned = [[*p[:3], b""] for p in field(r.key_lists[0], "peers")]
    with pytest.raises(KeyAuthenticationError):
        r.clients[0].share_keys(reseal(r.key_lists[0], peers=unsigned))
    r.shares(), r.masked()
    r.check(r.unmask())


def test_without_signing_keys_a_substitution_goes_unnoticed():
    # what signing buys: without a PKI, the client cannot tell the server's key from its peer's
    r = Round(5, 3)
    r.keys()
    r.clients[0].share_keys(_substitute(r.key_lists[0], 2, 1))


def test_server_refuses_unsigned_or_forged_adverts_when_it_knows_the_keys():
    r = Round(4, 3, signing=True)
    advert = r.clients[0].advertise_keys()
    other = X25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(KeyAuthenticationError):
        r.server.receive(reseal(advert, s_pk=other))
    with pytest.raises(KeyAuthenticationError):
        r.server.receive(reseal(advert, sig=b""))
    r.server.receive(advert)


# -- the network or the server tampers with relayed bytes ------------------------------------
def test_tampered_share_ciphertexts_are_refused():
    r = Round(5, 3)
    r.keys(), r.shares()
    entries = field(r.share_lists[0], "shares")
    flipped = [[v, ct[:20] + bytes([ct[20] ^ 1]) + ct[21:]] for v, ct in entries]
    with pytest.raises(ShareDecryptionError):
        r.clients[0].masked_input(reseal(r.share_lists[0], shares=flipped), r.trees[0])
    # client 1's ciphertexts replayed to client 0: the associated data names the receiver
    theirs = [[v, ct] for v, ct in field(r.share_lists[1], "shares") if v != 0]
    with pytest.raises(ShareDecryptionError):
        r.clients[0].masked_input(reseal(r.share_lists[1], to=0, shares=theirs), r.trees[0])
    strangers = [[v if v != 1 else 9, ct] for v, ct in entries]
    with pytest.raises(FormatError):                      # 9 is not a client of a 5-client round
        r.clients[0].masked_input(reseal(r.share_lists[0], shares=strangers), r.trees[0])
    with pytest.raises(StageError):
        r.clients[0].unmask(b"")
    r.masked()
    r.check(r.unmask())


def test_key_list_with_strangers_duplicates_or_reflections_is_refused():
    r = Round(12, 4, neighbors=4)
    r.keys()
    peers = field(r.key_lists[0], "peers")
    outsider = next(i for i in range(12) if i != 0 and i not in r.clients[0].neighbours)
    advert = open_payload(r.adverts[outsider])[1]
    fake = [outsider, advert.blob("c_pk"), advert.blob("s_pk"), b""]
    for bad in ([*peers, fake], [*peers, peers[0]], peers[:1]):
        with pytest.raises((PeerSetError, TooFewSurvivorsError)):
            r.clients[0].share_keys(reseal(r.key_lists[0], peers=bad))
    mine = open_payload(r.adverts[0])[1]
    reflected = [[p[0], mine.blob("c_pk"), p[2], p[3]] if j == 0 else p for j, p in enumerate(peers)]
    with pytest.raises(PeerSetError):
        r.clients[0].share_keys(reseal(r.key_lists[0], peers=reflected))
    r.shares(), r.masked()
    r.check(r.unmask())


def test_server_refuses_bad_client_messages_and_stays_unchanged():
    r = Round(5, 3)
    adverts = [c.advertise_keys() for c in r.clients]
    other = Round(5, 3)
    for bad, error in [
        (adverts[0][:-3], TruncatedPayloadError),
        (adverts[0][:30] + bytes([adverts[0][30] ^ 4]) + adverts[0][31:], CorruptPayloadError),
        (b"not a payload at all", FormatError),
        (seal(Kind.MASK_KEY_LIST, {"round": 0}), FormatError),           # not a client message
        (other.clients[0].advertise_keys(), ContextMismatchError),      # another configuration
        (reseal(adverts[0], round=7), RoundMismatchError),
        (reseal(adverts[0], c_pk=b"short"), FormatError),
    ]:
        with pytest.raises(error):
            r.server.receive(bad)
    assert r.server.stage == "keys" and not r.server._adverts
    for a in adverts:
        r.server.receive(a)
    with pytest.raises(ReplayError):
        r.server.receive(adverts[0])
    r.adverts = dict(enumerate(adverts))
    r.key_lists = r.server.close_keys()
    with pytest.raises(StageError):
        r.server.receive(adverts[1])                                    # the key stage is closed
    msgs = [c.share_keys(r.key_lists[i]) for i, c in enumerate(r.clients)]
    fewer = reseal(msgs[0], shares=field(msgs[0], "shares")[:-1])
    with pytest.raises(PeerSetError):
        r.server.receive(fewer)                                         # not every neighbour
    for m in msgs:
        r.server.receive(m)
    r.share_lists = r.server.close_shares()
    inputs = [c.masked_input(r.share_lists[i], r.trees[i]) for i, c in enumerate(r.clients)]
    for bad, error in [
        (reseal(inputs[0], data=field(inputs[0], "data")[:-1]), FormatError),
        (reseal(inputs[0], width=field(inputs[0], "width") + 1), FormatError),
        (reseal(inputs[0], slots=field(inputs[0], "slots") + 1), FormatError),
    ]:
        with pytest.raises(error):
            r.server.receive(bad)
    r.server.receive(inputs[0])
    spec = field(inputs[1], "spec")
    spec[1][0][0] = "renamed"
    with pytest.raises(TreeMismatchError):
        r.server.receive(reseal(inputs[1], spec=spec))
    for m in inputs[1:]:
        r.server.receive(m)
    r.included = list(range(5))
    r.requests = r.server.close_masked()
    answers = [c.unmask(r.requests[i]) for i, c in enumerate(r.clients)]
    with pytest.raises(PeerSetError):
        r.server.receive(reseal(answers[0], self=field(answers[0], "self")[1:]))
    for m in answers:
        r.server.receive(m)
    r.check(r.server.finish())


def test_a_wrong_share_from_a_holder_is_detected():
    r = Round(5, 3)
    r.keys(), r.shares(), r.masked(drop=[4])
    answers = {i: r.clients[i].unmask(r.requests[i]) for i in range(4)}
    entries = [[v, bytes(36)] if v == 1 else [v, blob] for v, blob in field(answers[0], "self")]
    r.server.receive(reseal(answers[0], self=entries))       # client 0 lies about 1's seed share
    for i in (1, 2, 3):
        r.server.receive(answers[i])
    with pytest.raises(ReconstructionError):
        r.server.finish()


def test_a_wrong_key_share_from_a_holder_is_detected():
    r = Round(5, 3)
    r.keys(), r.shares(), r.masked(drop=[4])
    answers = {i: r.clients[i].unmask(r.requests[i]) for i in range(4)}
    entries = [[v, (1).to_bytes(4, "little") + blob[4:]] for v, blob in field(answers[0], "key")]
    r.server.receive(reseal(answers[0], key=entries))
    for i in (1, 2, 3):
        r.server.receive(answers[i])
    with pytest.raises(ReconstructionError):
        r.server.finish()


def test_the_server_stops_before_unmasking_when_too_few_answer():
    r = Round(5, 3)
    r.keys(), r.shares(), r.masked()
    for i in (0, 1):
        r.server.receive(r.clients[i].unmask(r.requests[i]))
    with pytest.raises(TooFewSurvivorsError):
        r.server.finish()
    r.server.receive(r.clients[2].unmask(r.requests[2]))    # a late answer: now it can finish
    r.check(r.server.finish())


def test_stage_methods_run_once_and_in_order():
    r = Round(4, 3)
    c = r.clients[0]
    with pytest.raises(StageError):
        c.share_keys(b"")
    c.advertise_keys()
    with pytest.raises(StageError):
        c.advertise_keys()
    with pytest.raises(StageError):
        r.server.close_shares()
    with pytest.raises(StageError):
        r.server.finish()


def test_server_refuses_messages_from_clients_that_skipped_a_stage():
    r = Round(5, 3)
    r.keys(), r.shares(drop=[4])
    late = r.clients[4].share_keys(r.key_lists[4])          # too late: the share stage is closed
    with pytest.raises(StageError):
        r.server.receive(late)
    inputs = {i: r.clients[i].masked_input(r.share_lists[i], r.trees[i]) for i in range(4)}
    with pytest.raises(PeerSetError):                       # 4 sent no shares: no input from it
        r.server.receive(reseal(inputs[0], **{"from": 4}))
    for m in inputs.values():
        r.server.receive(m)
    r.included, r.alive = [0, 1, 2, 3], {0, 1, 2, 3}
    r.requests = r.server.close_masked()
    answer = r.clients[0].unmask(r.requests[0])
    with pytest.raises(PeerSetError):                       # 4 was sent no unmask request
        r.server.receive(reseal(answer, **{"from": 4}))
    r.check(r.unmask())
