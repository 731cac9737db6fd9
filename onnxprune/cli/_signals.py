"""SIGINT and SIGTERM stop a long command cleanly: one line on stderr, exit 128 + the signal.

Python turns SIGINT into ``KeyboardInterrupt`` and dies on SIGTERM at once; inside ``stoppable``
both raise ``Stopped`` in the main thread, so the code in flight unwinds (``batch`` kills its
workers, releases its lock) and the command reports where it stopped. Further signals are
ignored while it unwinds: a second Ctrl-C cannot cut the cleanup short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """A stop signal arrived; ``exit_code`` is what shells report for it (130, 143).

    A ``BaseException``, as ``KeyboardInterrupt`` is, so ``except Exception`` lets it through.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


@contextmanager
def stoppable() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise ``Stopped`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(signum: int, frame: object) -> None:
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)
