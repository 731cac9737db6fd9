"""Operating the service: Prometheus metrics, liveness vs readiness, the JSON log format."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.service import ServerConfig, create_server
from onnxprune.service.client import Client
from onnxprune.service.wire import SERVICE
from tests.helpers import run_cli, until
from tests.server.conftest import MLP
from tests.server.test_limits import _slow_prune

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample at ``/metrics`` by name and sorted labels, as prometheus_client parses it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _status(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def test_metrics_count_calls_bytes_and_jobs(start_server):
    port = _free_port()
    address = start_server(metrics_port=port, jobs=1)
    with Client(address, timeout=60) as client:
        assert client.analyze(MLP).total_params == 50_200
    analyze = f"/{SERVICE}/Analyze"
    assert _status(address, "") == SERVING
    samples = _scrape(port)
    ok = (("method", analyze), ("status", "OK"))
    assert samples[("onnxprune_requests_total", ok)] == 1
    assert samples[("onnxprune_request_duration_seconds_count", (("method", analyze),))] == 1
    received = samples[
        ("onnxprune_request_bytes_total", (("direction", "received"), ("method", analyze)))
    ]
    assert received >= MLP.stat().st_size  # the model travelled in the request stream
    sent = samples[("onnxprune_request_bytes_total", (("direction", "sent"), ("method", analyze)))]
    assert sent > 0
    health = (("method", "/grpc.health.v1.Health/Check"), ("status", "OK"))
    assert samples[("onnxprune_requests_total", health)] == 1
    assert samples[("onnxprune_jobs_in_flight", ())] == 0
    assert samples[("onnxprune_calls_in_flight", ())] == 0
    assert samples[("onnxprune_worker_restarts_total", ())] == 0


def test_a_cancelled_job_is_in_flight_then_counts_a_worker_restart(start_server):
    port = _free_port()
    address = start_server(metrics_port=port, jobs=1)
    with grpc.insecure_channel(address) as channel:
        call = _slow_prune(channel)
        during = _scrape(port)
        call.cancel()
    assert during[("onnxprune_jobs_in_flight", ())] == 1
    assert during[("onnxprune_calls_in_flight", ())] == 1
    assert until(lambda: _scrape(port)[("onnxprune_worker_restarts_total", ())] == 1)
    after = _scrape(port)
    assert after[("onnxprune_jobs_in_flight", ())] == 0
    prune = (("method", f"/{SERVICE}/Prune"), ("status", "CANCELLED"))
    assert until(lambda: _scrape(port).get(("onnxprune_requests_total", prune)) == 1)


def test_readiness_follows_free_slots_while_liveness_stays_serving(start_server):
    address = start_server(max_concurrent=1, jobs=1)
    assert _status(address, "readiness") == SERVING
    with grpc.insecure_channel(address) as channel:
        call = _slow_prune(channel)
        assert _status(address, "readiness") == NOT_SERVING  # a new call would be refused
        assert _status(address, "liveness") == SERVING
        call.cancel()
    assert until(lambda: _status(address, "readiness") == SERVING)


def test_no_metrics_port_unless_asked(start_server):
    port = _free_port()
    start_server()
    with socket.socket() as s:  # nothing listens there
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_metrics_port_in_use_is_refused():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidOptionError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            create_server("127.0.0.1:0", ServerConfig(metrics_port=port, memory_limit=2**30))


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_metrics_port_out_of_range_is_refused(port):
    with pytest.raises(InvalidOptionError, match="not a port"):
        ServerConfig(metrics_port=port)


@pytest.mark.slow
def test_json_log_lines_carry_the_call_figures():
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxprune.service", "--port", "0", "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(process.stderr.readline())
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", first["message"]).group(1)
        assert _status(f"127.0.0.1:{port}", "liveness") == SERVING
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    lines = [first] + [json.loads(line) for line in rest.splitlines()]  # every line is JSON
    calls = [line for line in lines if line.get("method") == "/grpc.health.v1.Health/Check"]
    assert len(calls) == 1
    assert calls[0]["status"] == "OK"
    assert calls[0]["seconds"] >= 0
    assert {"time", "level", "logger", "message"} <= set(first)
    assert lines[-1]["message"] == "stopped"


def test_the_library_progress_reaches_the_client(start_server, tmp_path):
    address = start_server(jobs=1)
    from_server: list[tuple[str, float]] = []
    shown: list[progress.Progress] = []
    with (
        Client(address, timeout=120, on_progress=lambda s, f: from_server.append((s, f))) as client,
        progress.listening(shown.append),
    ):
        client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5, score="synflow", rounds=50)
    rounds = [fraction for stage, fraction in from_server if stage == "synflow"]
    assert rounds  # forwarded from the worker's library call, not only the job's own stages
    assert rounds == sorted(rounds)
    assert all(0 <= f < 1 for f in rounds)
    uploads = [p for p in shown if p.stage == "upload"]  # the client reports as percentages
    assert uploads[-1].done == 100
    assert uploads[-1].total == 100


@pytest.mark.parametrize(
    ("service", "code", "status"), [("", 0, "SERVING"), ("nosuch", 3, "NOT_FOUND")]
)
def test_remote_health_prints_the_status_and_exits_0_only_when_serving(
    start_server, service, code, status
):
    address = start_server()
    done = run_cli("remote", "health", "--server", address, "--service", service, "--timeout", "10")
    assert (done.returncode, done.stdout.strip()) == (code, status)


def test_serve_takes_its_token_and_port_from_the_environment(tmp_path, monkeypatch):
    from onnxprune.cli._main import _parser
    from onnxprune.cli._serve import server_config

    monkeypatch.setenv("ONNXPRUNE_TOKEN", " from-env \n")
    monkeypatch.setenv("ONNXPRUNE_PORT", "50123")
    args = _parser().parse_args(["serve"])
    assert args.port == 50123
    assert server_config(args).token == "from-env"  # noqa: S105 - a test token
    (tmp_path / "token").write_text("from-file")
    monkeypatch.setenv("ONNXPRUNE_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(InvalidOptionError, match="give one"):
        server_config(_parser().parse_args(["serve"]))
    monkeypatch.delenv("ONNXPRUNE_TOKEN")
    assert server_config(_parser().parse_args(["serve"])).token == "from-file"  # noqa: S105
