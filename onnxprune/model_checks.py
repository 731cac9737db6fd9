"""Structural checks at load: what ONNX's checker leaves for later, refused before any work.

The checker sees a light copy (large initializers become typed inputs), and does not compare
a tensor's data with its dims when there is too much of it, nor look at attribute values. Left
alone, such models reach NumPy deep inside the analysis and fail there as bugs (exit 1) or
allocate what their dims declare. ``check_structure`` runs on every model ``load_model`` and
``load_model_lazy`` return:

- every tensor (initializers, node attributes, subgraphs): dims non-negative, stored data as
  long as its dims and type say (external data is checked where its span is read,
  ``onnxprune.model.external_span``), no more bytes declared than ``tensor_limit`` allows;
- declared value shapes (inputs, outputs, value_info): dims non-negative, except -1, which
  some exporters (Paddle2ONNX) write for a size they leave open and ONNX Runtime reads as
  unknown: ``open_sizes`` clears it first, so the model reads as having an unknown size there;
- the nodes whose inputs and attributes onnxprune reads (``onnxprune.op_checks``).

A failure is one line naming the tensor or node: ``InvalidModelError``, or
``LimitExceededError`` for a tensor over the limit.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Iterator, Sequence

import onnx
from onnx import TensorProto

from onnxprune.bodies import subgraphs
from onnxprune.errors import InvalidModelError, LimitExceededError
from onnxprune.op_checks import check_nodes
from onnxprune.sizes import physical_memory

_PACKED_BITS = {
    getattr(TensorProto, name): bits
    for name, bits in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
    if hasattr(TensorProto, name)
}
"""Types stored several elements to a byte (in ``raw_data`` and in ``int32_data`` entries)."""

_FIELD_ELEMENTS = {"float_data": 1, "double_data": 1, "int64_data": 1, "uint64_data": 1}
_COMPLEX = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}


OPEN_SIZE = -1
"""The declared size some exporters write for a dimension they leave open (``open_sizes``)."""


def declared_shapes(graph: onnx.GraphProto) -> Iterator[onnx.TensorShapeProto]:
    """The declared shapes of ``graph``'s inputs, outputs and value_info."""
    for info in (*graph.input, *graph.output, *graph.value_info):
        yield info.type.tensor_type.shape


def has_open_sizes(model: onnx.ModelProto) -> bool:
    """Whether a declared shape of ``model``'s graph has a size of -1 (``OPEN_SIZE``)."""
    return any(
        d.HasField("dim_value") and d.dim_value == OPEN_SIZE
        for shape in declared_shapes(model.graph)
        for d in shape.dim
    )


def open_sizes(model: onnx.ModelProto) -> None:
    """Make every declared size of -1 unknown (no value, no name), in place.

    Paddle2ONNX declares its dynamic sizes as -1 (RapidOCR's text direction classifier:
    ``[-1, 3, ?, ?]``); ONNX Runtime runs such a model with any size there, so onnxprune reads
    it as an unnamed symbolic dimension (``--input-shape`` fixes it) rather than refusing it.
    """
    for shape in declared_shapes(model.graph):
        for d in shape.dim:
            if d.HasField("dim_value") and d.dim_value == OPEN_SIZE:
                d.Clear()


def check_structure(
    model: onnx.ModelProto, limit: int, raw_sizes: Sequence[int | None] = ()
) -> None:
    """Refuse a model whose tensors, shapes or read nodes are malformed (see the module doc).

    Args:
        model: the model, external data loaded or left in its files.
        limit: largest tensor in bytes the model may declare or compute (``tensor_limit``).
        raw_sizes: the ``raw_data`` length of each graph initializer as the serialized model
            gives it (``raw_data_sizes``), ``None`` where unknown; reading the length from the
            message instead copies the data out of it (as long as converting it to an array).

    Raises:
        InvalidModelError: the first malformed tensor, shape or node, named.
        LimitExceededError: a tensor over ``limit`` bytes.
    """
    for index, tensor in enumerate(all_tensors(model.graph)):  # initializers first
        check_tensor(tensor, limit, raw_sizes[index] if index < len(raw_sizes) else None)
    graph = model.graph
    for info in (*graph.input, *graph.output, *graph.value_info):
        dims = info.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value < 0 for d in dims):
            shown = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
            raise InvalidModelError(f"value {info.name!r} declares a negative dimension: {shown}")
    check_nodes(graph, limit)


def tensor_limit(max_bytes: int) -> int:
    """Largest tensor in bytes a model accepted under ``max_bytes`` may declare or compute.

    ``max_bytes`` (no tensor larger than the model may be), and at most ``memory_limit()``, so
    a 200-byte model cannot ask for gigabytes.
    """
    return min(max_bytes, memory_limit())


def memory_limit() -> int:
    """Half of the memory this process may use: physical memory, or its address-space limit."""
    physical = physical_memory()
    halves = [] if physical is None else [physical // 2]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        halves.append(soft // 2)
    return min(halves, default=2**62)


def all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
        for sub in subgraphs(node):
            yield from all_tensors(sub)


def check_tensor(tensor: onnx.TensorProto, limit: int, raw_size: int | None = None) -> None:
    """Dims non-negative, declared size within ``limit``, stored data matching the dims.

    ``raw_size`` is the length of the tensor's ``raw_data`` when already known.

    Raises:
        InvalidModelError: a negative dim, an unknown type, or data of the wrong length.
        LimitExceededError: the dims declare more than ``limit`` bytes.
    """
    dims = [int(d) for d in tensor.dims]
    where = f"tensor {tensor.name!r}"
    if any(d < 0 for d in dims):
        raise InvalidModelError(f"{where} has a negative dimension: {dims}")
    count = math.prod(dims)
    bits = element_bits(tensor.data_type)
    if bits is None:
        raise InvalidModelError(f"{where} has data type {tensor.data_type}, which ONNX lacks")
    if tensor.data_location == TensorProto.EXTERNAL or tensor.data_type == TensorProto.STRING:
        return  # spans are checked where they are read; strings have no fixed size
    declared = -(-count * bits // 8)
    if declared > limit:  # before comparing: the data may be absent
        raise LimitExceededError(
            f"{where} declares {dims} ({declared} bytes), over the limit of {limit} bytes"
        )
    stored, needed, unit = _stored(tensor, count, bits, raw_size)
    if stored != needed:
        raise InvalidModelError(
            f"{where} stores {stored} {unit} but its dims {dims} of "
            f"{TensorProto.DataType.Name(tensor.data_type)} need {needed}"
        )


def element_bits(data_type: int) -> int | None:
    """Bits one element of ``data_type`` takes in raw data; ``None`` for an unknown type."""
    if data_type in _PACKED_BITS:
        return _PACKED_BITS[data_type]
    if data_type == TensorProto.STRING:
        return 0
    try:
        return 8 * onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _stored(
    tensor: onnx.TensorProto, count: int, bits: int, raw_size: int | None
) -> tuple[int, int, str]:
    """``(stored, needed, unit)``: what the tensor holds and what its dims need."""
    if tensor.HasField("raw_data"):
        stored = len(tensor.raw_data) if raw_size is None else raw_size
        return stored, -(-count * bits // 8), "bytes of raw data"
    field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
    per_element = 2 if tensor.data_type in _COMPLEX else _FIELD_ELEMENTS.get(field, 1)
    needed = count * per_element
    if tensor.data_type in _PACKED_BITS:
        needed = -(-count * bits // 8)
    return len(getattr(tensor, field)), needed, f"values in {field}"


_GRAPH, _INITIALIZER, _RAW_DATA = 7, 5, 9
"""Field numbers: ``ModelProto.graph``, ``GraphProto.initializer``, ``TensorProto.raw_data``."""


def raw_data_sizes(data: bytes | memoryview) -> tuple[int | None, ...]:
    """The ``raw_data`` length of each graph initializer, read from a serialized ``ModelProto``.

    Walks the protobuf wire format over tags and lengths only, never touching the data, so it
    costs a few microseconds per field where asking the parsed message copies the bytes out.
    Aligned with ``model.graph.initializer`` (``None``: no raw data); ``()`` when the bytes hold
    anything the walk does not follow (groups), so callers fall back to the message.
    """
    view = memoryview(data)
    try:
        sizes = []
        for graph in _fields(view, _GRAPH):
            for tensor in _fields(graph, _INITIALIZER):
                raw = [len(v) for v in _fields(tensor, _RAW_DATA)]
                sizes.append(raw[-1] if raw else None)  # the last occurrence wins
    except ValueError:
        return ()
    return tuple(sizes)


def _fields(view: memoryview, number: int) -> Iterator[memoryview]:
    """The payloads of the length-delimited fields ``number`` of one message's bytes."""
    pos, end = 0, len(view)
    while pos < end:
        tag = view[pos]
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(view, pos)  # tags: mostly one byte
        kind = tag & 7
        if kind == 0:  # skipped: its last byte is the first below 0x80
            while pos < end and view[pos] >= 0x80:
                pos += 1
            pos += 1
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            length, pos = _varint(view, pos)
            if tag >> 3 == number:
                yield view[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"wire type {kind}")
    if pos != end:
        raise ValueError("field past the end")


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(view) or shift > 63:
            raise ValueError("bad varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
