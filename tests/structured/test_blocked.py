"""Blocked groups carry their reason: the op and node (or graph output, or shared weight) that
keeps them whole, and the layers whose units they hold.

Each model is a Conv ``c1`` (weight ``w1``, 4 output channels) whose channels reach one thing
structured pruning cannot follow; its 4 groups are then reported as one ``BlockedGroup``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxprune.structured import BlockedGroup, compact, structured_prune
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)
X = {"x": [1, 2, 4, 4]}
XN = {"x": ["N", 2, 4, 4]}
"""A symbolic batch: what ``Shape`` gives is known when the model runs only (a model declaring
every input size has its shape arithmetic folded first, ``test_static_shapes.py``)."""


SHAPE_READS_UNITS = (
    "Shape node 'shp': its output depends on the number of units "
    "(symbolic input dims N: use --dim or --input-shape)"
)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def _c1() -> helper.NodeProto:
    return helper.make_node("Conv", ["x", "w1"], ["h"], name="c1")


def _only(result, layer: str) -> BlockedGroup:
    found = [b for b in result.blocked if layer in b.layers]
    assert len(found) == 1, result.blocked
    return found[0]


def test_softmax_over_channels_and_graph_output_name_what_blocks():
    # c1 -> Softmax over channels (sm) -> c2 -> y. Softmax mixes along the channels: c1's 4
    # channels stay. c2's 3 channels are the graph output y.
    nodes = [
        _c1(),
        helper.make_node("Softmax", ["h"], ["s"], name="sm", axis=1),
        helper.make_node("Conv", ["s", "w2"], ["y"], name="c2"),
    ]
    model = graph_model(nodes, X, {"y": [1, 3, 4, 4]}, {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)})
    result = structured_prune(model, sparsity=0.5)
    assert result.units == {}  # nothing could go
    assert result.blocked == (
        BlockedGroup(
            ("w1",), "Softmax node 'sm': it mixes along the unit axis", "Softmax", "sm", 4
        ),
        BlockedGroup(("w2",), "graph output 'y'", None, None, 3),
    )
    assert result.compaction.blocked == result.blocked
    assert result.blocked[1].to_dict() == {
        "layers": ["w2"],
        "reason": "graph output 'y'",
        "op_type": None,
        "node": None,
        "groups": 3,
    }


def test_a_shape_op_reading_the_channels_blocks_them():
    # c1 -> Relu -> c2 -> y, and Shape(h) -> Cast -> n: the channel count is an output too.
    nodes = [
        _c1(),
        helper.make_node("Shape", ["h"], ["shape"], name="shp"),
        helper.make_node("Cast", ["shape"], ["n"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    outputs = {"y": ["N", 3, 4, 4], "n": [4]}
    model = graph_model(nodes, XN, outputs, {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)})
    blocked = _only(compact(model), "w1")
    assert (blocked.op_type, blocked.node, blocked.groups) == ("Shape", "shp", 4)
    assert blocked.reason == SHAPE_READS_UNITS


@pytest.mark.parametrize(("index", "blocked"), [(0, False), (2, False), (1, True), (-3, True)])
def test_a_shape_read_at_the_channel_axis_blocks_them(index: int, blocked: bool) -> None:
    # c1 -> h [1, 4, 4, 4] -> Relu -> c2 -> y; Shape(h)[index] -> Cast -> n, an output. Only
    # the channel count (axis 1, or -3) changes when channels go.
    nodes = [
        _c1(),
        helper.make_node("Shape", ["h"], ["shape"], name="shp"),
        helper.make_node("Gather", ["shape", "i"], ["dim"], name="g"),
        helper.make_node("Cast", ["dim"], ["n"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    inits = {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)}
    model = graph_model(nodes, XN, {"y": ["N", 3, 4, 4], "n": []}, inits)
    model.graph.initializer.append(helper.make_tensor("i", TensorProto.INT64, [], [index]))
    result = compact(model)
    found = [b for b in result.blocked if "w1" in b.layers]
    assert bool(found) == blocked
    if blocked:
        assert found[0].reason == SHAPE_READS_UNITS


@pytest.mark.parametrize(
    ("starts", "ends", "steps", "blocked"),
    [
        (2, 4, None, False),  # the spatial dims: what a causal mask reads of a key
        (-2, 2**62, None, False),
        (0, 4, 2, False),  # dims 0 and 2
        (1, 2, None, True),  # the channel count
        (-3, -2, 1, True),
        (3, 0, -1, True),  # dims 3, 2, 1
    ],
)
def test_a_shape_sliced_away_from_the_channel_axis_does_not_block(starts, ends, steps, blocked):
    # As test_a_shape_read_at_the_channel_axis_blocks_them, with Slice(Shape(h)) for the Gather.
    nodes = [
        _c1(),
        helper.make_node("Shape", ["h"], ["shape"], name="shp"),
        helper.make_node(
            "Slice", ["shape", "s", "e", "a", "st" if steps else ""], ["dims"], name="sl"
        ),
        helper.make_node("Cast", ["dims"], ["n"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    inits = {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)}
    length = len(range(4)[starts:ends:steps])
    model = graph_model(nodes, XN, {"y": ["N", 3, 4, 4], "n": [length]}, inits)
    for name, value in (("s", starts), ("e", ends), ("a", 0), ("st", steps or 1)):
        model.graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [1], [value]))
    found = [b for b in compact(model).blocked if "w1" in b.layers]
    assert bool(found) == blocked
    if blocked:
        assert found[0].reason == SHAPE_READS_UNITS


def test_a_reshape_to_a_target_computed_at_run_time_names_the_target():
    # h [N, 4, 4, 4] flattened by Reshape(h, t) where t = Concat(Shape(x)[:1], [-1]) is computed
    # when the model runs, then MatMul (w2 [64, 3]).
    nodes = [
        _c1(),
        helper.make_node("Shape", ["x"], ["xs"], name="xshape", end=1),
        helper.make_node("Concat", ["xs", "minus1"], ["t"], name="target", axis=0),
        helper.make_node("Reshape", ["h", "t"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc"),
    ]
    inits = {"w1": _w(4, 2, 1, 1), "w2": _w(64, 3), "minus1": np.array([-1], np.int64)}
    model = graph_model(nodes, XN, {"y": ["N", 3]}, inits)
    blocked = _only(structured_prune(model, sparsity=0.5), "w1")
    assert (blocked.op_type, blocked.node) == ("Reshape", "flat")
    assert blocked.reason == (
        "Reshape node 'flat': target shape 't' computed at run time "
        "(symbolic input dims N: use --dim or --input-shape)"
    )


def test_a_shared_weight_names_the_nodes_sharing_it():
    # c1's channels are read by c2 and c3, both with weight w2: slicing w2 for one changes both.
    nodes = [
        _c1(),
        helper.make_node("Conv", ["h", "w2"], ["y"], name="c2"),
        helper.make_node("Conv", ["h", "w2"], ["z"], name="c3"),
    ]
    outputs = {"y": [1, 3, 4, 4], "z": [1, 3, 4, 4]}
    model = graph_model(nodes, X, outputs, {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)})
    blocked = _only(structured_prune(model, sparsity=0.5), "w1")
    assert (blocked.op_type, blocked.node) == ("Conv", "c2")
    assert blocked.reason == "Conv node 'c2': weight 'w2' shared by c2, c3"


def test_an_op_of_another_domain_is_named_with_its_domain():
    nodes = [
        _c1(),
        helper.make_node("Foo", ["h"], ["y"], name="foo", domain="com.example"),
    ]
    model = graph_model(
        nodes, X, {"y": None}, {"w1": _w(4, 2, 1, 1)}, domains=(("com.example", 1),)
    )
    blocked = _only(compact(model), "w1")
    assert (blocked.op_type, blocked.node) == ("com.example::Foo", "foo")


def test_prunable_layers_are_not_blocked():
    # c1 -> Relu -> c2 -> y: only c2's channels (the graph output) stay whole.
    nodes = [
        _c1(),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    model = graph_model(nodes, X, {"y": [1, 3, 4, 4]}, {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)})
    result = structured_prune(model, sparsity=0.5)
    assert result.units == {"w1": (2, 4)}
    assert result.blocked == (BlockedGroup(("w2",), "graph output 'y'", None, None, 3),)


@pytest.mark.parametrize(
    ("axes", "reason"),
    [
        ([1], "it reduces over the units' axis"),  # a norm's mean over the channels
        (None, "it reduces over every axis, the units' too"),  # no axes: all of them
    ],
)
def test_a_reduction_over_the_channels_says_so(axes, reason):
    # c1 -> h; m = ReduceMean(h) over ``axes`` (keepdims), centred = h - m -> c2 -> y: the mean
    # changes when a channel goes, so c1's 4 channels stay.
    kw = {} if axes is None else {"axes": axes}
    nodes = [
        _c1(),
        helper.make_node("ReduceMean", ["h"], ["m"], name="mean", keepdims=1, **kw),
        helper.make_node("Sub", ["h", "m"], ["c"], name="centre"),
        helper.make_node("Conv", ["c", "w2"], ["y"], name="c2"),
    ]
    model = graph_model(nodes, X, {"y": [1, 3, 4, 4]}, {"w1": _w(4, 2, 1, 1), "w2": _w(3, 4, 1, 1)})
    blocked = _only(structured_prune(model, sparsity=0.5), "w1")
    assert blocked == BlockedGroup(
        ("w1",), f"ReduceMean node 'mean': {reason}", "ReduceMean", "mean", 4
    )


def test_a_grouped_conv_transpose_says_it_is_not_followed():
    # c1 -> h (4 channels) -> ConvTranspose ct, group 2, weight [4, 1, 3, 3]: 2 output channels,
    # one per group, 4x4 -> (4 - 1) * 2 + 3 = 9x9. Its outputs sit per group on the weight's
    # axis 1 (its inputs on axis 0): not followed, so c1's 4 channels stay, with the reason.
    nodes = [
        _c1(),
        helper.make_node("ConvTranspose", ["h", "wt"], ["y"], name="ct", group=2, strides=[2, 2]),
    ]
    model = graph_model(nodes, X, {"y": [1, 2, 9, 9]}, {"w1": _w(4, 2, 1, 1), "wt": _w(4, 1, 3, 3)})
    blocked = _only(structured_prune(model, sparsity=0.5), "w1")
    assert blocked == BlockedGroup(
        ("w1",),
        "ConvTranspose node 'ct': a grouped ConvTranspose (group=2) that is not depthwise is not"
        " followed",
        "ConvTranspose",
        "ct",
        4,
    )


def test_a_reshape_regrouping_the_channels_says_how():
    # c1 -> h [1, 6, 2, 2] -> Reshape to [1, 4, 3, 2] -> c2 -> y. 6 channels of 4 values as
    # 4 rows of 6: row 1 holds the end of channel 1 and channel 2, so no channel is a block of
    # rows (nor a row a block of channels): c1's 6 channels stay, and the shapes say why.
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="c1"),
        helper.make_node("Reshape", ["h", "to"], ["r"], name="r"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2"),
    ]
    inits = {"w1": _w(6, 2, 1, 1), "to": np.array([1, 4, 3, 2]), "w2": _w(3, 4, 1, 1)}
    model = graph_model(nodes, {"x": [1, 2, 2, 2]}, {"y": [1, 3, 3, 2]}, inits)
    blocked = _only(structured_prune(model, sparsity=0.5), "w1")
    reason = "Reshape node 'r': it regroups the units' axis 1 ([1, 6, 2, 2] -> [1, 4, 3, 2])"
    assert blocked == BlockedGroup(("w1",), reason, "Reshape", "r", 6)
