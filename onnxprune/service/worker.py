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
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from onnxprune import progress
from onnxprune.errors import DatasetError, InvalidOptionError, OnnxpruneError
from onnxprune.options import INPUTS
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.messages import (
    compact_message,
    options_kwargs,
    prune_options,
    report_message,
    structured_message,
    validation_message,
)
from onnxprune.service.wire import check_name
from onnxprune.sparsity import analyze
from onnxprune.validation import validate
from onnxprune.verbs import compact, prune

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
    events = Events(conn)
    try:
        with progress.listening(events.forward):
            conn.send(("ok", JOBS[job](events, **args)))
    except OnnxpruneError as e:
        conn.send(("error", e))
    except MemoryError:  # numpy's subclass does not survive pickling; the base class does
        conn.send(("error", MemoryError()))
    except Exception as e:  # a bug: the server logs the traceback, the client gets INTERNAL
        conn.send(("bug", type(e).__name__, traceback.format_exc()))


FORWARD_SECONDS = 0.25
"""The library's progress within a stage goes to the client at most this often."""


class Events:
    """What a job tells the server while it runs: progress, and files ready to be sent."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._last: tuple[str, float] = ("", 0.0)  # the stage and time of the last report sent

    def progress(self, stage: str, fraction: float) -> None:
        """``fraction`` of ``stage`` is done."""
        self._last = (stage, time.monotonic())
        self._conn.send(("progress", stage, fraction))

    def forward(self, report: progress.Progress) -> None:
        """Send the library's ``report`` on: each new stage, then at most every quarter second."""
        stage, sent = self._last
        if report.stage == stage and time.monotonic() - sent < FORWARD_SECONDS:
            return
        self.progress(report.stage, report.fraction or 0.0)

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

    With ``options.structured`` the compacted model alone goes back (no masks).
    """
    name = _output_name(header)
    options = prune_options(header.options)
    given = {field: _first(paths, field) for field in INPUTS}
    masks_out = None if options.structured else out_dir / "masks.npz"
    folder = out_dir / "model"
    folder.mkdir(parents=True)
    events.progress("prune", 0.0)
    result = prune(
        paths["model"][0],
        options,
        **given,
        output=folder / name,
        masks_out=masks_out,
        max_bytes=max_bytes,
    )
    events.progress("save", 0.0)
    _announce(events, folder, name)
    events.progress("save", 1.0)
    if result.structured is not None:
        return structured_message(result.structured)
    events.file("masks", masks_out, "masks.npz")
    message = pb.PruneResult(
        report=report_message(result.report),
        warnings=list(result.warnings),
        analyses=result.analyses,
    )
    if result.compaction is not None:
        message.compaction.CopyFrom(compact_message(result.compaction))
    return message


def compact_job(
    events: Events, *, header: pb.CompactHeader, paths: Paths, max_bytes: int, out_dir: Path
) -> pb.CompactResult:
    """``onnxprune.compact`` of the uploaded model; the smaller model goes back."""
    name = _output_name(header)
    folder = out_dir / "model"
    folder.mkdir(parents=True)
    events.progress("compact", 0.0)
    result = compact(
        paths["model"][0],
        output=folder / name,
        max_bytes=max_bytes,
        **options_kwargs(header.options),
    )
    events.progress("save", 0.0)
    _announce(events, folder, name)
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


def _announce(events: Events, folder: Path, name: str) -> None:
    """Announce the written model ``folder/name`` and its files, external data files first."""
    for path in sorted(folder.iterdir()):  # external data files first: the model refers to them
        if path.name != name:
            events.file("model_data", path, path.name)
    events.file("model", folder / name, name)


def _first(paths: Paths, field: str) -> Path | None:
    found = paths.get(field)
    return found[0] if found else None
