"""The dependency groups are the connected components of the ties between slots."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from onnxprune.structured.groups import components


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 60))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80))
    a = np.array([e[0] for e in edges], np.int64)
    b = np.array([e[1] for e in edges], np.int64)
    return n, a, b


@given(graphs())
def test_components_match_scipy_csgraph(graph):
    n, a, b = graph
    count, labels = components(n, a, b)
    matrix = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    want_count, want = connected_components(matrix, directed=False)
    assert count == want_count
    assert labels.tolist() == want.tolist()


def test_a_long_chain_is_one_component_numbered_from_its_lowest_slot():
    n = 10_000
    order = np.random.default_rng(0).permutation(n)  # a path visiting the slots at random
    count, labels = components(n, order[:-1], order[1:])
    assert count == 1
    assert not labels.any()


def test_slots_without_ties_are_their_own_components():
    count, labels = components(4, np.array([2]), np.array([3]))
    assert count == 3
    assert labels.tolist() == [0, 1, 2, 2]
