"""The SecAgg+ graph: regular, symmetric, seeded; the recommended degree for n = 1000."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigError
from secagg.masking import Graph, graph_bounds, recommended_degree


@given(st.integers(4, 60), st.data(), st.binary(min_size=32, max_size=32))
def test_harary_graph_is_k_regular_and_symmetric(n, data, seed):
    k = data.draw(st.integers(2, n - 2), label="k")
    if k % 2 and n % 2:
        with pytest.raises(ConfigError):
            Graph(n, k, seed)
        return
    g = Graph(n, k, seed)
    assert g.holders == k + 1
    for i in range(n):
        nb = g.neighbours(i)
        assert len(nb) == k and i not in nb
        assert all(i in g.neighbours(j) for j in nb)


def test_the_seed_decides_the_graph_and_the_complete_graph_has_everyone():
    a, b = Graph(50, 6, b"a" * 32), Graph(50, 6, b"b" * 32)
    assert [a.neighbours(i) for i in range(50)] == [Graph(50, 6, b"a" * 32).neighbours(i)
                                                    for i in range(50)]
    assert [a.neighbours(i) for i in range(50)] != [b.neighbours(i) for i in range(50)]
    full = Graph(5, None, b"")
    assert full.neighbours(2) == {0, 1, 3, 4} and full.holders == 5
    assert Graph(5, 4, b"x" * 32).k is None  # degree n - 1 is the complete graph


def test_recommended_degree_for_1000_clients():
    assert recommended_degree(1000, dropout=0.1, corrupt=0.05) == (48, 25)
    b = graph_bounds(1000, 48, 25, dropout=0.1, corrupt=0.05)
    assert b["privacy"] < -40 and b["correctness"] < -30 and b["connectivity"] < -40
    # one step smaller fails correctness
    assert graph_bounds(1000, 46, 24, dropout=0.1, corrupt=0.05)["correctness"] > -30
