"""Masks: from scores and per-layer counts, applied to a model, saved as ``.npz``.

A mask is a boolean array shaped like the stored weight tensor (``True`` = keep), keyed by that
tensor's name, as ``torch.nn.utils.prune`` keeps ``weight_mask`` beside ``weight``. Masks compose:
a weight that is zero, or masked already, stays pruned.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import zipfile
import zlib
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import helper, numpy_helper

from onnxprune.errors import InvalidModelError, InvalidOptionError
from onnxprune.model import check_writable, remove_stale_temporaries, temporary, writing
from onnxprune.pruners._cut import common_dtype, find_cut, keep_above
from onnxprune.weights import WeightSource, resolver_at, subgraph_at


def masks_from_counts(
    scores: Mapping[str, np.ndarray], counts: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """Per layer, remove the ``counts[name]`` lowest-scored weights (ties: lower index first).

    Scores of weights that are already pruned must be ``-inf`` so they go first; a layer never
    gets back a weight it had lost. Linear time: a selection (``_cut.find_cut``) finds each
    layer's threshold.
    """
    return {name: _keep_top(s, int(counts.get(name, 0))) for name, s in scores.items()}


def _keep_top(scores: np.ndarray, k: int) -> np.ndarray:
    flat = np.asarray(scores)
    flat = flat.astype(common_dtype([flat]), copy=False).reshape(-1)
    if k <= 0:
        return (flat != -np.inf).reshape(scores.shape)  # already pruned: never comes back
    cut = find_cut([flat], k)
    keep = keep_above(flat, cut.value, k - int(cut.below[0]), int(cut.equal[0]))
    return keep.reshape(scores.shape)


def kept_values(values: np.ndarray, keep: np.ndarray, fill: float = 0) -> np.ndarray:
    """``values`` where ``keep`` is true, ``fill`` elsewhere (``values`` itself if all kept).

    Of ``values``' dtype (a float one for a float ``fill``). A copy and one masked store rather
    than ``np.where``, which takes twice as long on a large weight.
    """
    keep = np.asarray(keep, bool)
    if keep.all():
        return values
    out = np.array(values, dtype=np.result_type(values, fill), copy=True)
    np.putmask(out, ~keep, fill)
    return out


def share(count: int, present: np.ndarray) -> np.ndarray:
    """``count`` shared among parts in proportion to the entries ``present`` in each.

    Cumulative rounding: the shares add up to ``count`` exactly and none exceeds its part's
    ``present`` (``count`` is clipped to ``[0, present.sum()]``).

    Example:
        >>> share(5, np.array([4, 4, 2])).tolist()
        [2, 2, 1]
    """
    present = np.asarray(present, dtype=np.int64)
    total = int(present.sum())
    count = min(max(int(count), 0), total)
    cumulative = np.floor(count * np.cumsum(present) / max(total, 1) + 0.5).astype(np.int64)
    return np.diff(cumulative, prepend=0)


def apply_masks(
    model: onnx.ModelProto, masks: Mapping[str, np.ndarray], sources: Mapping[str, WeightSource]
) -> onnx.ModelProto:
    """A copy of ``model`` whose masked weights are zero; names, dtypes, IR and opsets are kept.

    Args:
        model: the model (not modified).
        masks: stored-layout masks keyed by stored tensor name.
        sources: where each masked tensor is stored (initializer, Constant, ConstantOfShape).

    Raises:
        InvalidOptionError: a mask names no prunable weight or has the wrong shape.
    """
    return _rewrite(model, masks, sources, "mask", _masked)


def set_weights(
    model: onnx.ModelProto, values: Mapping[str, np.ndarray], sources: Mapping[str, WeightSource]
) -> onnx.ModelProto:
    """A copy of ``model`` whose weights named in ``values`` hold those values instead.

    For pruners that re-fit the weights they keep (SparseGPT). Each value is cast to its stored
    tensor's dtype; names, IR and opsets are kept, and nothing else of the model changes.

    Args:
        model: the model (not modified).
        values: stored-layout arrays keyed by stored tensor name.
        sources: where each tensor is stored (initializer, Constant, ConstantOfShape).

    Raises:
        InvalidOptionError: a value names no prunable weight or has the wrong shape.
    """
    return _rewrite(model, values, sources, "weight", _replaced)


def _masked(
    current: Callable[[], np.ndarray], dtype: np.dtype, mask: np.ndarray
) -> np.ndarray | None:
    """The weight with the entries ``mask`` drops zeroed; ``None`` when it drops nothing."""
    mask = np.asarray(mask, bool)
    return None if mask.all() else kept_values(current(), mask)


def _replaced(current: Callable[[], np.ndarray], dtype: np.dtype, new: np.ndarray) -> np.ndarray:
    return np.asarray(new).astype(dtype, copy=False)


def _rewrite(
    model: onnx.ModelProto,
    changes: Mapping[str, np.ndarray],
    sources: Mapping[str, WeightSource],
    what: str,
    new_value: Callable[[Callable[[], np.ndarray], np.dtype, np.ndarray], np.ndarray | None],
) -> onnx.ModelProto:
    """A copy of ``model`` with each named stored tensor set to ``new_value``.

    ``new_value(current, dtype, change)`` gets the tensor's value on demand (``current()``): an
    initializer's shape and dtype are read from its header, so a tensor that is replaced whole
    is never converted. A ``None`` new value leaves the tensor bit-identical. The main graph's
    replaced initializers are not copied before being overwritten: on a pruned model they are
    most of its bytes.
    """
    originals = {(): _Store.of(model.graph)}
    values: dict[tuple[tuple[int, str], ...], dict[str, np.ndarray]] = {}
    for key, change in changes.items():
        source = sources.get(key)
        if source is None:
            raise InvalidOptionError(f"{what} {key!r} names no prunable weight of the model")
        if source.path not in originals:  # a body's weight is written in the body
            originals[source.path] = _Store.of(subgraph_at(model.graph, source.path))
        if source.kind == "initializer":
            tensor = originals[source.path].initializers[source.name]
            shape = tuple(tensor.dims)
            dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
            current = functools.partial(numpy_helper.to_array, tensor)
        else:
            value = resolver_at(model.graph, source.path).value(source.name)
            shape, dtype, current = value.shape, value.dtype, functools.partial(np.asarray, value)
        if shape != np.shape(change):
            raise InvalidOptionError(
                f"{what} {key!r} has shape {np.shape(change)}, the weight has {shape}"
            )
        replaced = new_value(current, dtype, change)
        if replaced is not None:
            values.setdefault(source.path, {})[source.name] = replaced
    pruned = _copied(model, values.get((), {}))
    for path, replaced in values.items():
        store = _Store.of(subgraph_at(pruned.graph, path))
        for name, value in replaced.items():
            if name in store.initializers:
                if path:  # the main graph's were written by _copied
                    _overwrite(store.initializers[name], value)
                continue
            node = store.producers[name]
            node.op_type = "Constant"
            del node.input[:]
            del node.attribute[:]
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(value, name))
            )
    return pruned


def _copied(model: onnx.ModelProto, initializers: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose main-graph initializers in ``initializers`` hold those values.

    Their old data is never copied.
    """
    pruned = onnx.ModelProto()
    _copy_fields(model, pruned, skip={"graph"})
    _copy_fields(model.graph, pruned.graph, skip={"initializer"})
    for tensor in model.graph.initializer:
        if tensor.name not in initializers:
            pruned.graph.initializer.append(tensor)
            continue
        header = pruned.graph.initializer.add()
        _copy_fields(tensor, header, skip={"raw_data", "string_data", *_TYPED_FIELDS})
        _overwrite(header, initializers[tensor.name])
    return pruned


def _copy_fields(source: Message, target: Message, skip: Container[str]) -> None:
    """Copy the fields set in ``source`` into ``target``, but for those named in ``skip``.

    By descriptor, not ``ListFields``, which would read a skipped ``raw_data`` (a copy of it).
    """
    for field in source.DESCRIPTOR.fields:
        name = field.name
        if name in skip:
            continue
        if field.is_repeated:
            values = getattr(source, name)
            if values:
                getattr(target, name).extend(values)
        elif source.HasField(name):
            if field.message_type is not None:
                getattr(target, name).CopyFrom(getattr(source, name))
            else:
                setattr(target, name, getattr(source, name))


_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")


def _overwrite(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    """Set an initializer's data to ``value`` (of its dtype and shape), in place.

    Plain numbers go in as raw little-endian bytes written once (``numpy_helper.from_array``
    builds a second tensor that is then copied over: two more copies of the weight); other
    dtypes, byte orders and external data go through it.
    """
    if (
        value.dtype.kind in "biuf"
        and value.dtype == helper.tensor_dtype_to_np_dtype(tensor.data_type)  # not 4-bit
        and value.dtype.isnative
        and sys.byteorder == "little"
        and tensor.data_location != onnx.TensorProto.EXTERNAL
    ):
        for field in _TYPED_FIELDS:
            tensor.ClearField(field)
        tensor.raw_data = np.ascontiguousarray(value).tobytes()
    else:
        tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))


@dataclass(frozen=True, slots=True)
class _Store:
    """The initializers and node outputs of one graph (the main graph or a body), by name."""

    initializers: dict[str, onnx.TensorProto]
    producers: dict[str, onnx.NodeProto]

    @staticmethod
    def of(graph: onnx.GraphProto) -> _Store:
        return _Store(
            {t.name: t for t in graph.initializer},
            {out: node for node in graph.node for out in node.output},
        )


def save_masks(masks: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write masks to an ``.npz`` (arrays keyed by weight name, dtype bool), atomically."""
    with MaskWriter(path) as writer:
        writer.add_all(masks)


class MaskWriter:
    """Writes masks into an ``.npz`` one chunk at a time, renamed into place on success.

    The archive is what ``np.savez_compressed`` writes (one ``<name>.npy`` member per mask), so
    ``load_masks`` and ``np.load`` read it; a mask never has to be whole in memory.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
        >>> with MaskWriter(path) as w:
        ...     w.add("w", (2, 3), [np.array([True, False, True]), np.array([False, True, True])])
        >>> load_masks(path)["w"].sum()
        np.int64(4)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._path = Path(path)
        check_writable(self._path)
        remove_stale_temporaries(self._path)
        self._tmp = temporary(self._path, ".tmp.npz")
        self._committed = False
        with writing(self._path, self._tmp):
            self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True)

    def add_all(self, masks: Mapping[str, np.ndarray]) -> None:
        """Add every mask of ``masks`` (stored as bool)."""
        for name, mask in masks.items():
            mask = np.asarray(mask, bool)
            self.add(name, mask.shape, [mask])

    def add(self, name: str, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> None:
        """Add mask ``name`` of ``shape`` from its C-order chunks (they must fill the shape)."""
        with self.member(name, shape) as write:
            for chunk in chunks:
                write(chunk)

    @contextmanager
    def member(self, name: str, shape: tuple[int, ...]) -> Iterator[Callable[[np.ndarray], None]]:
        """Open mask ``name``; the function it yields appends the next C-order chunk.

        Raises:
            InvalidModelError: ``name`` is too long for an ``.npz`` (``check_mask_names``).
            ValueError: the chunks written hold a different number of elements than ``shape``.
        """
        check_mask_names([name])
        header = {"descr": "|b1", "fortran_order": False, "shape": tuple(int(d) for d in shape)}
        written = 0
        with (
            writing(self._path, self._tmp),
            self._zip.open(f"{name}.npy", "w", force_zip64=True) as member,
        ):
            np.lib.format.write_array_header_1_0(member, header)

            def write(chunk: np.ndarray) -> None:
                nonlocal written
                flat = np.ascontiguousarray(chunk, dtype=bool).reshape(-1)
                member.write(flat.view(np.uint8).data)
                written += flat.size

            yield write
        if written != math.prod(header["shape"]):
            raise ValueError(f"mask {name!r}: {written} values for shape {header['shape']}")

    def __enter__(self) -> MaskWriter:
        return self

    def commit(self) -> None:
        """Finish the archive and rename it into place (once; leaving the block does it too).

        ``save_model(..., before_rename=writer.commit)`` puts the masks in place just before
        the model they belong to.
        """
        if self._committed:
            return
        with writing(self._path, self._tmp):
            self._zip.close()
            os.replace(self._tmp, self._path)
        self._committed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:  # the error that stopped the writing is the one to report
                with suppress(OSError, ValueError):
                    self._zip.close()
        finally:
            self._tmp.unlink(missing_ok=True)


MAX_NAME_BYTES = 0xFFFF - len(".npy")
"""The longest weight name (UTF-8 bytes) an ``.npz`` member ``<name>.npy`` can hold."""


def check_mask_names(names: Iterable[str]) -> None:
    """Refuse weight names that masks cannot be saved under, before anything is written.

    A zip member's name has a 16-bit length; a longer one makes the archive unwritable.

    Raises:
        InvalidModelError: ``weight name 'wwww...' is 70,000 bytes; masks (.npz) hold names of
            at most 65,531 bytes``.
    """
    for name in names:
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            raise InvalidModelError(
                f"weight name {name[:24]!r}... is {size:,} bytes; masks (.npz) hold names of "
                f"at most {MAX_NAME_BYTES:,} bytes: rename the weight"
            )


def load_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read masks written by ``save_masks`` (or any ``.npz`` of arrays keyed by weight name).

    Raises:
        InvalidOptionError: the file is missing or not an ``.npz`` of arrays, or a mask is not
            boolean or 0/1 (``as_mask``).
    """
    return {k: as_mask(k, v) for k, v in load_npz(path, "masks").items()}


def as_mask(name: str, value: np.ndarray) -> np.ndarray:
    """A mask as booleans: a boolean array as it is, numbers that are all 0 or 1 converted.

    Anything else (0.5, -1, NaN, complex, strings) is refused: taken as "nonzero means keep",
    a score or a float mask saved by mistake would silently keep every weight.

    Raises:
        InvalidOptionError: ``mask 'w' is float64 with values other than 0 and 1 (0.5); ...``.
    """
    array = np.asarray(value)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iuf":
        other = array[(array != 0) & (array != 1)]
        if not other.size:
            return array.astype(bool)
        example = f" ({other.flat[0]!r})"
    else:
        example = ""
    raise InvalidOptionError(
        f"mask {name!r} is {array.dtype} with values other than 0 and 1{example}; masks are "
        "boolean (True = keep) or 0/1"
    )


def load_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, with a one-line error naming ``what`` it was for.

    Raises:
        InvalidOptionError: a missing file, a single ``.npy`` array, or anything that is not a
            readable ``.npz`` (a damaged or fake archive, pickled data).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidOptionError(f"{what} file not found: {path.name}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, Mapping):
            raise InvalidOptionError(
                f"{what} file {path.name} is one .npy array, not an .npz of arrays by name"
            )
        with data:
            return {k: data[k] for k in data.files}
    except UNREADABLE_NPZ as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidOptionError(f"{what} file {path.name} is not a readable .npz: {reason}") from e


UNREADABLE_NPZ = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
"""What reading a damaged ``.npz`` raises (a truncated or fake archive, a bad member, pickles)."""
