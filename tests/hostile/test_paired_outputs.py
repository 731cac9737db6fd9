"""A pruned model and its masks are one set: never a new model beside old masks, no litter.

Both are written under temporary names first; the masks are renamed into place just before the
model, so a reader who sees the new model sees its masks, and a write that fails replaces
neither. Temporary files that a killed run left (``.<name>.<32 hex>.tmp``, ``.tmp.npz``,
``.part``) are removed by the next write of the same output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged, with_external_data


def test_masks_are_renamed_before_the_model(tmp_path, capsys, monkeypatch):
    """``os.replace`` is watched, not changed: the order in which outputs appear."""
    model = mlp(tmp_path / "m.onnx")
    renamed = []
    replace = os.replace

    def watched(src, dst):
        renamed.append(Path(dst).name)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", watched)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.5",
                       "--report-out", tmp_path / "r.json")  # fmt: skip
    assert code == 0
    assert all(line.startswith("warning: ") for line in err.splitlines())  # a tiny model
    assert renamed == ["p.masks.npz", "p.onnx", "r.json"]


@pytest.mark.parametrize("external", [False, True], ids=["in-memory", "streamed"])
def test_a_name_masks_cannot_hold_replaces_nothing(tmp_path, capsys, external):
    """A weight name of 70,000 bytes (a zip member name holds 65,535): refused, exit 2; the
    earlier pruned model and masks stay as they were (in memory, and tensor by tensor)."""
    long = "w" * 70_000
    model = mlp(tmp_path / "m.onnx", (long, "w2"))
    if external:
        with_external_data(model, "w.bin")
    old_model, old_masks = tmp_path / "p.onnx", tmp_path / "p.masks.npz"
    old_model.write_bytes(b"the earlier pruned model")
    old_masks.write_bytes(b"its masks")
    before = snapshot(model, old_model, old_masks)
    code, out, err = cli(capsys, "prune", model, "-o", old_model, "--sparsity", "0.5")
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "InvalidModelError: weight name 'wwwwwwwwwwwwwwwwwwwwwwww'... is 70,000 bytes; masks "
        "(.npz) hold names of at most 65,531 bytes: rename the weight"
    )
    assert unchanged(before)
    inputs = ["m.onnx", "w.bin"] if external else ["m.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*inputs, "p.masks.npz", "p.onnx"])


def test_stale_temporaries_of_the_outputs_are_removed(tmp_path, capsys):
    """Left by a run killed long ago (mtime in 1970): removed. Another output's, a name not
    ours, and one touched now (a writer at work) stay."""
    model = mlp(tmp_path / "m.onnx")
    hexa = "0123456789abcdef" * 2
    stale = [f".p.onnx.{hexa}.tmp", f".p.masks.npz.{hexa}.tmp.npz", f".r.json.{hexa}.tmp"]
    kept = [f".q.onnx.{hexa}.tmp", ".p.onnx.mine.tmp", f".p.onnx.{hexa[:-1]}.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (1_000, 1_000))
    live = tmp_path / f".p.onnx.{'f' * 32}.tmp"
    live.write_bytes(b"being written")
    code, _, _ = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.5",
                     "--report-out", tmp_path / "r.json")  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.onnx", "p.onnx", "p.masks.npz", "r.json", live.name, *kept]
    )
    assert np.load(tmp_path / "p.masks.npz")["w1"].dtype == bool
