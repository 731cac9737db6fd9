"""Convolution, transposed-convolution and pooling geometry, counted by hand at the exact level.

Each case is small enough to list which positions every kernel tap meets. The "one-hot" probe
used for the pooling cases is a ConvTranspose of stride 1 on a single input position: its tap
``t`` writes output position ``t`` and nothing else, so a pooling window that covers position
``t`` keeps exactly tap ``t`` active. The channel level cannot see positions; it may only report
more active weights than the exact level.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune import analyze
from onnxprune.graph.conv_geometry import resolve_pads
from tests.helpers import single_io_model as _model


def _rows(model: onnx.ModelProto, level: str = "exact") -> dict[str, tuple[int, int, int, int]]:
    """name -> (zeros, active, dead_inputs, dead_outputs)."""
    report = analyze(model, level=level)
    assert report.fallback_ops == ()
    return {r.name: (r.zeros, r.active, r.dead_inputs, r.dead_outputs) for r in report.layers}


def _channel_never_below_exact(model: onnx.ModelProto) -> None:
    exact, channel = _rows(model, "exact"), _rows(model, "channel")
    for name, row in exact.items():
        assert channel[name][1] >= row[1], name


# --- ConvTranspose -------------------------------------------------------------------------------


def test_stride_2_conv_transpose_leaves_odd_positions_unwritten() -> None:
    # x [1,1,2,2] -> w0: ConvTranspose [C=1, O=2, 1, 1], strides 2, output_padding 1
    #   -> h [1,2,4,4]; full = 2 * (2 - 1) + 1 + 1 = 4. Input (i, j) writes (2i, 2j) only, so
    #   rows and columns 1 and 3 of h are never written (row/column 3 exists only by the
    #   output_padding).
    # h -> w1: Conv [1, 2, 2, 2], strides 2 -> y [1,1,2,2]; window (a, b) reads (2a+t, 2b+u).
    #   Tap (0,0) reads (0,0), (0,2), (2,0), (2,2): all written -> active in both channels.
    #   Taps with t = 1 or u = 1 read an odd row or column: never written -> inactive.
    # w0: 2 active (both reach w1's tap (0,0)); w1: 2 of 8 active, no dead channel.
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "w0"], ["h"], strides=[2, 2], output_padding=[1, 1]
        ),
        helper.make_node("Conv", ["h", "w1"], ["y"], strides=[2, 2]),
    ]
    model = _model(
        nodes,
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        {"w0": np.ones((1, 2, 1, 1)), "w1": np.ones((1, 2, 2, 2))},
    )
    assert _rows(model) == {"w0": (0, 2, 0, 0), "w1": (0, 2, 0, 0)}
    _channel_never_below_exact(model)


@pytest.mark.parametrize(("w1", "active"), [([1, 0], 1), ([0, 1], 0)])
def test_output_padding_adds_an_unwritten_position_at_the_end(w1: list[int], active: int) -> None:
    # x [1,1,1] -> w0: ConvTranspose [1,1,1], stride 2, output_padding 1 -> h [1,1,2]:
    #   full = 2 * 0 + 1 + 1 = 2; the input writes h[0]; h[1] is the output padding, unwritten.
    # h -> w1: Conv [1,1,2] -> y [1,1,1]: tap 0 reads h[0] (written), tap 1 reads h[1] (not).
    # So w1 = [1, 0] keeps its one weight active, w1 = [0, 1] has none; with w1 = [0, 1] no path
    # leaves w0 either (dead input and output).
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w0"], ["h"], strides=[2], output_padding=[1]),
        helper.make_node("Conv", ["h", "w1"], ["y"]),
    ]
    inits = {"w0": np.ones((1, 1, 1)), "w1": np.array(w1).reshape(1, 1, 2)}
    rows = _rows(_model(nodes, [1, 1, 1], [1, 1, 1], inits))
    assert rows["w1"] == (1, active, 1 - active, 1 - active)
    assert rows["w0"] == (0, active, 1 - active, 1 - active)


@pytest.mark.parametrize(
    ("auto_pad", "active"), [("NOTSET", 1), ("SAME_LOWER", 1), ("SAME_UPPER", 2)]
)
def test_output_shape_crops_the_odd_position_at_the_begin_unless_same_upper(
    auto_pad: str, active: int
) -> None:
    # x [1,1,1] -> ConvTranspose w [1,1,3] = [1, 1, 0], stride 1, output_shape [2].
    # full = 0 + (3 - 1) + 1 = 3, total crop = 3 - 2 = 1. ONNX: SAME_UPPER crops total // 2 = 0 at
    # the begin; otherwise (NOTSET, SAME_LOWER) total - total // 2 = 1 at the begin.
    # Tap t writes position t - begin:
    #   begin 1: tap 0 -> -1 (cropped), tap 1 -> 0: 1 active (tap 2 is zero).
    #   begin 0: tap 0 -> 0, tap 1 -> 1: 2 active.
    attrs = {"output_shape": [2]}
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    model = _model([node], [1, 1, 1], [1, 1, 2], {"w": np.array([1, 1, 0]).reshape(1, 1, 3)})
    assert _rows(model)["w"] == (1, active, 0, 0)


@pytest.mark.parametrize(("auto_pad", "active"), [("NOTSET", 1), ("SAME_UPPER", 2)])
def test_output_padding_counts_in_the_output_shape_crop(auto_pad: str, active: int) -> None:
    # x [1,1,1] -> ConvTranspose w [1,1,2] ones, stride 2, output_padding 1, output_shape [2].
    # full = 2 * 0 + 1 + (2 - 1) + 1 = 3, total crop 3 - 2 = 1 (output_padding included).
    #   NOTSET: begin 1 -> tap 0 writes -1 (cropped), tap 1 writes 0: 1 active.
    #   SAME_UPPER: begin 0 -> taps write 0 and 1: 2 active.
    attrs = {"strides": [2], "output_padding": [1], "output_shape": [2]}
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    model = _model([node], [1, 1, 1], [1, 1, 2], {"w": np.ones((1, 1, 2))})
    assert _rows(model)["w"] == (0, active, 0, 0)


@pytest.mark.parametrize(("auto_pad", "active"), [("SAME_UPPER", 1), ("SAME_LOWER", 0)])
def test_same_conv_transpose_without_output_shape(auto_pad: str, active: int) -> None:
    # x [1,1,1] -> ConvTranspose w [1,1,2] = [1, 0], stride 1 -> y [1,1,1] (in * stride).
    # full = 2, total crop 1: SAME_UPPER crops at the end (begin 0), SAME_LOWER at the begin.
    #   begin 0: tap 0 writes 0 (kept), tap 1 writes 1 (cropped): 1 active.
    #   begin 1: tap 0 writes -1 (cropped): the one nonzero tap is inactive.
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], auto_pad=auto_pad)
    model = _model([node], [1, 1, 1], [1, 1, 1], {"w": np.array([1, 0]).reshape(1, 1, 2)})
    assert _rows(model)["w"] == (1, active, 1 - active, 1 - active)


def test_3d_conv_transpose_with_pads_keeps_one_tap() -> None:
    # x [1,1,1,1,1] -> ConvTranspose w [1,1,2,2,2] ones, strides 2, pads begin 1 / end 0 on each
    # axis: out = 2 * 0 + (2 - 1) + 1 - 1 = 1 per axis. Tap (a,b,c) writes (a-1, b-1, c-1): only
    # tap (1,1,1) lands inside. 1 of 8 active.
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=[2, 2, 2], pads=[1, 1, 1, 0, 0, 0]
    )
    model = _model([node], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], {"w": np.ones((1, 1, 2, 2, 2))})
    assert _rows(model)["w"] == (0, 1, 0, 0)


def test_grouped_conv_transpose_with_dilation() -> None:
    # x [1,2,2] -> ConvTranspose w [C=2, O/G=1, 2], group 2, dilation 2, pads begin 2 / end 0.
    # full = (2 - 1) + (2 - 1) * 2 + 1 = 4; out = 4 - 2 = 2. Input i, tap t writes i + 2t - 2:
    #   tap 0 -> -2, -1 (cropped); tap 1 -> 0, 1 (kept). Channel 1's weights are zero.
    # Group 0 (in 0 -> out 0): tap 1 active -> 1 active. Group 1: all zero -> in 1 and out 1 dead.
    w = np.array([[[1, 1]], [[0, 0]]])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2, dilations=[2], pads=[2, 0])
    model = _model([node], [1, 2, 2], [1, 2, 2], {"w": w})
    assert _rows(model)["w"] == (2, 1, 1, 1)


# --- Conv with auto_pad --------------------------------------------------------------------------


@pytest.mark.parametrize(("auto_pad", "active"), [("SAME_UPPER", 2), ("SAME_LOWER", 4)])
def test_same_conv_on_an_even_map_pads_one_side(auto_pad: str, active: int) -> None:
    # x [1,1,2,2] -> Conv w [1,1,3,3], strides 2 -> y [1,1,1,1] (ceil(2 / 2) = 1 per axis).
    # Total pad per axis = (1 - 1) * 2 + 3 - 2 = 1, odd:
    #   SAME_UPPER: begin 0, end 1 -> tap rows 0, 1 read input rows 0, 1; tap row 2 reads row 2,
    #     the bottom padding only (same for columns).  Active taps: rows {0,1} x cols {0,1}.
    #   SAME_LOWER: begin 1, end 0 -> tap row 0 reads row -1 (top padding); rows {1,2} x {1,2}.
    # w's first tap row is zero: SAME_UPPER keeps (1,0), (1,1) -> 2; SAME_LOWER keeps all of
    # rows {1,2} x cols {1,2} -> 4.
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, :] = 0
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad=auto_pad)
    model = _model([node], [1, 1, 2, 2], [1, 1, 1, 1], {"w": w})
    assert _rows(model)["w"] == (3, active, 0, 0)
    _channel_never_below_exact(model)


@pytest.mark.parametrize(
    ("auto_pad", "w", "active"),
    [
        ("SAME_UPPER", [1, 0], 1),
        ("SAME_UPPER", [0, 1], 0),
        ("SAME_LOWER", [1, 0], 0),
        ("SAME_LOWER", [0, 1], 1),
    ],
)
def test_same_conv_pad_counts_the_dilation(auto_pad: str, w: list[int], active: int) -> None:
    # x [1,1,2] -> Conv w [1,1,2], dilation 3, stride 1 -> y [1,1,2]. Extent (2 - 1) * 3 + 1 = 4,
    # total pad = (2 - 1) * 1 + 4 - 2 = 3 (ONNX spec; ONNX Runtime refuses SAME with dilations).
    #   SAME_UPPER: begin 1 -> tap 0 reads -1, 0 (0 is real); tap 1 reads 2, 3 (padding).
    #   SAME_LOWER: begin 2 -> tap 0 reads -2, -1 (padding); tap 1 reads 1, 2 (1 is real).
    node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[3], auto_pad=auto_pad)
    model = _model([node], [1, 1, 2], [1, 1, 2], {"w": np.array(w).reshape(1, 1, 2)})
    assert _rows(model)["w"] == (1, active, 1 - active, 1 - active)


@pytest.mark.parametrize(("attrs", "y_len"), [({"auto_pad": "VALID"}, 1), ({"pads": [2, 2]}, 3)])
def test_1d_conv_with_stride_2_keeps_every_tap(attrs: dict, y_len: int) -> None:
    # x [1,1,3] -> Conv w [1,1,3] ones, stride 2.
    #   VALID: one window over x[0..2]: every tap active.
    #   pads 2/2: floor((3 + 4 - 3) / 2) + 1 = 3 windows reading -2..0, 0..2, 2..4: tap 0 meets
    #   x[0] and x[2], tap 1 meets x[1], tap 2 meets x[0] and x[2]: every tap active.
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], **attrs)
    model = _model([node], [1, 1, 3], [1, 1, y_len], {"w": np.ones((1, 1, 3))})
    assert _rows(model)["w"] == (0, 3, 0, 0)


@pytest.mark.parametrize(("rank", "active"), [(1, 1), (3, 1)])
def test_taps_that_only_see_padding_in_1d_and_3d(rank: int, active: int) -> None:
    # A 3-wide kernel with pads 1 on a map of size 1 per axis: only the centre tap meets the
    # input. 1 of 3 active in 1-D, 1 of 27 in 3-D.
    shape = [1, 1, *([1] * rank)]
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * (2 * rank))
    model = _model([node], shape, shape, {"w": np.ones((1, 1, *([3] * rank)))})
    assert _rows(model)["w"] == (0, active, 0, 0)


# --- pooling -------------------------------------------------------------------------------------


def _one_hot_then_pool(taps: list[int], pool: str, y_len: int, **attrs) -> onnx.ModelProto:
    """x [1,1,1] -> ConvTranspose w [1,1,K] (tap t writes h[t] only) -> pool -> Relu -> y.

    The Relu leaves the pool's output to onnx's shape inference; ``y`` is declared [1,1,y_len].
    """
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["h"]),
        helper.make_node(pool, ["h"], ["p"], **attrs),
        helper.make_node("Relu", ["p"], ["y"]),
    ]
    w = np.array(taps).reshape(1, 1, len(taps))
    return _model(nodes, [1, 1, 1], [1, 1, y_len], {"w": w})


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(("ceil_mode", "y_len", "active"), [(0, 2, 4), (1, 3, 5)])
def test_ceil_mode_keeps_the_last_partial_window(
    pool: str, ceil_mode: int, y_len: int, active: int
) -> None:
    # h has 5 positions; kernel 2, stride 2, no pads: floor((5 - 2) / 2) + 1 = 2 windows {0,1},
    # {2,3}: h[4] is never pooled and tap 4 is inactive (4 active). ceil_mode: 3 windows, the
    # last {4, 5} starts inside h and reads h[4]: all 5 taps active.
    model = _one_hot_then_pool(
        [1] * 5, pool, y_len, kernel_shape=[2], strides=[2], ceil_mode=ceil_mode
    )
    assert _rows(model)["w"] == (0, active, 0, 0)


def test_ceil_mode_window_that_starts_in_the_end_padding() -> None:
    # h has 4 positions; kernel 2, stride 2, pads 0/1, ceil_mode: ceil((4 + 1 - 2) / 2) + 1 = 3,
    # but the third window would start at h[4], in the end padding. ONNX Runtime (and the spec
    # from opset 19) drops it: y has 2 positions, windows {0,1}, {2,3}; every tap is active
    # either way, since the dropped window reads no real position.
    model = _one_hot_then_pool(
        [1] * 4, "MaxPool", 2, kernel_shape=[2], strides=[2], pads=[0, 1], ceil_mode=1
    )
    assert _rows(model)["w"] == (0, 4, 0, 0)


@pytest.mark.parametrize(("dilation", "y_len", "active"), [(1, 2, 3), (2, 1, 2)])
def test_max_pool_dilation_skips_positions(dilation: int, y_len: int, active: int) -> None:
    # h has 4 positions, taps [1, 0, 1, 1]; MaxPool kernel 2, stride 2.
    #   dilation 1: windows {0,1}, {2,3}: taps 0, 2, 3 active.
    #   dilation 2: extent 3, floor((4 - 3) / 2) + 1 = 1 window {0, 2}: taps 0, 2 active.
    model = _one_hot_then_pool(
        [1, 0, 1, 1], "MaxPool", y_len, kernel_shape=[2], strides=[2], dilations=[dilation]
    )
    assert _rows(model)["w"] == (1, active, 0, 0)


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(("pads", "active"), [([0, 0], 2), ([0, 1], 3), ([1, 0], 3)])
def test_pool_pads_bring_the_last_position_into_a_window(
    pool: str, pads: list[int], active: int
) -> None:
    # h has 3 positions; kernel 2, stride 2.
    #   pads 0/0: 1 window {0,1}: h[2] is never pooled (2 active).
    #   pads 0/1: 2 windows {0,1}, {2,pad}: all 3 active.
    #   pads 1/0: 2 windows {pad,0}, {1,2}: all 3 active.
    y_len = 1 if pads == [0, 0] else 2
    model = _one_hot_then_pool([1] * 3, pool, y_len, kernel_shape=[2], strides=[2], pads=pads)
    assert _rows(model)["w"] == (0, active, 0, 0)


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    ("auto_pad", "y_len", "active"), [("SAME_UPPER", 2, 2), ("SAME_LOWER", 2, 3), ("VALID", 1, 1)]
)
def test_pool_auto_pad_picks_which_position_is_skipped(
    pool: str, auto_pad: str, y_len: int, active: int
) -> None:
    # h has 4 positions, taps [1, 0, 1, 1] (h[1] is fed by a zero weight); kernel 2, stride 3.
    #   SAME_*: out = ceil(4 / 3) = 2, total pad = (2 - 1) * 3 + 2 - 4 = 1.
    #     SAME_UPPER (begin 0): windows {0,1}, {3,4}: h[2] skipped -> taps 0, 3 active: 2.
    #     SAME_LOWER (begin 1): windows {-1,0}, {2,3}: h[1] skipped -> taps 0, 2, 3: 3.
    #   VALID: floor((4 - 2) / 3) + 1 = 1 window {0,1} -> tap 0: 1.
    model = _one_hot_then_pool(
        [1, 0, 1, 1], pool, y_len, kernel_shape=[2], strides=[3], auto_pad=auto_pad
    )
    assert _rows(model)["w"] == (1, active, 0, 0)


def test_2d_max_pool_with_dilation_and_pads() -> None:
    # x [1,1,1,1] -> ConvTranspose w [1,1,3,3] ones: tap (a,b) writes h[a,b] only, h 3x3.
    # MaxPool kernel 2x2, dilations 2x2, strides 2x2, pads top 1 / left 0 / bottom 0 / right 0:
    #   rows: extent 3, padded size 4 -> floor((4 - 3) / 2) + 1 = 1 window, rows {-1, 1}.
    #   cols: padded size 3 -> 1 window, cols {0, 2}.
    # Only h[1,0] and h[1,2] are pooled: 2 of 9 taps active. (Row 0 of w is zero, so a window
    # that ignored the dilation, rows {-1, 0}, would keep none.)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["h"]),
        helper.make_node(
            "MaxPool",
            ["h"],
            ["y"],
            kernel_shape=[2, 2],
            dilations=[2, 2],
            strides=[2, 2],
            pads=[1, 0, 0, 0],
        ),
    ]
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, :] = 0
    model = _model(nodes, [1, 1, 1, 1], [1, 1, 1, 1], {"w": w})
    assert _rows(model)["w"] == (3, 2, 0, 0)


# --- disagreements with ONNX Runtime, through onnx's shape inference -----------------------------


def test_conv_transpose_output_shape_smaller_than_its_input() -> None:
    # x [1,1,3] -> ConvTranspose w [1,1,2] ones, stride 2, output_shape [2]. full = 2 * 2 + 2 = 6,
    # total crop 4, begin 4 - 2 = 2: input i, tap t writes 2i + t - 2 -> i = 1 writes 0 and 1
    # (taps 0 and 1); i = 0 and i = 2 write only outside. ONNX Runtime: y = [x1, x1]. Both taps
    # active. (onnx's shape inference gives y a rank-2 shape here, whenever output_shape is below
    # the input size on some axis.)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["h"], strides=[2], output_shape=[2]),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    model = _model(nodes, [1, 1, 3], [1, 1, 2], {"w": np.ones((1, 1, 2))})
    for level in ("channel", "exact"):
        assert _rows(model, level)["w"] == (0, 2, 0, 0)


@pytest.mark.parametrize("y_shape", [[1, 1, 2], None], ids=["y_declared", "y_undeclared"])
def test_same_conv_transpose_with_output_padding(y_shape: list[int] | None) -> None:
    # x [1,1,1] -> ConvTranspose w [1,1,3] ones, stride 2, output_padding 1, SAME_UPPER.
    # Spec and ONNX Runtime: out = in * stride = 2; full = 0 + 1 + 3 = 4, total crop 2, begin 1:
    # tap t writes t - 1 -> tap 0 writes -1 (cropped), taps 1 and 2 write 0 and 1. 2 active.
    # (onnx's shape inference says h has 3 positions: it leaves output_padding out of the crop.
    # With y declared the shapes clash; without, the crop comes out as 0 and tap 0 counts.)
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["x", "w"],
            ["h"],
            strides=[2],
            output_padding=[1],
            auto_pad="SAME_UPPER",
        ),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    model = _model(nodes, [1, 1, 1], y_shape, {"w": np.ones((1, 1, 3))})
    assert _rows(model)["w"] == (0, 2, 0, 0)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_same_padding_of_stride_one_needs_no_sizes(auto_pad: str) -> None:
    # Stride 1: out = size, so the total pad is (k - 1) * d for every size: kernel 2, dilation 1
    # pads 1 (the odd one at the end for SAME_UPPER); kernel 3, dilation 2 pads 4 (2 and 2).
    want = (0, 2, 1, 2) if auto_pad == "SAME_UPPER" else (1, 2, 0, 2)
    assert resolve_pads(auto_pad, None, None, (2, 3), (1, 1), (1, 2)) == want
    for size in range(1, 9):
        assert resolve_pads(auto_pad, None, (size, size + 3), (2, 3), (1, 1), (1, 2)) == want
    # with stride 2 the pad depends on the size's parity: unknown without it
    assert resolve_pads(auto_pad, None, None, (2, 3), (2, 1), (1, 2)) is None


def test_a_same_conv_on_a_symbolic_size_image_is_a_layer() -> None:
    # x [1, 2, H, W] -> Conv w1 [3, 2, 2, 2] SAME_UPPER -> Relu -> MaxPool 2x2 SAME_UPPER ->
    # Conv w2 [1, 3, 1, 1] = [1, 0, 1]: channel 1 of w1 reaches nothing, so its 8 weights are
    # inactive. PP-OCRv6's 2x2 SAME stem mixed densely and its weights were no layer at all.
    w1 = np.ones((3, 2, 2, 2))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["p", "w2"], ["y"]),
    ]
    w2 = np.array([1, 0, 1]).reshape(1, 3, 1, 1)
    model = _model(nodes, [1, 2, "H", "W"], [1, 1, "H", "W"], {"w1": w1, "w2": w2})
    assert _rows(model, "channel") == {"w1": (0, 16, 0, 1), "w2": (1, 2, 1, 0)}
