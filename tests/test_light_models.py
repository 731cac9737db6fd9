"""``analyze`` on the real architectures onnx ships under ``onnx/backend/test/data/light``.

The light models (ResNet-50, VGG-19, DenseNet-121, Inception v1/v2, ShuffleNet, SqueezeNet,
AlexNet, ZFNet-512) are IR 3, opset 9, with every Conv/Gemm weight a ``ConstantOfShape`` fill
(Inception v1's classifier weight behind a ``Reshape``). Expected values are read from the model
independently of onnxprune: weight shapes from the ``ConstantOfShape`` shape initializers (cross-
checked with ``onnx.shape_inference``), zeros from the fill value.

A dense net has every weight active at both levels: every kernel tap of every layer reads real
input at some output position in all nine models (no tap only ever touches padding), so the
expected effective sparsity is exactly 0.

The sparse variants replace each weight fill by a seeded random tensor with a 90% random mask.
The exact level is compared with an independent float64 torch reference (Vysogorets & Kempe,
arXiv 2107.02306): the linearized net (|w|, no biases, BatchNorm/ReLU/Dropout/Softmax removed,
pooling as a positive average), an all-ones input, backprop of ``sum(output)``; a weight is active
iff ``grad * |w| != 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

import onnxprune

pytestmark = pytest.mark.slow  # the light models of the onnx package, full analyses

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = [
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
]
LAYER_OPS = ("Conv", "Gemm")
WEIGHT_CHAIN = ("Reshape", "Identity")  # ops between a ConstantOfShape fill and its layer


def load_light(name: str) -> onnx.ModelProto:
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"this onnx build does not ship {path}")
    model = onnx.load(str(path))
    assert model.ir_version == 3
    return model


@dataclass(frozen=True)
class FillWeight:
    """A layer weight stored as ``ConstantOfShape(shape) = fill``."""

    name: str  # the ConstantOfShape output: the stored tensor a pruner would rewrite
    node: onnx.NodeProto
    shape: tuple[int, ...]
    fill: float


def fill_weights(model: onnx.ModelProto) -> Iterator[FillWeight]:
    """The weight of every Conv/Gemm node, in graph order, traced back to its fill."""
    producer = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        name = node.input[1]
        while producer[name].op_type in WEIGHT_CHAIN:
            name = producer[name].input[0]
        fill = producer[name]
        assert fill.op_type == "ConstantOfShape", (node.name, fill.op_type)
        (value,) = (a for a in fill.attribute if a.name == "value")
        shape = tuple(int(d) for d in inits[fill.input[0]])
        yield FillWeight(name, node, shape, float(numpy_helper.to_array(value.t).reshape(-1)[0]))


# --- the dense models as shipped -----------------------------------------------------------------


DENSE = [
    (name, level)
    for name in MODELS
    for level in ("channel", "exact")
    # VGG-19's exact maps cost seconds (64 channels at 224 x 224) and its 3x3/pad-1 convs hold
    # nothing the exact level could find that AlexNet's and ZFNet's 11x11 and 7x7 kernels do not
    if (name, level) != ("vgg19", "exact")
]


@pytest.mark.parametrize(("name", "level"), DENSE)
def test_dense_light_model(name: str, level: str) -> None:
    model = load_light(name)
    weights = list(fill_weights(model))
    n_layers = sum(node.op_type in LAYER_OPS for node in model.graph.node)
    inferred = shape_inference.infer_shapes(model)
    known = {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in inferred.graph.value_info
    }
    for w in weights:  # the consumed tensor has the fill's element count (Reshape keeps it)
        consumed = known[w.node.input[1]]
        assert int(np.prod(consumed)) == int(np.prod(w.shape)), w.name

    report = onnxprune.analyze(model, level=level)

    assert report.fallback_ops == ()
    assert len(report.layers) == n_layers == len(weights)
    assert [row.name for row in report.layers] == [w.name for w in weights]
    assert [row.op_type for row in report.layers] == [w.node.op_type for w in weights]
    assert report.total_params == sum(int(np.prod(w.shape)) for w in weights)
    assert all(w.fill != 0.0 for w in weights)  # nonzero fills: no weight is zero
    for row, w in zip(report.layers, weights, strict=True):
        assert row.params == int(np.prod(w.shape)), w.name
        assert row.zeros == (row.params if w.fill == 0.0 else 0), w.name
        # dense: every weight on some input-to-output path, no dead unit anywhere
        assert (row.active, row.dead_inputs, row.dead_outputs) == (row.params, 0, 0), w.name
    assert report.direct_sparsity == 0.0
    assert report.effective_sparsity == 0.0


# --- sparse variants: random weights under a 90% random mask ------------------------------------


def randomized(
    model: onnx.ModelProto, *, density: float, seed: int, ir_version: int = 3
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``model`` with every weight fill replaced by a random initializer ``N(0, 1) * mask``.

    The fill node and its shape initializer go. With ``ir_version`` 3 each new initializer is also
    declared a graph input, as IR 3 requires (and as the original zoo models do); from IR 4 on it
    is an initializer only.

    Returns:
        The new model and the weights by name.
    """
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.ir_version = ir_version
    graph = out.graph
    fills = {w.name: w for w in fill_weights(out)}
    values = {}
    for name, w in fills.items():
        mask = rng.random(w.shape) < density
        values[name] = (rng.standard_normal(w.shape) * mask).astype(np.float32)
    shapes = {node.input[0] for node in graph.node if node.output[0] in fills}
    nodes = [node for node in graph.node if node.output[0] not in fills]
    inits = [t for t in graph.initializer if t.name not in shapes]
    inputs = [i for i in graph.input if i.name not in shapes]
    inits += [numpy_helper.from_array(v, name) for name, v in values.items()]
    if ir_version < 4:
        inputs += [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, v.shape)
            for name, v in values.items()
        ]
    for field, items in ((graph.node, nodes), (graph.initializer, inits), (graph.input, inputs)):
        del field[:]
        field.extend(items)
    onnx.checker.check_model(out)
    return out, values


SPARSE = [
    pytest.param("squeezenet", 3, id="squeezenet-ir3"),
    pytest.param("squeezenet", 4, id="squeezenet-ir4"),
    pytest.param("resnet50", 3, id="resnet50"),
    pytest.param("densenet121", 3, id="densenet121"),  # Concat, BatchNorm as Mul/Add
    pytest.param("inception_v1", 3, id="inception_v1"),  # Concat, LRN, Reshape-d Gemm weight
    pytest.param("shufflenet", 3, id="shufflenet"),  # groups, depthwise, channel shuffle
]


@pytest.mark.parametrize(("name", "ir_version"), SPARSE)
def test_sparse_light_model_levels(name: str, ir_version: int) -> None:
    model, values = randomized(load_light(name), density=0.1, seed=0, ir_version=ir_version)
    channel = onnxprune.analyze(model, level="channel")
    exact = onnxprune.analyze(model, level="exact")

    for report in (channel, exact):
        assert report.fallback_ops == ()
        assert [row.name for row in report.layers] == list(values)
        for row in report.layers:
            assert row.params == values[row.name].size
            assert row.zeros == int((values[row.name] == 0).sum()), row.name
            assert row.active <= row.params - row.zeros, row.name
    zeros = sum(int((v == 0).sum()) for v in values.values())
    total = sum(v.size for v in values.values())
    assert channel.direct_sparsity == exact.direct_sparsity == pytest.approx(zeros / total)
    # the channel level only under-reports: it never finds a weight dead that the exact level keeps
    assert channel.direct_sparsity <= channel.effective_sparsity <= exact.effective_sparsity
    for ch_row, ex_row in zip(channel.layers, exact.layers, strict=True):
        assert ch_row.active >= ex_row.active, ch_row.name


# --- the paper's reference, by torch, on the sparse variants ------------------------------------


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _padded(torch, x, pads):
    """Zero-pad the spatial axes of ``x`` by ONNX ``pads`` (begins, then ends)."""
    top, left, bottom, right = pads or (0, 0, 0, 0)
    return torch.nn.functional.pad(x, (left, right, top, bottom))


def linearized_active(model: onnx.ModelProto) -> dict[str, np.ndarray]:  # noqa: C901 - one op each
    """Active entries of every Conv/Gemm weight initializer by the paper's reference computation.

    Every value is a sum of products of positive numbers, so an entry of a gradient is zero
    exactly when no input-to-output path runs through it. Each layer's output is divided by its
    (detached) maximum, a positive rescaling that keeps float64 far from overflow.
    """
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    (x_info,) = (i for i in graph.input if i.name not in consts)
    shape = [d.dim_value for d in x_info.type.tensor_type.shape.dim]
    acts = {x_info.name: torch.ones(shape, dtype=torch.float64)}
    leaves: dict[str, torch.Tensor] = {}

    def weight(name: str) -> torch.Tensor:
        if name not in leaves:
            w = torch.tensor(np.abs(consts[name]), dtype=torch.float64, requires_grad=True)
            leaves[name] = w
        return leaves[name]

    def rescaled(y: torch.Tensor) -> torch.Tensor:
        top = float(y.detach().max())
        return y / top if top > 0 else y

    for node in graph.node:
        live = [n for n in node.input if n in acts]
        if not live:
            continue  # constant arithmetic (BatchNorm parameters, shapes)
        a, op, x = _attrs(node), node.op_type, acts[live[0]]
        assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), node.name
        if op == "Conv":
            y = fn.conv2d(
                _padded(torch, x, a.get("pads")),
                weight(node.input[1]),
                stride=a.get("strides", 1),
                dilation=a.get("dilations", 1),
                groups=a.get("group", 1),
            )
            y = rescaled(y)
        elif op == "Gemm":
            assert not a.get("transA", 0), node.name
            w = weight(node.input[1])
            y = rescaled(x @ (w.T if a.get("transB", 0) else w))
        elif op in ("MaxPool", "AveragePool"):
            y = fn.avg_pool2d(
                _padded(torch, x, a.get("pads")), a["kernel_shape"], a.get("strides", 1)
            )
        elif op == "GlobalAveragePool":
            y = x.mean(dim=(2, 3), keepdim=True)
        elif op in ("Relu", "Dropout", "Softmax", "BatchNormalization", "Identity"):
            y = x  # activations and normalizations: the identity in the linearized net
        elif op in ("Mul", "Add") and len(live) == 1:
            y = x  # a per-channel scale or shift by a nonzero constant (BatchNorm as Mul/Add)
        elif op in ("Add", "Sum"):
            y = sum(acts[n] for n in live)
        elif op == "Concat":
            assert len(live) == len(node.input), node.name
            y = torch.cat([acts[n] for n in node.input], dim=a["axis"])
        elif op == "Reshape":
            target = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(consts[node.input[1]])]
            y = x.reshape(target)
        elif op == "Transpose":
            y = x.permute(*a["perm"])
        else:
            raise NotImplementedError(f"no linearization for {op}")
        acts[node.output[0]] = y
    acts[graph.output[0].name].sum().backward()
    return {name: (w.grad * w != 0).numpy() for name, w in leaves.items()}


def dead_units(node: onnx.NodeProto, active: np.ndarray) -> tuple[int, int]:
    """(dead input units, dead output units) of a layer's stored active mask."""
    if node.op_type == "Gemm":  # stored [N, K] with transB, else [K, N]
        kn = active.T if _attrs(node).get("transB", 0) else active
        return int((~kn.any(axis=1)).sum()), int((~kn.any(axis=0)).sum())
    group = _attrs(node).get("group", 1)
    o, cg = active.shape[:2]
    og = o // group
    dead_in = 0
    for c in range(cg * group):  # input channel c is read by its group's outputs only
        g, local = divmod(c, cg)
        dead_in += not active[g * og : (g + 1) * og, local].any()
    return dead_in, int((~active.reshape(o, -1).any(axis=1)).sum())


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "resnet50", "densenet121"])
def test_sparse_light_model_matches_reference(name: str) -> None:
    model, values = randomized(load_light(name), density=0.1, seed=1)
    expected = linearized_active(model)
    nodes = {node.input[1]: node for node in model.graph.node if node.op_type in LAYER_OPS}

    exact = onnxprune.analyze(model, level="exact")

    assert exact.fallback_ops == ()
    assert [row.name for row in exact.layers] == list(values)
    for row in exact.layers:
        active = expected[row.name]
        assert row.active == int(active.sum()), row.name
        assert (row.dead_inputs, row.dead_outputs) == dead_units(nodes[row.name], active), row.name
    total = sum(v.size for v in values.values())
    reference = 1.0 - sum(int(a.sum()) for a in expected.values()) / total
    assert exact.effective_sparsity == pytest.approx(reference, abs=1e-12)
