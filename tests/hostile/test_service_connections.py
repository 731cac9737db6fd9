"""Raw HTTP/2 clients that connect and then stall hold no server thread for good.

gRPC's Python server waits for a call's request in a thread of its pool, before any handler or
interceptor could refuse it: a client that sends the HTTP/2 preface and a call's headers, then
nothing more (no request, no answer to the server's pings), held a thread forever, and 30 of them
starved every other call, health checks and authenticated ones. The server pings each
connection every ``keepalive`` seconds and drops one that does not answer, with its calls.
"""

from __future__ import annotations

import socket
import struct

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onnxprune.cli import main
from onnxprune.cli._main import _parser
from onnxprune.cli._serve import server_config
from onnxprune.service.client import Client
from tests.helpers import until
from tests.server.conftest import MLP

TOKEN = "hostile-connections-token"  # noqa: S105 - a test token
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, ACK, END_HEADERS = 4, 1, 1, 4
METHODS = (b"/grpc.health.v1.Health/Check", b"/onnxprune.v1.PruningService/ListMethods")
"""A call that needs no token and one refused without it: both waited for their request."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """An HTTP/2 frame (RFC 9113, section 4.1)."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _headers(path: bytes, authority: bytes) -> bytes:
    """A HEADERS frame opening a gRPC call on stream 1, without END_STREAM: a request follows.

    Each field is an HPACK literal without indexing, new name, no Huffman coding (RFC 7541,
    section 6.2.2): 0x00, then the name's and the value's length (under 127) and bytes.
    """
    fields = (
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    )
    block = b"".join(b"\0" + bytes([len(n)]) + n + bytes([len(v)]) + v for n, v in fields)
    return _frame(HEADERS, END_HEADERS, 1, block)


def _stalled(address: str, index: int, stall: str) -> socket.socket:
    """A connection that sends the preface (and half a call), then nothing at all.

    It acknowledges the server's settings up front, as a client must (the server drops one that
    does not within a minute): after that, only the pings it leaves unanswered tell it apart.
    """
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(PREFACE + _frame(SETTINGS, 0, 0) + _frame(SETTINGS, ACK, 0))
    if stall == "half a call":
        sock.sendall(_headers(METHODS[index % 2], address.encode()))
    sock.setblocking(False)
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (what it sent before, a GOAWAY, is read and dropped)."""
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return True


@pytest.mark.parametrize("stall", ["preface", "half a call"])
def test_stalled_connections_are_dropped_and_never_starve_calls(start_server, tmp_path, stall):
    # 2 + 1 + 8 threads: 30 calls waiting for their request would hold every one of them.
    address = start_server(token=TOKEN, max_concurrent=2, max_watches=1, jobs=1, keepalive=0.5)
    sockets = [_stalled(address, i, stall) for i in range(30)]
    try:
        with grpc.insecure_channel(address) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
        with Client(address, token=TOKEN, timeout=60) as client:
            result = client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5)
            assert result.report.direct_sparsity == pytest.approx(0.5, abs=1e-3)
            assert client.analyze(MLP).total_params == 50_200
        assert until(lambda: all(map(_closed, sockets)), 60), "stalled connections stay open"
    finally:
        for sock in sockets:
            sock.close()


def test_serve_takes_the_keepalive_as_a_flag_and_refuses_zero(capsys):
    args = _parser().parse_args(["serve", "--keepalive", "5"])
    assert server_config(args).keepalive == 5.0
    assert server_config(_parser().parse_args(["serve"])).keepalive == 60.0
    assert main(["serve", "--keepalive", "0"]) == 2
    assert capsys.readouterr().err == "InvalidOptionError: keepalive=0.0 must be positive\n"


def test_calls_that_never_send_their_request_hold_no_thread_of_the_pruning_calls(
    start_server, tmp_path
):
    # Peers keepalive would not drop in time (a peer that answers pings): their calls with one
    # request wait on the pool of such calls; the uploads of the pruning calls go on.
    address = start_server(token=TOKEN, max_concurrent=2, max_watches=1, jobs=1, keepalive=3600)
    sockets = [_stalled(address, i, "half a call") for i in range(30)]
    try:
        with Client(address, token=TOKEN, timeout=60) as client:
            result = client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5)
            assert result.report.direct_sparsity == pytest.approx(0.5, abs=1e-3)
            assert client.analyze(MLP).total_params == 50_200
    finally:
        for sock in sockets:
            sock.close()
