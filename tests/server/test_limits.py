"""Concurrency limit, cancellation, deadlines and the worker memory limit."""

from __future__ import annotations

import multiprocessing.forkserver
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import RemoteError
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.client import Client
from onnxprune.service.wire import file_info, read_chunks
from tests.helpers import until
from tests.server.conftest import MLP, SLOW


def _slow_prune(channel: grpc.Channel):
    """Start a Prune that runs for minutes; returns the call once its job is running."""
    header = pb.PruneHeader(model=file_info(MLP, MLP.name), options=pb.PruneOptions(**SLOW))
    requests = [pb.PruneRequest(header=header)]
    requests += [pb.PruneRequest(chunk=c) for c in read_chunks(MLP)]
    call = pb_grpc.PruningServiceStub(channel).Prune(iter(requests), timeout=120)
    for message in call:
        if message.progress.stage == "prune":
            return call
    raise AssertionError("the job never started")


def _workers() -> set[int]:
    """Processes forked by the fork server right now: the workers of every server here."""
    parent = multiprocessing.forkserver._forkserver._forkserver_pid
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


@pytest.mark.skipif(sys.platform != "linux", reason="counts worker processes in /proc")
def test_cancellation_kills_the_worker_and_frees_it(start_server):
    address = start_server(jobs=1)
    before = _workers()
    with grpc.insecure_channel(address) as channel:
        call = _slow_prune(channel)
        busy = _workers() - before  # this server starts its one worker for this job
        assert len(busy) == 1
        call.cancel()
    assert until(lambda: not busy & _workers()), "the cancelled job's worker is still running"
    with Client(address, timeout=20) as client:  # the only worker is free again
        assert client.analyze(MLP).total_params == 50_200


def test_deadline_stops_the_job(start_server, tmp_path):
    address = start_server(jobs=1)
    start = time.monotonic()
    with Client(address, timeout=1.5) as client, pytest.raises(RemoteError) as caught:
        client.prune(MLP, tmp_path / "p.onnx", **SLOW)
    assert caught.value.status == "DEADLINE_EXCEEDED"
    assert time.monotonic() - start < 10
    assert not (tmp_path / "p.onnx").exists()
    with Client(address, timeout=20) as client:
        assert client.analyze(MLP).total_params == 50_200


def test_max_concurrent_refuses_the_call_over_the_limit(start_server):
    address = start_server(max_concurrent=1, jobs=1)
    with grpc.insecure_channel(address) as channel:
        call = _slow_prune(channel)
        with Client(address, timeout=10) as client:
            for attempt in (client.list_methods, lambda: client.analyze(MLP)):
                with pytest.raises(RemoteError) as caught:
                    attempt()
                assert caught.value.status == "RESOURCE_EXHAUSTED"
                assert "max-concurrent" in caught.value.details
            call.cancel()
            assert until(lambda: _succeeds(client.list_methods))
            assert client.analyze(MLP).total_params == 50_200


def _succeeds(fn) -> bool:
    try:
        fn()
    except RemoteError:
        return False
    return True


def test_a_worker_over_its_memory_limit_does_not_take_the_server_down(start_server, tmp_path):
    # Four MatMuls with 19000x19000 weights made by ConstantOfShape: a 400-byte file. Each
    # weight (1.34 GiB) is under the 1.5 GiB a tensor may take in a worker limited to 3 GiB
    # (onnxprune.model_checks.tensor_limit refuses larger ones before any work), but pruning
    # holds every weight with its scores: more than the worker has.
    shape = numpy_helper.from_array(np.array([19000, 19000], np.int64), "shape")
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = []
    for i in range(4):
        nodes.append(helper.make_node("ConstantOfShape", ["shape"], [f"w{i}"], value=one))
        nodes.append(helper.make_node("MatMul", [f"h{i}" if i else "x", f"w{i}"], [f"h{i + 1}"]))
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19000])],
        [helper.make_tensor_value_info("h4", TensorProto.FLOAT, [1, 19000])],
        [shape],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "hostile.onnx"
    path.write_bytes(model.SerializeToString())
    address = start_server(jobs=1, memory_limit=3 * 2**30)
    with Client(address, timeout=60) as client:
        with pytest.raises(RemoteError) as caught:
            client.prune(path, tmp_path / "pruned.onnx", sparsity=0.5)
        assert caught.value.status in ("RESOURCE_EXHAUSTED", "INTERNAL")
        assert "memory" in caught.value.details
        assert client.analyze(MLP).total_params == 50_200
