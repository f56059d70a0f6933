"""[BIK+17]'s consistency round (signing keys only): exact sums, refusals, and the trimming attack.

The attack (found by a review): a deviating server trims a victim ``z``'s key list
to ``t - 1`` peers ``A`` (``z`` masks with ``A`` only), tells ``z``'s holders that
``z`` survived (``t`` shares of its self-mask seed) and tells different holders that
different members of ``A`` dropped (``t`` shares of each ``v``'s mask key), then
removes every mask of ``z``. Without signing keys it works (asserted below: the
documented limitation); with them every client signs one ``U3`` and unmasks only
for ``t`` signatures on the ``U3`` it signed, and the attack is refused.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings

from secagg import masking
from secagg.codec import FixedPointCodec
from secagg.errors import (
    ContextMismatchError,
    FormatError,
    KeyAuthenticationError,
    PeerSetError,
    ReplayError,
    RoundMismatchError,
    StageError,
    TooFewSurvivorsError,
    UnmaskRefusedError,
)
from secagg.masking import shamir
from secagg.masking.crypto import MaskExpander
from secagg.masking.packing import unpack_add
from secagg.masking.protocol import _exchange, _pair_key, _self_key
from secagg.tree import flatten
from secagg.wire import Kind, seal
from tests.masking.test_round import rounds
from tests.masking.util import Round, assert_same_tree, exact, field, reseal


# -- honest rounds ----------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(rounds())
def test_sum_is_exact_for_every_dropout_pattern_with_signing_keys(case):
    r = masking.run_round(**case, signing_keys=True)
    n = len(case["trees"])
    gone = {i for s in ("keys", "shares", "masked") for i in case["dropouts"].get(s, [])}
    assert r.included == sorted(set(range(n)) - gone)
    codec = FixedPointCodec(max_clients=n, max_weight=case["max_weight"])
    total, wsum, tree = exact(case["trees"], case["weights"], r.included, codec, case["reduce"])
    np.testing.assert_array_equal(r.raw.values, total)
    assert (r.raw.count, r.raw.weight_sum) == (len(r.included), wsum)
    assert_same_tree(r.tree, tree)


def test_consistency_round_runs_only_with_signing_keys():
    signed = Round(5, 3, signing=True)
    signed.keys(), signed.shares()
    signed.masked(drop=[4])
    assert all(set(field(m, "u3")) == {0, 1, 2, 3} for m in signed.consistency_requests.values())
    assert all(len(field(m, "sigs")) == 4 for m in signed.requests.values())
    signed.check(signed.unmask(drop=[3]))
    plain = Round(5, 3)
    plain.keys(), plain.shares(), plain.masked()
    assert plain.server.stage == "unmask" and not plain.clients[0].checks_consistency
    with pytest.raises(StageError):
        plain.clients[0].consistency(plain.requests[0])
    plain.check(plain.unmask())


def test_too_few_signers_stops_the_round_before_unmasking():
    r = Round(5, 3, signing=True)
    r.keys(), r.shares()
    r.inputs = {i: r.clients[i].masked_input(r.share_lists[i], r.trees[i]) for i in range(5)}
    for m in r.inputs.values():
        r.server.receive(m)
    cons = r.server.close_masked()
    for i in (0, 1):                                            # 2, 3, 4 never sign
        r.server.receive(r.clients[i].consistency(cons[i]))
    with pytest.raises(TooFewSurvivorsError):
        r.server.close_consistency()


# -- refusals -----------------------------------------------------------------------------
def signed_round(n=6, t=4, drop_masked=(5,)):
    r = Round(n, t, signing=True)
    r.keys(), r.shares()
    r.masked(drop=drop_masked)
    return r


def test_bad_consistency_requests_are_refused_and_change_nothing():
    r = Round(6, 4, signing=True)
    r.keys(), r.shares(drop=[5])                                # 5 never shared
    r.inputs = {i: r.clients[i].masked_input(r.share_lists[i], r.trees[i]) for i in range(4)}
    for m in r.inputs.values():                                 # 4 shared but sent no input
        r.server.receive(m)
    r.included = [0, 1, 2, 3]
    cons = r.server.close_masked()
    good = cons[0]
    for bad, error in [
        (reseal(good, u3=[0, 1, 2, 3, 5]), PeerSetError),        # 5 never shared: U3 ⊄ view
        (reseal(good, u3=[1, 2, 3]), PeerSetError),              # this client is not in U3
        (reseal(good, u3=[0, 1, 2]), TooFewSurvivorsError),      # fewer than t
        (reseal(good, u3=[3, 2, 1, 0]), FormatError),            # unsorted
        (reseal(good, to=1), PeerSetError),
        (reseal(good, round=1), RoundMismatchError),
        (reseal(good, cfg=bytes(16)), ContextMismatchError),
        (r.share_lists[0], FormatError),                         # wrong kind
    ]:
        with pytest.raises(error):
            r.clients[0].consistency(bad)
        assert r.clients[0]._signed_u3 is None
    sigs = {i: r.clients[i].consistency(cons[i]) for i in range(4)}
    with pytest.raises(StageError):
        r.clients[0].consistency(good)                          # signs once
    # the server: forged, replayed, stranger's and unsigned signatures
    forged = reseal(sigs[0], sig=os.urandom(64))
    for bad, error in [
        (forged, KeyAuthenticationError),
        (reseal(sigs[1], **{"from": 0}), KeyAuthenticationError),  # 1's signature as 0's
        (reseal(sigs[0], sig=b""), FormatError),
        (reseal(sigs[0], **{"from": 4}), PeerSetError),         # 4 sent no input
    ]:
        with pytest.raises(error):
            r.server.receive(bad)
    assert r.server._signatures == {}
    for m in sigs.values():
        r.server.receive(m)
    with pytest.raises(ReplayError):
        r.server.receive(sigs[0])
    r.requests = r.server.close_consistency()
    r.alive = {0, 1, 2, 3}
    r.check(r.unmask())


@pytest.mark.parametrize("forge, error", [
    (lambda r, s: reseal(r.requests[0], sigs=s[:3]), UnmaskRefusedError),          # missing
    (lambda r, s: reseal(r.requests[0], sigs=[]), UnmaskRefusedError),
    (lambda r, s: reseal(r.requests[0], sigs=[s[0], s[0], s[1], s[2]]), PeerSetError),  # dup
    (lambda r, s: reseal(r.requests[0], sigs=[[0, os.urandom(64)], *s[1:]]),
     KeyAuthenticationError),                                                      # forged
    (lambda r, s: reseal(r.requests[0], sigs=[[0, s[1][1]], *s[1:]]),
     KeyAuthenticationError),                                                      # 1's as 0's
    (lambda r, s: reseal(r.requests[0], sigs=[*s, [5, os.urandom(64)]]), PeerSetError),  # not U3
    (lambda r, s: reseal(r.requests[0], u3=[0, 1, 2, 3]), PeerSetError),           # another U3
    (lambda r, s: reseal(r.requests[0], u3=[0, 1, 2, 3], survivors=[0, 1, 2, 3],
                         dropped=[4, 5]), PeerSetError),
    (lambda r, s: reseal(r.requests[0], survivors=[0, 1, 2, 3], dropped=[4, 5]),
     PeerSetError),                                               # survivors != U3 ∩ view
    (lambda r, s: reseal(r.requests[0], u3=None), FormatError),
])
def test_bad_signatures_in_unmask_requests_are_refused_and_change_nothing(forge, error):
    r = signed_round()                                            # U3 = {0..4}
    sigs = field(r.requests[0], "sigs")
    assert [v for v, _ in sigs] == [0, 1, 2, 3, 4]
    with pytest.raises(error):
        r.clients[0].unmask(forge(r, sigs))
    assert not r.clients[0]._revealed_self and not r.clients[0]._revealed_key
    r.check(r.unmask())


def test_unmask_before_signing_is_refused():
    r = Round(5, 3, signing=True)
    r.keys(), r.shares(), r.masked()
    fresh = Round(5, 3, signing=True)
    fresh.keys(), fresh.shares()
    fresh.inputs = {i: fresh.clients[i].masked_input(fresh.share_lists[i], fresh.trees[i])
                    for i in range(5)}
    with pytest.raises(StageError):                             # no U3 signed yet
        fresh.clients[0].unmask(reseal(r.requests[0], cfg=fresh.config.fingerprint))


# -- the trimming attack ------------------------------------------------------------------
N, T, Z = 10, 6, 0
A = list(range(1, T))                                             # z's t - 1 remaining peers
OTHERS = list(range(T, N))


def _claims() -> dict[int, set[int]]:
    """Which members of A each holder is told dropped: t holders per v in A, and every
    holder keeps t survivors in its view (it checks that)."""
    cap = {w: (N - T if w in A else N - 1 - T) for w in [*A, *OTHERS]}
    told: dict[int, set[int]] = {w: set() for w in cap}
    for v in A:
        for w in sorted((w for w in cap if w != v and cap[w] > 0), key=lambda w: -cap[w])[:T]:
            told[w].add(v)
            cap[w] -= 1
    assert all(sum(v in s for s in told.values()) == T for v in A)
    return told


def _attack_setup(signing: bool) -> tuple[Round, dict[int, bytes], dict[int, frozenset[int]]]:
    """Keys (honest), then the trimmed key list for z, shares relayed; returns the round,
    the masked inputs and each client's view."""
    r = Round(N, T, signing=signing)
    r.keys()
    key_lists = dict(r.key_lists)
    key_lists[Z] = reseal(key_lists[Z], peers=[p for p in field(key_lists[Z], "peers") if p[0] in A])
    shares = {i: field(r.clients[i].share_keys(key_lists[i]), "shares") for i in range(N)}
    views, inputs = {}, {}
    hdr = {"round": r.config.round_id, "cfg": r.config.fingerprint}
    for u in range(N):
        entries = [[s, ct] for s in range(N) for v, ct in shares[s]
                   if v == u and (u != Z or s in A)]                # z hears from A only
        views[u] = frozenset(s for s, _ in entries) | {u}
        share_list = seal(Kind.MASK_SHARE_LIST, hdr | {"to": u, "shares": entries})
        inputs[u] = r.clients[u].masked_input(share_list, r.trees[u])
    assert views[Z] == frozenset([Z, *A])
    return r, inputs, views


def _request(r: Round, u: int, view: frozenset[int], dropped: set[int], **extra) -> bytes:
    return seal(Kind.MASK_UNMASK_REQUEST, {
        "round": r.config.round_id, "cfg": r.config.fingerprint, "to": u,
        "survivors": sorted(view - dropped), "dropped": sorted(dropped)} | extra)


def test_the_trimming_attack_reads_the_victim_without_signing_keys():
    """The documented limitation: without signing keys (and so without the consistency
    round) a deviating server reads z's exact input, with no colluding client."""
    r, inputs, views = _attack_setup(signing=False)
    told = _claims()
    seed_shares, key_shares = {}, {v: {} for v in A}
    for u in [Z, *A, *OTHERS]:
        dropped = told.get(u, set()) & views[u]
        answer = r.clients[u].unmask(_request(r, u, views[u], dropped))
        own, keys = dict(field(answer, "self")), dict(field(answer, "key"))
        if Z in own:
            seed_shares[u] = own[Z]
        for v in dropped:
            key_shares[v][u] = keys[v]

    def rebuild(shares: dict[int, bytes]) -> bytes:
        holders = sorted(shares)[:T]
        xs = np.array([holders], dtype=np.int64) + 1
        limbs = np.stack([np.frombuffer(shares[h], "<u4").astype(np.int64) for h in holders])
        secret = shamir.limbs_to_secret(shamir.combine_many(xs, limbs[None])[0])
        assert secret is not None
        return secret

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    config, width = r.config, r.config.width
    seed = rebuild(seed_shares)
    slots = field(inputs[Z], "slots")
    y = np.zeros(slots, dtype=np.uint64)
    unpack_add(y, field(inputs[Z], "data"), slots, width)
    expander = MaskExpander(slots, width)
    masks = np.zeros(slots, dtype=expander.dtype)
    expander.add(masks, _self_key(config, seed, Z))
    z_pk = field(r.adverts[Z], "s_pk")
    for v in A:
        sk = X25519PrivateKey.from_private_bytes(rebuild(key_shares[v]))
        expander.add(masks, _pair_key(config, _exchange(sk, z_pk, Z), "pairwise-mask", Z, v),
                     negate=v < Z)
    x = ((y - masks.astype(np.uint64)) & np.uint64((1 << width) - 1)).astype(np.int64)
    x[x >= 1 << (width - 1)] -= 1 << width
    expected = config.codec.raw_encode(flatten(r.trees[Z])[1])[0]
    np.testing.assert_array_equal(x[:-2], expected)              # z's input, read alone
    assert list(x[-2:]) == [1, 1]


def test_the_trimming_attack_is_refused_with_signing_keys():
    r, _, views = _attack_setup(signing=True)
    hdr = {"round": r.config.round_id, "cfg": r.config.fingerprint}

    def cons(u: int, u3) -> bytes:
        return seal(Kind.MASK_CONSISTENCY_REQUEST, hdr | {"to": u, "u3": sorted(u3)})

    # z refuses any U3 with a neighbour outside its view: the trimmed peers sent inputs
    with pytest.raises(PeerSetError):
        r.clients[Z].consistency(cons(Z, range(N)))
    # so z's U3 must be A ∪ {z}; those t clients sign it
    u3 = sorted([Z, *A])
    sigs = {u: field(r.clients[u].consistency(cons(u, u3)), "sig") for u in u3}
    for w in OTHERS:                                            # not in that U3: refused
        with pytest.raises(PeerSetError):
            r.clients[w].consistency(cons(w, u3))
    # a holder of v ∈ A told "v dropped" needs U3 without v; the others sign one such
    v = A[0]
    u3b = sorted(set(range(N)) - {Z, v})
    sigs_b = {w: field(r.clients[w].consistency(cons(w, u3b)), "sig") for w in OTHERS}
    w = OTHERS[0]
    pairs_b = [[x, sigs_b[x]] for x in sorted(sigs_b)]
    with pytest.raises(UnmaskRefusedError):                     # only n - t < t signers on it
        r.clients[w].unmask(_request(r, w, views[w], {v}, u3=u3b, sigs=pairs_b))
    stolen = sorted(pairs_b + [[x, sigs[x]] for x in A if x != v])
    with pytest.raises(KeyAuthenticationError):                 # signatures on the other U3
        r.clients[w].unmask(_request(r, w, views[w], {v}, u3=u3b, sigs=stolen))
    # a signer of A ∪ {z} cannot be told that v dropped: U3 fixes the survivors
    pairs = [[x, sigs[x]] for x in u3]
    h = A[1]
    with pytest.raises(PeerSetError):
        r.clients[h].unmask(_request(r, h, views[h], {v}, u3=u3, sigs=pairs))
    with pytest.raises(PeerSetError):                           # nor with a U3 it did not sign
        r.clients[h].unmask(_request(r, h, views[h], {v}, u3=u3b, sigs=pairs_b))
    for u in range(N):
        assert not r.clients[u]._revealed_key                   # no mask key share left any client
