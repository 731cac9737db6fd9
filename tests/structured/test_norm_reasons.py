"""Why a transformer's model width stays whole, in words that name the norm.

A LayerNormalization normalizes over the model width, so structured pruning keeps it. Pre-norm
models (OPT, GPT-NeoX, LLaMA) meet the norm first and it says so; post-norm models (BERT,
DistilBERT, BART) meet the residual sum first, adding the previous norm's output, which holds
the width without carrying its units: the reason names that input and the norm it comes from,
back through the sums of the residual stream. Before, both read "no structured rule for this
op" or "its units cannot be followed here".

The graphs: ``x [1, 3, 4]``, a layer ``w1 [4, 4]`` and a norm over the last axis; in the
post-norm one the layer's output is added to the norm's output (twice: the stream is a chain
of sums) before a second layer ``w2 [4, 2]``.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)
NORM = {"g": RNG.normal(size=4), "b": RNG.normal(size=4)}


def _reasons(nodes: list, inits: dict) -> set[str]:
    model = graph_model(nodes, {"x": [1, 3, 4]}, {"y": [1, 3, 2]}, {**NORM, **inits})
    return {b.reason for b in structured_prune(model, sparsity=0.5).blocked}


def test_a_norm_over_the_units_says_it_normalizes_them() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "w2"], ["y"]),
    ]
    reasons = _reasons(nodes, {"w1": RNG.normal(size=(4, 4)), "w2": RNG.normal(size=(4, 2))})

    assert "LayerNormalization node 'n': it normalizes over the units' axis" in reasons


def test_a_residual_sum_names_the_norm_its_stream_comes_from() -> None:
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "w1"], ["h"]),
        helper.make_node("Add", ["n", "h"], ["r"]),
        helper.make_node("MatMul", ["r", "w3"], ["h2"]),
        helper.make_node("Add", ["r", "h2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w2"], ["y"]),
    ]
    inits = {f"w{i}": RNG.normal(size=(4, 4)) for i in (1, 3)} | {"w2": RNG.normal(size=(4, 2))}
    reasons = _reasons(nodes, inits)

    stream = "varies along the units' axis without carrying them (from LayerNormalization node 'n')"
    assert f"Add node 'r': input 'n' {stream}" in reasons
    assert f"Add node 'r2': input 'r' {stream}" in reasons
