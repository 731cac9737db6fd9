"""Random small CNN-like ONNX graphs for the property tests of test_random_graphs.py.

``nets()`` draws 1 to ``MAX_BLOCKS`` blocks (convs of every kind, normalization, activations,
per-channel constants, residual sums, Concat and Split branches, pooling, NHWC transposes,
channel shuffles, Pad, Resize, a shared weight) on a [2, 3, S, S] input, then a head, as a
``Drawn`` net: the model, an input, and the weights and scales a test may zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import helper

from tests.structured._group_models import graph_model

BATCH, CLASSES = 2, 5
CHANNELS = (1, 2, 3, 4, 6, 8)
MAX_BLOCKS = 5
SPARSITIES = st.sampled_from([0.5, 0.3, 0.7, 0.85]) | st.floats(0, 0.9, exclude_max=True)
"""Sparsities in [0, 0.9): floats alone come out near 0 half the time, pruning nothing."""


@dataclass(frozen=True)
class T:
    """An NCHW tensor of the drawn net: name, channels, height, width."""

    name: str
    c: int
    h: int
    w: int


@dataclass(frozen=True)
class Weight:
    """A layer weight: its unit (filter) axis, its input axis, and its bias, if any."""

    name: str
    out_axis: int
    in_axis: int
    bias: str | None = None


@dataclass
class Net:
    """A net being drawn: nodes, initializers, and which of them a test may zero."""

    draw: object
    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    weights: list[Weight] = field(default_factory=list)
    scales: list[str] = field(default_factory=list)
    """Per-unit multipliers (BN scale, Mul constants): zero makes a constant unit."""
    seen: list[T] = field(default_factory=list)
    padded: set[str] = field(default_factory=set)
    """Pad outputs: no pool reads them (ONNX Runtime 1.31's PadFusion folds a zero Pad into a
    MaxPool, which pads with -inf: wrong values, or a load error once the pads reach the kernel)."""
    count: int = 0

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, base: str, value) -> str:
        name = self.fresh(base)
        value = np.asarray(value)
        self.inits[name] = value.astype(np.float32) if value.dtype.kind == "f" else value
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int, out_axis: int, in_axis: int) -> str:
        name = self.const("w", self.rng.normal(size=shape) / np.sqrt(fan_in))
        self.weights.append(Weight(name, out_axis, in_axis))
        return name

    def bias(self, weight: str, n: int) -> str:
        name = self.const("b", self.rng.normal(size=n))
        i = next(i for i, wt in enumerate(self.weights) if wt.name == weight)
        self.weights[i] = Weight(weight, self.weights[i].out_axis, self.weights[i].in_axis, name)
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n_{out}", **attrs))
        return out


# --- blocks: each maps an NCHW tensor to another -----------------------------------------------


def _size(n: int, k: int, pad: int, stride: int) -> int:
    """Output length of a window of ``k`` over ``n`` with ``pad`` on both sides."""
    return (n + 2 * pad - k) // stride + 1


def conv(net: Net, x: T, c_out: int | None = None, same: bool = False) -> T:
    """Conv k 1/3 (dilation 1/2), stride 1/2, pads 0/1 (maybe uneven) or SAME_UPPER/LOWER;
    bias or not. ``same``: stride 1 and centred pads, the shape stays."""
    k, dil = net.pick([1, 3]), net.pick([1, 1, 2])
    span = (k - 1) * dil + 1
    c_out = c_out or net.pick(CHANNELS)
    w = net.weight((c_out, x.c, k, k), x.c * k * k, 0, 1)
    inputs = [x.name, w] + ([net.bias(w, c_out)] if net.pick([True, False]) else [])
    attrs = {"kernel_shape": [k, k], "dilations": [dil, dil]}
    mode = "same" if same else net.pick(["pads", "pads", "uneven", "auto"])
    if mode == "auto":  # ONNX Runtime takes no dilation with SAME_*
        stride = net.pick([1, 2])
        attrs.update(
            dilations=[1, 1], auto_pad=net.pick(["SAME_UPPER", "SAME_LOWER"]), strides=[stride] * 2
        )
        return T(net.node("Conv", inputs, **attrs), c_out, -(-x.h // stride), -(-x.w // stride))
    if mode == "same":
        pads, stride = [span // 2] * 4, 1
    else:
        stride = net.pick([1, 2])
        pads = [net.pick([0, 1]) for _ in range(4)] if mode == "uneven" else [net.pick([0, 1])] * 4
    if min(x.h + pads[0] + pads[2], x.w + pads[1] + pads[3]) < span:  # too small a map
        pads = [span // 2] * 4
    y = net.node("Conv", inputs, pads=pads, strides=[stride] * 2, **attrs)
    h = (x.h + pads[0] + pads[2] - span) // stride + 1
    return T(y, c_out, h, (x.w + pads[1] + pads[3] - span) // stride + 1)


def depthwise(net: Net, x: T) -> T:
    """Depthwise conv, multiplier 1 or 2, k 1/3 with the shape kept."""
    m, k = net.pick([1, 2]), net.pick([1, 3])
    w = net.weight((x.c * m, 1, k, k), k * k, 0, 1)
    inputs = [x.name, w] + ([net.bias(w, x.c * m)] if net.pick([True, False]) else [])
    y = net.node("Conv", inputs, kernel_shape=[k, k], pads=[k // 2] * 4, group=x.c)
    return T(y, x.c * m, x.h, x.w)


def grouped(net: Net, x: T) -> T:
    """Conv with 2 groups (an even number of channels in and out)."""
    if x.c % 2:
        return conv(net, x)
    k, c_out = net.pick([1, 3]), net.pick([2, 4, 6, 8])
    pad = net.pick([0, 1]) if min(x.h, x.w) >= k else 1
    w = net.weight((c_out, x.c // 2, k, k), x.c // 2 * k * k, 0, 1)
    inputs = [x.name, w] + ([net.bias(w, c_out)] if net.pick([True, False]) else [])
    y = net.node("Conv", inputs, kernel_shape=[k, k], pads=[pad] * 4, group=2)
    return T(y, c_out, _size(x.h, k, pad, 1), _size(x.w, k, pad, 1))


def conv_transpose(net: Net, x: T) -> T:
    """ConvTranspose: k 2 stride 2 (doubles the map) or k 3 pads 1 (keeps it)."""
    if x.h > 4 or net.pick([True, False]):
        k, stride, pad = 3, 1, 1
    else:
        k, stride, pad = 2, 2, 0
    c_out = net.pick(CHANNELS)
    w = net.weight((x.c, c_out, k, k), x.c * k * k, 1, 0)
    inputs = [x.name, w] + ([net.bias(w, c_out)] if net.pick([True, False]) else [])
    y = net.node("ConvTranspose", inputs, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2)
    return T(y, c_out, (x.h - 1) * stride - 2 * pad + k, (x.w - 1) * stride - 2 * pad + k)


def batchnorm(net: Net, x: T) -> T:
    """BatchNormalization with trained-looking statistics (positive variances), or now and
    then an InstanceNormalization."""
    rng, n = net.rng, x.c
    scale = net.const("scale", rng.uniform(0.5, 1.5, n) * rng.choice([-1, 1], n))
    shift = net.const("shift", rng.uniform(-1, 1, n))
    net.scales.append(scale)
    if net.pick(["bn", "bn", "in"]) == "in":
        return T(net.node("InstanceNormalization", [x.name, scale, shift]), x.c, x.h, x.w)
    mean, var = net.const("mean", rng.uniform(-1, 1, n)), net.const("var", rng.uniform(0.5, 2, n))
    y = net.node("BatchNormalization", [x.name, scale, shift, mean, var])
    return T(y, x.c, x.h, x.w)


PLAIN = ("Relu", "Sigmoid", "Tanh", "Elu", "Softplus", "HardSigmoid")


def activation(net: Net, x: T) -> T:
    """Relu, Sigmoid, Tanh, Elu, Softplus, HardSigmoid, LeakyRelu, Clip or PRelu."""
    op = net.pick([*PLAIN, "LeakyRelu", "Clip", "Clip6", "PRelu"])
    if op in PLAIN:
        y = net.node(op, [x.name])
    elif op == "LeakyRelu":
        y = net.node(op, [x.name], alpha=0.1)
    elif op == "Clip":
        y = net.node(op, [x.name, net.const("lo", -0.5), net.const("hi", 0.5)])
    elif op == "Clip6":
        y = net.node("Clip", [x.name, net.const("lo", 0.0)])
    else:
        shape = net.pick([(x.c, 1, 1), (1,)])
        y = net.node(op, [x.name, net.const("slope", net.rng.uniform(0, 0.5, shape))])
    return T(y, x.c, x.h, x.w)


def constant(net: Net, x: T) -> T:
    """Mul, Add, Sub or Div by a per-channel ([C,1,1] or [1,C,1,1]) or scalar constant."""
    op = net.pick(["Mul", "Add", "Sub", "Div"])
    shape = net.pick([(x.c, 1, 1), (1, x.c, 1, 1), (1,), ()])
    if op == "Div":
        value = net.rng.uniform(0.5, 2, shape) * net.rng.choice([-1, 1], shape)
    else:
        value = net.rng.normal(size=shape)
    k = net.const("k", value)
    if op == "Mul" and shape != ():
        net.scales.append(k)
    inputs = [k, x.name] if op in ("Add", "Mul", "Sub") and net.pick([True, False]) else [x.name, k]
    return T(net.node(op, inputs), x.c, x.h, x.w)


def residual(net: Net, x: T) -> T:
    """A shape-keeping conv (maybe then BN or an activation) merged with ``x`` or an earlier
    map of the same shape: Add, Sum of three (a second conv), Max, Min, Mean, Mul or Sub."""
    body = conv(net, x, c_out=x.c, same=True)
    post = net.pick(["none", "bn", "act"])
    body = (
        batchnorm(net, body) if post == "bn" else activation(net, body) if post == "act" else body
    )
    partners = [x] + [t for t in net.seen if (t.c, t.h, t.w) == (x.c, x.h, x.w)]
    partner = net.pick(partners)
    op = net.pick(["Add", "Add", "Sum", "Max", "Min", "Mean", "Mul", "Sub"])
    inputs = [partner.name, body.name] if net.pick([True, False]) else [body.name, partner.name]
    if op == "Sum":
        inputs.append(conv(net, x, c_out=x.c, same=True).name)
    return T(net.node(op, inputs), x.c, x.h, x.w)


def concat(net: Net, x: T) -> T:
    """Concat of a conv branch and a conv, a pool or ``x`` itself, then a conv."""
    a = conv(net, x, same=True)
    other = net.pick(["conv", "pool", "self"])
    if other == "conv" or (other == "pool" and x.name in net.padded):
        b = conv(net, x, same=True)
    elif other == "pool":
        y = net.node("MaxPool", [x.name], kernel_shape=[3, 3], pads=[1] * 4)
        b = T(y, x.c, x.h, x.w)
    else:
        b = x
    first, second = (a, b) if net.pick([True, False]) else (b, a)
    y = net.node("Concat", [first.name, second.name], axis=1)
    return conv(net, T(y, a.c + b.c, x.h, x.w))


def _branch(net: Net, x: T, c_out: int | None) -> T:
    kind = "conv" if c_out else net.pick(["none", "conv", "bn", "act", "const"])
    if kind == "conv":
        return conv(net, x, c_out=c_out, same=True)
    return {"none": lambda n, t: t, "bn": batchnorm, "act": activation, "const": constant}[kind](
        net, x
    )


def split(net: Net, x: T) -> T:
    """Split into two (equal halves, or sizes from an input), a block on each, merged by
    Concat or (after a conv to the same width on each) by Add."""
    if x.c < 2:
        return x
    names, inputs = [net.fresh("part"), net.fresh("part")], [x.name]
    if x.c % 2 == 0 and net.pick([True, False]):
        sizes = [x.c // 2] * 2
    else:
        first = net.pick(list(range(1, x.c)))
        sizes = [first, x.c - first]
        inputs.append(net.const("sizes", np.array(sizes, np.int64)))
    net.nodes.append(helper.make_node("Split", inputs, names, name=f"n_{names[0]}", axis=1))
    c_out = net.pick(CHANNELS) if net.pick(["concat", "add"]) == "add" else None
    a, b = (_branch(net, T(n, c, x.h, x.w), c_out) for n, c in zip(names, sizes, strict=True))
    if c_out:
        return T(net.node("Add", [a.name, b.name]), c_out, x.h, x.w)
    return T(net.node("Concat", [a.name, b.name], axis=1), a.c + b.c, x.h, x.w)


def pool(net: Net, x: T) -> T:
    """MaxPool or AveragePool (count_include_pad 0/1), k 2/3, stride 1/2, pads 0/1; or a
    GlobalAveragePool/GlobalMaxPool in the middle of the net."""
    op = net.pick(["MaxPool", "AveragePool", "MaxPool", "AveragePool", "Global"])
    if op == "Global" or x.name in net.padded:
        y = net.node(net.pick(["GlobalAveragePool", "GlobalMaxPool"]), [x.name])
        return T(y, x.c, 1, 1)
    k, stride, pad = net.pick([2, 3]), net.pick([1, 2]), net.pick([0, 1])
    if min(x.h, x.w) + 2 * pad < k:  # too small a map
        k, pad = 2, 1
    attrs = {"kernel_shape": [k, k], "strides": [stride] * 2, "pads": [pad] * 4}
    if op == "AveragePool":
        attrs["count_include_pad"] = net.pick([0, 1])
    y = net.node(op, [x.name], **attrs)
    return T(y, x.c, _size(x.h, k, pad, stride), _size(x.w, k, pad, stride))


def nhwc(net: Net, x: T) -> T:
    """Transpose to NHWC; a [C] Mul or Add, a MatMul (maybe then a bias Add), or a Relu;
    Transpose back."""
    t = net.node("Transpose", [x.name], perm=[0, 2, 3, 1])
    inner = net.pick(["Mul", "Add", "MatMul", "Relu"])
    c = x.c
    if inner in ("Mul", "Add"):
        k = net.const("k", net.rng.normal(size=c))
        if inner == "Mul":
            net.scales.append(k)
        t = net.node(inner, [t, k])
    elif inner == "MatMul":
        c = net.pick(CHANNELS)
        t = net.node("MatMul", [t, net.weight((x.c, c), x.c, 1, 0)])
        if net.pick([True, False]):
            t = net.node("Add", [t, net.const("b", net.rng.normal(size=c))])
    else:
        t = net.node("Relu", [t])
    return T(net.node("Transpose", [t], perm=[0, 3, 1, 2]), c, x.h, x.w)


def shuffle(net: Net, x: T) -> T:
    """Channel shuffle with constant targets: Reshape into 2 or 3 groups, swap, Reshape back."""
    g = next((g for g in net.pick([(2, 3), (3, 2)]) if x.c % g == 0 and x.c > g), None)
    if g is None:
        return x
    split = net.const("split", np.array([BATCH, g, x.c // g, x.h, x.w], np.int64))
    s = net.node("Reshape", [x.name, split])
    t = net.node("Transpose", [s], perm=[0, 2, 1, 3, 4])
    merged = net.const("merged", np.array([BATCH, x.c, x.h, x.w], np.int64))
    return T(net.node("Reshape", [t, merged]), x.c, x.h, x.w)


def pad(net: Net, x: T) -> T:
    """Pad the spatial axes (maybe unevenly): zeros, a nonzero constant, reflect or edge."""
    p = [net.pick([0, 1, 2]) for _ in range(4)]  # top, left, bottom, right
    modes = ["constant", "constant", "reflect", "edge"]
    mode = net.pick(modes)
    if mode == "reflect" and max(p) >= min(x.h, x.w):
        mode = "edge"
    pads = net.const("pads", np.array([0, 0, p[0], p[1], 0, 0, p[2], p[3]], np.int64))
    inputs = [x.name, pads]
    if mode == "constant" and net.pick([True, False]):
        inputs.append(net.const("value", net.pick([0.0, 0.5, -1.0])))
    y = net.node("Pad", inputs, mode=mode)
    net.padded.add(y)
    return T(y, x.c, x.h + p[0] + p[2], x.w + p[1] + p[3])


def resize(net: Net, x: T) -> T:
    """Nearest-neighbour Resize doubling a small map."""
    if max(x.h, x.w) > 4:
        return x
    scales = net.const("scales", np.array([1, 1, 2, 2], np.float32))
    y = net.node("Resize", [x.name, "", scales], mode="nearest")
    return T(y, x.c, 2 * x.h, 2 * x.w)


def shared(net: Net, x: T) -> T:
    """The same 1x1 conv weight applied twice, a Relu between (a shared weight blocks)."""
    w = net.weight((x.c, x.c, 1, 1), x.c, 0, 1)
    y = net.node("Conv", [x.name, w])
    y = net.node("Conv", [net.node("Relu", [y]), w])
    return T(y, x.c, x.h, x.w)


BLOCKS = {
    "conv": conv,
    "depthwise": depthwise,
    "grouped": grouped,
    "conv_transpose": conv_transpose,
    "bn": batchnorm,
    "act": activation,
    "const": constant,
    "residual": residual,
    "concat": concat,
    "split": split,
    "pool": pool,
    "nhwc": nhwc,
    "shuffle": shuffle,
    "pad": pad,
    "resize": resize,
    "shared": shared,
}


def head(net: Net, x: T) -> None:
    """Features [N, F] (GlobalAveragePool then Flatten or Squeeze, ReduceMean, Flatten or a
    Reshape), maybe a hidden layer and Relu, then the classifier writing ``y`` (or a MatMul on
    the features unsqueezed to [N, 1, F], squeezed back)."""
    kind = net.pick(["gap", "squeeze", "flatten", "reshape", "reduce"])
    features = x.c
    if kind == "reduce":
        f = net.node("ReduceMean", [x.name], axes=[2, 3], keepdims=0)
    elif kind in ("gap", "squeeze"):
        f = net.node("GlobalAveragePool", [x.name])
        if kind == "gap":
            f = net.node("Flatten", [f])
        else:
            f = net.node("Squeeze", [f, net.const("axes", np.array([2, 3], np.int64))])
    else:
        features = x.c * x.h * x.w
        if kind == "flatten":
            f = net.node("Flatten", [x.name])
        else:
            target = net.pick([[0, -1], [BATCH, features]])
            f = net.node("Reshape", [x.name, net.const("shape", np.array(target, np.int64))])
    if net.pick([True, False]):
        hidden = net.pick([4, 8])
        f = net.node("Relu", [_dense(net, f, features, hidden, None)])
        features = hidden
    if net.pick([True, False, False]):
        axis = net.const("axes", np.array([1], np.int64))
        f = net.node("Unsqueeze", [f, axis])
        f = net.node("MatMul", [f, net.weight((features, CLASSES), features, 1, 0)])
        net.node("Squeeze", [f, axis], "y")
        return
    _dense(net, f, features, CLASSES, "y")


def _dense(net: Net, x: str, n_in: int, n_out: int, out: str | None) -> str:
    """Gemm (transB 0/1, bias or not, alpha and beta) or MatMul (maybe then a bias Add)."""
    op = net.pick(["Gemm", "Gemm_t", "MatMul"])
    if op == "MatMul":
        y = net.node("MatMul", [x, net.weight((n_in, n_out), n_in, 1, 0)])
        if net.pick([True, False]):
            return net.node("Add", [y, net.const("b", net.rng.normal(size=n_out))], out)
        return net.node("Identity", [y], out) if out else y
    trans = op == "Gemm_t"
    shape = (n_out, n_in) if trans else (n_in, n_out)
    w = net.weight(shape, n_in, 0 if trans else 1, 1 if trans else 0)
    inputs = [x, w] + ([net.bias(w, n_out)] if net.pick([True, False]) else [])
    scales = {"alpha": net.pick([1.0, 1.0, 0.5]), "beta": net.pick([1.0, 1.0, 2.0])}
    return net.node("Gemm", inputs, out, transB=int(trans), **scales)


# --- the drawn net -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A drawn net: the model, an input for it, and the weights and scales a test may zero."""

    model: onnx.ModelProto
    feed: dict[str, np.ndarray]
    weights: tuple[Weight, ...]
    scales: tuple[str, ...]

    def __repr__(self) -> str:
        return describe(self.model)

    def _repr_pretty_(self, p, cycle) -> None:  # how hypothesis prints a falsifying example
        p.text(describe(self.model))


def describe(model: onnx.ModelProto) -> str:
    """The nodes of ``model`` one a line, with the initializer shapes (for a failure report)."""
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    lines = [f"inputs {[(i.name, dims(i)) for i in model.graph.input]}"]
    for n in model.graph.node:
        args = [f"{i}{shapes[i]}" if i in shapes else i for i in n.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        lines.append(f"{', '.join(n.output)} = {n.op_type}({', '.join(args)}) {attrs or ''}")
    lines.append(f"outputs {[(o.name, dims(o)) for o in model.graph.output]}")
    return "\n".join(lines)


def dims(vi: onnx.ValueInfoProto) -> list[int]:
    """The declared dimensions of a graph input or output."""
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


@st.composite
def nets(draw) -> Drawn:
    """1 to ``MAX_BLOCKS`` blocks on a [2, 3, S, S] input (S 5, 6 or 8), then a head; maybe a
    second output."""
    net = Net(draw, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    size = draw(st.sampled_from([8, 6, 5]))
    x = T("x", 3, size, size)
    for _ in range(draw(st.integers(1, MAX_BLOCKS))):
        net.seen.append(x)
        x = BLOCKS[draw(st.sampled_from(sorted(BLOCKS)))](net, x)
    head(net, x)
    outputs = {"y": [BATCH, CLASSES]}
    hidden = [t for t in [*net.seen, x] if t.name != "x"]
    if hidden and draw(st.integers(0, 4)) == 0:
        aux = draw(st.sampled_from(hidden))
        outputs[aux.name] = [BATCH, aux.c, aux.h, aux.w]
    model = graph_model(net.nodes, {"x": [BATCH, 3, size, size]}, outputs, net.inits)
    feed = {"x": np.random.default_rng(size).normal(size=(BATCH, 3, size, size)).astype("f4")}
    return Drawn(model, feed, tuple(net.weights), tuple(net.scales))
