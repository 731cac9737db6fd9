"""The inferred shapes dependency groups need."""

from __future__ import annotations

import onnx
from onnx import shape_inference


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Inferred shape of every tensor that has one; unknown dimensions are ``None``."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # without shapes fewer units can be followed: conservative
        inferred = model
    g = inferred.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
            )
    for t in g.initializer:
        shapes.setdefault(t.name, tuple(t.dims))
    return shapes
