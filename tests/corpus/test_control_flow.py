"""The corpus's ``If`` model (tests/corpus/control_flow.py): its branch weights are found, pruned.

Hand count: t1_w 6x12, t2_w 12x4, e1_w 6x12, e2_w 12x4 in the branches, head1_w 4x8 and head2_w
8x3 outside: 72 + 48 + 72 + 48 + 32 + 24 = 296 weights, 12 of them zero (column 3 of t1_w and
column 5 of e1_w). Effective: hidden unit 3 of ``then`` is relu(0) = 0 and unit 5 of ``else``
tanh(0) = 0, so row 3 of t2_w and row 5 of e2_w (4 entries each) are inactive too: 20 in all.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from tests.corpus.control_flow import branches


def float_values(graph: onnx.GraphProto) -> list[np.ndarray]:
    """Every float tensor ``graph`` stores (initializers, Constant values), subgraphs included."""
    found = [numpy_helper.to_array(t) for t in graph.initializer]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                found.append(numpy_helper.to_array(attribute.t))
            elif attribute.type == onnx.AttributeProto.GRAPH:
                found += float_values(attribute.g)
    return [v for v in found if v.dtype == np.float32]


def test_the_hand_count_holds():
    values = float_values(branches().graph)
    assert sum(v.size for v in values) == 296
    assert sum(int((v == 0).sum()) for v in values) == 12


def test_analyze_counts_the_weights_inside_the_branches():
    report = onnxprune.analyze(branches())
    assert report.total_params == 296
    assert report.direct_sparsity == pytest.approx(12 / 296)
    assert report.effective_sparsity == pytest.approx(20 / 296)


def test_prune_reaches_the_weights_inside_the_branches():
    pruned = onnxprune.prune(branches(), sparsity=0.5).model
    values = float_values(pruned.graph)
    assert sum(int((v == 0).sum()) for v in values) == 148
