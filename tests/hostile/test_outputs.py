"""Outputs: never an input, never a device, FIFO or socket; refused before any work.

Every refusal is exit 2 with one line on stderr, the inputs byte for byte unchanged and no output
written. Special files are FIFOs made in ``tmp_path`` (a device node is never written to).
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("flag", ["-o", "--masks-out", "--report-out"])
def test_prune_refuses_a_fifo_output(tmp_path, capsys, fifo, flag):
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)
    outputs = {"-o": tmp_path / "p.onnx", flag: fifo}
    args = [a for pair in outputs.items() for a in pair]
    code, out, err = cli(capsys, "prune", model, *args, "--sparsity", "0.5")
    assert (code, out) == (2, "")
    assert one_line(err) == (
        f"InvalidOptionError: cannot write {fifo}: it is a FIFO; outputs are regular files"
    )
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "m.onnx"]


def test_compact_refuses_a_link_to_a_fifo(tmp_path, capsys, fifo):
    model = mlp(tmp_path / "m.onnx")
    link = tmp_path / "link.onnx"
    link.symlink_to(fifo)
    before = snapshot(model)
    code, _, err = cli(capsys, "compact", model, "-o", link)
    assert code == 2
    assert one_line(err).endswith("link.onnx: it is a FIFO; outputs are regular files")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert link.is_symlink()
    assert unchanged(before)
