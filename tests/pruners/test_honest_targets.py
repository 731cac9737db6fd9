"""Honest targets: a missed effective target and layers near collapse are said, with numbers.

x [1, 4] -> MatMul w1 [4, 4] -> MatMul w2 [4, 1] -> y. The head's weights are the smallest, so
global magnitude pruning takes them first, and each one removed cuts hidden unit j: its column
of w1 (4 weights) goes inactive with it. Effective sparsity after k head weights removed:
(k + 4k) / 20 = 0.25k, so a target of 0.6 stops at k = 2 (0.5); k = 3 would give 0.75.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

import onnxprune
from onnxprune.pruners.prune import collapse_warnings
from tests.helpers import run_cli, single_io_model

W1 = np.arange(2.0, 3.6, 0.1).reshape(4, 4)
W2 = np.array([[0.1], [0.2], [0.3], [0.4]])


def _model():
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    return single_io_model(nodes, [1, 4], [1, 1], {"w1": W1, "w2": W2})


def test_missed_effective_target_is_said_with_the_value_and_why() -> None:
    result = onnxprune.prune(_model(), sparsity=0.6, effective=True)
    assert result.report.effective_sparsity == pytest.approx(0.5)
    (missed,) = [w for w in result.warnings if w.startswith("effective sparsity short")]
    assert missed.startswith("effective sparsity short of the target 0.6: 0.5000;")
    assert "(from w2, which would keep 1 of 4) takes it to 0.7500" in missed
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_reached_effective_target_gives_no_shortfall() -> None:
    result = onnxprune.prune(_model(), sparsity=0.5, effective=True)
    assert result.report.effective_sparsity == pytest.approx(0.5)
    assert not [w for w in result.warnings if w.startswith("effective sparsity short")]


def test_cli_says_the_target_was_not_reached(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    args = ["prune", str(path), "-o", str(tmp_path / "p.onnx"), "--sparsity", "0.6", "--effective"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "warning: effective sparsity short of the target 0.6: 0.5000;" in done.stderr
    assert "effective target not reached (see the warning) in" in done.stdout
    # w2 keeps 2 of its 4 weights: fewer than 8, near collapse
    assert "warning: w2: keeps 2 of 4 weights (50.00%; near layer collapse)" in done.stderr
    data = json.loads(run_cli(*args, "--json").stdout)
    assert any(w.startswith("effective sparsity short") for w in data["warnings"])


@pytest.mark.parametrize(
    ("kept", "size", "warned"),
    [
        (0, 10, "pruned to 100%"),
        (3, 1000, "keeps 3 of 1000 weights (0.30%; near layer collapse)"),
        (7, 100, "keeps 7 of 100 weights (7.00%; near layer collapse)"),  # fewer than 8
        (8, 100, None),  # 8% and 8 weights: not near
        (10, 1001, "keeps 10 of 1001 weights (1.00%; near layer collapse)"),  # under 1%
        (11, 1001, None),
        (5, 5, None),  # left whole
    ],
)
def test_layers_near_collapse_are_warned(kept: int, size: int, warned: str | None) -> None:
    warnings = collapse_warnings([("layer", kept, size)])
    if warned is None:
        assert warnings == ()
    else:
        (line,) = warnings
        assert line.startswith(f"layer: {warned}") and "try --min-threshold" in line
