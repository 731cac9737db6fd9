"""Progress of long work: the library reports it, whoever listens shows or forwards it.

Pruning a large model, an effective target's bisection, SynFlow's rounds, a validation pass, a
fine-tuning run or a Ray batch can take minutes. The code doing the work calls ``report(stage,
done, total)`` at natural steps; by default nobody listens and a report costs one context-variable
read. A caller that wants to see it listens for the duration of a block:

- ``bars()`` draws a bar per stage on stderr, only when stdout and stderr are both terminals (a
  pipe or a CI log gets nothing): the CLI wraps every command in it, and Python users can too::

      with onnxprune.progress.bars():
          onnxprune.prune("big.onnx", output="p.onnx", sparsity=0.9, effective=True)

- ``listening(callback)`` passes each ``Progress`` to ``callback`` (the gRPC worker forwards
  them to the client as ``Progress`` messages).

Listening is per thread and per task (a ``ContextVar``): work in another thread reports to its
own listener.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """One report: ``done`` of ``total`` steps of ``stage`` (``total`` ``None``: unknown).

    Attributes:
        stage: what is running ("analyze", "prune", "effective target", "synflow", ...).
        done: steps finished.
        total: steps in all, ``None`` when not known in advance.
        note: what the stage is doing or waiting for right now ("" for nothing to add).
    """

    stage: str
    done: float
    total: float | None = None
    note: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


Listener = Callable[[Progress], None]

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar(
    "onnxprune_progress", default=None
)


def report(stage: str, done: float, total: float | None = None, note: str = "") -> None:
    """Tell the listener, if any, that ``done`` of ``total`` steps of ``stage`` are finished."""
    listener = _listener.get()
    if listener is not None:
        listener(Progress(stage, done, total, note))


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Pass every report made inside the block (in this thread or task) to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def bars(enabled: bool | None = None) -> Iterator[None]:
    """Show reports as progress bars on stderr, one bar per stage (tqdm).

    Args:
        enabled: ``None`` (the default) shows bars only when stdout and stderr are terminals;
            ``True`` or ``False`` decide outright.
    """
    if enabled is None:
        enabled = _is_terminal(sys.stdout) and _is_terminal(sys.stderr)
    if not enabled:
        yield
        return
    shown = _Bars()
    try:
        with listening(shown):
            yield
    finally:
        shown.close()


class _Bars:
    """The bar of the stage running now; a new stage closes the one before."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._bar = None

    def __call__(self, progress: Progress) -> None:
        from tqdm import tqdm  # only when a terminal shows the bars

        if progress.stage != self._stage:
            self.close()
            self._stage = progress.stage
            self._bar = tqdm(
                desc=progress.stage, total=progress.total, file=sys.stderr, leave=False
            )
        bar = self._bar
        if progress.total != bar.total:
            bar.total = progress.total
        if progress.note != bar.postfix:
            bar.set_postfix_str(progress.note)  # redraws now: a note says what it waits for
        bar.update(progress.done - bar.n)  # redraws at most ten times a second

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = self._stage = None


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
