"""One batch at a time per output folder: an exclusive lock on ``OUT/.onnxprune-batch.lock``.

Two runs writing into the same folder would overwrite each other's models and markers and leave
``batch.jsonl`` describing files that are no longer there, so the second run is refused at once
(no waiting) with one line naming the folder and the pid that holds it.

The lock is an ``flock`` on the open file: the kernel releases it when the holder's process ends,
however it ends (``kill -9`` included), so there is never a stale lock to clean up. Worker
processes forked while it is held share it: workers still running after their parent was killed
keep the folder locked until they end too. The file stays behind; it holds the pid of the last
holder. Where ``fcntl`` is missing (Windows), nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from onnxprune.errors import InvalidOptionError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

LOCK_FILE = ".onnxprune-batch.lock"


@contextmanager
def lock_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the batch lock of the existing folder ``out`` while inside; yields the lock file.

    Raises:
        InvalidOptionError: another process holds it (the message names ``out`` and its pid).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out, lock_folder(out):  # doctest: +ELLIPSIS
        ...     with lock_folder(out):
        ...         pass
        Traceback (most recent call last):
        ...
        onnxprune.errors.InvalidOptionError: ... is in use by another onnxprune batch (pid ...)...
    """
    path = Path(out) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InvalidOptionError(
                    f"{out} is in use by another onnxprune batch ({_holder(fd)}); wait for it "
                    "to finish or choose another output folder"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """``pid N`` from the lock file, or ``pid unknown`` while the holder has yet to write it."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "pid unknown"
