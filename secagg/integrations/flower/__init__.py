"""Flower integration: encrypted FedAvg as a Flower strategy and a Flower client mod.

Written against the Message API of the pinned Flower release (``pip install
"secagg[flower]"``, flwr 1.41). flwr is imported only when these objects are
used, so ``import secagg`` and ``import secagg.flower`` never need it.

Server (holds the public context only)::

    from secagg.flower import SecAggFedAvg

    strategy = SecAggFedAvg(public_context_bytes, fraction_train=1.0, min_train_nodes=10)
    result = strategy.start(grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

Clients (an ordinary Flower ``ClientApp``; one mod added)::

    from secagg.flower import encrypted_fedavg_mod

    app = ClientApp(mods=[encrypted_fedavg_mod(secret_context_bytes)])

``encrypted_fedavg_mod`` is ``secagg_mod`` (the same function; both names stay):
the longer name keeps it apart from Flower's own ``secaggplus_mod``, which runs
the SecAgg+ masking protocol with Flower's ``SecAggPlusWorkflow`` and cannot be
combined with :class:`SecAggFedAvg` (nor this mod with that workflow).

    @app.train()
    def train(msg, context):            # sees and returns plaintext, as usual
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        ...
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=msg)

One round, cross-silo (the default: the clients share the secret context, the
server never holds it):

1. The server sends each sampled node a ``train`` message whose ArrayRecord is
   the *encrypted* global model of the previous round (one uint8 array named
   ``"secagg-aggregate"``; round 1 sends the public initial model), plus the
   round, the reduction and the public context's fingerprint in the config.
2. ``secagg_mod`` decrypts it, hands the train function an ordinary plaintext
   ArrayRecord, then encrypts the returned **full model weights** with
   ``weight = num-examples`` (sample-weighted FedAvg; the count travels inside
   the encryption) and ``round_id = server-round``. The reply carries the
   payload as one uint8 array (ArrayRecord ``"secagg"``, array ``"payload"``)
   in place of the model's ArrayRecord, and ``num-examples = 1`` in its
   MetricRecord: the sample count is never sent in clear.
3. :class:`SecAggFedAvg` validates and sums the payloads with a
   :class:`secagg.Aggregator` (a refused payload counts as a failure, like an
   error reply) and returns the encrypted sum as the new global model.
4. ``evaluate`` messages carry the same encrypted model; the mod decrypts it for
   the evaluate function, so evaluation runs on the clients.

Full weights rather than deltas make every round's aggregate self-contained: a
client that missed rounds simply loads the latest aggregate, with no state to
catch up on. The codec's ``clip`` must then cover the weights themselves (not
just their change in one round).

Transport and its limits: both directions travel as ArrayRecords, which
Flower (1.41) cuts into chunks of ``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`` bytes
(5 MiB by default) and pushes or pulls one chunk per request over its Fleet
API, so no single request carries more than one chunk, whatever the model's
size. What does grow with the model is memory: each node holds its upload and
the aggregate whole; the SuperLink keeps every upload (and the aggregate, once
per node it is sent to) in its object store (RAM, or the ``--database`` file)
until it is delivered; the ServerApp holds the uploads of a round at once while
it sums them (measured with ``benchmarks/bench_deploy.py``, 11.2M values, seeded
BFV: 78.6 MB per upload, 156.8 MB for the aggregate sent to each node). Secagg 0.1 nodes sent the
payload as bytes in ConfigRecord ``"secagg"``, which Flower sends whole in one
request; the strategy still reads that form.

With a separate trusted key holder, pass ``key_holder=`` to the strategy: a
callable that receives the encrypted aggregate's bytes and returns the
decrypted tree; the server then broadcasts plaintext weights as in plain
FedAvg, and the clients need only the public context.
"""

from __future__ import annotations

from typing import Any

from secagg.integrations.flower.keys import KeyHolder, decrypt_arrays
from secagg.integrations.flower.masking import (  # masked FedAvg, no key holder
    MASK_MODEL_KEY,
    MASK_RECORD_KEY,
    MASK_STATE_KEY,
    MaskedMod,
    masked_mod,
)
from secagg.integrations.flower.mod import SecAggMod, encrypted_fedavg_mod, secagg_mod
from secagg.integrations.flower.records import (
    AGGREGATE_KEY,
    FINGERPRINT_KEY,
    PAYLOAD_KEY,
    RECORD_KEY,
    REDUCE_KEY,
    _payload,  # noqa: F401  (tests read a reply's payload with it)
    aggregate_from_arrays,
    aggregate_to_arrays,
    payload_to_arrays,
)
from secagg.integrations.flower.threshold import (  # threshold Paillier: no single key holder
    COMBINE_KEY,
    THRESHOLD_MODEL_KEY,
    THRESHOLD_RECORD_KEY,
    THRESHOLD_STATE_KEY,
    ThresholdMod,
    threshold_mod,
)

__all__ = [
    "SecAggFedAvg",
    "SecAggMod",
    "secagg_mod",
    "encrypted_fedavg_mod",
    "KeyHolder",
    "aggregate_to_arrays",
    "aggregate_from_arrays",
    "payload_to_arrays",
    "decrypt_arrays",
    "RECORD_KEY",
    "PAYLOAD_KEY",
    "AGGREGATE_KEY",
    "REDUCE_KEY",
    "FINGERPRINT_KEY",
    # masked aggregation (secagg.masking: no key holder)
    "MaskedFedAvg",
    "MaskedMod",
    "masked_mod",
    "MASK_RECORD_KEY",
    "MASK_STATE_KEY",
    "MASK_MODEL_KEY",
    # threshold Paillier across silos (secagg.threshold: no single key holder)
    "ThresholdFedAvg",
    "ThresholdMod",
    "threshold_mod",
    "THRESHOLD_RECORD_KEY",
    "THRESHOLD_STATE_KEY",
    "THRESHOLD_MODEL_KEY",
    "COMBINE_KEY",
]


def __getattr__(name: str) -> Any:
    # The strategy subclasses flwr's FedAvg, so it is built on first access.
    if name == "SecAggFedAvg":
        from secagg.integrations.flower.strategy import strategy_class

        return strategy_class()
    if name == "MaskedFedAvg":
        from secagg.integrations.flower.masking import masked_strategy_class

        return masked_strategy_class()
    if name == "ThresholdFedAvg":
        from secagg.integrations.flower.threshold import threshold_strategy_class

        return threshold_strategy_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
