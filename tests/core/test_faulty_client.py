"""A client that bypasses the codec is caught after decryption; the error names no decrypted number."""

from __future__ import annotations

import numpy as np
import pytest

import secagg
from secagg.update import EXTRA_SLOTS, EncryptedUpdate
from secagg.wire import Kind
from tests.helpers import SCHEMES, make_context


@pytest.fixture(scope="module", params=SCHEMES)
def fctx(request):
    return make_context(request.param, max_clients=6, max_weight=4)


def faulty_update(pub, values: np.ndarray) -> EncryptedUpdate:
    """An update whose slots were not produced by the codec (a buggy or hostile client)."""
    spec, _ = secagg.flatten(np.zeros(values.size))
    slots = np.append(values.astype(np.int64), [1, 1])
    assert slots.size == values.size + EXTRA_SLOTS
    cts = pub.backend.raw_encrypt(slots)
    return EncryptedUpdate(pub.scheme, pub.fingerprint, Kind.UPDATE, 1, spec, None, cts, pub.backend)


def test_out_of_range_slot_is_refused_without_numbers(fctx):
    pub = fctx.public
    bound = pub.codec.contribution_bound
    values = np.zeros(40, dtype=np.int64)
    values[[3, 17]] = 3 * bound  # an unclipped value, three times the honest range
    agg = secagg.Aggregator(pub)
    agg.add(faulty_update(pub, values).to_bytes())
    agg.add(pub.encrypt(np.zeros(40)))
    # (a DecryptionCheckError, as every error after decryption: tests/core/test_errors.py)
    with pytest.raises(secagg.SumOverflowError) as info:
        fctx.decrypt(agg.result())
    # what failed, never what was found: no count, position or value in the message
    assert not any(ch.isdigit() for ch in str(info.value))


def test_in_range_faulty_values_are_not_flagged(fctx):
    pub = fctx.public
    values = np.full(10, pub.codec.contribution_bound)  # extreme but honest-looking
    agg = secagg.Aggregator(pub)
    agg.add(faulty_update(pub, values))
    agg.add(pub.encrypt(np.zeros(10)))
    assert fctx.decrypt_raw(agg.result()).values.tolist() == values.tolist()
