"""A stalled upload (half a model, then nothing) is ended by the idle-upload timeout."""

from __future__ import annotations

import threading
import time

import grpc

from onnxprune.cli._main import _parser
from onnxprune.cli._serve import server_config
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.client import Client
from onnxprune.service.wire import file_info
from tests.server.conftest import MLP


def _half_then_silence(release: threading.Event):
    """A Prune request that sends the header and half the model, then waits for ``release``."""
    header = pb.PruneHeader(model=file_info(MLP, MLP.name), options=pb.PruneOptions(sparsity=0.5))
    yield pb.PruneRequest(header=header)
    data = MLP.read_bytes()
    yield pb.PruneRequest(chunk=data[: len(data) // 2])
    release.wait()


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onnxprune-upload")]


def test_a_stalled_upload_is_ended_its_slot_freed_and_its_spool_removed(start_server, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    address = start_server(max_concurrent=1, jobs=1, upload_timeout=0.5, work_dir=str(spool))
    release, before = threading.Event(), set(_readers())
    try:
        with grpc.insecure_channel(address) as channel:
            call = pb_grpc.PruningServiceStub(channel).Prune(
                _half_then_silence(release), timeout=120
            )
            try:
                list(call)
            except grpc.RpcError as e:
                ended = e
            else:
                raise AssertionError("the stalled upload was answered")
    finally:
        release.set()
    assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "upload stalled" in ended.details()
    assert list(spool.iterdir()) == []
    with Client(address, timeout=60) as client:  # the only slot is free again
        assert client.analyze(MLP).total_params == 50_200
    for _ in range(600):  # the reader left waiting returns once the call has ended
        if not set(_readers()) - before:
            break
        time.sleep(0.05)
    assert set(_readers()) - before == set()


def test_serve_takes_the_timeout_as_a_flag():
    args = _parser().parse_args(["serve", "--upload-timeout", "5"])
    assert server_config(args).upload_timeout == 5.0
    assert server_config(_parser().parse_args(["serve"])).upload_timeout == 60.0
