"""One small builder per malformed model the hostile sweep (issue 19) fed to every command.

Each builder writes its model (and any external data) into a folder and returns the model's path.
``CASES`` lists them with the error class every command must raise: one line, exit 2, the input
left as it was. Models start from two valid ones, an MLP and a CNN, broken in one place each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import (
    DatasetError,
    InvalidModelError,
    LimitExceededError,
    OnnxpruneError,
    ShapeError,
)

Builder = Callable[[Path], Path]


@dataclass(frozen=True)
class Case:
    """A malformed model and what every command must say about it.

    Attributes:
        name: the test id.
        build: writes the model into a folder, returns its path.
        error: the class every command raises.
        commands: the commands that must refuse it (``exact``: ``analyze --exact``).
        options: more arguments for each command.
    """

    name: str
    build: Builder
    error: type[OnnxpruneError] = InvalidModelError
    commands: tuple[str, ...] = ("analyze", "exact", "prune", "compact")
    options: tuple[str, ...] = ()


CASES: dict[str, Case] = {}


def case(
    error: type[OnnxpruneError] = InvalidModelError,
    commands: tuple[str, ...] = Case.commands,
    options: tuple[str, ...] = (),
) -> Callable[[Callable[[], onnx.ModelProto]], Callable[[], onnx.ModelProto]]:
    """Register a builder of a model without external data under its function name."""

    def register(make: Callable[[], onnx.ModelProto]) -> Callable[[], onnx.ModelProto]:
        def build(folder: Path) -> Path:
            return save(make(), folder)

        CASES[make.__name__] = Case(make.__name__, build, error, commands, options)
        return make

    return register


def save(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    """Write ``model`` as is (no checks) and return its path."""
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def model_of(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    x: list[int | str],
    y: list[int | str],
    opset: int = 17,
    elem: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """Input ``x`` (float), output ``y``, the given initializers, IR 8."""
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", elem, x)],
        [helper.make_tensor_value_info("y", elem, y)],
        inits,
    )
    return helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", opset)])


def weight(name: str, shape: tuple[int, ...], seed: int = 0) -> onnx.TensorProto:
    """Float32 weights with no zeros, stored as raw data."""
    values = np.random.default_rng(seed).uniform(0.5, 1.5, shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def mlp(w1: onnx.TensorProto | None = None) -> onnx.ModelProto:
    """``x[1,K] -> MatMul w1[K,N] -> Relu -> MatMul w2[N,3] -> y``; valid with the default
    ``w1`` (``[4, 8]``); a ``w1`` of another rank keeps ``K=4, N=8`` for the rest."""
    w1 = w1 or weight("w1", (4, 8))
    k, n = list(w1.dims) if len(w1.dims) == 2 else (4, 8)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return model_of(nodes, [w1, weight("w2", (n, 3), 1)], [1, k], [1, 3])


def cnn(
    conv: dict[str, object] | None = None, w: onnx.TensorProto | None = None
) -> onnx.ModelProto:
    """``x[1,4,6,6] -> Conv w[6,4,3,3] -> Relu -> Conv v[2,6,1,1] -> y``: a valid model."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], **(conv or {})),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "v"], ["y"]),
    ]
    inits = [w or weight("w", (6, 4, 3, 3)), weight("v", (2, 6, 1, 1), 1)]
    return model_of(nodes, inits, [1, 4, 6, 6], [1, 2, "h", "w"])


def behind(op: str, helpers: list[onnx.TensorProto], **attrs: object) -> onnx.ModelProto:
    """The MLP whose first weight ``s`` reaches its MatMul through ``op(s, *helpers)``."""
    nodes = [
        helper.make_node(op, ["s", *(t.name for t in helpers)], ["w1"], **attrs),
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    inits = [weight("s", (4, 8)), *helpers, weight("w2", (8, 3), 1)]
    return model_of(nodes, inits, [1, 4], [1, 3])


def bare(name: str, elem: int, dims: list[int], **fields: object) -> onnx.TensorProto:
    """A tensor proto made field by field, without ``make_tensor``'s checks."""
    tensor = TensorProto(name=name, data_type=elem, dims=dims)
    for key, value in fields.items():
        if isinstance(value, bytes):
            setattr(tensor, key, value)
        else:
            getattr(tensor, key).extend(value)
    return tensor


def ints(name: str, values: list[int]) -> onnx.TensorProto:
    """An int64 initializer."""
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


# --- initializers whose data does not match their dims ---------------------------------------
# Large ones (over onnxprune.model.LIGHT_ELEMENTS): ONNX's checker sees small ones only.

BIG = (64, 80)
"""A weight of 5,120 elements."""


@case(LimitExceededError)
def no_data_huge() -> onnx.ModelProto:
    """``w1`` declares 2^40 x 8 floats (32 TiB) and holds none."""
    return mlp(bare("w1", TensorProto.FLOAT, [2**40, 8]))


@case()
def no_data_large() -> onnx.ModelProto:
    """``w1`` declares 64 x 80 floats and holds none."""
    return mlp(bare("w1", TensorProto.FLOAT, list(BIG)))


@case()
def raw_data_short() -> onnx.ModelProto:
    """``w1``'s raw data holds one float less than its 5,120."""
    w1 = weight("w1", BIG)
    w1.raw_data = w1.raw_data[:-4]
    return mlp(w1)


@case()
def raw_data_long() -> onnx.ModelProto:
    """``w1``'s raw data holds 33 floats for its 32."""
    w1 = weight("w1", (4, 8))
    w1.raw_data += b"\0\0\0\0"
    return mlp(w1)


@case()
def float_data_short() -> onnx.ModelProto:
    """``w1`` stores 5 values in ``float_data`` for its 5,120."""
    return mlp(bare("w1", TensorProto.FLOAT, list(BIG), float_data=[1.0] * 5))


@case()
def string_weight() -> onnx.ModelProto:
    """``w1`` is a tensor of strings."""
    return mlp(bare("w1", TensorProto.STRING, [4, 8], string_data=[b"a"] * 32))


def external_short(folder: Path) -> Path:
    """``w1`` is in ``w.bin``, whose bytes hold half the 64 x 80 floats its dims declare."""
    w1 = weight("w1", BIG)
    (folder / "w.bin").write_bytes(w1.raw_data[: len(w1.raw_data) // 2])
    w1.ClearField("raw_data")
    w1.data_location = TensorProto.EXTERNAL
    w1.external_data.add(key="location", value="w.bin")
    return save(mlp(w1), folder)


CASES["external_short"] = Case("external_short", external_short)


@case()
def input_negative_dim() -> onnx.ModelProto:
    """The CNN's input declares [1, 4, -6, 6]."""
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = -6
    return model


# --- Constant and ConstantOfShape --------------------------------------------------------------


@case()
def constant_without_value() -> onnx.ModelProto:
    """``w1`` comes from a ``Constant`` with no attribute."""
    nodes = [
        helper.make_node("Constant", [], ["w1"]),
        helper.make_node("MatMul", ["x", "w1"], ["y"]),
    ]
    return model_of(nodes, [], [1, 4], [1, "n"])


def _of_shape(shape: list[int]) -> onnx.ModelProto:
    """``w1`` is ``ConstantOfShape(shape, value=1.0)``."""
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["w1"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("MatMul", ["x", "w1"], ["y"]),
    ]
    return model_of(nodes, [ints("shape", shape)], [1, 4], [1, "n"])


@case()
def constant_of_shape_negative() -> onnx.ModelProto:
    """``ConstantOfShape([4, -8])``."""
    return _of_shape([4, -8])


@case(LimitExceededError)
def constant_of_shape_huge() -> onnx.ModelProto:
    """``ConstantOfShape([4, 2^40])``: 16 TiB of float32 from a model of 200 bytes."""
    return _of_shape([4, 2**40])


@case(LimitExceededError, options=("--max-bytes", "1000"))
def constant_of_shape_over_max_bytes() -> onnx.ModelProto:
    """``ConstantOfShape([4, 2^27])``, 2 GiB, from a model of 200 bytes under --max-bytes 1000."""
    return _of_shape([4, 2**27])


@case(LimitExceededError)
def sparse_constant_huge() -> onnx.ModelProto:
    """``w1`` is a ``Constant`` whose sparse value is one float in [2^40, 8] (32 TiB dense)."""
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor("i", TensorProto.INT64, [1], [0]),
        [2**40, 8],
    )
    nodes = [
        helper.make_node("Constant", [], ["w1"], sparse_value=sparse),
        helper.make_node("MatMul", ["x", "w1"], ["y"]),
    ]
    return model_of(nodes, [], [1, 2**40], [1, 8])


@case(LimitExceededError, commands=("exact",))
def exact_huge_input() -> onnx.ModelProto:
    """The CNN on a 10^6 x 10^6 input: terabytes of per-position maps at the exact level."""
    model = cnn()
    for axis in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = 10**6
    return model


def expand_huge() -> onnx.ModelProto:
    """A valid MLP whose hidden ``[1, 8]`` is expanded to ``[2^40, 1, 8]``, then summed back."""
    model = mlp()
    model.graph.node[0].output[0] = "small"
    model.graph.node.insert(1, helper.make_node("Expand", ["small", "big"], ["wide"]))
    model.graph.node.insert(2, helper.make_node("ReduceSum", ["wide", "axes"], ["h"], keepdims=0))
    model.graph.initializer.extend([ints("big", [2**40, 1, 8]), ints("axes", [0])])
    return model


# --- layout ops between a weight and its layer -------------------------------------------------


@case()
def reshape_two_minus_ones() -> onnx.ModelProto:
    """``Reshape(s[4,8], [-1, -1])``."""
    return behind("Reshape", [ints("t", [-1, -1])])


@case()
def reshape_wrong_size() -> onnx.ModelProto:
    """``Reshape(s[4,8], [4, 9])``: 36 elements from 32."""
    return behind("Reshape", [ints("t", [4, 9])])


@case()
def reshape_target_matrix() -> onnx.ModelProto:
    """``Reshape`` with a 2-D target."""
    return behind("Reshape", [numpy_helper.from_array(np.array([[4, 8]], np.int64), "t")])


@case()
def transpose_perm_repeated() -> onnx.ModelProto:
    """``Transpose(s, perm=[0, 0])``."""
    return behind("Transpose", [], perm=[0, 0])


@case()
def transpose_perm_out_of_range() -> onnx.ModelProto:
    """``Transpose(s, perm=[1, 5])``."""
    return behind("Transpose", [], perm=[1, 5])


@case()
def transpose_perm_short() -> onnx.ModelProto:
    """``Transpose(s[4,8], perm=[0])``."""
    return behind("Transpose", [], perm=[0])


@case()
def dequantize_axis_out_of_range() -> onnx.ModelProto:
    """``DequantizeLinear(s, scale[8], axis=5)``."""
    return behind("DequantizeLinear", [weight("scale", (8,), 2)], axis=5)


@case()
def dequantize_scale_length() -> onnx.ModelProto:
    """``DequantizeLinear(s[4,8], scale[5], axis=1)``: 5 scales for 8 columns."""
    return behind("DequantizeLinear", [weight("scale", (5,), 2)], axis=1)


# --- Conv --------------------------------------------------------------------------------------


@case()
def conv_group_zero() -> onnx.ModelProto:
    """``Conv(group=0)``."""
    return cnn({"group": 0})


@case()
def conv_group_not_dividing() -> onnx.ModelProto:
    """``Conv(group=3)`` over 4 input channels and 6 filters."""
    return cnn({"group": 3})


@case()
def conv_weight_rank_one() -> onnx.ModelProto:
    """A Conv weight of rank 1."""
    return cnn(w=weight("w", (6,)))


@case()
def conv_weight_no_filters() -> onnx.ModelProto:
    """A Conv weight of shape [0, 4, 3, 3]."""
    return cnn(w=numpy_helper.from_array(np.zeros((0, 4, 3, 3), np.float32), "w"))


@case()
def conv_weight_no_channels() -> onnx.ModelProto:
    """A Conv weight of shape [6, 0, 3, 3]."""
    return cnn(w=numpy_helper.from_array(np.zeros((6, 0, 3, 3), np.float32), "w"))


@case()
def conv_channels_mismatch() -> onnx.ModelProto:
    """A Conv weight for 3 input channels on a 4-channel input."""
    return cnn(w=weight("w", (6, 3, 3, 3)))


@case()
def conv_strides_zero() -> onnx.ModelProto:
    """``Conv(strides=[0, 0])``."""
    return cnn({"strides": [0, 0]})


@case()
def conv_pads_negative() -> onnx.ModelProto:
    """``Conv(pads=[-1, 0, 0, 0])``."""
    return cnn({"pads": [-1, 0, 0, 0]})


@case()
def conv_kernel_shape_mismatch() -> onnx.ModelProto:
    """``Conv(kernel_shape=[2, 2])`` with a 3x3 weight."""
    return cnn({"kernel_shape": [2, 2]})


@case()
def matmul_mismatch() -> onnx.ModelProto:
    """``x[1,5] @ w1[4,8]``."""
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5
    return model


@case(commands=("analyze", "exact", "prune"), options=("--input-shape", "x=1,3,6,6"))
def exact_input_shape_mismatch() -> onnx.ModelProto:
    """The CNN with a symbolic height, given 3 channels by ``--input-shape`` for its 4."""
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    return model


@case(ShapeError, commands=("exact",))
def exact_empty_input() -> onnx.ModelProto:
    """The CNN's input declares a height of 0, so its first Conv's output has none."""
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 0
    return model


# --- what ONNX Runtime refuses (validate, sweep) ----------------------------------------------


def custom_domain() -> onnx.ModelProto:
    """The MLP with a ``com.example::Swish`` between its layers."""
    model = mlp()
    model.graph.node[1].op_type = "Swish"
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def float16_mismatch() -> onnx.ModelProto:
    """The MLP with ``w1`` in float16 and its input in float32."""
    model = mlp()
    w1 = model.graph.initializer[0]
    half = numpy_helper.to_array(w1).astype(np.float16)
    w1.CopyFrom(numpy_helper.from_array(half, "w1"))
    return model


def reshape_fails_on_the_data() -> onnx.ModelProto:
    """The MLP reshaping its ``[N, 3]`` output to ``[-1, 2]``: a batch of 3 cannot be."""
    model = mlp()
    model.graph.node[2].output[0] = "z"
    model.graph.node.append(helper.make_node("Reshape", ["z", "two"], ["y"]))
    model.graph.initializer.append(ints("two", [-1, 2]))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 2
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "M"
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


RUNTIME_CASES: dict[str, tuple[Callable[[], onnx.ModelProto], type[OnnxpruneError]]] = {
    "custom_domain": (custom_domain, InvalidModelError),
    "float16_mismatch": (float16_mismatch, InvalidModelError),
    "reshape_fails_on_the_data": (reshape_fails_on_the_data, DatasetError),
}
"""Models onnxprune reads but ONNX Runtime refuses (or fails to run) in ``validate``/``sweep``."""
