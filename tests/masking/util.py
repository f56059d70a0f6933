"""Helpers for the masking tests: the exact expected sum, a step-by-step round, forged messages."""

from __future__ import annotations

from typing import Any

import numpy as np

from secagg.codec import FixedPointCodec
from secagg.masking import MaskingClient, MaskingConfig, MaskingServer
from secagg.tree import flatten, unflatten
from secagg.wire import open_payload, seal


def exact(trees, weights, included, codec: FixedPointCodec, reduce="sum"):
    """The exact integer sum of the included clients' weighted quantized inputs, and its decoding."""
    total = sum(int(weights[i]) * codec.raw_encode(flatten(trees[i])[1])[0] for i in included)
    wsum = sum(int(weights[i]) for i in included)
    divisor = {"sum": 1, "mean": len(included), "weighted_mean": wsum}[reduce]
    spec = flatten(trees[included[0]])[0]
    return total, wsum, unflatten(spec, codec.raw_decode(total, divisor))


def leaves(tree) -> list[np.ndarray]:
    import torch

    out = []
    for x in (tree.values() if isinstance(tree, dict) else tree):
        if isinstance(x, (dict, list, tuple)):
            out.extend(leaves(x))
        elif isinstance(x, torch.Tensor):
            out.append(x.to(torch.float64).numpy())
        else:
            out.append(x)
    return out


def assert_same_tree(a, b) -> None:
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def reseal(msg: bytes, /, **changes: Any) -> bytes:
    """The same message with some body fields replaced, digest recomputed (what a server can do)."""
    kind, body = open_payload(msg)
    fields = dict(body.raw())
    fields.update(changes)
    return seal(kind, fields)


def field(data: bytes, name: str) -> Any:
    return open_payload(data)[1].raw()[name]


class Round:
    """One round driven by hand, stage by stage, so that tests can interfere."""

    def __init__(self, n=5, t=3, *, neighbors=None, round_id=0, signing=False, **codec):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.config = MaskingConfig.create(n, t, neighbors=neighbors, round_id=round_id, **codec)
        self.sk = [Ed25519PrivateKey.generate() for _ in range(n)] if signing else [None] * n
        self.pk = {i: k.public_key() for i, k in enumerate(self.sk)} if signing else None
        self.server = MaskingServer(self.config, peer_keys=self.pk)
        blob = self.server.config_bytes()
        self.clients = [MaskingClient(blob, i, signing_key=self.sk[i], peer_keys=self.pk)
                        for i in range(n)]
        rng = np.random.default_rng(n * 100 + t)
        self.trees = [{"w": rng.uniform(-1.2, 1.2, (2, 3)), "b": rng.uniform(-1, 1, 4)}
                      for _ in range(n)]
        self.alive = set(range(n))

    def keys(self, drop=()):
        self.alive -= set(drop)
        self.adverts = {i: self.clients[i].advertise_keys() for i in sorted(self.alive)}
        for m in self.adverts.values():
            self.server.receive(m)
        self.key_lists = self.server.close_keys()
        return self.key_lists

    def shares(self, drop=()):
        self.alive -= set(drop)
        self.share_msgs = {i: self.clients[i].share_keys(self.key_lists[i]) for i in sorted(self.alive)}
        for m in self.share_msgs.values():
            self.server.receive(m)
        self.share_lists = self.server.close_shares()
        return self.share_lists

    def masked(self, drop=()):
        self.alive -= set(drop)
        self.inputs = {i: self.clients[i].masked_input(self.share_lists[i], self.trees[i])
                       for i in sorted(self.alive)}
        self.included = sorted(self.alive)
        for m in self.inputs.values():
            self.server.receive(m)
        self.requests = self.server.close_masked()
        if self.pk is not None:  # the consistency round
            self.consistency_requests = self.requests
            self.signatures = {i: self.clients[i].consistency(self.requests[i])
                               for i in sorted(self.alive)}
            for m in self.signatures.values():
                self.server.receive(m)
            self.requests = self.server.close_consistency()
        return self.requests

    def unmask(self, drop=()):
        self.alive -= set(drop)
        self.answers = {i: self.clients[i].unmask(self.requests[i]) for i in sorted(self.alive)}
        for m in self.answers.values():
            self.server.receive(m)
        return self.server.finish("sum")

    def check(self, agg) -> None:
        codec = self.config.codec
        total, _, tree = exact(self.trees, [1] * len(self.trees), self.included, codec)
        assert list(agg.included) == self.included
        np.testing.assert_array_equal(agg.raw.values, total)
        assert_same_tree(agg.tree, tree)
