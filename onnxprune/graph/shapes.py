"""Static shapes of every tensor, from onnx.shape_inference on a copy stripped of weight data.

Inference runs on a light copy of the graph (large initializers become typed graph inputs), so
it costs little even for models of hundreds of megabytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.bodies import subgraphs
from onnxprune.errors import InvalidOptionError
from onnxprune.graph import contrib_shapes
from onnxprune.graph.contrib_shapes import CONTRIB
from onnxprune.model import light_copy

Shape = tuple[int | None, ...]
"""A tensor shape; ``None`` marks a symbolic or unknown dimension."""
BodyPath = tuple[tuple[int, str], ...]
"""Where a body is: ``(node index, graph attribute)`` per level from the main graph."""


def infer_shapes(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> dict[str, Shape]:
    """Shapes of all tensors whose rank is known, keyed by tensor name.

    Args:
        model: the model; it is not modified.
        input_shapes: fixed shapes for graph inputs, e.g. ``{"x": (1, 3, 224, 224)}``.
        dims: sizes of symbolic dimensions by name, e.g. ``{"batch": 1, "sequence": 128}``,
            in every graph input ``input_shapes`` does not give.

    Raises:
        InvalidOptionError: an entry of ``input_shapes`` names no graph input or has the wrong
            rank, or a name of ``dims`` is no symbolic dimension of the inputs.
    """
    return infer_all(model, input_shapes, dims).shapes


def infer_shapes_and_values(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> tuple[dict[str, Shape], dict[str, np.ndarray]]:
    """``infer_shapes``, and the values of the node outputs the shapes make constant.

    Raises:
        InvalidOptionError: as ``infer_shapes``.
    """
    inferred = infer_all(model, input_shapes, dims)
    return inferred.shapes, inferred.values


@dataclass(frozen=True)
class Inferred:
    """What shape inference finds in a model.

    Attributes:
        shapes: the shapes of the main graph's tensors whose rank is known, by name.
        bodies: the shapes inside each ``If``/``Loop``/``Scan`` body, by its path (sibling
            bodies may name tensors alike, so each body has its own mapping).
        values: the values of the main graph's node outputs the shapes make constant. Shape
            arithmetic computed by nodes (``Shape``, ``Gather``, ``Concat``, ``Range``... of
            inputs whose shapes are fixed, or of constants) is evaluated while the shapes are
            inferred: the values of at most ``FOLD_ELEMENTS`` elements, by output name. They
            hold for the fixed input shapes only.
    """

    shapes: dict[str, Shape]
    bodies: dict[BodyPath, dict[str, Shape]]
    values: dict[str, np.ndarray]


def infer_all(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> Inferred:
    """The shapes of the main graph and of its bodies, and the values they make constant.

    Raises:
        InvalidOptionError: as ``infer_shapes``.
    """
    shapes, bodies, light = _infer(model, input_shapes, dims)
    values = {}
    for node, folded in zip(model.graph.node, light.graph.node, strict=True):
        if node.op_type != "Constant" and folded.op_type == "Constant":
            values[folded.output[0]] = numpy_helper.to_array(folded.attribute[0].t)
    return Inferred(shapes, bodies, values)


def _infer(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None,
    dims: Mapping[str, int] | None,
) -> tuple[dict[str, Shape], dict[BodyPath, dict[str, Shape]], onnx.ModelProto]:
    """The shapes, the bodies' shapes, and the light copy with its small constants folded."""
    light = _light_copy(model, dict(input_shapes or {}), dict(dims or {}))
    _fold_small_constants(light)
    contrib_shapes.stand_in(light.graph)
    if any(n.domain == CONTRIB for n in light.graph.node):
        _import_contrib(light)
    shapes, bodies, inferred = _inferred(light)
    for _ in range(_MAX_PASSES):  # shapes now static fold, then what is computed from them
        if not _fold_static_shapes(light, shapes):
            break
        _fold_small_constants(light)
        shapes, bodies, inferred = _inferred(light)
    like = contrib_shapes.typed_like(model.graph)
    # Where onnx's inference departs from the operator spec (and ONNX Runtime), or does not
    # know the op (ONNX Runtime's contrib ops), the spec's sizes are given back as hints and
    # inference runs again from there.
    for _ in range(_MAX_PASSES + contrib_shapes.contrib_nodes(model.graph)):
        spec = {
            **_spec_shapes(light.graph, shapes),
            **contrib_shapes.spec_shapes(model.graph, shapes),
        }
        fixes = {n: s for n, s in spec.items() if shapes.get(n) != s}
        if not fixes:
            break
        hints = [i for i in light.graph.value_info if i.name not in fixes]
        del light.graph.value_info[:]
        light.graph.value_info.extend(hints)
        for name, shape in fixes.items():
            elem = _elem_type(inferred, like.get(name, name))  # as inferred, or as its input
            light.graph.value_info.append(helper.make_tensor_value_info(name, elem, list(shape)))
        shapes, bodies, inferred = _inferred(light)
    return shapes, bodies, light


_MAX_PASSES = 4


def _import_contrib(light: onnx.ModelProto) -> None:
    """Import the contrib domain, which ONNX Runtime's optimizer may leave out.

    onnx's inference then passes over the domain's ops instead of failing on the whole graph.
    """
    if not any(o.domain == CONTRIB for o in light.opset_import):
        light.opset_import.append(helper.make_opsetid(CONTRIB, 1))


FOLD_ELEMENTS = 4096
"""Largest constant (inputs and outputs) ``_fold_small_constants`` computes."""


def _fold_small_constants(light: onnx.ModelProto) -> None:
    """Replace nodes computing small constants by ``Constant`` nodes (in the light copy only).

    The TorchScript exporter computes shapes and masks from constants at run time (an
    ``Expand`` to ``Where(Equal(shape, -1), 1, shape)``); onnx's inference does not evaluate
    those and leaves the batch of everything downstream unknown. Each single-output node of the
    default domain whose inputs are all constants of at most ``FOLD_ELEMENTS`` elements is
    evaluated with ``onnx.reference`` (random ops, subgraphs and graph outputs left alone) and
    becomes a ``Constant`` in its place: node positions (which name the bodies) stay.
    """
    from onnx.reference import ReferenceEvaluator

    graph = light.graph
    values = {t.name: t for t in graph.initializer if math.prod(t.dims) <= FOLD_ELEMENTS}
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        names = [i for i in node.input if i]
        foldable = (
            node.domain in ("", "ai.onnx")
            and len(node.output) == 1
            and (names or node.op_type == "Constant")
            and all(i in values for i in names)
            and not node.op_type.startswith(("Random", "Bernoulli", "Multinomial"))
            and not subgraphs(node)
            and node.output[0] not in outputs
        )
        foldable = foldable and _small_output(node, values)
        folded = _evaluate(ReferenceEvaluator, node, values, light) if foldable else None
        if folded is None:
            continue
        values[node.output[0]] = numpy_helper.from_array(folded, node.output[0])
        if node.op_type != "Constant":
            constant = helper.make_node("Constant", [], [node.output[0]], node.name)
            constant.attribute.append(helper.make_attribute("value", values[node.output[0]]))
            node.CopyFrom(constant)


def _fold_static_shapes(light: onnx.ModelProto, shapes: Mapping[str, Shape]) -> bool:
    """Replace each ``Shape``/``Size`` of a tensor of static shape by a ``Constant`` (in place).

    With symbolic dimensions fixed (``dims``), the shape arithmetic exporters write over
    ``Shape`` (GPT-2's attention mask: ``Gather``, ``Range``, ``Unsqueeze``, comparisons, an
    ``Expand``) becomes computable; onnx's inference propagates some of it (``data_prop``) but
    not ``Range`` and what follows. Returns whether a node was replaced.
    """
    folded = False
    for node in light.graph.node:
        if node.op_type not in ("Shape", "Size") or node.domain not in ("", "ai.onnx"):
            continue
        shape = shapes.get(node.input[0])
        if shape is None or None in shape:
            continue
        if node.op_type == "Size":
            value = np.array(math.prod(shape), np.int64)
        else:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            value = np.array(shape[attrs.get("start", 0) : attrs.get("end")], np.int64)
        constant = helper.make_node("Constant", [], [node.output[0]], node.name)
        constant.attribute.append(
            helper.make_attribute("value", numpy_helper.from_array(value, node.output[0]))
        )
        node.CopyFrom(constant)
        folded = True
    return folded


def _small_output(node: onnx.NodeProto, values: Mapping[str, onnx.TensorProto]) -> bool:
    """Whether ``node``'s output stays within ``FOLD_ELEMENTS``, checked before it is computed.

    Ops whose output size comes from their input values (a hostile ``ConstantOfShape`` of
    ``[2**40]``) are sized first; those that grow their input in other ways are never folded.
    """
    op = node.op_type
    if op in ("Pad", "Resize", "Upsample", "OneHot", "EyeLike", "Col2Im"):
        return False
    if op not in ("ConstantOfShape", "Expand", "Tile", "Range"):
        return True
    arrays = [numpy_helper.to_array(values[i]) if i else None for i in node.input]
    try:
        with np.errstate(all="ignore"):
            size = _output_size(op, arrays)
    except (ValueError, IndexError, TypeError, AttributeError):  # malformed: left to inference
        return False
    return bool(np.isfinite(size)) and size <= FOLD_ELEMENTS


def _output_size(op: str, arrays: list) -> float:
    """The element count of a ConstantOfShape, Expand, Tile or Range with these inputs."""
    if op == "ConstantOfShape":
        return float(np.prod(arrays[0].astype(np.float64)))
    if op == "Expand":
        shape = np.broadcast_shapes(arrays[0].shape, tuple(int(d) for d in arrays[1]))
        return float(np.prod(shape, dtype=np.float64))
    if op == "Tile":
        return float(arrays[0].size * np.prod(arrays[1].astype(np.float64)))
    start, limit, delta = (float(a.reshape(-1)[0]) for a in arrays[:3])
    return (limit - start) / delta if delta else np.inf


def _evaluate(evaluator, node, values, light) -> np.ndarray | None:
    """``node``'s output from constant inputs, or None (too large, or it cannot run)."""
    inputs = [values[i] for i in dict.fromkeys(i for i in node.input if i)]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = helper.make_graph([node], "fold", [], outs, inputs)
    model = helper.make_model(graph, opset_imports=list(light.opset_import))
    try:  # quietly, as ONNX Runtime would: T5's position buckets take log(0) and cast -inf
        with np.errstate(all="ignore"):
            (result,) = (np.asarray(r) for r in evaluator(model).run(None, {}))
    except Exception:  # an op the reference cannot run (or any failure) stays a node
        return None
    return result if result.size <= FOLD_ELEMENTS else None


def _inferred(
    light: onnx.ModelProto,
) -> tuple[dict[str, Shape], dict[BodyPath, dict[str, Shape]], onnx.GraphProto]:
    """Shapes of the main graph and of the bodies, and the main graph with what was inferred."""
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError):
        inferred = light
    bodies: dict[BodyPath, dict[str, Shape]] = {}
    shapes = _graph_shapes(inferred.graph, (), bodies)
    return shapes, bodies, inferred.graph


def _graph_shapes(
    graph: onnx.GraphProto, path: BodyPath, bodies: dict[BodyPath, dict[str, Shape]]
) -> dict[str, Shape]:
    """The shapes ``graph`` declares; those of its bodies go into ``bodies`` by path."""
    shapes: dict[str, Shape] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        shape = _shape_of(info.type)
        if shape is not None:
            shapes[info.name] = shape
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for index, node in enumerate(graph.node):
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                inner = (*path, (index, a.name))
                bodies[inner] = _graph_shapes(a.g, inner, bodies)
    return shapes


def _elem_type(graph: onnx.GraphProto, name: str) -> int:
    """The element type ``graph`` gives ``name`` (an initializer's too), FLOAT if none."""
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.name == name and info.type.tensor_type.elem_type:
            return info.type.tensor_type.elem_type
    for init in graph.initializer:
        if init.name == name:
            return init.data_type
    return onnx.TensorProto.FLOAT


_SPEC_OPS = frozenset({"MaxPool", "AveragePool", "LpPool", "ConvTranspose"})


def _spec_shapes(graph: onnx.GraphProto, shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """Output shapes, by the operator spec, of the ops onnx's inference gets wrong.

    Pooling with ``ceil_mode`` whose last window would start in the end padding (onnx before
    opset 19 counts it), and ``ConvTranspose`` with ``output_shape`` or SAME padding.
    """
    out: dict[str, Shape] = {}
    for node in graph.node:
        if node.op_type not in _SPEC_OPS:
            continue
        x = shapes.get(node.input[0]) if node.input else None
        if x is None or len(x) < 3 or any(d is None for d in x[2:]):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        spatial = None
        if node.op_type in ("MaxPool", "AveragePool", "LpPool") and attrs.get("ceil_mode"):
            spatial = _ceil_pool(x[2:], attrs)
        elif node.op_type == "ConvTranspose":
            spatial = _transpose_spatial(x[2:], attrs, shapes.get(node.input[1]))
        if spatial is None:
            continue
        y = shapes.get(node.output[0])
        if y is not None and len(y) == len(x):
            out[node.output[0]] = (*y[:2], *spatial)
        elif node.op_type == "ConvTranspose" and shapes.get(node.input[1]) is not None:
            # onnx may even get the rank wrong; channels = group * W.shape[1]
            channels = int(attrs.get("group", 1)) * shapes[node.input[1]][1]
            out[node.output[0]] = (x[0], channels, *spatial)
    return out


def _ceil_pool(sizes: Sequence[int], attrs: dict) -> tuple[int, ...] | None:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    kernel = attrs["kernel_shape"]
    n = len(kernel)
    strides = attrs.get("strides") or [1] * n
    dilations = attrs.get("dilations") or [1] * n
    pads = attrs.get("pads") or [0] * (2 * n)
    result = []
    for i, size in enumerate(sizes):
        extent = (kernel[i] - 1) * dilations[i] + 1
        out = -(-(size + pads[i] + pads[i + n] - extent) // strides[i]) + 1
        if (out - 1) * strides[i] >= size + pads[i]:  # the last window would start in padding
            out -= 1
        result.append(out)
    return tuple(result)


def _transpose_spatial(
    sizes: Sequence[int], attrs: dict, weight: Shape | None
) -> tuple[int, ...] | None:
    if attrs.get("output_shape"):
        return tuple(int(d) for d in attrs["output_shape"][-len(sizes) :])
    kernel = attrs.get("kernel_shape") or (weight[2:] if weight is not None else None)
    if attrs.get("auto_pad", b"NOTSET") not in (b"SAME_UPPER", b"SAME_LOWER") or not kernel:
        return None
    # SAME: input * stride, but never more than the uncropped output (as ONNX Runtime does).
    n = len(sizes)
    strides = attrs.get("strides") or [1] * n
    dilations = attrs.get("dilations") or [1] * n
    extra = attrs.get("output_padding") or [0] * n
    return tuple(
        min(size * s, s * (size - 1) + e + (k - 1) * d + 1)
        for size, s, d, e, k in zip(sizes, strides, dilations, extra, kernel, strict=True)
    )


def _light_copy(
    model: onnx.ModelProto, input_shapes: dict[str, Sequence[int]], dims: dict[str, int]
) -> onnx.ModelProto:
    light = light_copy(model)
    init_names = {t.name for t in model.graph.initializer}
    known_inputs = {i.name for i in model.graph.input if i.name not in init_names}
    unknown = sorted(set(input_shapes) - known_inputs)
    if unknown:
        raise InvalidOptionError(
            f"--input-shape names {unknown}, but the graph inputs are {sorted(known_inputs)}"
        )
    for k, value in enumerate(light.graph.input):
        if value.name in input_shapes:
            light.graph.input[k].CopyFrom(_with_shape(value, input_shapes[value.name]))
    if dims:
        _fix_dims([i for i in light.graph.input if i.name in known_inputs], dims)
    return light


def fix_input_shapes(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
) -> None:
    """Declare ``input_shapes`` and ``dims`` in the graph inputs of ``model`` (in place).

    A model cut with fixed sizes may hold what only those sizes compute (a folded map over a
    padded Conv's positions), so it says which sizes it takes. A dimension ``dims`` names is one
    size wherever the model declares it, so its outputs (and value_info) are given it too.

    Raises:
        InvalidOptionError: as ``infer_shapes``.
    """
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    for value in inputs:
        if value.name in (input_shapes or {}):
            value.CopyFrom(_with_shape(value, input_shapes[value.name]))
    if dims:
        _fix_dims(inputs, dict(dims))
        _set_dims((*graph.output, *graph.value_info), dims)  # a name is one size in the model


def static_inputs(graph: onnx.GraphProto) -> bool:
    """Whether every graph input (initializers aside) declares every dimension's size.

    ONNX Runtime refuses a feed whose size differs from a declared one, so what those sizes make
    constant holds for every run of the model, as for sizes the user fixes.
    """
    init_names = {t.name for t in graph.initializer}
    return all(
        value.type.HasField("tensor_type")
        and value.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim)
        for value in graph.input
        if value.name not in init_names
    )


def _fix_dims(inputs: Sequence[onnx.ValueInfoProto], dims: dict[str, int]) -> None:
    """Give the symbolic dimensions of ``inputs`` named in ``dims`` their sizes (in place)."""
    named = {
        d.dim_param
        for value in inputs
        for d in value.type.tensor_type.shape.dim
        if d.HasField("dim_param")
    }
    unknown = sorted(set(dims) - named)
    if unknown and not named:
        raise InvalidOptionError(
            f"--dim names {unknown}, but the inputs have no symbolic dimensions: every size is "
            "declared, and used as it is (leave out --dim)"
        )
    if unknown:
        raise InvalidOptionError(
            f"--dim names {unknown}, but the inputs' symbolic dimensions are {sorted(named)}"
        )
    _set_dims(inputs, dims)


def _set_dims(values: Iterable[onnx.ValueInfoProto], dims: Mapping[str, int]) -> None:
    """Give the symbolic dimensions of ``values`` named in ``dims`` their sizes (in place)."""
    for value in values:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                d.dim_value = int(dims[d.dim_param])  # clears dim_param (a oneof)


def _with_shape(value: onnx.ValueInfoProto, dims: Sequence[int]) -> onnx.ValueInfoProto:
    old = _shape_of(value.type)
    if old is not None and len(old) != len(dims):
        raise InvalidOptionError(
            f"--input-shape {value.name}={','.join(map(str, dims))} has rank {len(dims)}, "
            f"but the input has rank {len(old)}"
        )
    elem = value.type.tensor_type.elem_type
    return helper.make_tensor_value_info(value.name, elem, [int(d) for d in dims])


def _shape_of(type_proto: onnx.TypeProto) -> Shape | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = type_proto.tensor_type.shape.dim
    # a negative size (a window larger than its padded input) is no shape: unknown
    return tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in dims
    )
