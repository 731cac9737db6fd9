"""The server's default worker memory limit is a share of this machine's memory, never above it
(a fixed 32 GiB was above the RAM of the machine the sweep ran on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxprune.cli._main import _parser
from onnxprune.cli._serve import server_config
from onnxprune.service import ServerConfig

MEMINFO = Path("/proc/meminfo")


def _mem_total() -> int:
    """Physical memory in bytes as the kernel reports it (``MemTotal``, in KiB)."""
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


@pytest.mark.skipif(not MEMINFO.exists(), reason="reads the physical memory from /proc/meminfo")
def test_the_default_worker_limit_is_three_quarters_of_the_memory():
    expected = 0.75 * _mem_total()
    assert ServerConfig().memory_limit == pytest.approx(expected, abs=4096)
    assert (
        server_config(_parser().parse_args(["serve"])).memory_limit == ServerConfig().memory_limit
    )


def test_a_given_limit_still_wins():
    for given, limit in (("8G", 8 * 2**30), ("512M", 512 * 2**20), ("0", 0)):
        args = _parser().parse_args(["serve", "--memory-limit", given])
        assert server_config(args).memory_limit == limit
    assert ServerConfig(memory_limit=2**30).memory_limit == 2**30
