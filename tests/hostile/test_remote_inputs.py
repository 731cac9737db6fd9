"""``onnxprune remote`` reads and sends nothing the local loader refuses.

The model's external data passes the loader's checks on the client, before any file is read for
upload or any connection is made (no server listens at ``127.0.0.1:9``): the error is the local
command's, line for line.
"""

from __future__ import annotations

import shutil

import onnx
import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged, with_external_data


def _symlinked(tmp_path):
    """``model/m.onnx`` whose ``w.bin`` is a link to ``secret/w.bin`` outside its folder."""
    secret = tmp_path / "secret"
    secret.mkdir()
    folder = tmp_path / "model"
    folder.mkdir()
    model = with_external_data(mlp(folder / "m.onnx"), "w.bin")
    shutil.move(folder / "w.bin", secret / "w.bin")
    (folder / "w.bin").symlink_to(secret / "w.bin")
    return model, secret / "w.bin"


def _climbing(tmp_path):
    """``model/m.onnx`` whose location is ``../secret.bin``."""
    folder = tmp_path / "model"
    folder.mkdir()
    model = with_external_data(mlp(folder / "m.onnx"), "w.bin")
    proto = onnx.load(model, load_external_data=False)
    for tensor in proto.graph.initializer:
        tensor.external_data[0].value = "../secret.bin"
    model.write_bytes(proto.SerializeToString())
    shutil.move(folder / "w.bin", tmp_path / "secret.bin")
    return model, tmp_path / "secret.bin"


@pytest.mark.parametrize("make", [_symlinked, _climbing], ids=["symlink", "dotdot"])
@pytest.mark.parametrize("command", ["analyze", "compact", "prune"])
def test_remote_refuses_what_the_loader_refuses(tmp_path, capsys, make, command):
    model, secret = make(tmp_path)
    before = snapshot(model, secret)
    outputs = {"analyze": [], "compact": ["-o", tmp_path / "c.onnx"],
               "prune": ["-o", tmp_path / "p.onnx", "--sparsity", "0.5"]}[command]  # fmt: skip
    code, _, local = cli(capsys, command, model, *outputs)
    assert code == 2
    assert one_line(local).startswith("InvalidModelError: external data ")
    code, out, remote = cli(capsys, "remote", command, model, *outputs, "--server", "127.0.0.1:9")
    assert (code, out, remote) == (2, "", local)
    assert unchanged(before)
    assert not (tmp_path / "c.onnx").exists()
    assert not (tmp_path / "p.onnx").exists()


def test_remote_validate_checks_the_baseline_too(tmp_path, capsys):
    baseline, secret = _symlinked(tmp_path)
    model = mlp(tmp_path / "other.onnx")
    data = tmp_path / "d.npz"
    data.write_bytes(b"")  # never read: the baseline is refused first
    before = snapshot(baseline, secret, model)
    code, _, err = cli(capsys, "remote", "validate", model, "--data", data, "--baseline",
                       baseline, "--server", "127.0.0.1:9")  # fmt: skip
    assert code == 2
    assert one_line(err) == (
        "InvalidModelError: external data 'w.bin' of tensor 'w1' resolves outside the model's "
        "directory (symlink?)"
    )
    assert unchanged(before)
