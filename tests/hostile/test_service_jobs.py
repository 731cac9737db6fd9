"""No call holds a worker for good: jobs have a time limit, and options have bounds."""

from __future__ import annotations

import sys

import grpc
import pytest

from onnxprune.cli._main import _parser
from onnxprune.cli._serve import server_config
from onnxprune.errors import RemoteError
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.client import Client
from onnxprune.service.wire import file_info, read_chunks
from tests.helpers import until
from tests.server.conftest import MLP, SLOW
from tests.server.test_limits import _workers


@pytest.mark.skipif(sys.platform != "linux", reason="counts worker processes in /proc")
def test_a_job_over_the_time_limit_is_stopped_and_its_worker_killed(start_server, tmp_path):
    address = start_server(jobs=1, max_job_seconds=1.0)
    before = _workers()
    with Client(address) as client:  # no deadline: only the server's limit ends the job
        with pytest.raises(RemoteError) as caught:
            client.prune(MLP, tmp_path / "p.onnx", **SLOW)
        assert caught.value.status == "DEADLINE_EXCEEDED"
        assert "time limit of 1 s" in caught.value.details
        assert not (tmp_path / "p.onnx").exists()
        # The worker ran no other job: the one that ran over was killed, not left running.
        assert until(lambda: not (_workers() - before), seconds=60)
        assert client.analyze(MLP).total_params == 50_200


def test_rounds_near_2_31_are_refused_before_any_work(start_server):
    address = start_server(jobs=1)
    options = pb.PruneOptions(sparsity=0.5, score="synflow", rounds=2**31 - 1)
    requests = [
        pb.PruneRequest(header=pb.PruneHeader(model=file_info(MLP, MLP.name), options=options))
    ]
    requests += [pb.PruneRequest(chunk=c) for c in read_chunks(MLP)]
    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.PruningServiceStub(channel).Prune(iter(requests), timeout=120)
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rounds=2147483647 must be at most 10000" in caught.value.details()


def test_serve_takes_the_time_limit_as_a_flag():
    args = _parser().parse_args(["serve", "--max-job-seconds", "90"])
    assert server_config(args).max_job_seconds == 90.0
    assert server_config(_parser().parse_args(["serve"])).max_job_seconds == 3600.0
