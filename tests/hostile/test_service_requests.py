"""Requests gRPC cannot parse, and file names the proto allows but a disk does not: each is
INVALID_ARGUMENT with a clear message (not INTERNAL), the request log agrees, and the server
keeps serving."""

from __future__ import annotations

import hashlib
import logging
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.client import Client
from onnxprune.service.wire import SERVICE
from tests.server.conftest import MLP

TRUNCATED = b"\x0a\x05ab"  # field 1, 5 bytes announced, 2 given: no message of any type


def _logged_statuses(caplog, method: str) -> list[str]:
    return [
        r.getMessage().rsplit(" ", 1)[1]
        for r in caplog.records
        if r.name == "server.requests" and r.getMessage().startswith(method + " ")
    ]


@pytest.mark.parametrize(
    ("method", "kind", "response"),
    [
        (f"/{SERVICE}/Prune", "stream_stream", pb.PruneResponse),
        (f"/{SERVICE}/Analyze", "stream_stream", pb.AnalyzeResponse),
        (f"/{SERVICE}/ListMethods", "unary_unary", pb.ListMethodsResponse),
        ("/grpc.health.v1.Health/Check", "unary_unary", health_pb2.HealthCheckResponse),
    ],
)
def test_malformed_protobuf_is_invalid_argument_and_logged_so(
    start_server, caplog, method, kind, response
):
    address = start_server()
    caplog.set_level(logging.INFO, logger="server.requests")
    with grpc.insecure_channel(address) as channel:
        call = getattr(channel, kind)(method, response_deserializer=response.FromString)
        with pytest.raises(grpc.RpcError) as caught:
            if kind == "stream_stream":
                list(call(iter([TRUNCATED]), timeout=60))
            else:
                call(TRUNCATED, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("malformed request: Error parsing message")
    for _ in range(200):  # the log line is written as the handler returns, just after the status
        if _logged_statuses(caplog, method):
            break
        time.sleep(0.05)
    assert _logged_statuses(caplog, method) == ["INVALID_ARGUMENT"]
    with Client(address, timeout=60) as client:
        assert client.analyze(MLP).total_params == 50_200


def _info(name: str, data: bytes) -> pb.FileInfo:
    return pb.FileInfo(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _analyze(address: str, model: tuple[str, bytes], *data: tuple[str, bytes]) -> grpc.RpcError:
    header = pb.AnalyzeHeader(model=_info(*model), model_data=[_info(*d) for d in data])
    requests = [pb.AnalyzeRequest(header=header)]
    requests += [pb.AnalyzeRequest(chunk=content) for _, content in (model, *data) if content]
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/{SERVICE}/Analyze",
            request_serializer=pb.AnalyzeRequest.SerializeToString,
            response_deserializer=pb.AnalyzeResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call(iter(requests), timeout=60))
    return caught.value


def test_a_file_and_a_folder_of_the_same_name_are_invalid_argument(start_server):
    address = start_server()
    refused = _analyze(address, ("x", MLP.read_bytes()), ("x/w.bin", b"\0" * 16))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "'x/w.bin' would be inside 'x', a file of the model"
    with Client(address, timeout=60) as client:
        assert client.analyze(MLP).total_params == 50_200


def test_a_name_over_255_bytes_is_invalid_argument(start_server):
    address = start_server()
    name = "é" * 128 + ".onnx"  # 133 characters, 261 bytes in UTF-8
    refused = _analyze(address, (name, MLP.read_bytes()))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not allowed: a part of it is 261 bytes in UTF-8, over the 255" in refused.details()
    with Client(address, timeout=60) as client:
        assert client.analyze(MLP).total_params == 50_200
