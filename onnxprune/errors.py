"""Errors raised by onnxprune, and the exit codes the shells map them to.

The tree::

    OnnxpruneError                 base; never raised itself
    ├── InvalidModelError          missing, truncated, not ONNX, path-escaping external data
    ├── InvalidOptionError         an option outside what is allowed
    ├── LimitExceededError         model bytes or tensor count over a configured limit
    ├── ShapeError                 the exact level needs static shapes (hint: --input-shape)
    └── DatasetError               evaluation data that does not fit the model

The CLI prints ``f"{type(e).__name__}: {e}"`` on one line and exits with ``EXIT_CODES``; the gRPC
service maps the same classes to status codes.
"""

from __future__ import annotations


class OnnxpruneError(Exception):
    """Base of every error onnxprune raises on purpose (bad input, not bugs)."""


class InvalidModelError(OnnxpruneError):
    """The model cannot be read safely: missing, truncated, not ONNX, or escaping its directory."""


class InvalidOptionError(OnnxpruneError):
    """An option has a value outside what is allowed; the message says both."""


class LimitExceededError(OnnxpruneError):
    """The input is over a configured limit (bytes, tensor count)."""


class ShapeError(OnnxpruneError):
    """A computation needs static shapes the model does not give."""


class DatasetError(OnnxpruneError):
    """Evaluation data does not match the model's inputs."""


EXIT_CODES: dict[type[OnnxpruneError], int] = {
    InvalidModelError: 2,
    InvalidOptionError: 2,
    LimitExceededError: 2,
    ShapeError: 2,
    DatasetError: 2,
}
