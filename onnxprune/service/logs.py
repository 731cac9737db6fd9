"""The server's log formats: ``text`` for people, ``json`` (one object a line) for collectors.

A JSON line has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus the
figures a record carries as attributes (the request log's ``method``, ``bytes``, ``seconds``,
``status``) and ``error`` with the traceback where there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

FIGURES = ("method", "bytes", "seconds", "status")
"""Record attributes copied into a JSON line when present."""


class JsonFormatter(logging.Formatter):
    """One JSON object a record."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in FIGURES if hasattr(record, name)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


def configure_logging(log_format: str) -> None:
    """Log INFO and up on stderr as ``log_format`` says (``text``, ``json``) unless configured."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
