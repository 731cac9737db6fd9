"""Why a MatMul that is not a layer keeps the units it reads, in words that fit it.

A MatMul of two activations is attention's (``heads.batched_matmul``) when both hold units on
the same batch axis; one operand without units (DeBERTa's first layer reads its relative
positions from a folded constant, so nothing carries the heads there) or a constant operand of
three axes (the dynamo export folds DeBERTa's projected positions into one) were reported as a
"weight computed at run time" and "its units cannot be followed here".

The graphs: ``x [1, 3, 4]`` projected by ``w [4, 4]`` to ``q``, times ``p``: a graph input
``[1, 4, 3]``, or a constant ``[2, 4, 3]``.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)


def _reasons(inputs: dict, inits: dict) -> set[str]:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["q"]),
        helper.make_node("MatMul", ["q", "p"], ["y"]),
    ]
    inits = {"w": RNG.normal(size=(4, 4)), **inits}
    model = graph_model(nodes, {"x": [1, 3, 4], **inputs}, {"y": None}, inits)
    return {b.reason for b in structured_prune(model, sparsity=0.5).blocked}


def test_an_operand_without_units_is_named() -> None:
    reasons = _reasons({"p": [1, 4, 3]}, {})

    assert (
        "MatMul node 'y': its operand 'p' is computed without units to pair with the other's"
        in reasons
    )


def test_a_constant_of_three_axes_is_no_weight() -> None:
    reasons = _reasons({}, {"p": RNG.normal(size=(2, 4, 3))})

    assert "MatMul node 'y': its constant operand 'p' has 3 axes, not a weight's 2" in reasons
