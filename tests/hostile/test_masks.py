"""Masks, scores and evaluation data are taken only as what they claim to be.

A mask is boolean or 0/1; scores are real, ordered numbers; evaluation data is finite, and a model
whose outputs are not finite fails its gate. Every refusal is exit 2 and one line on stderr.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged


@pytest.mark.parametrize(
    ("mask", "shown"),
    [
        (np.full((4, 3), 0.5), "float64 with values other than 0 and 1 (np.float64(0.5))"),
        (np.full((4, 3), 2, np.int8), "int8 with values other than 0 and 1 (np.int8(2))"),
        (np.full((4, 3), np.nan, np.float32), "float32 with values other than 0 and 1 "
         "(np.float32(nan))"),
        (np.full((4, 3), "yes"), "<U3 with values other than 0 and 1"),
    ],
    ids=["half", "two", "nan", "strings"],
)  # fmt: skip
def test_masks_that_are_not_boolean_are_refused(tmp_path, capsys, mask, shown):
    model = mlp(tmp_path / "m.onnx")
    masks = tmp_path / "in.npz"
    np.savez(masks, w1=mask)
    before = snapshot(model, masks)
    code, out, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--masks-in", masks)
    assert (code, out) == (2, "")
    assert one_line(err) == (
        f"InvalidOptionError: mask 'w1' is {shown}; masks are boolean (True = keep) or 0/1"
    )
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()


def test_zero_one_masks_are_converted(tmp_path, capsys):
    """A 0/1 float mask is the boolean one: w1 keeps its first row (1, 2, 3); 0/2 is refused."""
    model = mlp(tmp_path / "m.onnx")
    masks = tmp_path / "in.npz"
    keep = np.zeros((4, 3))
    keep[0] = 1.0
    np.savez(masks, w1=keep, w2=np.ones((3, 2), np.int64))
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--masks-in", masks)
    assert code == 0
    assert err.startswith("warning: w1: keeps 3 of 12 weights")  # fewer than 8: near collapse
    assert len(err.splitlines()) == 1
    pruned = {
        t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "p.onnx").graph.initializer
    }
    assert pruned["w1"].tolist() == [[1, 2, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert pruned["w2"].tolist() == [[1, 2], [3, 4], [5, 6]]
    np.savez(masks, w1=keep * 2)  # 0/2: not a mask
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "q.onnx", "--masks-in", masks)
    assert code == 2
    assert "mask 'w1' is float64 with values other than 0 and 1" in one_line(err)
    assert not (tmp_path / "q.onnx").exists()


def _scores(tmp_path, w1: np.ndarray):
    path = tmp_path / "scores.npz"
    np.savez(path, w1=w1, w2=np.ones((3, 2)))
    return path


@pytest.mark.parametrize(
    ("w1", "reason"),
    [
        (np.full((4, 3), 1 + 2j), "are complex128; scores are real numbers"),
        (np.full((4, 3), np.nan), "hold NaN; scores are ordered numbers"),
    ],
    ids=["complex", "nan"],
)
def test_scores_that_are_not_real_are_refused(tmp_path, capsys, w1, reason):
    model = mlp(tmp_path / "m.onnx")
    scores = _scores(tmp_path, w1)
    before = snapshot(model, scores)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--scores", scores,
                       "--sparsity", "0.5")  # fmt: skip
    assert code == 2
    assert one_line(err) == f"InvalidOptionError: scores for 'w1' {reason}"
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_data_is_refused(tmp_path, capsys, bad):
    model = mlp(tmp_path / "m.onnx")
    data = tmp_path / "d.npz"
    x = np.ones((3, 4), np.float32)
    x[1, 2] = bad
    np.savez(data, x=x, labels=np.array([0, 1, 0]))
    before = snapshot(model, data)
    code, out, err = cli(capsys, "validate", model, "--data", data, "--provider", "cpu")
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "DatasetError: dataset 'x' is float32[3, 4] and holds NaN or infinity; give finite numbers"
    )
    assert unchanged(before)


def test_gate_fails_when_outputs_are_not_finite(tmp_path, capsys):
    """w2 all NaN: every output is NaN. argmax calls such a sample class 0, its label: it
    would count as right, and agree with any baseline whose class is 0 too."""
    baseline = mlp(tmp_path / "base.onnx")
    proto = onnx.load(baseline)
    proto.graph.initializer[1].CopyFrom(
        numpy_helper.from_array(np.full((3, 2), np.nan, np.float32), "w2")
    )
    model = tmp_path / "nan.onnx"
    model.write_bytes(proto.SerializeToString())
    data = tmp_path / "d.npz"
    # Relu gives 0: every output of the baseline is 0, class 0, the label
    np.savez(data, x=-np.ones((3, 4), np.float32), labels=np.array([0, 0, 0]))
    code, out, _ = cli(capsys, "validate", model, "--data", data, "--baseline", baseline,
                       "--min-agreement", "0", "--json", "--provider", "cpu")  # fmt: skip
    assert code == 3
    result = json.loads(out)
    assert (result["top1"], result["baseline_top1"], result["agreement"]) == (0.0, 1.0, 0.0)
    assert result["gate"]["passed"] is False
    assert result["gate"]["reason"] == "the model's outputs hold NaN or infinity on 3 sample(s)"
