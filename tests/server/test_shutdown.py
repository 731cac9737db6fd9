"""``python -m onnxprune.service``: SIGTERM lets the call in flight finish, then it exits 0."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import onnx
import pytest

from onnxprune.errors import ConnectionFailedError
from onnxprune.service.client import Client
from tests.server.conftest import MLP

SECONDS_OF_SYNFLOW = {"sparsity": 0.5, "score": "synflow", "rounds": 4000}
"""About 1.5 s of work: still running when SIGTERM comes, done well within the grace period."""


@pytest.fixture
def server_process(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onnxprune.service",
            "--port",
            "0",
            "--jobs",
            "1",
            "--grace",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            break
    else:
        process.wait(10)
        pytest.fail("the server did not start:\n" + "".join(lines))
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(process.stderr), daemon=True)
    reader.start()
    yield process, f"127.0.0.1:{found.group(1)}", rest
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.mark.slow
def test_sigterm_finishes_the_call_in_flight(server_process, tmp_path):
    process, address, log = server_process
    started, outcome = threading.Event(), {}

    def on_progress(stage, fraction):
        if stage == "prune":
            started.set()

    def prune():
        try:
            with Client(address, timeout=60, on_progress=on_progress) as client:
                outcome["result"] = client.prune(MLP, tmp_path / "p.onnx", **SECONDS_OF_SYNFLOW)
        except Exception as e:
            outcome["error"] = e

    caller = threading.Thread(target=prune)
    caller.start()
    assert started.wait(60), outcome
    process.send_signal(signal.SIGTERM)
    caller.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"].report.direct_sparsity == pytest.approx(0.5, abs=1e-4)
    onnx.checker.check_model(onnx.load(tmp_path / "p.onnx"))
    assert process.wait(30) == 0
    with Client(address, timeout=5) as client, pytest.raises(ConnectionFailedError):
        client.list_methods()  # nobody listens any more
    text = "".join(log)
    assert "shutting down" in text
    assert text.index("shutting down") < text.index("PruningService/Prune")  # it was in flight
    assert re.search(r"PruningService/Prune \d+ bytes [\d.]+s OK", text), text
