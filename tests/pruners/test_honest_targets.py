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
from onnxprune.graph.build import NAME_SCOPES
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


def test_effective_target_with_a_minimum_threshold_stops_at_the_floor() -> None:
    # sigma 0.1 of 20 weights: every layer keeps 2, so at most 14 + 2 = 16 may go. Global
    # magnitude takes w2's two smallest (hidden units 0, 1 die: w1's columns 0 and 1 go
    # inactive, 0.5), then w1 in value order: W1[0, 0..1] (already inactive, 0.5), W1[0, 2]
    # (0.55), W1[0, 3] (0.6, input unit 0 now dead), W1[1, 0..1] (inactive, 0.6), W1[1, 2]
    # (0.65). The largest count at most 0.6 removes 8: w2 keeps 2, w1 keeps 10.
    result = onnxprune.prune(_model(), sparsity=0.6, effective=True, min_threshold=0.1)
    assert result.report.effective_sparsity == pytest.approx(0.6)
    assert {name: int(m.sum()) for name, m in result.masks.items()} == {"w1": 10, "w2": 2}


@pytest.mark.parametrize("allocation", ["global", "erk", "uniform", "igq"])
def test_effective_target_with_a_minimum_threshold_works_for_every_allocation(
    allocation: str,
) -> None:
    result = onnxprune.prune(
        _model(), sparsity=0.6, effective=True, min_threshold=0.1, allocation=allocation
    )
    assert result.report.effective_sparsity <= 0.6
    assert all(m.sum() >= 2 for m in result.masks.values())  # the floor held


def test_unreachable_effective_target_under_a_minimum_threshold_is_said() -> None:
    # The floor lets 16 go: w2 keeps 0.3, 0.4 and w1 keeps W1[3, 2..3], all four on a path:
    # 16 of 20 weights gone, 0.8.
    result = onnxprune.prune(_model(), sparsity=0.95, effective=True, min_threshold=0.1)
    assert result.report.effective_sparsity == pytest.approx(0.8)
    (missed,) = [w for w in result.warnings if w.startswith("effective sparsity short")]
    assert missed.endswith("the minimum threshold lets no more weights go")


def test_cli_effective_target_with_a_minimum_threshold(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    out = tmp_path / "p.onnx"
    for allocation in ("global", "erk"):
        done = run_cli(
            *("prune", str(path), "-o", str(out), "--effective", "--sparsity", "0.6"),
            *("--min-threshold", "0.1", "--allocation", allocation),
        )
        assert done.returncode == 0, done.stderr
        assert onnxprune.analyze(out).effective_sparsity <= 0.6


def test_collapse_warnings_name_the_layer_by_its_module() -> None:
    # The exporter's module in the node's metadata: the warning gives it beside the weight.
    model = _model()
    node = model.graph.node[1]
    node.metadata_props.add(key=NAME_SCOPES, value="['', 'classifier.head', 'matmul']")
    result = onnxprune.prune(model, sparsity=0.6, allocation="uniform")
    assert any(w.startswith("classifier.head (w2): keeps 2 of 4") for w in result.warnings)
