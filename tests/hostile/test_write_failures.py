"""Writes the system refuses (full disk, file size limit, read-only folder) and unreadable inputs.

Each is exit 2 with one line on stderr, nothing partial left (no output, no temporary file) and
the inputs unchanged. A full disk is a real one here: a child process under ``RLIMIT_FSIZE``
gets ``EFBIG`` from the kernel on its first write past the limit, as ``ENOSPC`` would come.
"""

from __future__ import annotations

import errno
import io
import os
import re
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged


def _limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_file_size_limit_is_an_output_error(tmp_path):
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)
    done = subprocess.run(
        [sys.executable, "-m", "onnxprune.cli", "prune", str(model), "-o", str(tmp_path / "p.onnx"),
         "--sparsity", "0.5"],
        capture_output=True, text=True, check=False, preexec_fn=lambda: _limited(64),
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert re.fullmatch(
        rf"OutputError: cannot write {tmp_path}/p\.(onnx|masks\.npz): File too large",
        one_line(done.stderr),
    )
    assert unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_read_only_folder_is_an_output_error(tmp_path, capsys, monkeypatch):
    """``os.replace`` answers ``EROFS``, as on a read-only mount (a test cannot mount one)."""
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", read_only)
    code, out, err = cli(capsys, "compact", model, "-o", tmp_path / "c.onnx")
    assert (code, out) == (2, "")
    assert one_line(err) == f"OutputError: cannot write {tmp_path}/c.onnx: Read-only file system"
    assert unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder without write permission")
def test_folder_without_write_permission_is_an_output_error(tmp_path, capsys):
    model = mlp(tmp_path / "m.onnx")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = cli(capsys, "prune", model, "-o", locked / "p.onnx", "--sparsity", "0.5")
    assert code == 2
    assert one_line(err).startswith(f"OutputError: cannot write {locked}/p.")
    assert list(locked.iterdir()) == []


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (lambda p: p.write_bytes(_npy(np.ones((4, 3), bool))), "is one .npy array, not an .npz"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not a zip at all"), "is not a readable .npz"),
    ],
    ids=["npy", "fake-zip"],
)
def test_unreadable_masks_are_one_line(tmp_path, capsys, write, reason):
    model = mlp(tmp_path / "m.onnx")
    masks = tmp_path / "masks.npz"
    write(masks)
    before = snapshot(model, masks)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--masks-in", masks)
    assert code == 2
    assert one_line(err).startswith(f"InvalidOptionError: masks file masks.npz {reason}")
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize("command", ["sweep", "batch"])
def test_out_naming_a_file_is_one_line(tmp_path, capsys, command):
    model = mlp(tmp_path / "m.onnx")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((3, 4), np.float32), labels=np.array([0, 1, 0]))
    taken = tmp_path / "taken"
    taken.write_text("a file")
    before = snapshot(model, data, taken)
    if command == "sweep":
        args = ["sweep", model, "--data", data, "--sparsities", "0.5", "--out", taken]
    else:
        args = ["batch", tmp_path, "--out", taken, "--sparsity", "0.5"]
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert one_line(err) == f"InvalidOptionError: --out {taken} is a file, not a folder"
    assert unchanged(before)
