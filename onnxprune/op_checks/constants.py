"""Checks of the nodes that make constants: Constant, ConstantOfShape, Cast."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from onnxprune.errors import LimitExceededError
from onnxprune.op_checks._base import (
    MAX_RANK,
    NodeCheck,
    op_check,
)

_VALUE_ATTRS = frozenset(
    {"value", "sparse_value", "value_float", "value_floats", "value_int", "value_ints"}
    | {"value_string", "value_strings"}
)


@op_check("Constant")
def constant(c: NodeCheck) -> None:
    """Exactly one value attribute; a sparse value's dense form within the limit."""
    names = [a.name for a in c.node.attribute if a.name in _VALUE_ATTRS]
    if len(names) != 1:
        raise c.fail(f"needs exactly one value attribute, has {len(names)} ({names})")
    sparse = c.attr("sparse_value")
    if sparse is not None:
        _sparse(c, sparse)


def _sparse(c: NodeCheck, sparse: onnx.SparseTensorProto) -> None:
    dims = [int(d) for d in sparse.dims]
    if any(d < 0 for d in dims):
        raise c.fail(f"sparse value has a negative dimension: {dims}")
    _within_limit(c, dims, sparse.values.data_type)
    indices = onnx.numpy_helper.to_array(sparse.indices)
    count = math.prod(int(d) for d in sparse.values.dims)
    flat = indices.ndim == 1 and indices.shape == (count,)
    if not flat and indices.shape != (count, len(dims)):
        raise c.fail(f"sparse indices of shape {indices.shape} for {count} values in {dims}")
    bound = np.asarray([math.prod(dims)] if flat else dims, np.int64)
    if indices.size and ((indices < 0).any() or (indices >= bound).any()):
        raise c.fail(f"sparse indices outside the dense shape {dims}")


def _within_limit(c: NodeCheck, dims: list[int], data_type: int) -> None:
    size = math.prod(dims) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    if size > c.limit:
        raise LimitExceededError(
            f"{c.node.op_type} node {c.name!r} makes a tensor of {dims} ({size} bytes), "
            f"over the limit of {c.limit} bytes"
        )


@op_check("ConstantOfShape")
def constant_of_shape(c: NodeCheck) -> None:
    """A 1-D shape of non-negative dims; one fill value; the result within the limit."""
    fill = c.attr("value")
    if fill is not None and math.prod(fill.dims) != 1:
        raise c.fail(f"value must hold one element, has dims {list(fill.dims)}")
    data_type = TensorProto.FLOAT if fill is None else fill.data_type
    if data_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        raise c.fail(f"value of type {TensorProto.DataType.Name(data_type)} cannot fill a tensor")
    shape = c.const_shape(0)
    if shape is None:
        return  # computed at run time: onnxprune never materializes it
    if len(shape) != 1 or shape[0] > MAX_RANK:
        raise c.fail(f"its shape input must be 1-D with at most {MAX_RANK} dims, is {shape}")
    dims = [int(d) for d in c.ints(0)]
    if any(d < 0 for d in dims):
        raise c.fail(f"shape {dims} has a negative dimension")
    _within_limit(c, dims, data_type)


@op_check("Cast")
def cast(c: NodeCheck) -> None:
    """``to`` names an ONNX data type."""
    to = c.attr("to", TensorProto.UNDEFINED)
    if to == TensorProto.UNDEFINED or to not in TensorProto.DataType.values():
        raise c.fail(f"to={to} is not an ONNX data type")
