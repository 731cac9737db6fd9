"""Read a report JSON from disk: bounded size; bad JSON or an unknown shape is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

from onnxprune.errors import InvalidOptionError, LimitExceededError
from onnxprune.render.kinds import detect_kind

MAX_REPORT_BYTES = 64 * 1024 * 1024  # a sweep of thousands of runs is a few MB


def load_report(path: str | Path, max_bytes: int = MAX_REPORT_BYTES) -> dict:
    """The parsed report JSON at ``path``, checked to be a known kind (see ``kinds.py``).

    Raises:
        InvalidOptionError: missing or unreadable file, not JSON, or not a known report.
        LimitExceededError: the file is larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LimitExceededError(f"report is {size} bytes, over the limit of {max_bytes}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidOptionError(f"report file not found: {path.name}") from None
    except OSError as e:
        raise InvalidOptionError(f"cannot read the report {path.name}: {e.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidOptionError(
            f"{path.name} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidOptionError(f"{path.name} is not valid JSON: not UTF-8 text") from None
    except RecursionError:
        raise InvalidOptionError(f"{path.name} is not a report: JSON nested too deeply") from None
    detect_kind(data)
    return data
