"""Initializers as numpy arrays and back, and the inferred shapes chains need."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Inferred shape of every tensor that has one; unknown dimensions are ``None``."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # without shapes fewer chains qualify: conservative
        inferred = model
    g = inferred.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
            )
    return shapes


def write_back(graph: onnx.GraphProto, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` in the graph's initializers: changed ones replaced, new ones added."""
    existing = {t.name: t for t in graph.initializer}
    for name, value in arrays.items():
        tensor = existing.get(name)
        if tensor is None:
            graph.initializer.append(numpy_helper.from_array(value, name))
        elif tuple(tensor.dims) != value.shape or not np.array_equal(
            numpy_helper.to_array(tensor), value
        ):
            tensor.CopyFrom(numpy_helper.from_array(value.astype(value.dtype), name))
