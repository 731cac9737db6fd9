"""``service.status.to_status``: every error class to its code, messages one line and path-free."""

from __future__ import annotations

import grpc
import pytest

from onnxprune.errors import (
    CallRefusedError,
    ConnectionFailedError,
    DatasetError,
    InvalidModelError,
    InvalidOptionError,
    LimitExceededError,
    OnnxpruneError,
    RemoteError,
    ShapeError,
)
from onnxprune.service.jobs import WorkerError
from onnxprune.service.status import to_status

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidModelError("not a valid ONNX model"), Code.INVALID_ARGUMENT),
        (InvalidOptionError("sparsity=1.2 must be in [0, 1)"), Code.INVALID_ARGUMENT),
        (ShapeError("the exact level needs static shapes"), Code.INVALID_ARGUMENT),
        (DatasetError("dataset lacks input 'x'"), Code.INVALID_ARGUMENT),
        (
            LimitExceededError("model is 9 bytes, over the limit of 8 bytes"),
            Code.RESOURCE_EXHAUSTED,
        ),
        (RemoteError("INTERNAL", "boom"), Code.UNKNOWN),
        (CallRefusedError("UNAUTHENTICATED", "no token"), Code.FAILED_PRECONDITION),
        (ConnectionFailedError("UNAVAILABLE", "Socket closed"), Code.UNAVAILABLE),
        (MemoryError(), Code.RESOURCE_EXHAUSTED),
        (WorkerError("the worker process died (exit code -9)"), Code.INTERNAL),
        (ZeroDivisionError("division by zero"), Code.INTERNAL),
    ],
)
def test_each_error_class_maps_to_its_code(error, code):
    assert to_status(error)[0] is code


def test_library_messages_pass_through():
    assert to_status(InvalidOptionError("sparsity=1.2 must be in [0, 1)")) == (
        Code.INVALID_ARGUMENT,
        "sparsity=1.2 must be in [0, 1)",
    )


def test_subclasses_defined_elsewhere_inherit_their_status():
    class NarrowerError(LimitExceededError):
        pass

    class ElsewhereError(OnnxpruneError):  # bad input by definition, as the CLI's exit 2
        pass

    assert to_status(NarrowerError("x"))[0] is Code.RESOURCE_EXHAUSTED
    assert to_status(ElsewhereError("x"))[0] is Code.INVALID_ARGUMENT


def test_messages_carry_no_path_or_traceback():
    error = InvalidModelError(
        "external data of /tmp/onnxprune-k2j4/in/model/w.bin is missing\n"
        'Traceback (most recent call last):\n  File "/srv/app/x.py", line 1'
    )
    _, message = to_status(error)
    assert "\n" not in message
    assert "Traceback" not in message
    assert "/tmp" not in message  # noqa: S108 - a path that must not show
    assert "onnxprune-k2j4" not in message
    assert message == "external data of <path> is missing"


def test_internal_errors_say_nothing_of_their_details():
    _, message = to_status(KeyError("token=s3cr3t in /etc/onnxprune/secret"))
    assert "s3cr3t" not in message
    assert "/etc" not in message
    assert message == "internal error (KeyError); see the server log"


def test_long_messages_are_cut():
    _, message = to_status(InvalidOptionError("x" * 5000))
    assert len(message) <= 300
    assert message.endswith("...")
