"""Servers on 127.0.0.1:0, started in process, and the models the tests send them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from onnxprune.service import ServerConfig, create_server
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc

MODELS = Path(__file__).resolve().parents[2] / "models"
MLP = MODELS / "mlp_digits.onnx"
DATA = MODELS / "digits_test.npz"

SLOW = {"sparsity": 0.5, "score": "synflow", "rounds": 10_000}
"""Prune options that keep a worker busy for seconds (SynFlow, the most rounds allowed): to
cancel, or to stop at a deadline or time limit."""

StartServer = Callable[..., str]


@pytest.fixture(scope="module")
def start_server() -> Iterator[StartServer]:
    """``start_server(**settings) -> "127.0.0.1:PORT"``; stopped when the module's tests end."""
    servers = []

    def start(**settings: object) -> str:
        settings.setdefault("memory_limit", 4 * 2**30)
        server, port = create_server("127.0.0.1:0", ServerConfig(**settings))
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0).wait()


@pytest.fixture(scope="module")
def address(start_server: StartServer) -> str:
    """A plain server with the default settings (two workers)."""
    return start_server()


@pytest.fixture
def stub(address: str) -> Iterator[pb_grpc.PruningServiceStub]:
    """A raw stub, for requests the client would never send."""
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.PruningServiceStub(channel)
