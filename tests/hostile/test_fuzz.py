"""Fuzz: valid models mutated at random never crash a command, never change their input.

Issue 19: whatever the bytes, fields, dims or names of a model, ``analyze`` (both levels),
``prune`` and ``compact`` end with exit 0 or 2 (never 1, a bug), print one line on stderr when
they refuse, and leave the input file as it was. Each example takes a small valid model (built
here, or the bundled CNN), applies one mutation drawn by Hypothesis and runs one command
in-process through ``onnxprune.cli.main``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxprune.cli import main
from tests.hostile.malformed import behind, cnn, ints, mlp, weight
from tests.hostile.test_models_malformed import argv

ROOT = Path(__file__).resolve().parents[2]

BASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": mlp,
    "cnn": cnn,
    "reshaped": lambda: behind("Reshape", [ints("t", [4, -1])]),
    "transposed": lambda: behind("Transpose", [], perm=[0, 1]),
    "dequantized": lambda: behind("DequantizeLinear", [weight("scale", (8,), 2)], axis=1),
    "cnn_digits": lambda: onnx.load_model(ROOT / "models" / "cnn_digits.onnx"),
}
"""Valid models to start from: the layer kinds and weight chains onnxprune reads."""

COMMANDS = ("analyze", "exact", "prune", "compact")
ATTRIBUTES = (
    *("group", "axis", "perm", "strides", "pads", "dilations", "kernel_shape", "transA"),
    *("transB", "allowzero", "to", "axes", "keepdims", "blocksize", "value", "auto_pad"),
)
OPS = (
    *("Conv", "ConvTranspose", "Gemm", "MatMul", "Reshape", "Transpose", "Gather", "Concat"),
    *("Split", "Slice", "Pad", "Expand", "Tile", "Flatten", "Squeeze", "Unsqueeze", "Relu"),
    *("MaxPool", "GlobalAveragePool", "Add", "Mul", "DequantizeLinear", "Cast", "Identity"),
    *("Constant", "ConstantOfShape", "BatchNormalization", "Softmax", "ReduceSum", "If"),
)

DIMS = st.one_of(st.integers(-2, 12), st.sampled_from([0, 2**20, 2**31, 2**40, 2**62]))
SHAPES = st.lists(DIMS, max_size=5)
DATA_TYPES = st.sampled_from([*sorted(TensorProto.DataType.values()), 99])

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])
"""The profile's count: each example runs one command, a few milliseconds (``full``: 1500 in
about 15 s)."""


def _bytes(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    data = bytearray(model.SerializeToString())
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _attribute(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    node = draw(st.sampled_from(list(model.graph.node)))
    name = draw(st.sampled_from(ATTRIBUTES))
    value = draw(
        st.one_of(
            DIMS,
            SHAPES,
            st.floats(allow_nan=True),
            st.binary(max_size=8),
            st.builds(lambda s: helper.make_tensor("v", TensorProto.FLOAT, [len(s)], s), SHAPES),
        )
    )
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    ints = onnx.AttributeProto.INTS if value == [] else None  # no type to infer from []
    node.attribute.extend([*kept, helper.make_attribute(name, value, attr_type=ints)])
    return model.SerializeToString()


def _drop_attribute(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    nodes = [n for n in model.graph.node if n.attribute]
    if nodes:
        node = draw(st.sampled_from(nodes))
        del node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
    return model.SerializeToString()


def _op_type(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    draw(st.sampled_from(list(model.graph.node))).op_type = draw(st.sampled_from(OPS))
    return model.SerializeToString()


def _dims(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    tensor = draw(st.sampled_from(list(model.graph.initializer)))
    tensor.dims[:] = draw(SHAPES)
    return model.SerializeToString()


def _value_dims(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    graph = model.graph
    info = draw(st.sampled_from([*graph.input, *graph.output]))
    shape = info.type.tensor_type.shape
    del shape.dim[:]
    for d in draw(SHAPES):
        shape.dim.add().dim_value = d
    return model.SerializeToString()


def _name(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    graph = model.graph
    names = sorted({n for node in graph.node for n in (*node.input, *node.output)})
    new = draw(st.one_of(st.sampled_from(names), st.just(""), st.text(max_size=4)))
    node = draw(st.sampled_from(list(graph.node)))
    field = node.input if draw(st.booleans()) or not node.output else node.output
    if field:
        field[draw(st.integers(0, len(field) - 1))] = new
    return model.SerializeToString()


def _data(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    tensor = draw(st.sampled_from(list(model.graph.initializer)))
    if draw(st.booleans()):
        tensor.data_type = draw(DATA_TYPES)
    else:
        raw = numpy_raw(tensor)
        tensor.ClearField("float_data")
        tensor.ClearField("int64_data")
        tensor.raw_data = raw[: draw(st.integers(0, len(raw) + 8))] + b"\x01" * 8
    return model.SerializeToString()


def _values(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    shapes = [t for t in model.graph.initializer if t.data_type == TensorProto.INT64]
    if shapes:
        tensor = draw(st.sampled_from(shapes))
        values = np.asarray(draw(SHAPES), np.int64)
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    return model.SerializeToString()


def numpy_raw(tensor: onnx.TensorProto) -> bytes:
    """The tensor's data as raw little-endian bytes."""
    return onnx.numpy_helper.to_array(tensor).tobytes()


MUTATIONS = {
    f.__name__.lstrip("_"): f
    for f in (_bytes, _attribute, _drop_attribute, _op_type, _dims, _value_dims, _name, _data)
}
MUTATIONS["values"] = _values


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid model from ``BASES`` with one mutation from ``MUTATIONS``, serialized."""
    model = BASES[draw(st.sampled_from(sorted(BASES)))]()
    return MUTATIONS[draw(st.sampled_from(sorted(MUTATIONS)))](draw, model)


@FUZZ
@given(mutated(), st.sampled_from(COMMANDS))
def test_a_mutated_model_is_refused_in_one_line_or_processed(data, command):
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "model.onnx"
        model.write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv(command, model, Path(folder)))
        assert code in (0, 2), err.getvalue()
        assert code == 0 or err.getvalue().count("\n") == 1, err.getvalue()
        assert model.read_bytes() == data
