"""Health ``Watch`` streams need no token, so they are bounded: they never starve other calls."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onnxprune.service.client import Client
from tests.server.conftest import MLP

TOKEN = "hostile-watch-token"  # noqa: S105 - a test token
SERVING = health_pb2.HealthCheckResponse.SERVING


def _watch(channel: grpc.Channel):
    """A Watch of the server's health; its deadline only keeps a broken server from hanging us."""
    request = health_pb2.HealthCheckRequest(service="")
    return health_pb2_grpc.HealthStub(channel).Watch(request, timeout=120)


def _first(watch) -> object:
    """The first status a watch gets, or the code it ends with."""
    try:
        return next(watch).status
    except grpc.RpcError as e:
        return e.code()


def test_watches_over_the_limit_are_refused_and_calls_still_complete(start_server, tmp_path):
    # max_concurrent=2: the thread pool once had 2 + 8 threads, so 20 watches took them all.
    address = start_server(token=TOKEN, max_concurrent=2, max_watches=3, jobs=1)
    with grpc.insecure_channel(address) as channel:
        watches = [_watch(channel) for _ in range(20)]
        outcomes = [_first(watch) for watch in watches]
        assert outcomes.count(SERVING) == 3
        assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 17
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        assert check.status == SERVING
        with Client(address, token=TOKEN, timeout=120) as client:
            result = client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5)
            assert result.report.direct_sparsity == pytest.approx(0.5, abs=1e-3)
            assert client.analyze(MLP).total_params == 50_200
        for watch in watches:
            watch.cancel()


def test_a_watch_ends_after_its_lifetime_and_frees_its_place(start_server):
    address = start_server(max_watches=1, watch_seconds=0.5)
    with grpc.insecure_channel(address) as channel:
        first = _watch(channel)
        assert next(first).status == SERVING
        with pytest.raises(grpc.RpcError) as ended:
            next(first)  # no change of status: the stream ends at its lifetime
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "watch again" in ended.value.details()
        second = _watch(channel)  # the one place is free again
        assert next(second).status == SERVING
        second.cancel()


def test_a_cancelled_watch_frees_its_place(start_server):
    address = start_server(max_watches=1)
    with grpc.insecure_channel(address) as channel:
        first = _watch(channel)
        assert next(first).status == SERVING
        first.cancel()
        for _ in range(400):  # the server learns of the cancellation shortly after
            time.sleep(0.05)
            second = _watch(channel)
            try:
                assert next(second).status == SERVING
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                continue
            second.cancel()
            return
        pytest.fail("the cancelled watch kept its place")
