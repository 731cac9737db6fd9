"""Helpers the structured tests share: run a model, read its weights, compare outputs."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
"""The light models the onnx package ships (ResNet-50, DenseNet-121, ...)."""


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` on ONNX Runtime's CPU provider, with ORT's warnings quiet."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the light models carry an unused initializer ORT warns about
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feed)


def init(model: onnx.ModelProto, name: str) -> np.ndarray:
    """The initializer ``name`` of ``model`` as an array."""
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def params(model: onnx.ModelProto) -> int:
    """The number of values in the initializers of ``model``."""
    return sum(math.prod(t.dims) for t in model.graph.initializer)


def close(a: np.ndarray, b: np.ndarray, *, floor: float = 1.0) -> bool:
    """Same shape, and ``b`` within 1e-5 of ``a`` relative to ``max(floor, max |a|)``."""
    if a.shape != b.shape:
        return False
    return bool(np.abs(a - b).max() <= 1e-5 * max(floor, float(np.abs(a).max())))


def assert_close(expected: list[np.ndarray], got: list[np.ndarray], *, floor: float = 1.0) -> None:
    """As many outputs in ``got`` as in ``expected``, each ``close`` to its own."""
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert close(a, b, floor=floor)


def assert_pruned_like_masked(result, feed: dict[str, np.ndarray]) -> None:
    """``result.model`` passes the full checker and computes what ``result.masked`` does."""
    onnx.checker.check_model(result.model, full_check=True)
    assert_close(run(result.masked, feed), run(result.model, feed))


def export(torch, net, shape: tuple[int, ...]) -> onnx.ModelProto:
    """``net`` in eval mode exported at opset 17 (TorchScript exporter), input ``x`` of
    ``shape`` and output ``y``, both with a dynamic batch; IR version at most 10."""
    buffer = io.BytesIO()
    torch.onnx.export(
        net.eval(), (torch.randn(*shape),), buffer, dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    return model
