"""Errors -> gRPC status codes, in one function (the CLI maps the same tree to exit codes).

A library error ends the call with its class's ``grpc_status`` (the tree and its statuses are
drawn in ``onnxprune.errors``); four more cases are the server's own:

=====================  =====================
``MemoryError``         ``RESOURCE_EXHAUSTED`` (a job over its worker's memory limit)
``TimeLimitExceeded``   ``DEADLINE_EXCEEDED`` (a stalled upload, a job over its time limit)
``MalformedRequest``    ``INVALID_ARGUMENT`` (a request message that is not valid protobuf)
anything else           ``INTERNAL``, short message; the traceback goes to the server log
=====================  =====================

A message is one line and never carries a traceback, a file path or a secret: library messages
name files by their base name, and ``to_status`` replaces anything that looks like a path.
"""

from __future__ import annotations

import logging
import re

import grpc

from onnxprune.errors import OnnxpruneError
from onnxprune.service.deadlines import TimeLimitExceeded
from onnxprune.service.interceptors import MalformedRequest
from onnxprune.service.jobs import WorkerError
from onnxprune.service.wire import ERROR_METADATA

log = logging.getLogger(__name__)

MAX_MESSAGE = 300
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/,;:()]+){2,}[\\/]?")


def to_status(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the one-line, path-free message for ``error``."""
    if isinstance(error, OnnxpruneError):
        return getattr(grpc.StatusCode, error.grpc_status), _clean(str(error))
    if isinstance(error, MemoryError):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the job ran out of memory in its worker process (over the server's worker memory "
            "limit); the model is too large for this server",
        )
    if isinstance(error, TimeLimitExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED, _clean(str(error))
    if isinstance(error, MalformedRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, _clean(str(error))
    if isinstance(error, WorkerError):
        return grpc.StatusCode.INTERNAL, _clean(str(error))
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"


def abort(context: grpc.ServicerContext, error: BaseException) -> None:
    """End the call with ``error``'s status; library errors name their class in trailing metadata.

    Raises:
        Exception: always (``context.abort`` raises to end the handler).
    """
    code, message = to_status(error)
    if isinstance(error, OnnxpruneError):
        context.set_trailing_metadata(((ERROR_METADATA, type(error).__name__),))
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error: %s", message, exc_info=error)
    context.abort(code, message)


def _clean(message: str) -> str:
    lines = message.strip().splitlines()
    line = _PATH.sub("<path>", lines[0] if lines else "")
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."
