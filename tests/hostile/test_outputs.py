"""Outputs: never an input, never a device, FIFO or socket; refused before any work.

Every refusal is exit 2 with one line on stderr, the inputs byte for byte unchanged and no output
written. Special files are FIFOs made in ``tmp_path`` (a device node is never written to).
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged, with_external_data


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


def _external(tmp_path):
    """``m.onnx`` with both weights in ``w.bin``, and the dataset ``d.npz`` (3 samples)."""
    model = with_external_data(mlp(tmp_path / "m.onnx"), "w.bin")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((3, 4), np.float32), labels=np.array([0, 1, 0]))
    return model, tmp_path / "w.bin", data


@pytest.mark.parametrize("flag", ["-o", "--masks-out", "--report-out"])
def test_prune_never_replaces_external_data(tmp_path, capsys, flag):
    model, weights, _ = _external(tmp_path)
    before = snapshot(model, weights)
    outputs = {"-o": tmp_path / "p.onnx", flag: weights}
    args = [a for pair in outputs.items() for a in pair]
    code, out, err = cli(capsys, "prune", model, *args, "--sparsity", "0.5")
    assert (code, out) == (2, "")
    assert one_line(err) == (
        f"InvalidOptionError: {weights} would overwrite w.bin, external data of the input model; "
        "choose another path"
    )
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()


def test_prune_never_replaces_its_masks_or_scores(tmp_path, capsys):
    model = mlp(tmp_path / "m.onnx")
    masks, scores = tmp_path / "in.npz", tmp_path / "s.npz"
    np.savez(masks, w1=np.ones((4, 3), bool))
    np.savez(scores, w1=np.ones((4, 3)), w2=np.ones((3, 2)))
    before = snapshot(model, masks, scores)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--masks-in", masks,
                       "--scores", scores, "--sparsity", "0.5", "--report-out", scores)  # fmt: skip
    assert code == 2
    assert one_line(err) == (
        f"InvalidOptionError: {scores} would overwrite the scores file {scores}; "
        "choose another path"
    )
    code, _, err = cli(capsys, "prune", model, "-o", masks, "--masks-in", masks)
    assert code == 2
    assert one_line(err).endswith(f"would overwrite the masks file {masks}; choose another path")
    assert unchanged(before)


def test_compact_never_replaces_external_data(tmp_path, capsys):
    model, weights, _ = _external(tmp_path)
    before = snapshot(model, weights)
    code, _, err = cli(capsys, "compact", model, "-o", weights)
    assert code == 2
    assert one_line(err).endswith("would overwrite w.bin, external data of the input model; "
                                  "choose another path")  # fmt: skip
    assert unchanged(before)


def test_save_never_removes_an_input_named_like_its_data_files(tmp_path, capsys):
    """Saving ``p.onnx`` removes ``p.onnx.<12 hex>.data`` files of earlier saves to it."""
    model = with_external_data(mlp(tmp_path / "m.onnx"), "p.onnx.0123456789ab.data")
    weights = tmp_path / "p.onnx.0123456789ab.data"
    before = snapshot(model, weights)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.5")
    assert code == 2
    assert one_line(err).startswith(
        f"InvalidOptionError: writing {tmp_path}/p.onnx would remove p.onnx.0123456789ab.data, "
        "external data of the input model"
    )
    assert unchanged(before)


def test_validate_report_never_replaces_data_or_the_baseline(tmp_path, capsys):
    model, weights, data = _external(tmp_path)
    other = mlp(tmp_path / "other.onnx")
    before = snapshot(model, weights, data, other)
    code, _, err = cli(capsys, "validate", other, "--data", data, "--report-out", data)
    assert code == 2
    assert one_line(err) == (
        f"InvalidOptionError: {data} would overwrite the data file {data}; choose another path"
    )
    code, _, err = cli(capsys, "validate", other, "--data", data, "--baseline", model,
                       "--report-out", weights)  # fmt: skip
    assert code == 2
    assert one_line(err).endswith("would overwrite w.bin, external data of the baseline model; "
                                  "choose another path")  # fmt: skip
    assert unchanged(before)


def test_sweep_never_replaces_its_data(tmp_path, capsys):
    model, weights, _ = _external(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    data = out / "sweep.json"  # an .npz by content
    with data.open("wb") as f:
        np.savez(f, x=np.ones((3, 4), np.float32), labels=np.array([0, 1, 0]))
    before = snapshot(model, weights, data)
    code, _, err = cli(capsys, "sweep", model, "--data", data, "--sparsities", "0.5",
                       "--out", out, "--provider", "cpu")  # fmt: skip
    assert code == 2
    assert one_line(err) == (
        f"InvalidOptionError: {data} would overwrite the data file {data}; choose another path"
    )
    assert unchanged(before)
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]


@pytest.mark.parametrize(
    ("manifest", "entry"),
    [
        ("list.yaml", "- {path: m.onnx, output: m.onnx}"),
        ("list.yaml", "- {path: m.onnx, output: w.onnx}\n- {path: w.onnx, output: v.onnx}"),
        ("batch.json", '[{"path": "m.onnx", "output": "p.onnx"}]'),
    ],
    ids=["output-is-input", "output-is-another-input", "manifest-is-summary"],
)
def test_batch_never_replaces_an_input(tmp_path, capsys, manifest, entry):
    model = mlp(tmp_path / "m.onnx")
    other = mlp(tmp_path / "w.onnx")
    listed = tmp_path / manifest
    listed.write_text(entry)
    before = snapshot(model, other, listed)
    code, _, err = cli(capsys, "batch", listed, "--out", tmp_path, "--sparsity", "0.5")
    assert code == 2
    assert re.fullmatch(
        rf"InvalidOptionError: {tmp_path}/\S+ would overwrite the (model|manifest) \S+; "
        "choose another path",
        one_line(err),
    )
    assert unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", "w.onnx", manifest])


def test_remote_prune_never_replaces_external_data(tmp_path, capsys):
    """Refused before any call: no server listens on the address."""
    model, weights, _ = _external(tmp_path)
    before = snapshot(model, weights)
    code, _, err = cli(capsys, "remote", "prune", model, "-o", tmp_path / "p.onnx", "--masks-out",
                       weights, "--sparsity", "0.5", "--server", "127.0.0.1:9")  # fmt: skip
    assert code == 2
    assert one_line(err).endswith("would overwrite w.bin, external data of the input model; "
                                  "choose another path")  # fmt: skip
    assert unchanged(before)
