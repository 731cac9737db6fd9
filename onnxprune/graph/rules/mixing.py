"""Ops that mix whole axes.

Reductions, softmax and normalizations over axes, resizing, and shape arithmetic that carries no
signal at all. Families sharing a rule are split where structured pruning treats their ops
differently: ``reduce`` (followed) and ``other_reduce``; ``instance_norm`` (per-channel
parameters, followed) and ``spatial_norm``; ``constant_of_shape`` (a fill a Conv may read) and
``no_signal``.
"""

from __future__ import annotations

from onnxprune.graph.contrib_shapes import CONTRIB
from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Dense, NoSignal, Reduce, Window

REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2")
"""Reductions structured pruning follows: their value over zeros is zero."""
OTHER_REDUCE_OPS = ("ReduceProd", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def _rank(node: NodeView) -> int | None:
    shape = node.in_shapes[0]
    return None if shape is None else len(shape)


@op_rule(*REDUCE_OPS)
@op_rule(*OTHER_REDUCE_OPS, family="other_reduce")
def reduce(node: NodeView) -> Reduce | Dense:
    """Reduce over ``axes`` (attribute, or input 1 from opset 13/18 on)."""
    rank = _rank(node)
    if rank is None:
        return Dense("reduction of an input of unknown rank")
    axes = node.attr("axes", None)
    if axes is None and len(node.node.input) > 1 and node.node.input[1]:
        value = node.const(1)
        if value is None:
            return Dense("reduction axes are computed at run time")
        axes = value.reshape(-1).tolist()
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return Reduce((), keepdims=True)
        axes = list(range(rank))
    return Reduce(tuple(sorted(a % rank for a in axes)), bool(node.attr("keepdims", 1)))


@op_rule("ArgMax", "ArgMin")
def arg_reduce(node: NodeView) -> Reduce | Dense:
    """The index along ``axis`` depends on every element along it."""
    rank = _rank(node)
    if rank is None:
        return Dense("ArgMax/ArgMin of an input of unknown rank")
    return Reduce((node.attr("axis", 0) % rank,), bool(node.attr("keepdims", 1)))


@op_rule("Softmax", "LogSoftmax", "Hardmax", "LpNormalization")
def softmax(node: NodeView) -> Reduce | Dense:
    """Each element depends on every element along ``axis`` (before opset 13: axes ``axis``..)."""
    rank = _rank(node)
    if rank is None:
        return Dense(f"{node.op_type} of an input of unknown rank")
    default = -1 if node.op_type == "LpNormalization" else None
    axis = node.attr("axis", default)
    opset_13_semantics = node.op_type == "LpNormalization" or axis is None or node.opset >= 13
    if axis is None:
        axis = -1 if node.opset >= 13 else 1
    axis %= rank
    axes = (axis,) if opset_13_semantics else tuple(range(axis, rank))
    return Reduce(axes, keepdims=True)


@op_rule("LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization")
def layer_norm(node: NodeView) -> Reduce | Dense:
    """Normalized over axes ``axis``..end, so each element depends on all of them.

    ``RMSNormalization`` (opset 23) divides by the root mean square over the same axes, as
    ONNX Runtime's ``SimplifiedLayerNormalization`` (which it registers in ONNX's domain) does.
    """
    rank = _rank(node)
    if rank is None:
        return Dense("LayerNormalization of an input of unknown rank")
    return Reduce(tuple(range(node.attr("axis", -1) % rank, rank)), keepdims=True)


@op_rule(
    "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain=CONTRIB, family="skip_norm"
)
def skip_norm(node: NodeView) -> Dense:
    """ONNX Runtime's ``LayerNormalization(input + skip + bias)`` over the channels (last axis).

    Every channel of both activations reaches every channel of the output at the same position;
    taken as dense mixing (no position is followed), which can only under-report.
    """
    return Dense(f"{node.op_type} normalizes input + skip over the channels", fallback=False)


@op_rule("InstanceNormalization", family="instance_norm")
@op_rule("MeanVarianceNormalization", "GroupNormalization")
def spatial_norm(node: NodeView) -> Reduce | Dense:
    """Statistics over the spatial axes (and, for groups or MVN, the channels too)."""
    rank = _rank(node)
    if rank is None:
        return Dense(f"{node.op_type} of an input of unknown rank")
    if node.op_type == "MeanVarianceNormalization":
        axes = tuple(a % rank for a in node.attr("axes", [0, 2, 3]))
        return Reduce(tuple(a for a in axes if a != 0), keepdims=True)
    first = 1 if node.op_type == "GroupNormalization" else 2
    return Reduce(tuple(range(first, rank)), keepdims=True)


@op_rule("Resize", "Upsample")
def resize(node: NodeView) -> Reduce | Dense:
    """Within each channel, any output position may read any input position (conservative).

    Exact for reachability of channels; at the exact level this over-connects positions, so it
    can only under-report effective sparsity.
    """
    inp, out = node.in_shapes[0], node.out_shapes[0]
    if inp is None or out is None or len(inp) != len(out):
        return Dense("Resize with unknown shapes")
    if any(a != b for a, b in zip(inp[:2], out[:2], strict=False)):
        return Dense("Resize that changes the batch or channel axis")
    return Reduce(tuple(range(2, len(inp))), keepdims=True)


@op_rule("LRN")
def lrn(node: NodeView) -> Window:
    """Local response normalization: a window of ``size`` channels around each channel."""
    size = int(node.attr("size"))
    return Window((1,), (size,), (1,), (1,), ((size - 1) // 2, size // 2))


@op_rule("ConstantOfShape", family="constant_of_shape")
@op_rule("Shape", "Size", "Range", "EyeLike", "RandomNormalLike", "RandomUniformLike")
def no_signal(node: NodeView) -> NoSignal:
    """Shape arithmetic: outputs depend on shapes, never on activation values."""
    return NoSignal()
