"""Fuzz: valid models mutated at random never crash a command, never change their input.

Issue 19: whatever the bytes, fields, dims or names of a model, ``analyze`` (both levels),
``prune``, ``compact``, ``validate`` (alone and against a baseline), a one-run ``sweep``, a
one-model ``batch`` and ``remote prune`` end with exit 0, 2, 3 or 4 (never 1, a bug), print
one line on stderr when they refuse (exit 4: a line, then one per failed run), print no
traceback, stay under ``PEAK_BYTES`` of memory and leave their input files as they were. Each
example takes a small valid model (built here, or the bundled CNN), applies one mutation drawn
by Hypothesis and runs one command in a forked child of a warm process
(``tests.hostile.forked``), which measures the child's peak memory (its workers' included).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.helpers import examples
from tests.hostile.forked import Forked, Ran
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
VALIDATING = ("validate", "baseline", "as_baseline", "sweep", "batch", "remote")
"""Commands that also run the model in ONNX Runtime, or send it to a server: slower, so their
property runs fewer examples."""
PEAK_BYTES = 3 * 2**29
"""Most memory (resident, 1.5 GiB) a command may take on these small models: a memory bomb
(a 157-byte model that allocated 2.75 GB) goes over it."""
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
about 30 s)."""
SLOW_FUZZ = settings(FUZZ, max_examples=examples(300))
"""At most 300: a validating command takes a tenth of a second or more (``full``: 300 in about
a minute)."""


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
def mutated(draw: st.DrawFn) -> tuple[onnx.ModelProto, bytes]:
    """A valid model from ``BASES``, and it with one mutation from ``MUTATIONS``, serialized."""
    base = draw(st.sampled_from(sorted(BASES)))
    model = BASES[base]()
    return BASES[base](), MUTATIONS[draw(st.sampled_from(sorted(MUTATIONS)))](draw, model)


def dataset(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Two samples for every graph input of the valid ``model`` (dims not fixed: 2)."""
    arrays = {}
    for info in model.graph.input:
        dims = [d.dim_value or 2 for d in info.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        arrays[info.name] = np.linspace(-1, 1, int(np.prod(dims))).reshape(dims).astype(dtype)
    return arrays


@pytest.fixture(scope="module")
def forked() -> Iterator[Forked]:
    """The warm process the commands run in."""
    runner = Forked()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def server(start_server) -> str:
    """A server for ``remote prune``."""
    return start_server()


def command_line(command: str, folder: Path, server: str) -> list[str | Path]:
    """``command`` on ``folder``'s model.onnx (base.onnx the valid one, data.npz its inputs).

    ``baseline`` validates the mutated model against the valid one, ``as_baseline`` the other
    way round; ``batch`` reads the manifest batch.json, which lists model.onnx with data.npz.
    """
    model, out = folder / "model.onnx", folder / "out"
    data = ("--data", folder / "data.npz")
    lines = {
        "validate": ["validate", model, *data],
        "baseline": ["validate", model, *data, "--baseline", folder / "base.onnx"],
        "as_baseline": ["validate", folder / "base.onnx", *data, "--baseline", model],
        "sweep": ["sweep", model, *data, "--sparsities", "0.5", "--out", out],
        "batch": ["batch", folder / "batch.json", "--out", out, "--sparsity", "0.5"],
        "remote": ["remote", "prune", model, "--sparsity", "0.5", "-o", folder / "pruned.onnx"],
    }
    if command == "remote":
        return [*lines[command], "--server", server, "--timeout", "600"]
    return lines.get(command) or argv(command, model, folder)


def check(ran: Ran, before: dict[Path, str]) -> None:
    """Exit 0, 2, 3 or 4; one line for an error; no traceback; peak memory; inputs unchanged.

    Warnings (``warning: ...``, one line each, as a few samples give in ``validate``) may come
    before the error.
    """
    assert ran.code in (0, 2, 3, 4), ran.err
    assert "Traceback" not in ran.err, ran.err
    error = "".join(line for line in ran.err.splitlines(True) if not line.startswith("warning: "))
    if ran.code == 2:
        assert error.count("\n") == 1 and error.endswith("\n"), ran.err
    if ran.code == 4:  # one failed run (sweep) or model (batch) of one, listed
        assert re.match(r"1 of 1 (runs|models) failed:\n", error), ran.err
        assert error.count("\n") == 2, ran.err
    assert ran.peak_bytes < PEAK_BYTES, f"{ran.peak_bytes} bytes at peak"
    assert {p: _digest(p) for p in before} == before


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fuzz(forked: Forked, model: tuple[onnx.ModelProto, bytes], command: str, server: str) -> None:
    base, data = model
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "model.onnx").write_bytes(data)
        (folder / "base.onnx").write_bytes(base.SerializeToString())
        np.savez(folder / "data.npz", **dataset(base))
        manifest = {"models": [{"path": "model.onnx", "data": "data.npz"}]}
        (folder / "batch.json").write_text(json.dumps(manifest))
        before = {p: _digest(p) for p in folder.iterdir()}
        check(forked.run(command_line(command, folder, server), folder), before)


@FUZZ
@given(model=mutated(), command=st.sampled_from(COMMANDS))
def test_a_mutated_model_is_refused_in_one_line_or_processed(forked, model, command):
    _fuzz(forked, model, command, "")


@pytest.mark.slow  # a tenth of a second or more an example: make test runs it, make check not
@SLOW_FUZZ
@given(model=mutated(), command=st.sampled_from(VALIDATING))
def test_a_mutated_model_is_refused_in_one_line_or_validated(forked, server, model, command):
    _fuzz(forked, model, command, server)


def test_the_peak_is_what_the_command_took(forked, tmp_path):
    # A 64 MiB weight (2048 x 8192 float32) that analyze reads: its peak is that much higher
    # than on the small MLP, so a command that allocates shows in the peak measured.
    big = mlp(onnx.numpy_helper.from_array(np.ones((2048, 8192), np.float32), "w1"))
    peaks = []
    for model in (mlp(), big):
        path = tmp_path / "model.onnx"
        path.write_bytes(model.SerializeToString())
        ran = forked.run(["analyze", path], tmp_path)
        assert ran.code == 0, ran.err
        peaks.append(ran.peak_bytes)
    assert peaks[1] - peaks[0] >= 64 * 2**20
