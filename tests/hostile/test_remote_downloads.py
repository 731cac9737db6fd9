"""``onnxprune remote`` writes no file a server sends onto a file it read.

The server names the external data files of the model it sends back. A hostile server (here,
one that drains the upload and answers with files named as it likes) names one after an input
the client read and sent: the model, its external data, the masks. The client refuses in one
line, exit 2, before renaming anything into place: every input keeps its bytes, no output and
no temporary is left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest

from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged, with_external_data

FILES: list[tuple[str, str]] = []
"""(kind, name) of the files the hostile server sends back next, each with a few bytes."""


class _Hostile(pb_grpc.PruningServiceServicer):
    """Answers a prune or a compact with the files in ``FILES``, then an empty result."""

    def Prune(self, requests, context):  # noqa: N802 - the gRPC method's name
        yield from _answer(requests, pb.PruneResponse, pb.PruneResult)

    def Compact(self, requests, context):  # noqa: N802 - the gRPC method's name
        yield from _answer(requests, pb.CompactResponse, pb.CompactResult)


def _answer(requests, response, result) -> Iterator:
    for _ in requests:  # the whole upload, as a real server reads it
        pass
    for kind, name in FILES:
        data = name.encode()
        digest = hashlib.sha256(data).hexdigest()
        yield response(**{kind: pb.FileInfo(name=name, size=len(data), sha256=digest)})
        yield response(chunk=data)
    yield response(result=result())


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_PruningServiceServicer_to_server(_Hostile(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


CASES = {
    "external data": ("w.bin", ()),
    "model": ("m.onnx", ()),
    "masks": ("in.npz", ("--masks-in", "in.npz")),
}
"""The name the server gives a data file, and the flags that make the client read that file."""


RUNS = [
    (c, k) for k in sorted(CASES) for c in ("prune", "compact") if CASES[k][1] == () or c == "prune"
]
"""Every case with each command that reads its file (compact reads no masks)."""


@pytest.mark.parametrize(("command", "case"), RUNS)
def test_a_server_cannot_name_a_download_after_an_input(tmp_path, capsys, hostile, command, case):
    name, flags = CASES[case]
    model = with_external_data(mlp(tmp_path / "m.onnx"), "w.bin")
    np.savez(tmp_path / "in.npz", w1=np.ones((4, 3), bool), w2=np.ones((3, 2), bool))
    before = snapshot(*tmp_path.iterdir())
    FILES[:] = [("model_data", name), ("model", "p.onnx")]
    extra = ("--sparsity", "0.5") if command == "prune" else ()
    flags = [tmp_path / f if f.endswith(".npz") else f for f in flags]
    code, out, err = cli(capsys, "remote", command, model, "-o", tmp_path / "p.onnx", *extra,
                         *flags, "--server", hostile)  # fmt: skip
    assert (code, out) == (2, ""), err
    assert one_line(err).startswith(f"InvalidOptionError: {tmp_path / name} would overwrite ")
    assert unchanged(before)
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in before}


def test_a_server_cannot_send_one_name_twice(tmp_path, capsys, hostile):
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)
    FILES[:] = [("model_data", "p.onnx"), ("model", "p.onnx")]
    code, _, err = cli(capsys, "remote", "compact", model, "-o", tmp_path / "p.onnx",
                       "--server", hostile)  # fmt: skip
    assert code == 2
    assert one_line(err) == (
        f"InvalidOptionError: {tmp_path / 'p.onnx'} would overwrite another output; "
        "choose another path"
    )
    assert unchanged(before)
    assert {p.name for p in tmp_path.iterdir()} == {"m.onnx"}


def test_a_server_cannot_name_a_download_after_the_report(tmp_path, capsys, hostile):
    """The report is written after the call: a data file named after it would be replaced."""
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)
    FILES[:] = [("model_data", "r.json"), ("model", "p.onnx")]
    code, _, err = cli(capsys, "remote", "prune", model, "-o", tmp_path / "p.onnx",
                       "--sparsity", "0.5", "--report-out", tmp_path / "r.json",
                       "--server", hostile)  # fmt: skip
    assert code == 2
    assert one_line(err) == (
        f"InvalidOptionError: {tmp_path / 'r.json'} would overwrite the report file; "
        "choose another path"
    )
    assert unchanged(before)
    assert {p.name for p in tmp_path.iterdir()} == {"m.onnx"}
