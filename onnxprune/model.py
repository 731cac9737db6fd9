"""Safe loading and saving of ONNX models.

Loading never trusts the file: the size is checked before parsing, truncated or non-ONNX bytes are
refused with a clear error, and external data must stay inside the model's own directory. Saving is
atomic and keeps the IR version, opsets, metadata and tensor names the model came with. Where the
weights are inside a model is ``onnxprune.weights``' business.
"""

from __future__ import annotations

import errno
import glob
import math
import mmap
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from onnxprune import progress, runtime_ops
from onnxprune.errors import (
    InvalidModelError,
    InvalidOptionError,
    LimitExceededError,
    OutputError,
)
from onnxprune.model_checks import (
    all_tensors,
    check_structure,
    element_bits,
    has_open_sizes,
    open_sizes,
    raw_data_sizes,
    tensor_limit,
)
from onnxprune.sizes import DEFAULT_MAX_BYTES

PROTOBUF_LIMIT = 2**31 - 1
"""Protobuf cannot serialize messages at or above 2 GiB; larger models go to external data."""

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def load_model(
    source: ModelSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    base_dir: str | os.PathLike | None = None,
) -> onnx.ModelProto:
    """Load an ONNX model from a path, bytes or an existing proto, refusing unsafe input.

    Args:
        source: a file path, the serialized bytes, or a ``ModelProto`` (returned as is, or
            copied when it declares a size of -1: ``model_checks.open_sizes``).
        max_bytes: largest accepted size in bytes of the model file plus its external data.
        base_dir: where external data lives when ``source`` is bytes; defaults to the file's folder.

    Returns:
        The parsed model with any external data loaded into it.

    Raises:
        InvalidModelError: missing file, truncated or non-ONNX bytes, unsafe external data,
            malformed tensors or nodes (``onnxprune.model_checks``); a proto is checked too.
        LimitExceededError: the model is larger than ``max_bytes``, or declares or computes a
            tensor larger than ``tensor_limit(max_bytes)``.

    Example:
        >>> import onnx
        >>> from onnx import helper
        >>> g = helper.make_graph([], "empty", [], [])
        >>> m = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
        >>> load_model(m.SerializeToString()).ir_version
        8
    """
    if isinstance(source, onnx.ModelProto):
        if has_open_sizes(source):
            copy = onnx.ModelProto()
            copy.CopyFrom(source)
            open_sizes(copy)
            source = copy
        check_structure(source, tensor_limit(max_bytes))
        return source
    model, external, base, sizes = parse_sized(source, max_bytes=max_bytes, base_dir=base_dir)
    return finish_load(model, external, base, max_bytes=max_bytes, raw_sizes=sizes)


def finish_load(
    model: onnx.ModelProto,
    external: list[onnx.TensorProto],
    base: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    raw_sizes: Sequence[int | None] = (),
) -> onnx.ModelProto:
    """A model ``parse_checked`` gave, loaded and checked as ``load_model`` loads it.

    For callers that parse first to look at the model (does it have external data?) and then
    need it whole, without parsing it again. ``raw_sizes`` come from ``parse_sized``.

    Raises:
        InvalidModelError: the model fails the ONNX checker or the structural checks.
        LimitExceededError: a declared tensor over the limit.
    """
    if external:
        external_data_helper.load_external_data_for_model(model, os.fspath(base))
    check_model(model)
    open_sizes(model)
    check_structure(model, tensor_limit(max_bytes), raw_sizes)
    return model


def parse_checked(
    source: str | os.PathLike | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    base_dir: str | os.PathLike | None = None,
) -> tuple[onnx.ModelProto, list[onnx.TensorProto], Path | None]:
    """``parse_sized`` without the sizes: the model, its external tensors, their directory."""
    return parse_sized(source, max_bytes=max_bytes, base_dir=base_dir)[:3]


def parse_sized(
    source: str | os.PathLike | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    base_dir: str | os.PathLike | None = None,
) -> tuple[onnx.ModelProto, list[onnx.TensorProto], Path | None, tuple[int | None, ...]]:
    """Parse a model without loading its external data, after every safety check on it.

    Args:
        source: a file path or the serialized bytes.
        max_bytes: largest accepted size of the model file plus its external data.
        base_dir: where external data lives when ``source`` is bytes.

    Returns:
        The parsed model (external tensors still point at their files), those external
        tensors, the directory they are confined to (``None`` for bytes without one), and
        the initializers' ``raw_data`` lengths read from the bytes
        (``model_checks.raw_data_sizes``, for ``check_structure``).

    Raises:
        InvalidModelError: missing file, truncated or non-ONNX bytes, unsafe external data.
        LimitExceededError: the model is larger than ``max_bytes``.
    """
    if isinstance(source, bytes):
        data = source
        _check_size(len(data), max_bytes)
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidModelError(f"model file not found: {path.name}")
        _check_size(path.stat().st_size, max_bytes)
        data = _mapped(path)
        _check_size(len(data), max_bytes)  # the file may have grown since
        base_dir = path.parent if base_dir is None else base_dir
    model = _parse(data)
    external = list(external_tensors(model))
    base = None if base_dir is None else Path(base_dir)
    if external:
        if base is None:
            raise InvalidModelError(
                "model refers to external data but was given as bytes without a base directory"
            )
        external_bytes = sum(external_span(t, base)[2] for t in external)
        _check_size(len(data) + external_bytes, max_bytes)
    sizes = raw_data_sizes(data)
    if len(sizes) != len(model.graph.initializer):  # pragma: no cover - the walk is exact
        sizes = ()
    return model, external, base, sizes


def _mapped(path: Path) -> bytes | memoryview:
    """The file's bytes, mapped read-only rather than copied into fresh memory.

    Parsing reads the page cache directly: no copy of the file and no page faults on a new
    buffer, which for a model of hundreds of megabytes cost as much as the parse. The mapping
    goes when the last view of it does. (A file truncated by another process while it is
    parsed ends the process with SIGBUS, as reading any mapped file does.)
    """
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # nothing to map (or a file whose size lies)
            return f.read()
        try:
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        except OSError:  # a file system that cannot map files (some FUSE mounts)
            return f.read()


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data_threshold: int = PROTOBUF_LIMIT,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write ``model`` atomically, with external data when it is too large for one protobuf.

    The model is written as it is: its IR version, opset imports, metadata and names are kept.
    Models of ``external_data_threshold`` bytes or more store their tensors in ``<name>.data``
    next to the file. Both files are written under temporary names and renamed into place, so
    a reader never sees a half-written model.

    Args:
        model: the model to write; it is not modified.
        path: destination ``.onnx`` path.
        external_data_threshold: size in bytes from which tensors go to external data.
        before_rename: see ``commit_model`` (commits the files that go with the model).
    """
    progress.report("save", 0)

    def write(tmp: Path, data_file: Path | None) -> None:
        if data_file is None:
            tmp.write_bytes(model.SerializeToString())
        else:
            _write_with_external_data(model, tmp, data_file)

    commit_model(
        Path(path),
        write,
        external=model.ByteSize() >= external_data_threshold,
        before_rename=before_rename,
    )


def commit_model(
    path: Path,
    write: Callable[[Path, Path | None], None],
    *,
    external: bool,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write a model through ``write(tmp, data_file)`` and rename it into place at ``path``.

    ``data_file`` is a fresh ``<name>.<12 hex>.data`` next to ``path`` when ``external``, else
    ``None``. A reader never sees a half-written model: the model file is renamed last and points
    at complete data. Data files of earlier saves to ``path`` are removed afterwards, and so
    are temporary files our writers left there in an earlier process (``temporary``).

    ``before_rename`` runs once the model is written, just before its rename: it commits the
    files that go with the model (its masks), so a reader who sees the new model sees them,
    and a write that fails (a full disk) replaces none of them.
    """
    check_writable(path)
    remove_stale_temporaries(path)
    tmp = temporary(path)
    data_file = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.data") if external else None
    try:
        with writing(path, tmp, *([data_file] if data_file else [])):
            write(tmp, data_file)
            if before_rename is not None:
                before_rename()
            os.replace(tmp, path)
    except BaseException:
        if data_file is not None:
            data_file.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    # Data files of earlier saves to this path are no longer referenced by anything we wrote.
    for stale in data_files(path):
        if stale != data_file:
            stale.unlink(missing_ok=True)


def remove_model(path: Path) -> None:
    """Delete a model ``save_model`` or ``commit_model`` wrote, with its data files, if present."""
    path.unlink(missing_ok=True)
    for data_file in data_files(path):
        data_file.unlink(missing_ok=True)


_DATA_NAME = re.compile(r"\.[0-9a-f]{12}\.data")


def data_files(path: Path) -> list[Path]:
    """The ``<name>.<12 hex>.data`` files that saves to ``path`` wrote next to it.

    The next save to ``path`` removes them: ``onnxprune.outputs.check_outputs`` refuses an
    output whose name would take an input's data file with it.
    """
    return [
        found
        for found in path.parent.glob(f"{glob.escape(path.name)}.*.data")
        if _DATA_NAME.fullmatch(found.name[len(path.name) :])
    ]


def check_writable(path: Path) -> None:
    """Refuse an output path whose folder is missing, or that names anything but a file.

    Outputs are written beside and renamed over ``path``: a device, FIFO or socket there
    (``-o /dev/null``) would be replaced by a regular file, so it is refused.

    Raises:
        InvalidOptionError: one line naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidOptionError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise InvalidOptionError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there (or a dangling link, which the rename replaces)
        return
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _SPECIAL_FILES if test(mode)), "not a regular file")
        raise InvalidOptionError(f"cannot write {path}: it is a {kind}; outputs are regular files")


_SPECIAL_FILES = (
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Raises:
        InvalidOptionError: ``path`` cannot be an output (``check_writable``).
        OutputError: the system refused the write (disk full, read-only folder).
    """
    check_writable(path)
    remove_stale_temporaries(path)
    tmp = temporary(path)
    try:
        with writing(path, tmp):
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_STARTED = time.time()
"""When this process began writing (about): temporary files older than this are no writer's."""
_TEMPORARY = r"\.[0-9a-f]{32}\.(?:tmp|tmp\.npz|part)"


def temporary(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside ``path`` to write it under: ``.<name>.<32 hex><suffix>``.

    Every writer of ours (text, models, masks ``.tmp.npz``, remote downloads ``.part``) writes
    under such a name and renames it into place, so a crash leaves only hidden temporaries,
    which ``remove_stale_temporaries`` takes away.
    """
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")


def remove_stale_temporaries(path: Path, before: float | None = None) -> None:
    """Delete the temporaries of ``path`` (``temporary``) older than this process.

    A process killed while writing ``path`` leaves them; a writer still at work in another
    process has touched its own since this one began, and keeps it. ``before`` (a time) takes
    younger ones too: those of workers this process killed.
    """
    before = _STARTED if before is None else before
    pattern = re.compile(re.escape(f".{path.name}") + _TEMPORARY)
    for found in path.parent.glob(f".{glob.escape(path.name)}.*"):
        try:
            stale = pattern.fullmatch(found.name) and found.lstat().st_mtime < before
        except OSError:  # gone meanwhile
            continue
        if stale:
            found.unlink(missing_ok=True)


def make_folder(folder: Path) -> None:
    """Create an output folder and its parents, if missing.

    Raises:
        OutputError: the system refused (read-only or forbidden parent, a file in the way).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {folder}: {e.strerror or e}") from e


OUTPUT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
)
"""What a write refused by the system raises: disk full or over quota, a file over the size
limit, a read-only or forbidden folder."""


@contextmanager
def writing(path: Path, *ours: Path) -> Iterator[None]:
    """Report a failed write of the output ``path`` as an ``OutputError`` naming it.

    An ``OSError`` in ``OUTPUT_ERRNOS`` about ``path``, one of ``ours`` (its temporary and data
    files) or no file at all (a ``write`` on a full disk) becomes one line; any other error,
    reading an input for one, passes unchanged.

    Raises:
        OutputError: ``cannot write out.onnx: No space left on device``.
    """
    try:
        yield
    except OSError as e:
        mine = {Path(path), *map(Path, ours)}
        if e.errno not in OUTPUT_ERRNOS or (
            e.filename is not None and Path(e.filename) not in mine
        ):
            raise
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def _write_with_external_data(model: onnx.ModelProto, tmp: Path, data_file: Path) -> None:
    """Write every tensor to ``data_file`` (a new, unique name) and the graph to ``tmp``.

    The data file gets a fresh name on each save, so the model file that readers see (renamed
    into place last) always points at complete data.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    external_data_helper.convert_model_to_external_data(
        copy, all_tensors_to_one_file=True, location=data_file.name, size_threshold=0
    )
    external_data_helper.write_external_data_tensors(copy, os.fspath(data_file.parent))
    tmp.write_bytes(copy.SerializeToString())


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise LimitExceededError(f"model is {size} bytes, over the limit of {max_bytes} bytes")


def _parse(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidModelError("not a valid ONNX model (truncated or not ONNX)") from e
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise InvalidModelError("not a valid ONNX model (no IR version or no graph)")
    return model


def check_model(model: onnx.ModelProto) -> None:
    """ONNX's structural checks, on a light copy (weights do not need a second serialization).

    Default-domain ops onnx does not know but ONNX Runtime registers (its optimizer's
    ``SimplifiedLayerNormalization``) pass when ONNX Runtime loads the model on the CPU; the
    checker checks everything else (``onnxprune.runtime_ops``).

    Raises:
        InvalidModelError: the checker refuses the model; the message is its first line.
    """
    light = light_copy(model)
    ops = runtime_ops.unknown_ops(light)
    try:
        if ops and runtime_ops.runtime_loads(light_copy(model)):
            runtime_ops.stand_in(light, ops)
        onnx.checker.check_model(light)
    except UnicodeDecodeError as e:  # the checker names a node or value whose name is not UTF-8
        raise InvalidModelError("not a valid ONNX model: a name or text is not valid UTF-8") from e
    except onnx.checker.ValidationError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else "checker failed"
        raise InvalidModelError(f"not a valid ONNX model: {first_line}") from e


LIGHT_ELEMENTS = 4096
"""Initializers up to this many elements keep their data in ``light_copy`` (shapes, axes...)."""


def shapes_only(
    model: onnx.ModelProto, read: Callable[[onnx.TensorProto], np.ndarray] | None = None
) -> onnx.ModelProto:
    """The model with the data of its large weight tensors left out, for work on its structure.

    Each initializer of two or more axes and over ``LIGHT_ELEMENTS`` elements becomes a stand-in
    marked as external data, with its name, shape and type (``structured.compact.Workspace``
    takes it as zeros of that shape); the others keep their values, read by ``read`` when they
    are in an external file. Nodes, inputs, outputs, opsets and the IR version are kept.
    """
    graph = model.graph
    initializers = []
    for tensor in graph.initializer:
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if len(tensor.dims) >= 2 and math.prod(tensor.dims) > LIGHT_ELEMENTS:
            stand_in = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type)
            stand_in.dims.extend(tensor.dims)
            stand_in.data_location = onnx.TensorProto.EXTERNAL
            stand_in.external_data.add(key="location", value="")
            initializers.append(stand_in)
        elif external and read is not None:
            initializers.append(numpy_helper.from_array(read(tensor), tensor.name))
        else:
            initializers.append(tensor)
    copy = onnx.helper.make_graph(
        list(graph.node),
        graph.name,
        list(graph.input),
        list(graph.output),
        initializer=initializers,
        value_info=list(graph.value_info),
    )
    light = onnx.helper.make_model(copy, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    light.functions.extend(model.functions)
    return light


def light_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without the data of its large initializers, which become typed graph inputs.

    Checking and shape inference need the structure, not the weights; serializing a light copy
    costs little even for models of gigabytes. The IR version is raised to 4 at least, so that
    initializers need not be graph inputs.
    """
    graph = model.graph
    small, big = [], []
    for t in graph.initializer:
        (small if math.prod(t.dims) <= LIGHT_ELEMENTS else big).append(t)
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    inputs += [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big]
    light_graph = onnx.helper.make_graph(
        list(graph.node),
        graph.name,
        inputs,
        list(graph.output),
        initializer=small,
        value_info=list(graph.value_info),
    )
    light = onnx.helper.make_model(light_graph, opset_imports=list(model.opset_import))
    light.ir_version = max(model.ir_version, 4)
    light.functions.extend(model.functions)
    return light


def external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``model`` (initializers and node attributes) stored in external files."""
    for tensor in all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def external_span(tensor: onnx.TensorProto, base_dir: Path) -> tuple[Path, int, int]:
    """Where the external data of ``tensor`` lies: ``(file, offset, length)``, checked.

    The file must stay inside ``base_dir`` (no absolute paths, no ``..``, no symlink out of it),
    exist, and hold ``offset + length`` bytes.

    Raises:
        InvalidModelError: the location is missing, escapes ``base_dir``, or is truncated.
    """
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"external data {location!r} of tensor {tensor.name!r}"
    if not location:
        raise InvalidModelError(f"tensor {tensor.name!r} has external data without a location")
    pure = Path(location)
    if pure.is_absolute() or location.startswith(("/", "\\")) or ":" in location:
        raise InvalidModelError(f"{where} is an absolute path; only paths inside the model dir")
    if ".." in pure.parts or ".." in location.replace("\\", "/").split("/"):
        raise InvalidModelError(f"{where} leaves the model's directory ('..' is not allowed)")
    root = base_dir.resolve()
    target = (base_dir / pure).resolve()
    if not target.is_relative_to(root):
        raise InvalidModelError(f"{where} resolves outside the model's directory (symlink?)")
    if not target.is_file():
        raise InvalidModelError(f"{where} is missing")
    size = target.stat().st_size
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", size - offset))
    except ValueError:
        raise InvalidModelError(f"{where} has an offset or length that is not a number") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidModelError(f"{where} is truncated: needs {offset + length} bytes, has {size}")
    bits = element_bits(tensor.data_type)
    needed = -(-math.prod(int(d) for d in tensor.dims) * bits // 8) if bits else length
    if length != needed:
        raise InvalidModelError(f"{where} holds {length} bytes; its dims and type need {needed}")
    return target, offset, length
