"""``onnxprune.v1.PruningService``: upload -> job in a worker -> files and result back.

The servicer holds no logic of its own: ``uploads`` spools the request's files to a temporary
folder, ``jobs`` runs the library call in a worker process, and the folder goes away with the
call, whatever way it ends. Every failure becomes a status through ``status.abort``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.config import ServerConfig
from onnxprune.service.deadlines import idle_limited
from onnxprune.service.jobs import Cancelled, JobRunner
from onnxprune.service.messages import methods_message
from onnxprune.service.status import abort
from onnxprune.service.uploads import receive
from onnxprune.service.wire import file_info, read_chunks

RESPONSES: dict[str, tuple[type[Message], str]] = {
    "analyze": (pb.AnalyzeResponse, "report"),
    "prune": (pb.PruneResponse, "result"),
    "compact": (pb.CompactResponse, "result"),
    "validate": (pb.ValidateResponse, "result"),
}
"""Per job: the response message and its field for the final result (sent last)."""

FILE_JOBS = frozenset({"prune", "compact"})
"""Jobs that write files to send back (into the call's ``out`` folder)."""


class PruningServicer(pb_grpc.PruningServiceServicer):
    """The service; one instance serves every call.

    Args:
        config: limits and the spool folder.
        runner: the worker processes jobs run in.
    """

    def __init__(self, config: ServerConfig, runner: JobRunner) -> None:
        self._config = config
        self._runner = runner

    def Analyze(self, request_iterator, context):  # noqa: N802 - names come from the proto
        """Direct and effective sparsity of the uploaded model."""
        return self._call(request_iterator, context, "analyze")

    def Prune(self, request_iterator, context):  # noqa: N802
        """The pruned model, its masks and its report (structured: the compacted model)."""
        return self._call(request_iterator, context, "prune")

    def Compact(self, request_iterator, context):  # noqa: N802
        """The uploaded model with every dead unit removed, and what was removed."""
        return self._call(request_iterator, context, "compact")

    def Validate(self, request_iterator, context):  # noqa: N802
        """Accuracy, agreement and latency of the uploaded model on the uploaded data."""
        return self._call(request_iterator, context, "validate")

    def ListMethods(self, request, context):  # noqa: N802
        """The registered scores, allocations and structured criteria."""
        return methods_message()

    def _call(
        self, requests: Iterator[Message], context: grpc.ServicerContext, job: str
    ) -> Iterator[Message]:
        try:
            with tempfile.TemporaryDirectory(prefix="onnxprune-", dir=self._config.work_dir) as tmp:
                yield from self._steps(requests, context, job, Path(tmp))
        except (Cancelled, grpc.RpcError):  # the client left or the deadline passed: nobody to tell
            return
        except Exception as e:  # every failure becomes a status (BLE: that is the point)
            failure = e
        else:
            return
        abort(context, failure)

    def _steps(
        self, requests: Iterator[Message], context: grpc.ServicerContext, job: str, tmp: Path
    ) -> Iterator[Message]:
        response, result_field = RESPONSES[job]
        requests = idle_limited(requests, self._config.upload_timeout)
        upload = receive(requests, tmp / "in", self._config.max_bytes)
        header, paths = yield from _relay(
            upload, lambda fraction: _progress(response, "upload", fraction)
        )
        args: dict[str, Any] = {
            "header": header,
            "paths": paths,
            "max_bytes": self._max_bytes(header),
        }
        if job in FILE_JOBS:
            args["out_dir"] = tmp / "out"
        run = self._runner.run(job, args, context.is_active)
        message = yield from _relay(run, lambda event: _event(response, event))
        yield response(**{result_field: message})

    def _max_bytes(self, header: Message) -> int:
        """The client's ``max_bytes`` option, never above this server's limit."""
        options, limit = header.options, self._config.max_bytes
        if "max_bytes" in options.DESCRIPTOR.fields_by_name and options.HasField("max_bytes"):
            return min(options.max_bytes, limit)
        return limit


def _relay(
    source: Generator[Any, None, Any], convert: Callable[[Any], Iterable[Message]]
) -> Generator[Message, None, Any]:
    """Yield the messages ``convert`` makes of each item of ``source``; return what it returns.

    ``source`` is closed however this ends (a job's ``finally`` then kills its worker at once).
    """
    with contextlib.closing(source):
        while True:
            try:
                item = next(source)
            except StopIteration as done:
                return done.value
            yield from convert(item)


def _progress(response: type[Message], stage: str, fraction: float) -> list[Message]:
    return [response(progress=pb.Progress(stage=stage, fraction=fraction))]


def _event(response: type[Message], event: tuple) -> Iterable[Message]:
    """A job's event as messages: its progress, or a file it finished, announced then chunked."""
    if event[0] == "progress":
        return _progress(response, event[1], event[2])
    _, field, path, name = event
    return _file(response, field, path, name)


def _file(response: type[Message], field: str, path: Path, name: str) -> Iterator[Message]:
    yield response(**{field: file_info(path, name)})
    for block in read_chunks(path):
        yield response(chunk=block)
