"""bodies.subgraphs and names_read on nodes built by hand."""

import onnx
from onnx import TensorProto, helper

from onnxprune.bodies import names_read, subgraphs


def _branch(name: str, nodes: list[onnx.NodeProto], output: str) -> onnx.GraphProto:
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    return helper.make_graph(nodes, name, [], [out])


def test_subgraphs_finds_graph_and_graphs_attributes_in_order() -> None:
    then_b = _branch("then", [helper.make_node("Relu", ["a"], ["t"])], "t")
    else_b = _branch("else", [], "b")  # passes the outer tensor b through
    if_node = helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b)
    # A GRAPHS attribute (no standard op has one, but the field exists and may be filled).
    many = helper.make_node("Custom", [], ["z"], domain="x", bodies=[else_b, then_b])
    # make_node stores attributes sorted by name: else_branch, then then_branch.
    assert [g.name for g in subgraphs(if_node)] == ["else", "then"]
    assert [g.name for g in subgraphs(many)] == ["else", "then"]
    assert subgraphs(helper.make_node("Relu", ["x"], ["y"])) == ()


def test_names_read_counts_body_inputs_and_passed_through_outputs() -> None:
    inner = _branch("inner", [helper.make_node("Neg", ["deep"], ["n"])], "n")
    then_b = _branch(
        "then", [helper.make_node("If", ["c2"], ["t"], then_branch=inner, else_branch=inner)], "t"
    )
    else_b = _branch("else", [], "outer")  # reads 'outer' only as its output
    nodes = [
        helper.make_node("Add", ["x", "w"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b),
    ]
    # Hand count: Add reads x, w; If reads c; then-branch's If reads c2 and yields t;
    # its bodies read deep and yield n; the else-branch yields outer.
    assert names_read(nodes) == {"x", "w", "c", "c2", "t", "deep", "n", "outer"}
