"""Models with external data, tensor by tensor: lazy loading and streaming saves.

``load_model_lazy`` parses the graph and leaves large initializers in their files;
``ExternalWeights`` reads one tensor (or one chunk of it) at a time with ``np.fromfile`` at its
offset, after the same confinement checks as ``load_model`` (the file stays inside the model's
directory, exists and is long enough). ``save_model_streaming`` writes a copy of such a model whose
tensors are copied or rewritten chunk by chunk into a new external data file, so neither side ever
holds more than one chunk of a tensor. Peak memory then follows the largest tensor a caller chooses
to materialize, not the model size.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from onnxprune.bodies import subgraphs
from onnxprune.model import (
    DEFAULT_MAX_BYTES,
    LIGHT_ELEMENTS,
    check_model,
    commit_model,
    external_span,
    parse_checked,
    parse_sized,
)
from onnxprune.model_checks import check_structure, open_sizes, tensor_limit

CHUNK_ELEMENTS = 1 << 20
"""Elements per read when a tensor is streamed in chunks (4 MiB of float32)."""
ALIGNMENT = 4096
"""Tensors in a streamed data file start at multiples of this many bytes (page-aligned mmaps)."""
_COPY_BYTES = 1 << 24


@dataclass(frozen=True)
class ExternalWeights:
    """Reads external tensors of one model on demand, confined to the model's directory.

    Attributes:
        base_dir: the model's directory; every location is resolved and checked against it.
    """

    base_dir: Path

    def read(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The whole tensor, in its stored shape and dtype."""
        dims = tuple(int(d) for d in tensor.dims)
        (whole,) = self.chunks(tensor, max(math.prod(dims), 1))  # one chunk: no second copy
        return whole.reshape(dims)

    def chunks(
        self, tensor: onnx.TensorProto, elements: int = CHUNK_ELEMENTS
    ) -> Iterator[np.ndarray]:
        """The tensor flattened in C order, ``elements`` at a time (fresh, writable arrays).

        Raises:
            InvalidModelError: the location escapes the model's directory or is truncated.
        """
        path, offset, length = external_span(tensor, self.base_dir)
        dtype = tensor_dtype(tensor)
        count = math.prod(int(d) for d in tensor.dims)
        if dtype is None or count * dtype.itemsize != length:  # packed or odd types: onnx reads
            yield self._read_with_onnx(tensor).reshape(-1)
            return
        if count == 0:
            yield np.zeros(0, dtype)
            return
        with path.open("rb") as f:
            f.seek(offset)
            done = 0
            while done < count:
                n = min(elements, count - done)
                chunk = np.fromfile(f, dtype=dtype, count=n)
                if chunk.size != n:  # the file shrank since it was checked
                    raise OSError(f"external data of {tensor.name!r} ended early")
                done += n
                yield chunk

    def copy_to(self, tensor: onnx.TensorProto, out: BinaryIO) -> None:
        """Copy the tensor's bytes unchanged into ``out``, a block at a time."""
        path, offset, length = external_span(tensor, self.base_dir)
        with path.open("rb") as f:
            f.seek(offset)
            left = length
            while left:
                block = f.read(min(_COPY_BYTES, left))
                if not block:
                    raise OSError(f"external data of {tensor.name!r} ended early")
                out.write(block)
                left -= len(block)

    def _read_with_onnx(self, tensor: onnx.TensorProto) -> np.ndarray:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        external_data_helper.load_external_data_for_tensor(copy, os.fspath(self.base_dir))
        copy.data_location = onnx.TensorProto.DEFAULT
        del copy.external_data[:]
        return numpy_helper.to_array(copy)


@dataclass(frozen=True)
class LazyModel:
    """A model whose large initializers still live in external files.

    Attributes:
        model: the graph; its large initializers point at their files and hold no data.
        weights: reads those initializers on demand.
    """

    model: onnx.ModelProto
    weights: ExternalWeights

    @property
    def lazy(self) -> tuple[onnx.TensorProto, ...]:
        """The initializers whose data is still in external files, in graph order."""
        return tuple(t for t in self.model.graph.initializer if is_external(t))


def load_model_lazy(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LazyModel:
    """Load ``path`` without reading its large external initializers.

    Every check of ``load_model`` runs (size limit counting external bytes, confinement of
    every location, ONNX's checker, ``onnxprune.model_checks``). Small external tensors
    (shapes, axes: at most ``LIGHT_ELEMENTS`` elements) and tensors inside nodes
    (``Constant`` values, subgraphs) are read in; large top-level initializers stay in their
    files.

    Args:
        path: the ``.onnx`` file.
        max_bytes: largest accepted size of the model file plus its external data.

    Raises:
        InvalidModelError: missing file, truncated or non-ONNX bytes, unsafe external data.
        LimitExceededError: the model is larger than ``max_bytes``.
    """
    model, external, base, sizes = parse_sized(Path(path), max_bytes=max_bytes)
    base = Path(path).parent if base is None else base
    if external:
        graph = model.graph
        small = (t for t in graph.initializer if math.prod(t.dims) <= LIGHT_ELEMENTS)
        inside = (t for node in graph.node for t in _node_tensors(node))
        for tensor in (*small, *inside):
            if is_external(tensor):
                external_data_helper.load_external_data_for_tensor(tensor, os.fspath(base))
                tensor.data_location = onnx.TensorProto.DEFAULT
                del tensor.external_data[:]
    check_model(model)
    open_sizes(model)
    check_structure(model, tensor_limit(max_bytes), sizes)
    return LazyModel(model, ExternalWeights(base))


def has_external_data(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """Whether the model at ``path`` keeps any tensor in external files (parses the graph only).

    Raises:
        InvalidModelError: the model cannot be read safely.
    """
    return bool(parse_checked(Path(path), max_bytes=max_bytes)[1])


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    """Tensors held by a node's attributes, subgraphs included."""
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
    for sub in subgraphs(node):
        yield from sub.initializer
        for inner in sub.node:
            yield from _node_tensors(inner)


def is_external(tensor: onnx.TensorProto) -> bool:
    """Whether the tensor's data is in an external file."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL


Chunks = Callable[[], Iterable[np.ndarray]]
"""Produces a tensor's new values, flattened in C order, one chunk at a time."""


def save_model_streaming(
    model: onnx.ModelProto,
    weights: ExternalWeights,
    path: str | os.PathLike,
    replace: Mapping[str, Chunks] | None = None,
    *,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write ``model`` with every external initializer in one new data file, chunk by chunk.

    Initializers named in ``replace`` get the values their producer yields (same dtype and
    number of elements); the other external ones are copied byte for byte from their files.
    Inline tensors stay inline. Written atomically like ``save_model``: ``<name>.<hex>.data``
    first, the graph renamed into place last.

    Args:
        model: the graph (for example ``LazyModel.model``, or a copy with edited inline
            tensors); it is not modified.
        weights: reads the external initializers of ``model``.
        path: destination ``.onnx`` path.
        replace: new values of external initializers, keyed by name.
        before_rename: commits the files that go with the model, just before its rename
            (see ``commit_model``).

    Raises:
        ValueError: a producer yields the wrong number of elements (a bug in the caller).
    """
    replace = dict(replace or {})

    def write(tmp: Path, data_file: Path | None) -> None:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        with data_file.open("wb") as out:
            for tensor in copy.graph.initializer:
                if not is_external(tensor):
                    continue
                out.write(b"\0" * (-out.tell() % ALIGNMENT))
                offset = out.tell()
                if tensor.name in replace:
                    _write_chunks(tensor, replace.pop(tensor.name)(), out)
                else:
                    weights.copy_to(tensor, out)
                _point_at(tensor, data_file.name, offset, out.tell() - offset)
        if replace:
            raise ValueError(f"no external initializer named {sorted(replace)[0]!r}")
        tmp.write_bytes(copy.SerializeToString())

    commit_model(Path(path), write, external=True, before_rename=before_rename)


def _write_chunks(tensor: onnx.TensorProto, chunks: Iterable[np.ndarray], out: BinaryIO) -> None:
    dtype = tensor_dtype(tensor)
    expected = math.prod(int(d) for d in tensor.dims)
    written = 0
    for chunk in chunks:
        flat = np.ascontiguousarray(chunk, dtype=dtype).reshape(-1)
        out.write(memoryview(flat).cast("B"))
        written += flat.size
    if written != expected:
        raise ValueError(f"{tensor.name!r}: wrote {written} elements, the tensor has {expected}")


def _point_at(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def tensor_dtype(tensor: onnx.TensorProto) -> np.dtype | None:
    """The little-endian numpy dtype of the tensor's raw bytes, or ``None`` when not plain."""
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind not in "biufc" and dtype.itemsize not in (1, 2):  # not a plain number
        return None
    return dtype if sys.byteorder == "little" else dtype.newbyteorder("<")
