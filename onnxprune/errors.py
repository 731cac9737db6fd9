"""Errors raised by onnxprune; each class carries its CLI exit code and its gRPC status.

The tree, with the exit code and the status name of each class::

    OnnxpruneError                 2  INVALID_ARGUMENT    base; never raised itself
    ├── InvalidModelError          2  INVALID_ARGUMENT    missing, truncated, not ONNX,
    │                                                     path-escaping external data
    ├── InvalidOptionError         2  INVALID_ARGUMENT    an option outside what is allowed
    ├── LimitExceededError         2  RESOURCE_EXHAUSTED  model bytes or tensor count over a limit
    ├── ShapeError                 2  INVALID_ARGUMENT    the exact level needs static shapes
    ├── DatasetError               2  INVALID_ARGUMENT    evaluation data that does not fit
    ├── OutputError                2  RESOURCE_EXHAUSTED  an output cannot be written: disk
    │                                                     full, read-only or forbidden folder
    └── RemoteError                1  UNKNOWN             the server failed a call (INTERNAL,
        │                                                 UNKNOWN, DEADLINE_EXCEEDED, ...)
        ├── CallRefusedError       2  FAILED_PRECONDITION the server refused the call (token,
        │                                                 limits, a request it finds invalid)
        └── ConnectionFailedError  5  UNAVAILABLE         no server reached: down, wrong address,
                                                          TLS on one side only, wrong CA

The CLI (``onnxprune.cli.main``) prints ``f"{type(e).__name__}: {e}"`` on one line and exits
with ``e.exit_code``; the gRPC service (``onnxprune.service.status.to_status``) ends the call
with ``e.grpc_status`` and names the class in trailing metadata, so the client raises the same
class again: a remote ``InvalidModelError`` is an ``InvalidModelError``. A class defined
elsewhere (``onnxprune.torch``'s ``MaskMappingError``) inherits both from its parent.

``RemoteError`` and its subclasses are the client's: the server answered with a status that
names no library class, or no server answered. Which one is raised follows the status
received (``RemoteError.status``):

=================================================================  =========================
``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``, ``UNAUTHENTICATED``,  ``CallRefusedError`` (2)
``PERMISSION_DENIED``, ``FAILED_PRECONDITION``, ``OUT_OF_RANGE``
``UNAVAILABLE``                                                     ``ConnectionFailedError``
                                                                    (5)
any other (``INTERNAL``, ``UNKNOWN``, ``DEADLINE_EXCEEDED``,        ``RemoteError`` (1)
``CANCELLED``, ``UNIMPLEMENTED``, ...)
=================================================================  =========================

Status names are strings, so this module never imports ``grpc``.
"""

from __future__ import annotations

from typing import ClassVar


class OnnxpruneError(Exception):
    """Base of every error onnxprune raises on purpose (bad input, not bugs).

    Attributes:
        exit_code: what the CLI exits with.
        grpc_status: the name of the ``grpc.StatusCode`` the service ends a call with.
    """

    exit_code: ClassVar[int] = 2
    grpc_status: ClassVar[str] = "INVALID_ARGUMENT"


class InvalidModelError(OnnxpruneError):
    """The model cannot be read safely: missing, truncated, not ONNX, or escaping its directory."""


class InvalidOptionError(OnnxpruneError):
    """An option has a value outside what is allowed; the message says both."""


class LimitExceededError(OnnxpruneError):
    """The input is over a configured limit (bytes, tensor count)."""

    grpc_status: ClassVar[str] = "RESOURCE_EXHAUSTED"


class ShapeError(OnnxpruneError):
    """A computation needs static shapes the model does not give."""


class DatasetError(OnnxpruneError):
    """Evaluation data does not match the model's inputs."""


class OutputError(OnnxpruneError):
    """An output could not be written: the disk is full, the folder is read-only or forbidden.

    Nothing partial is left (outputs are written under temporary names and renamed); the
    message names the output and the system's reason. Exit 2, as for any input the user can
    fix by choosing another place; a server whose own disk is full answers
    ``RESOURCE_EXHAUSTED``.
    """

    grpc_status: ClassVar[str] = "RESOURCE_EXHAUSTED"


class RemoteError(OnnxpruneError):
    """A call to the onnxprune service failed with a status that names no library error.

    Raised as itself when the server failed or the call did not finish (``INTERNAL``,
    ``DEADLINE_EXCEEDED``, ...): exit 1, as a local bug. A server passing it on answers
    ``UNKNOWN``, gRPC's status for an error from another address space.

    Args:
        status: the name of the ``grpc.StatusCode`` received.
        details: the server's (or the transport's) one-line message.
        message: the whole message; ``"STATUS: details"`` by default.

    Attributes:
        status: the name of the ``grpc.StatusCode`` received.
        details: the server's (or the transport's) one-line message.
    """

    exit_code: ClassVar[int] = 1
    grpc_status: ClassVar[str] = "UNKNOWN"

    def __init__(self, status: str, details: str, message: str | None = None) -> None:
        super().__init__(message or f"{status}: {details}")
        self.status = status
        self.details = details


class CallRefusedError(RemoteError):
    """The server refused the call: a missing or wrong token, a limit, a request it rejects.

    Bad input as far as the caller is concerned (exit 2): fix the request or the credentials.
    """

    exit_code: ClassVar[int] = 2
    grpc_status: ClassVar[str] = "FAILED_PRECONDITION"
    statuses: ClassVar[frozenset[str]] = frozenset(
        {
            "INVALID_ARGUMENT",
            "RESOURCE_EXHAUSTED",
            "UNAUTHENTICATED",
            "PERMISSION_DENIED",
            "FAILED_PRECONDITION",
            "OUT_OF_RANGE",
        }
    )
    """The statuses received that raise this class."""


class ConnectionFailedError(RemoteError):
    """No onnxprune server answered: it is down, the address is wrong, or TLS does not match.

    gRPC reports all of these as ``UNAVAILABLE`` (a plaintext client talking to a TLS server
    sees "Socket closed", a wrong CA a failed handshake); a server that answers
    ``UNAVAILABLE`` itself (shutting down) gives this class too, since gRPC defines the status
    as "try again later". Its own exit code, 5, because neither the input (2) nor onnxprune
    (1) is at fault: a script can retry, or fix the address or the TLS flags the message
    hints at.
    """

    exit_code: ClassVar[int] = 5
    grpc_status: ClassVar[str] = "UNAVAILABLE"
    statuses: ClassVar[frozenset[str]] = frozenset({"UNAVAILABLE"})
    """The statuses received that raise this class."""
