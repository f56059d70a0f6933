"""Crash recovery: a checkpointed and restored aggregator finishes the round bit-identically."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from tests.helpers import SCHEMES, make_context, snapshot


@pytest.fixture(scope="module", params=SCHEMES)
def cctx(request):
    return make_context(request.param, max_clients=6, max_terms=1)


@settings(max_examples=8)
@given(st.integers(1, 5), st.integers(0, 5), st.booleans())
def test_checkpoint_restore_is_bit_identical(cctx, before, after, with_term):
    pub = cctx.public
    updates = [pub.encrypt(np.linspace(-1, 1, 30) * (i + 1) / 7, round_id=4).to_bytes()
               for i in range(before + after)]
    updates = updates[:6]
    before = min(before, len(updates))
    straight = secagg.Aggregator(pub, round_id=4)
    resumed = secagg.Aggregator(pub, round_id=4)
    for i, u in enumerate(updates[:before]):
        straight.add(u, client_id=f"c{i}")
        resumed.add(u, client_id=f"c{i}")
    if with_term:
        term = pub.encrypt_term(np.full(30, 0.5), round_id=4).to_bytes()
        straight.add_term(term)
        resumed.add_term(term)
    resumed = secagg.Aggregator.from_bytes(resumed.to_bytes(), pub)  # the crash
    assert snapshot(resumed) == snapshot(straight)
    with pytest.raises(secagg.ReplayError):
        resumed.add(updates[0])  # seen digests survive the restart
    with pytest.raises(secagg.ReplayError):
        resumed.add(pub.encrypt(np.zeros(30), round_id=4), client_id="c0")  # and client ids
    for i, u in enumerate(updates[before:]):
        straight.add(u, client_id=f"d{i}")
        resumed.add(u, client_id=f"d{i}")
    assert resumed.result().to_bytes() == straight.result().to_bytes()


def test_empty_checkpoint_and_foreign_checkpoint(cctx):
    agg = secagg.Aggregator.from_bytes(secagg.Aggregator(cctx.public).to_bytes(), cctx.public)
    assert len(agg) == 0 and agg.spec is None
    other = make_context("ckks", max_clients=6, max_terms=1)
    blob = secagg.Aggregator(other.public).to_bytes()
    with pytest.raises(secagg.ContextMismatchError):
        secagg.Aggregator.from_bytes(blob, cctx.public)
    with pytest.raises(secagg.FormatError):
        secagg.Aggregator.from_bytes(cctx.public.to_bytes(), cctx.public)


def test_duplicate_client_id_is_refused_and_state_kept(cctx):
    pub = cctx.public
    agg = secagg.Aggregator(pub)
    agg.add(pub.encrypt(np.ones(3)), client_id="alice")
    before = snapshot(agg)
    with pytest.raises(secagg.ReplayError, match="alice"):
        agg.add(pub.encrypt(np.ones(3)), client_id="alice")
    assert snapshot(agg) == before
    with pytest.raises(secagg.FormatError):
        agg.add(pub.encrypt(np.ones(3)), client_id=7)
