"""The server's own time limits: an upload that stalls, a job that runs too long.

A client without a deadline could otherwise hold a ``--max-concurrent`` slot forever by sending
half a model and then nothing, or a worker forever with a job that never ends. Both end with
``TimeLimitExceeded``, which the service answers with ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")

_END = object()


class TimeLimitExceeded(Exception):  # noqa: N818 - named as the status it becomes
    """A call went over one of the server's time limits; the message names the limit."""


def idle_limited(requests: Iterator[T], seconds: float) -> Iterator[T]:
    """``requests``, ending with ``TimeLimitExceeded`` when none arrives within ``seconds``.

    gRPC's request iterator waits without a timeout, so each message is awaited in a reader
    thread of this call. A reader left waiting when the limit strikes returns once the call has
    ended (the server's answer ends it), and the thread with it.

    Raises:
        TimeLimitExceeded: ``seconds`` passed without a message or the end of the stream.
    """
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxprune-upload")
    try:
        while True:
            try:
                request = reader.submit(next, requests, _END).result(timeout=seconds)
            except FutureTimeout:
                raise TimeLimitExceeded(
                    f"the upload stalled: nothing arrived for {seconds:g} s (this server's "
                    "--upload-timeout)"
                ) from None
            if request is _END:
                return
            yield request
    finally:
        reader.shutdown(wait=False)
