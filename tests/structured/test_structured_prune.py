"""Structured filter pruning: compacted outputs equal the masked model's, counts as asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.structured import compact, structured_prune
from tests.helpers import single_io_model
from tests.structured._common import close, init, run

MODELS = Path(__file__).resolve().parents[2] / "models"
DATA = np.load(MODELS / "digits_test.npz")
CASES = [("cnn_digits.onnx", "image"), ("mlp_digits.onnx", "x")]


@pytest.mark.parametrize("criterion", ["l1", "l2", "random"])
@pytest.mark.parametrize(("file", "input_name"), CASES)
def test_compacted_outputs_equal_masked_outputs(file, input_name, criterion):
    model = onnx.load(MODELS / file)
    result = structured_prune(model, sparsity=0.5, criterion=criterion, round_to=8)
    onnx.checker.check_model(result.model, full_check=True)
    feed = {input_name: DATA[input_name]}
    assert close(run(result.masked, feed)[0], run(result.model, feed)[0])
    for name, (kept, total) in result.units.items():
        assert kept % 8 == 0 and kept >= total / 2
        assert result.compaction.removed[name] == total - kept


def test_mlp_parameter_count_and_l1_keeps_the_largest_filters():
    model = onnx.load(MODELS / "mlp_digits.onnx")
    result = structured_prune(model, sparsity=0.5, criterion="l1")
    k1, k2 = result.units["fc1.weight"][0], result.units["fc2.weight"][0]
    assert (k1, k2) == (150, 50)
    assert result.compaction.params_after == k1 * 65 + k2 * (k1 + 1) + 10 * k2 + 10
    w = init(model, "fc1.weight")
    kept_rows = init(result.model, "fc1.weight")
    mean_abs = np.abs(w).mean(axis=1)
    expected = np.sort(np.argsort(mean_abs, kind="stable")[150:])
    assert np.array_equal(kept_rows, w[expected])


def test_residual_group_is_pruned_together_by_its_combined_l1():
    model = onnx.load(MODELS / "cnn_digits.onnx")
    result = structured_prune(model, sparsity=0.5)
    stem, last = "onnx::Conv_39", "onnx::Conv_45"  # both feed the residual Add
    assert result.units[stem] == result.units[last] == (8, 16)
    a, b = init(model, stem), init(model, last)
    total = np.abs(a).reshape(16, -1).sum(axis=1) + np.abs(b).reshape(16, -1).sum(axis=1)
    score = total / (a[0].size + b[0].size)
    kept = np.sort(np.argsort(score, kind="stable")[8:])
    dropped = np.setdiff1d(np.arange(16), kept)
    assert not init(result.masked, stem)[dropped].any()
    assert not init(result.masked, last)[dropped].any()
    assert np.array_equal(init(result.model, stem), a[kept])
    assert init(result.model, "down.weight").shape[1] == 8


def test_global_scope_ranks_layer_normalized_scores():
    model = onnx.load(MODELS / "mlp_digits.onnx")
    result = structured_prune(model, sparsity=0.5, scope="global")
    scores = []
    for name in ("fc1.weight", "fc2.weight"):
        s = np.abs(init(model, name)).mean(axis=1)
        scores.append(s / s.mean())
    n1, n2 = scores[0].size, scores[1].size
    cut = np.sort(np.concatenate(scores))[round(0.5 * (n1 + n2)) - 1]
    expected = {
        "fc1.weight": (int((scores[0] > cut).sum()), n1),
        "fc2.weight": (int((scores[1] > cut).sum()), n2),
    }
    assert result.units == expected
    assert expected["fc1.weight"][0] != expected["fc2.weight"][0] * n1 // n2  # not uniform


def test_never_every_unit():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "v"], ["y"]),
    ]
    model = single_io_model(nodes, [1, 2], [1, 1], {"w": np.ones((2, 2)), "v": np.ones((2, 1))})
    result = structured_prune(model, sparsity=0.99)
    assert result.units == {"w": (1, 2)}
    assert init(result.model, "w").shape == (2, 1)


@pytest.mark.parametrize(
    "options",
    [
        {"sparsity": 1.0},
        {"sparsity": 0.5, "criterion": "lamp"},
        {"sparsity": 0.5, "round_to": 0},
        {"sparsity": 0.5, "scope": "network"},
    ],
)
def test_bad_options(options):
    with pytest.raises(InvalidOptionError):
        structured_prune(onnx.load(MODELS / "mlp_digits.onnx"), **options)


def test_cli_prune_structured(tmp_path, capsys):
    out = tmp_path / "small.onnx"
    args = ["prune", str(MODELS / "cnn_digits.onnx"), "-o", str(out)]
    code = main([*args, "--structured", "l1", "--sparsity", "0.5", "--round-to", "8", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["units"] == {
        "onnx::Conv_39": [8, 16],
        "onnx::Conv_42": [8, 16],
        "onnx::Conv_45": [8, 16],
        "down.weight": [16, 32],
    }
    small = onnx.load(out)
    assert init(small, "onnx::Conv_45").shape == (8, 8, 3, 3)
    assert init(small, "down.weight").shape == (16, 8, 3, 3)
    assert main([*args, "--structured", "l1"]) == 2


def test_excluding_a_residual_member_keeps_its_whole_sum():
    model = onnx.load(MODELS / "cnn_digits.onnx")
    result = structured_prune(model, sparsity=0.5, exclude="Conv_39")  # the stem
    assert result.units == {"onnx::Conv_42": (8, 16), "down.weight": (16, 32)}
    assert init(result.model, "onnx::Conv_39").shape[0] == 16
    assert init(result.model, "onnx::Conv_45").shape == (16, 8, 3, 3)
    only = structured_prune(model, sparsity=0.5, layers="^down")
    assert only.units == {"down.weight": (16, 32)}
    with pytest.raises(InvalidOptionError, match="leave no prunable unit"):
        structured_prune(model, sparsity=0.5, layers="^nothing$")
    with pytest.raises(InvalidOptionError, match="not a regular expression"):
        structured_prune(model, sparsity=0.5, exclude="(")


@pytest.mark.parametrize(
    "flags",
    [["--score", "lamp"], ["--allocation", "erk"], ["--effective"], ["--min-threshold", "0.01"]],
)
def test_cli_structured_refuses_unstructured_flags(tmp_path, capsys, flags):
    args = ["prune", str(MODELS / "cnn_digits.onnx"), "-o", str(tmp_path / "s.onnx")]
    assert main([*args, "--structured", "l1", "--sparsity", "0.5", *flags]) == 2
    assert flags[0] in capsys.readouterr().err
    assert not (tmp_path / "s.onnx").exists()


def test_cli_masked_out_is_the_zeroed_model_compaction_cuts(tmp_path, capsys):
    small, masked = tmp_path / "small.onnx", tmp_path / "masked.onnx"
    args = ["prune", str(MODELS / "cnn_digits.onnx"), "-o", str(small), "--structured", "l2"]
    assert main([*args, "--sparsity", "0.5", "--masked-out", str(masked)]) == 0
    zeroed = onnx.load(masked)
    assert init(zeroed, "down.weight").shape == (32, 16, 3, 3)  # original shapes
    assert (~init(zeroed, "down.weight").reshape(32, -1).any(axis=1)).sum() == 16
    again = compact(zeroed).model
    assert [init(again, n).shape for n in ("down.weight", "head.weight")] == [
        init(onnx.load(small), n).shape for n in ("down.weight", "head.weight")
    ]
    feed = {"image": DATA["image"]}
    assert close(run(zeroed, feed)[0], run(onnx.load(small), feed)[0])
    assert main([*args, "--sparsity", "0.5", "--masked-out", str(small)]) == 2
