"""Byte sizes: as users write them (``512M``, ``4G``), and the default limit on a model's size.

Both the batch workers (a flag, or a manifest's ``memory_limit``) and the server's worker
processes (``--memory-limit``, its config file) take a size in this one spelling.
"""

from __future__ import annotations

import os
import re

from onnxprune.errors import InvalidOptionError

DEFAULT_MAX_BYTES = 8 * 2**30
"""Default limit on the bytes of a model (file plus external data) that ``load_model`` accepts."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int | None) -> int | None:
    """``"512M"``, ``"4G"``, ``"1.5GiB"`` or a number of bytes; ``0``, ``"none"``: no limit.

    Raises:
        InvalidOptionError: anything else.

    Example:
        >>> parse_size("512M"), parse_size("1.5GiB"), parse_size("none")
        (536870912, 1610612736, None)
    """
    if text is None or (isinstance(text, int) and not isinstance(text, bool)):
        return text or None
    if str(text).strip().lower() in ("none", "0"):
        return None
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise InvalidOptionError(f"memory limit {text!r} must look like 512M, 4G or a byte count")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()]) or None


def format_size(size: int | None) -> str:
    """Bytes in the spelling ``parse_size`` reads, three significant digits: ``38.2K``; ``n/a``.

    Example:
        >>> format_size(39_117), format_size(512), format_size(3 * 2**30), format_size(None)
        ('38.2K', '512B', '3G', 'n/a')
    """
    if size is None:
        return "n/a"
    for suffix in ("T", "G", "M", "K"):
        if size >= _UNITS[suffix.lower()]:
            return f"{size / _UNITS[suffix.lower()]:.3g}{suffix}"
    return f"{size}B"


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (``None`` where it is unknown).

    Batch workers may add this much by default; the server's workers get a share of it.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None
