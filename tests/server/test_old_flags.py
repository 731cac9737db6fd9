"""A server started with the old flag names (--workers, --max-model-bytes, --worker-memory-mb)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from onnxprune.service.client import Client
from tests.server.conftest import MLP


def test_the_old_flags_still_configure_the_server():
    old = ["--workers", "1", "--max-model-bytes", "1000", "--worker-memory-mb", "4096"]
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxprune.service", "--port", "0", *old],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if "listening on" in line:
                break
        assert lines[:3] == [
            "warning: --workers is deprecated; use --jobs",
            "warning: --max-model-bytes is deprecated; use --max-bytes",
            "warning: --worker-memory-mb is deprecated; use --memory-limit",
        ]
        address, _, settings = lines[-1].partition("listening on ")[2].partition(" ")
        assert settings.endswith(", jobs: 1)")  # --workers 1
        # --max-model-bytes 1000: the MLP (about 200 kB) is refused from its header.
        assert MLP.stat().st_size > 1000
        # The client error class is whichever the error tree gives; the message is what counts.
        with Client(address, timeout=30) as client, pytest.raises(Exception) as refused:
            client.analyze(MLP)
        assert "over this server's limit of 1000 bytes" in str(refused.value)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
