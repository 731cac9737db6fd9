"""Interceptors: one-request pool, request log, auth, malformed requests, concurrency limit.

Outermost first. Each after the first wraps the method's behavior in a context manager
``around(request, context)`` that yields the request to pass on (``wrap``); health checks skip
auth and the limit. The request log also feeds the service's metrics
(``metrics.ServiceMetrics``), and the limit turns the ``readiness`` health status NOT_SERVING
while every slot is taken.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import Message

from onnxprune.service.metrics import ServiceMetrics
from onnxprune.service.wire import SERVICE

log = logging.getLogger("server.requests")

Around = Callable[[Any, grpc.ServicerContext], contextlib.AbstractContextManager]
HEALTH = "/grpc.health.v1.Health/"


def wrap(
    handler: grpc.RpcMethodHandler | None,
    around: Around,
    sent: Callable[[Any], None] | None = None,
) -> grpc.RpcMethodHandler | None:
    """``handler`` with its behavior run inside ``around(request, context)``.

    ``sent``, when given, is called with each response message before it leaves.
    """
    if handler is None:
        return None
    kind = ("stream" if handler.request_streaming else "unary") + (
        "_stream" if handler.response_streaming else "_unary"
    )
    inner = getattr(handler, kind)
    seen = sent or (lambda response: None)

    def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with around(request, context) as request:
            for response in inner(request, context):
                seen(response)
                yield response

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        with around(request, context) as request:
            response = inner(request, context)
            seen(response)
            return response

    return handler._replace(**{kind: streaming if handler.response_streaming else unary})


class OneRequestPool(grpc.ServerInterceptor):
    """Calls with one request (health ``Check`` and ``Watch``, ``ListMethods``) run on ``pool``.

    gRPC waits for a call's request in a thread of its pool, before any handler could refuse
    it, and without a time limit: a peer that opens such calls and sends no request holds
    those threads (until keepalive drops a peer that answers no ping). On a pool of their own
    they never hold the threads of the pruning calls, which all stream their uploads (read by
    the handler, after auth, with ``--upload-timeout``).
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def intercept_service(self, continuation, handler_call_details):  # noqa: D102
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        return handler._replace(**{kind: _on_pool(getattr(handler, kind), self._pool)})


def _on_pool(behavior: Callable, pool: ThreadPoolExecutor) -> Callable:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        return behavior(request, context)

    run.experimental_thread_pool = pool  # where gRPC's server runs the behavior (and waits)
    return run


class RequestLog(grpc.ServerInterceptor):
    """Logs each call (method, bytes received, duration, status) and counts it in ``metrics``.

    The log record carries the figures as attributes too (``method``, ``bytes``, ``seconds``,
    ``status``), for the JSON log format.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):  # noqa: D102
        method = handler_call_details.method
        sent = [0]
        return wrap(
            continuation(handler_call_details),
            lambda r, c: self._logged(method, r, c, sent),
            lambda response: sent.__setitem__(0, sent[0] + _size(response)),
        )

    @contextlib.contextmanager
    def _logged(
        self, method: str, request: Any, context: grpc.ServicerContext, sent: list[int]
    ) -> Iterator[Any]:
        start, received = time.monotonic(), [0]
        status = "OK"
        try:
            yield _counted(request, received) if isinstance(request, Iterator) else request
        except GeneratorExit:
            status = "CANCELLED"
            raise
        except BaseException:
            status = "UNKNOWN"
            raise
        finally:
            if not isinstance(request, Iterator):
                received[0] = _size(request)
            code = context.code()
            if code is not None:
                status = code.name
            elif not context.is_active():
                left = context.time_remaining()
                status = "DEADLINE_EXCEEDED" if left is not None and left <= 0 else "CANCELLED"
            took = time.monotonic() - start
            figures = {"method": method, "bytes": received[0], "seconds": took, "status": status}
            log.info("%s %d bytes %.3fs %s", method, received[0], took, status, extra=figures)
            self._metrics.call_ended(method, status, took, received[0], sent[0])


def _counted(requests: Iterator[Any], received: list[int]) -> Iterator[Any]:
    for request in requests:
        received[0] += _size(request)
        yield request


def _size(request: Any) -> int:
    """Bytes of a request message (0 for a ``MalformedRequest``)."""
    return request.ByteSize() if isinstance(request, Message) else 0


class BearerAuth(grpc.ServerInterceptor):
    """Calls must carry ``authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(self, token: str | None) -> None:
        self._expected = None if token is None else f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):  # noqa: D102
        handler = continuation(handler_call_details)
        if self._expected is None or handler_call_details.method.startswith(HEALTH):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return handler
        return wrap(handler, _refuse)


@contextlib.contextmanager
def _refuse(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
    yield request  # not reached: abort raises


class MalformedRequest(Exception):  # noqa: N818 - named as what the client sent
    """A request message that is not valid protobuf of its type (the status: INVALID_ARGUMENT)."""


class RefuseMalformed(grpc.ServerInterceptor):
    """A request that does not parse ends its call with INVALID_ARGUMENT, not gRPC's INTERNAL.

    gRPC answers a message its deserializer cannot read with ``INTERNAL`` ("Exception
    deserializing request!") behind the handler's back. Here the deserializer never raises: it
    returns a ``MalformedRequest`` in the message's place, which is refused before the handler
    sees it (one request), or raised where the handler reads it (a stream; the service answers
    it with INVALID_ARGUMENT as any bad input), so the status and the request log agree.
    """

    def intercept_service(self, continuation, handler_call_details):  # noqa: D102
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        lenient = _lenient(handler.request_deserializer)
        return wrap(handler._replace(request_deserializer=lenient), _refuse_malformed)


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # protobuf's DecodeError, or whatever a deserializer raises
            return MalformedRequest(f"malformed request: {str(e).strip() or type(e).__name__}")

    return read


@contextlib.contextmanager
def _refuse_malformed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    if isinstance(request, MalformedRequest):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(request))
    try:
        yield _checked(request) if isinstance(request, Iterator) else request
    except MalformedRequest as e:  # a handler that let it through (health, reflection)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, MalformedRequest):
            raise request
        yield request


class ConcurrencyLimit(grpc.ServerInterceptor):
    """At most ``limit`` calls of the pruning service in flight; more get RESOURCE_EXHAUSTED.

    ``ready(False)`` is called when the last slot is taken and ``ready(True)`` when one frees
    again (the ``readiness`` health status); ``metrics`` counts the calls in flight.
    """

    def __init__(self, limit: int, metrics: ServiceMetrics, ready: Callable[[bool], None]) -> None:
        self._limit, self._busy, self._lock = limit, 0, threading.Lock()
        self._metrics, self._ready = metrics, ready

    def intercept_service(self, continuation, handler_call_details):  # noqa: D102
        handler = continuation(handler_call_details)
        if not handler_call_details.method.startswith(f"/{SERVICE}/"):
            return handler
        return wrap(handler, self._slot)

    @contextlib.contextmanager
    def _slot(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._lock:
            free = self._busy < self._limit
            if free:
                self._taken(+1)
        if not free:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self._limit} calls in flight (its --max-concurrent); retry later",
            )
        try:
            yield request
        finally:
            with self._lock:
                self._taken(-1)

    def _taken(self, change: int) -> None:
        """Count a slot taken (+1) or freed (-1); the lock is held."""
        self._busy += change
        self._metrics.calls_in_flight.set(self._busy)
        if self._busy == self._limit or (change < 0 and self._busy == self._limit - 1):
            self._ready(self._busy < self._limit)
