"""Static shapes of every tensor, from onnx.shape_inference on a copy stripped of weight data.

Inference runs on a light copy of the graph (large initializers become typed graph inputs), so
it costs little even for models of hundreds of megabytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from onnx import helper

from onnxprune.errors import InvalidOptionError
from onnxprune.model import light_copy

Shape = tuple[int | None, ...]
"""A tensor shape; ``None`` marks a symbolic or unknown dimension."""


def infer_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, Shape]:
    """Shapes of all tensors whose rank is known, keyed by tensor name.

    Args:
        model: the model; it is not modified.
        input_shapes: fixed shapes for graph inputs, e.g. ``{"x": (1, 3, 224, 224)}``.

    Raises:
        InvalidOptionError: an entry of ``input_shapes`` names no graph input or has the wrong rank.
    """
    light = _light_copy(model, dict(input_shapes or {}))
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError):
        inferred = light
    shapes: dict[str, Shape] = {}
    graph = inferred.graph
    for info in (*graph.input, *graph.value_info, *graph.output):
        shape = _shape_of(info.type)
        if shape is not None:
            shapes[info.name] = shape
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _light_copy(model: onnx.ModelProto, input_shapes: dict[str, Sequence[int]]) -> onnx.ModelProto:
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
    return light


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
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
