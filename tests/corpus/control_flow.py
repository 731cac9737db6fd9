"""The corpus's control-flow model, built with ``onnx.helper``: its layers inside ``If`` branches.

A voice-activity model ships its whole network inside the branches of an ``If`` on a flag, with
its weights where exporters put them in subgraphs. Here each branch is a two-layer MLP from ``x``
[2, 6] to [2, 4], followed (outside the ``If``) by a two-layer head to ``y`` [2, 3]:

- ``then`` (``speech`` true): ``Relu(x @ t1_w) @ t2_w``, both weights Constant nodes of the
  branch; column 3 of ``t1_w`` is zero, so hidden unit 3 is always 0 and row 3 of ``t2_w`` is
  dead;
- ``else``: ``Tanh(x @ e1_w) @ e2_w``, ``e1_w`` an initializer of the branch, ``e2_w`` an
  initializer of the main graph read from the outer scope; column 5 of ``e1_w`` is zero
  (tanh(0) = 0), so row 5 of ``e2_w`` is dead;
- the head after the ``If``: ``Relu(h @ head1_w) @ head2_w``, main-graph initializers, 8 hidden
  units (what structured pruning can remove while it leaves the branches alone).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D_IN, HIDDEN, D_OUT, HEAD, CLASSES, BATCH = 6, 12, 4, 8, 3, 2


def _tensor(rng: np.random.Generator, name: str, shape: tuple[int, int], zero_column=None):
    value = rng.normal(size=shape).astype(np.float32)
    if zero_column is not None:
        value[:, zero_column] = 0
    return numpy_helper.from_array(value, name)


def _branch(name: str, nodes: list, output: str, inits=()) -> onnx.GraphProto:
    out = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [BATCH, D_OUT])]
    return helper.make_graph(nodes, name, [], out, list(inits))


def branches() -> onnx.ModelProto:
    """The model described in the module docstring (weights drawn with seed 0)."""
    rng = np.random.default_rng(0)
    then_branch = _branch(
        "then",
        [
            helper.make_node("Constant", [], ["t1_w"],
                             value=_tensor(rng, "t1_w", (D_IN, HIDDEN), zero_column=3)),
            helper.make_node("MatMul", ["x", "t1_w"], ["t1_h"]),
            helper.make_node("Relu", ["t1_h"], ["t1"]),
            helper.make_node("Constant", [], ["t2_w"], value=_tensor(rng, "t2_w", (HIDDEN, D_OUT))),
            helper.make_node("MatMul", ["t1", "t2_w"], ["then_y"]),
        ],
        "then_y",
    )  # fmt: skip
    else_branch = _branch(
        "else",
        [
            helper.make_node("MatMul", ["x", "e1_w"], ["e1_h"]),
            helper.make_node("Tanh", ["e1_h"], ["e1"]),
            helper.make_node("MatMul", ["e1", "e2_w"], ["else_y"]),
        ],
        "else_y",
        [_tensor(rng, "e1_w", (D_IN, HIDDEN), zero_column=5)],
    )
    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["speech"], ["h"], then_branch=then_branch, else_branch=else_branch
            ),
            helper.make_node("MatMul", ["h", "head1_w"], ["head1_h"]),
            helper.make_node("Relu", ["head1_h"], ["head1"]),
            helper.make_node("MatMul", ["head1", "head2_w"], ["y"]),
        ],
        "branches",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, D_IN]),
            helper.make_tensor_value_info("speech", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, CLASSES])],
        [
            _tensor(rng, "e2_w", (HIDDEN, D_OUT)),
            _tensor(rng, "head1_w", (D_OUT, HEAD)),
            _tensor(rng, "head2_w", (HEAD, CLASSES)),
        ],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def branches_feeds() -> tuple[dict[str, np.ndarray], ...]:
    """One input per branch: the same ``x`` with ``speech`` true, then false."""
    x = np.random.default_rng(1).normal(size=(BATCH, D_IN)).astype(np.float32)
    return tuple({"x": x, "speech": np.array(flag)} for flag in (True, False))
