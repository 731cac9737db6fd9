"""Bad uploads get the right status, a message without paths, and the server keeps serving."""

from __future__ import annotations

import hashlib
import threading

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import InvalidModelError, InvalidOptionError, LimitExceededError
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.client import Client
from tests.server.conftest import MLP

Code = grpc.StatusCode


def _header(data: bytes, name: str = "m.onnx", **fields) -> pb.AnalyzeRequest:
    info = pb.FileInfo(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    info.MergeFrom(pb.FileInfo(**fields))
    return pb.AnalyzeRequest(header=pb.AnalyzeHeader(model=info))


def _analyze(stub, requests) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Analyze(iter(requests), timeout=30))
    return caught.value


def _assert_clean(message: str) -> None:
    assert "Traceback" not in message
    assert "\n" not in message
    assert "/tmp" not in message  # noqa: S108 - a path that must not show
    assert "onnxprune-" not in message  # the server's spool folder


def test_sha_mismatch_is_invalid_argument(stub):
    data = MLP.read_bytes()
    header = _header(data)
    header.header.model.sha256 = hashlib.sha256(b"something else").hexdigest()
    error = _analyze(stub, [header, pb.AnalyzeRequest(chunk=data)])
    assert error.code() is Code.INVALID_ARGUMENT
    assert "sha256 does not match" in error.details()
    assert dict(error.trailing_metadata())["onnxprune-error"] == "InvalidModelError"


def test_stream_shorter_than_announced_is_invalid_argument(stub):
    data = MLP.read_bytes()
    error = _analyze(stub, [_header(data), pb.AnalyzeRequest(chunk=data[:1000])])
    assert error.code() is Code.INVALID_ARGUMENT
    assert "ended after 1000 of" in error.details()


def test_more_data_than_announced_is_invalid_argument(stub):
    data = MLP.read_bytes()
    chunks = [pb.AnalyzeRequest(chunk=data), pb.AnalyzeRequest(chunk=b"extra")]
    error = _analyze(stub, [_header(data), *chunks])
    assert error.code() is Code.INVALID_ARGUMENT


def test_chunk_over_one_mib_is_invalid_argument(stub):
    data = bytes(1536 * 1024)
    error = _analyze(stub, [_header(data), pb.AnalyzeRequest(chunk=data)])
    assert error.code() is Code.INVALID_ARGUMENT
    assert "over the 1 MiB limit" in error.details()


def test_missing_header_and_path_names_are_invalid_argument(stub):
    assert _analyze(stub, [pb.AnalyzeRequest(chunk=b"x")]).code() is Code.INVALID_ARGUMENT
    for name in ("../../etc/passwd", "/abs.onnx", "dir/m.onnx", ""):
        error = _analyze(stub, [_header(b"", name=name)])
        assert error.code() is Code.INVALID_ARGUMENT, name
        assert "is not allowed" in error.details()


def test_over_limit_header_is_refused_before_any_data_is_read(start_server):
    address = start_server(max_bytes=1000)
    data_sent, never = threading.Event(), threading.Event()

    def requests():
        yield _header(b"", size=10**12, sha256="0" * 64)
        never.wait(30)  # the data would come now: the server must answer without it
        data_sent.set()
        yield pb.AnalyzeRequest(chunk=b"x")

    with grpc.insecure_channel(address) as channel:
        error = _analyze(pb_grpc.PruningServiceStub(channel), requests())
    assert not data_sent.is_set()  # answered while the client still held the data back
    never.set()
    assert error.code() is Code.RESOURCE_EXHAUSTED
    assert "over this server's limit of 1000 bytes" in error.details()


def test_truncated_and_non_onnx_models(address, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(MLP.read_bytes()[:5000])
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    with Client(address) as client:
        for path in (truncated, text):
            with pytest.raises(InvalidModelError) as caught:
                client.analyze(path)
            assert "not a valid ONNX model" in str(caught.value)
            _assert_clean(str(caught.value))


def test_path_escaping_external_data_is_invalid_argument(address, tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "64")):
        tensor.external_data.add(key=key, value=value)
    path = tmp_path / "escape.onnx"
    path.write_bytes(model.SerializeToString())
    with Client(address) as client, pytest.raises(InvalidModelError) as caught:
        client.analyze(path)
    assert "leaves the model's directory" in str(caught.value)
    _assert_clean(str(caught.value))


def test_bad_options_are_invalid_argument(address, tmp_path):
    with Client(address) as client:
        with pytest.raises(InvalidOptionError, match=r"sparsity=1\.5 must be in \[0, 1\)"):
            client.prune(MLP, tmp_path / "p.onnx", sparsity=1.5)
        with pytest.raises(InvalidOptionError, match="unknown score 'nope'"):
            client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5, score="nope")
        with pytest.raises(InvalidOptionError, match="level="):
            client.analyze(MLP, level="bogus")
    assert not (tmp_path / "p.onnx").exists()


def test_client_max_bytes_is_honoured_under_the_server_limit(address):
    with Client(address) as client, pytest.raises(LimitExceededError, match="over the limit"):
        client.analyze(MLP, max_bytes=1000)


def test_server_keeps_serving_after_errors(address, stub):
    _analyze(stub, [pb.AnalyzeRequest(chunk=b"junk")])
    with Client(address) as client:
        assert client.analyze(MLP).total_params == 50_200  # 64*300 + 300*100 + 100*10
