"""ONNX Runtime sessions: on CUDA when it really starts, else on the CPU, with quiet logs.

Shared by everything that runs a model (the activation score, validation). With the
``onnxruntime-gpu`` wheel, ``CUDAExecutionProvider`` is listed as available even on machines
without a usable GPU; ONNX Runtime then falls back to the CPU by itself. The provider that a
session really runs on is read back from the session, never assumed from the request.
ONNX Runtime is imported when a session is made: the command line reads ``PROVIDERS`` for its
``--help``.

A model ONNX Runtime refuses (an op of a domain it does not know, types that do not match)
is bad input, not a bug: ``create_session`` raises ``InvalidModelError`` and ``run_session``
raises ``DatasetError``, each with the first line of ONNX Runtime's message, without its prefix
or the model's path.

Worker threads never spin: by default ONNX Runtime's intra-op workers busy-wait for the next
piece of work after each one, and a session's workers keep spinning after its run ended.
Validation runs a model and its baseline in turns, each in its own session, so the spinning
workers of one took the cores the other needed: a BERT-like encoder timed in turn with its pruned
copy at 2 threads on 2 cores took 11-22 ms a run instead of the 6.4 ms it takes alone, and the
speedup's interval spanned 0.95-1.53; without spinning, 7.0 ms in turn and 6.9 ms alone. A worker
sleeping between ops costs a wake-up, the same for both sides, and one thread has no workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from onnxprune.errors import DatasetError, InvalidModelError, InvalidOptionError

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

PROVIDERS = ("auto", "cuda", "cpu")
"""Accepted values of ``provider``: ``auto`` takes CUDA when it starts, else the CPU."""

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_QUIET = 3  # ONNX Runtime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
_SILENT = 4  # while trying CUDA: a machine without it logs a library-load error we expect
_NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
"""Session configuration entries that keep idle worker threads from busy-waiting (see above)."""
_REFUSALS = (
    *("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel"),
    *("NotImplemented", "RuntimeException"),
)
"""What ONNX Runtime raises for a model or feeds it will not take (its classes' names)."""
_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .* failed:)?")


def create_session(
    model: bytes | str | os.PathLike, provider: str = "auto", *, threads: int | None = None
) -> tuple[ort.InferenceSession, str]:
    """An inference session for ``model`` and the execution provider it really runs on.

    Args:
        model: the serialized model, or the path of an ``.onnx`` file (needed for models with
            external data).
        provider: ``"auto"`` (CUDA if ONNX Runtime lists it and it starts, else the CPU),
            ``"cuda"`` (CUDA or an error) or ``"cpu"``.
        threads: intra-op threads (``None`` or 0: ONNX Runtime's choice, one per physical
            core); validation sets it so a model and its baseline run with the same settings.
            Idle workers sleep instead of spinning (module docstring).

    Returns:
        ``(session, provider_name)``, e.g. ``(session, "CPUExecutionProvider")``.

    Raises:
        InvalidOptionError: ``provider`` is not one of ``PROVIDERS``, or ``"cuda"`` was asked
            for and does not start.
        InvalidModelError: ONNX Runtime refuses the model.

    Example:
        >>> from onnx import helper, TensorProto
        >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> session, name = create_session(m.SerializeToString(), provider="cpu")
        >>> name
        'CPUExecutionProvider'
    """
    if provider not in PROVIDERS:
        raise InvalidOptionError(f"provider={provider!r} must be one of {', '.join(PROVIDERS)}")
    import onnxruntime as ort

    ort.set_default_logger_severity(_QUIET)
    source = os.fspath(model) if not isinstance(model, bytes) else model
    if provider != "cpu" and _CUDA in ort.get_available_providers():
        ort.set_default_logger_severity(_SILENT)
        try:
            session = _session(source, [_CUDA, _CPU], threads, _SILENT)
        except Exception as e:  # CUDA failing to start must not stop a CPU run (ORT's own types)
            if provider == "cuda":
                raise InvalidOptionError(f"provider='cuda' did not start: {_first_line(e)}") from e
        else:
            name = session.get_providers()[0]
            if name == _CUDA or provider == "auto":
                return session, name
        finally:
            ort.set_default_logger_severity(_QUIET)
    if provider == "cuda":
        raise InvalidOptionError("provider='cuda' is not available; use 'auto' or 'cpu'")
    return _session(source, [_CPU], threads), _CPU


def run_session(
    session: ort.InferenceSession, fetch: Sequence[str] | None, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """``session.run(fetch, feeds)``, with ONNX Runtime's failures as bad input.

    Raises:
        DatasetError: ONNX Runtime failed on these feeds (a shape the model cannot take, an
            op that fails on these values); the message is its first line.
    """
    try:
        return session.run(None if fetch is None else list(fetch), dict(feeds))
    except _refusals() as e:
        raise DatasetError(f"ONNX Runtime failed on the data: {_first_line(e)}") from e


def _session(
    model: bytes | str, providers: list[str], threads: int | None, severity: int = _QUIET
) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = severity
    if threads:
        options.intra_op_num_threads = threads
    for key, value in _NO_SPINNING.items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except _refusals() as e:
        raise InvalidModelError(f"ONNX Runtime refuses the model: {_first_line(e)}") from e


def _refusals() -> tuple[type[Exception], ...]:
    """The classes of ``_REFUSALS`` (ONNX Runtime is loaded by then)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(getattr(state, name) for name in _REFUSALS)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return _PREFIX.sub("", text.splitlines()[0]) if text else type(error).__name__
