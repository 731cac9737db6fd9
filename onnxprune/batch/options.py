"""What identifies a batch item's run, and memory sizes as users write them.

A batch item's options are ``onnxprune.options.PruneOptions``, merged from the least to the most
specific: the defaults of ``prune``, the command line's flags, a manifest's ``defaults``, then the
model's own ``options`` (``merge_options``). Their fingerprint (a hash of the merged options, the
evaluation data and the onnxprune version) is stored next to the outputs, so a rerun redoes a
model whose options changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from onnxprune.errors import InvalidOptionError
from onnxprune.options import PruneOptions


def fingerprint(options: PruneOptions, data: str | os.PathLike | None, version: str) -> str:
    """A hash of what determines a model's outputs: options, evaluation data, onnxprune version."""
    document = {
        "options": options.to_dict(),
        "data": None if data is None else os.path.abspath(data),
        "onnxprune": version,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int | None) -> int | None:
    """``"512M"``, ``"4G"``, ``"1.5GiB"`` or a number of bytes; ``0``, ``"none"``: no limit.

    Raises:
        InvalidOptionError: anything else.
    """
    if text is None or (isinstance(text, int) and not isinstance(text, bool)):
        return text or None
    if str(text).strip().lower() in ("none", "0"):
        return None
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise InvalidOptionError(f"memory limit {text!r} must look like 512M, 4G or a byte count")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()]) or None
