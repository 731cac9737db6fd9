"""What runs inside a worker process: the library call of each job, and the reply messages.

The fork server imports this module (and so the library) once; each worker process runs
``serve``: it limits its address space, ignores SIGINT (a Ctrl-C in the server's terminal reaches
the whole process group; the server decides when jobs stop), then runs the jobs that come
through its pipe one at a time, sending their events and outcome back. Jobs take the request
header and the paths the upload was written to, and call ``onnxprune.analyze``, ``prune`` (or
``structured_prune``), ``compact`` or ``validate`` exactly as the CLI does.
"""

from __future__ import annotations

import resource
import signal
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import Message

from onnxprune.errors import DatasetError, InvalidOptionError, OnnxpruneError
from onnxprune.model import load_model, save_model
from onnxprune.pruners.masks import load_npz, save_masks
from onnxprune.pruners.prune import prune
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.messages import (
    compact_message,
    options_kwargs,
    report_message,
    structured_kwargs,
    structured_message,
    unstructured_kwargs,
    validation_message,
)
from onnxprune.service.wire import check_name
from onnxprune.sparsity import analyze
from onnxprune.structured import compact, structured_prune
from onnxprune.structured.options import check_structured
from onnxprune.validate import validate

Paths = Mapping[str, list[Path]]


def serve(conn: Any, memory_limit: int) -> None:
    """Run the jobs that come through ``conn`` in this (worker) process, one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        try:
            job, args = conn.recv()
        except EOFError:  # the server closed the pipe: nothing more to do
            return
        run(conn, job, args)


def run(conn: Any, job: str, args: dict[str, Any]) -> None:
    """Run one job; send its events, then ``("ok", result)`` or what went wrong."""
    try:
        conn.send(("ok", JOBS[job](Events(conn), **args)))
    except OnnxpruneError as e:
        conn.send(("error", e))
    except MemoryError:  # numpy's subclass does not survive pickling; the base class does
        conn.send(("error", MemoryError()))
    except Exception as e:  # a bug: the server logs the traceback, the client gets INTERNAL
        conn.send(("bug", type(e).__name__, traceback.format_exc()))


class Events:
    """What a job tells the server while it runs: progress, and files ready to be sent."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def progress(self, stage: str, fraction: float) -> None:
        """``fraction`` of ``stage`` is done."""
        self._conn.send(("progress", stage, fraction))

    def file(self, field: str, path: Path, name: str) -> None:
        """``path`` is complete: send it now as response field ``field``, announced as ``name``."""
        self._conn.send(("file", field, path, name))


def analyze_job(
    events: Events, *, header: pb.AnalyzeHeader, paths: Paths, max_bytes: int
) -> pb.SparsityReport:
    """``onnxprune.analyze`` of the uploaded model."""
    events.progress("analyze", 0.0)
    report = analyze(paths["model"][0], max_bytes=max_bytes, **options_kwargs(header.options))
    events.progress("analyze", 1.0)
    return report_message(report)


def prune_job(
    events: Events, *, header: pb.PruneHeader, paths: Paths, max_bytes: int, out_dir: Path
) -> pb.PruneResult:
    """``onnxprune.prune`` of the uploaded model; its model and masks are written to ``out_dir``.

    The model (with its external data files, if any) is announced as soon as it is written, so
    the server sends it while the masks are being compressed. With ``options.structured``:
    ``structured_prune``, and the compacted model alone goes back.
    """
    name = _output_name(header)
    options = options_kwargs(header.options)
    files = {field: True for field in ("masks", "scores", "calibration") if header.HasField(field)}
    check_structured({**options, **files})
    if "structured" in options:
        return _structured_prune(events, paths, max_bytes, out_dir, name, options)
    calibration = paths.get("calibration")
    events.progress("prune", 0.0)
    result = prune(
        paths["model"][0],
        masks=_first(paths, "masks"),
        scores=_first(paths, "scores"),
        calibration=load_npz(calibration[0], "calibration") if calibration else None,
        max_bytes=max_bytes,
        **unstructured_kwargs(options),
    )
    events.progress("save", 0.0)
    _save_model(events, result.model, out_dir / "model", name)
    save_masks(result.masks, out_dir / "masks.npz")
    events.file("masks", out_dir / "masks.npz", "masks.npz")
    events.progress("save", 1.0)
    return pb.PruneResult(
        report=report_message(result.report),
        warnings=list(result.warnings),
        analyses=result.analyses,
    )


def _structured_prune(
    events: Events, paths: Paths, max_bytes: int, out_dir: Path, name: str, options: dict
) -> pb.PruneResult:
    """``structured_prune`` of the uploaded model, as ``onnxprune prune --structured``."""
    events.progress("prune", 0.0)
    model = load_model(paths["model"][0], max_bytes=max_bytes)
    result = structured_prune(model, **structured_kwargs(options))
    events.progress("save", 0.0)
    _save_model(events, result.model, out_dir / "model", name)
    events.progress("save", 1.0)
    return structured_message(result)


def compact_job(
    events: Events, *, header: pb.CompactHeader, paths: Paths, max_bytes: int, out_dir: Path
) -> pb.CompactResult:
    """``onnxprune.structured.compact`` of the uploaded model; the smaller model goes back."""
    name = _output_name(header)
    events.progress("compact", 0.0)
    result = compact(load_model(paths["model"][0], max_bytes=max_bytes))
    events.progress("save", 0.0)
    _save_model(events, result.model, out_dir / "model", name)
    events.progress("save", 1.0)
    return compact_message(result)


def validate_job(
    events: Events, *, header: pb.ValidateHeader, paths: Paths, max_bytes: int
) -> pb.ValidationResult:
    """``onnxprune.validate`` of the uploaded model on the uploaded dataset (and baseline)."""
    del max_bytes  # the upload limit already bounded every model; validate has no limit of its own
    data = _first(paths, "data")
    if data is None:
        raise DatasetError("the request carries no dataset (header field 'data')")
    events.progress("validate", 0.0)
    result = validate(
        paths["model"][0],
        data,
        baseline=_first(paths, "baseline"),
        **options_kwargs(header.options),
    )
    events.progress("validate", 1.0)
    return validation_message(result)


JOBS: dict[str, Callable[..., Message]] = {
    "analyze": analyze_job,
    "prune": prune_job,
    "compact": compact_job,
    "validate": validate_job,
}


def _output_name(header: Message) -> str:
    """The file name the result model is sent under: the header's ``output_name``, or the input's.

    Raises:
        InvalidOptionError: a name with folders, ``..`` or the like.
    """
    name = header.output_name or header.model.name
    check_name(name, relative=False, error=InvalidOptionError)
    return name


def _save_model(events: Events, model: onnx.ModelProto, folder: Path, name: str) -> None:
    """Write ``model`` to ``folder/name`` and announce its files, external data files first."""
    folder.mkdir(parents=True)
    save_model(model, folder / name)
    for path in sorted(folder.iterdir()):  # external data files first: the model refers to them
        if path.name != name:
            events.file("model_data", path, path.name)
    events.file("model", folder / name, name)


def _first(paths: Paths, field: str) -> Path | None:
    found = paths.get(field)
    return found[0] if found else None
