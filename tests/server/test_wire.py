"""The wire helpers client and server share: names, file order, chunked files with checks."""

from __future__ import annotations

import hashlib

import pytest

from onnxprune.errors import InvalidModelError
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.client import _Downloads
from onnxprune.service.wire import MAX_CHUNK, check_name, header_files, receive_file


def _info(name: str, data: bytes) -> pb.FileInfo:
    return pb.FileInfo(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("name", "relative", "ok"),
    [
        ("model.onnx", False, True),
        ("weights/w.bin", True, True),
        ("weights/w.bin", False, False),
        ("../w.bin", True, False),
        ("a/../../w.bin", True, False),
        ("/etc/passwd", True, False),
        ("a\\..\\w.bin", True, False),
        ("", False, False),
        (".", False, False),
        ("x" * 256, False, False),
        ("é" * 127 + ".onnx", False, False),  # 132 characters, 259 bytes in UTF-8
        ("é" * 125 + ".onnx", False, True),  # 255 bytes
        ("w/" + "é" * 128, True, False),  # one part of 256 bytes
    ],
)
def test_check_name(name, relative, ok):
    if ok:
        assert str(check_name(name, relative=relative, error=InvalidModelError)) == name
    else:
        with pytest.raises(InvalidModelError, match="is not allowed"):
            check_name(name, relative=relative, error=InvalidModelError)


def test_header_files_come_in_field_number_order():
    header = pb.ValidateHeader(
        baseline_data=[_info("b1", b""), _info("b2", b"")],
        data=_info("d.npz", b""),
        baseline=_info("base.onnx", b""),
        model=_info("m.onnx", b""),
    )
    assert [(f, i.name) for f, i in header_files(header)] == [
        ("model", "m.onnx"),
        ("data", "d.npz"),
        ("baseline", "base.onnx"),
        ("baseline_data", "b1"),
        ("baseline_data", "b2"),
    ]


def _write(info: pb.FileInfo, chunks: list[bytes], dest) -> list[int]:
    stream = iter(chunks)
    return list(receive_file(info, dest, lambda: next(stream, None), OSError))


def test_receive_file_writes_chunks_and_counts(tmp_path):
    data = bytes(range(256)) * 10
    assert _write(_info("f", data), [data[:1000], data[1000:]], tmp_path / "f") == [1000, 2560]
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize(
    ("announced", "chunks", "message"),
    [
        (b"0123456789", [b"01234"], "ended after 5 of 10 bytes"),
        (b"0123456789", [b"0123456789x"], "more bytes than the 10 announced"),
        (bytes(MAX_CHUNK + 1), [bytes(MAX_CHUNK + 1)], "over the 1 MiB limit"),
        (b"0123456789", [b"0123456780"], "sha256 does not match"),
    ],
)
def test_receive_file_refuses_what_the_header_did_not_announce(
    tmp_path, announced, chunks, message
):
    with pytest.raises(OSError, match=message):
        _write(_info("f", announced), chunks, tmp_path / "f")


def _stream(*files: tuple[str, str, bytes], chunk: int = 3) -> list[pb.PruneResponse]:
    messages = []
    for kind, name, data in files:
        messages.append(pb.PruneResponse(**{kind: _info(name, data)}))
        messages += [
            pb.PruneResponse(chunk=data[i : i + chunk]) for i in range(0, len(data), chunk)
        ]
    return messages


def _receive(downloads: _Downloads, messages: list[pb.PruneResponse]) -> None:
    stream = iter(messages)
    for message in stream:
        kind = message.WhichOneof("kind")
        downloads.receive(kind, getattr(message, kind), stream, lambda stage, fraction: None)


def test_downloads_land_next_to_the_output_only_on_commit(tmp_path):
    output = tmp_path / "out" / "p.onnx"
    downloads = _Downloads({}, output, tmp_path / "m.npz")
    _receive(
        downloads,
        _stream(
            ("model_data", "p.onnx.0123456789ab.data", b"weights!"),
            ("model", "p.onnx", b"graph"),
            ("masks", "masks.npz", b"masks"),
        ),
    )
    assert not output.exists()  # nothing in place before the result arrived
    downloads.commit()
    assert output.read_bytes() == b"graph"
    assert (output.parent / "p.onnx.0123456789ab.data").read_bytes() == b"weights!"
    assert (tmp_path / "m.npz").read_bytes() == b"masks"
    assert sorted(p.name for p in output.parent.iterdir()) == ["p.onnx", "p.onnx.0123456789ab.data"]


def test_downloads_refuse_names_that_leave_the_folder(tmp_path):
    downloads = _Downloads({}, tmp_path / "p.onnx", tmp_path / "m.npz")
    with pytest.raises(InvalidModelError, match="is not allowed"):
        _receive(downloads, _stream(("model_data", "../../evil.sh", b"#!/bin/sh")))
    downloads.discard()
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent.parent / "evil.sh").exists()


def test_discarded_downloads_leave_nothing(tmp_path):
    downloads = _Downloads({}, tmp_path / "p.onnx", tmp_path / "m.npz")
    messages = _stream(("model", "p.onnx", b"graph-bytes"))
    with pytest.raises(InvalidModelError, match="ended after"):
        _receive(downloads, messages[:2])  # the server went away mid-file
    downloads.discard()
    assert list(tmp_path.iterdir()) == []
