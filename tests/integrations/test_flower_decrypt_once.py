"""Each aggregate is decrypted once per node, even when every message gets a new ClientApp process.

Flower's isolation modes start a ClientApp process per message, so in-process
caches never help; the node's ``Context.state`` does survive between them.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord

from secagg.integrations.flower import keys as flower_keys
from tests.integrations.flower_helpers import (
    INIT,
    NODES,
    FakeGrid,
    flower_context,
    make_app,
    node_context,
    strategy_for,
)


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_evaluate_then_train_of_one_aggregate_decrypts_once_per_node(scheme, task_identity,
                                                                     count_decryptions):
    ctx = flower_context(scheme)
    strategy = strategy_for(ctx)
    contexts = {node: node_context(node) for node in NODES}  # the SuperNodes' state persists

    def send(messages):
        replies = []
        for msg in messages:
            flower_keys._DECRYPTED.clear()  # a fresh ClientApp process: no in-process cache
            replies.append(make_app(ctx.to_bytes())(msg, contexts[msg.metadata.dst_node_id]))
        return replies

    grid = FakeGrid(NODES)
    replies = send(strategy.configure_train(1, ArrayRecord(INIT), ConfigRecord(), grid))
    encrypted, _ = strategy.aggregate_train(1, replies)
    assert count_decryptions == []  # round 1 sends the plaintext initial model
    evaluated = send(strategy.configure_evaluate(1, encrypted, ConfigRecord(), grid))
    assert not any(r.has_error() for r in evaluated)
    assert len(count_decryptions) == len(NODES)  # evaluate of round 1: one decryption a node
    trained = send(strategy.configure_train(2, encrypted, ConfigRecord(), grid))
    assert not any(r.has_error() for r in trained)
    assert len(count_decryptions) == len(NODES)  # train of round 2: the same aggregate, none
    # a new aggregate is decrypted again
    encrypted2, _ = strategy.aggregate_train(2, trained)
    send(strategy.configure_evaluate(2, encrypted2, ConfigRecord(), grid))
    assert len(count_decryptions) == 2 * len(NODES)
