"""What ``prune --structured`` and ``compact`` print: sparsity reached, warnings, left alone."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

from onnxprune.cli import main
from tests.structured._group_models import graph_model
from tests.structured.test_reached import _blocked_everywhere, _w, chain
from tests.test_unit_report import _attention


def _run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, path)
    return str(path)


def test_structured_text_states_units_sparsity_blocked_and_parameters(tmp_path, capsys):
    # The chain of test_reached at 0.5 with round_to=4: w1 keeps 4 of 8, w2 4 of 6; 6 of 14.
    model = _save(chain(), tmp_path / "m.onnx")
    out = tmp_path / "s.onnx"
    flags = ["--structured", "l1", "--sparsity", "0.5", "--round-to", "4"]
    code, lines, errors = _run(capsys, "prune", model, "-o", str(out), *flags)
    assert code == 0
    assert lines == [
        "m1 (w1): kept 4 of 8 neurons (50.00% removed)",  # node (weight): MatMul neurons
        "m2 (w2): kept 4 of 6 neurons (33.33% removed)",
        "removed 6 of 14 prunable groups: 42.86% (target 50.00%)",
        "units: neurons 14 -> 8",
        "left alone: 2 groups: graph output 'y' (layer m3)",
        "MACs 92 -> 40 (by nonzero weights 92 -> 40)",  # one row of x: one MAC per weight
        f"parameters 92 -> 40; wrote {out}",  # 4*4 + 4*4 + 4*2
    ]
    assert errors == [
        "warning: removed 42.86% of the prunable groups (6 of 14), 7.1 points below the target "
        "50.00%: each layer keeps a multiple of round_to=4 channels, neurons or head columns"
    ]


def test_structured_json_and_report_out_are_the_result(tmp_path, capsys):
    model = _save(chain(), tmp_path / "m.onnx")
    flags = ["--structured", "l1", "--sparsity", "0.5", "--report-out", str(tmp_path / "r.json")]
    code, lines, errors = _run(capsys, "prune", model, "-o", str(tmp_path / "s.onnx"), *flags)
    assert (code, errors) == (0, [])
    written = json.loads((tmp_path / "r.json").read_text())
    assert (written["groups_removed"], written["groups_prunable"]) == (7, 14)
    assert written["group_sparsity"] == 0.5
    code, lines, _ = _run(capsys, "prune", model, "-o", str(tmp_path / "t.onnx"), *flags[:4],
                          "--json")  # fmt: skip
    assert json.loads("\n".join(lines)) == written


def test_nothing_removable_says_why_and_warns(tmp_path, capsys):
    model = _save(_blocked_everywhere(), tmp_path / "m.onnx")
    out = tmp_path / "s.onnx"
    code, lines, errors = _run(capsys, "prune", model, "-o", str(out), "--structured", "l1",
                               "--sparsity", "0.4")  # fmt: skip
    assert code == 0
    assert lines == [
        "no group could be removed (target 40.00%)",
        "left alone: 4 groups: Softmax node 'sm': it mixes along the unit axis (layer c1)",
        "left alone: 3 groups: graph output 'y' (layer c2)",
        "MACs 320 -> 320 (by nonzero weights 320 -> 320)",  # 4x4 positions x 20 weights
        f"parameters 20 -> 20; wrote {out}",
    ]
    assert errors == [
        "warning: nothing was removed: every group is blocked, mainly by Softmax node 'sm': it "
        "mixes along the unit axis (4 groups); graph output 'y' (3 groups)"
    ]


def _many_reasons() -> onnx.ModelProto:
    """y0 = the sum of five MatMuls a1..a5 (8 units, one residual group per channel), and six
    more outputs y1..y6 = x @ b_i with i units: seven reasons, 8 + 21 groups left alone."""
    nodes = [helper.make_node("MatMul", ["x", f"a{i}"], [f"s{i}"]) for i in range(1, 6)]
    nodes.append(helper.make_node("Sum", [f"s{i}" for i in range(1, 6)], ["y0"], name="sum"))
    nodes += [helper.make_node("MatMul", ["x", f"b{i}"], [f"y{i}"]) for i in range(1, 7)]
    inits = {f"a{i}": _w(2, 8) for i in range(1, 6)} | {f"b{i}": _w(2, i) for i in range(1, 7)}
    outputs = {"y0": [1, 8]} | {f"y{i}": [1, i] for i in range(1, 7)}
    return graph_model(nodes, {"x": [1, 2]}, outputs, inits)


LEFT_ALONE = [
    "left alone: 8 groups: graph output 'y0' (layers a1, a2, a3 and 2 more)",
    "left alone: 6 groups: graph output 'y6' (layer b6)",
    "left alone: 5 groups: graph output 'y5' (layer b5)",
    "left alone: 4 groups: graph output 'y4' (layer b4)",
    "left alone: 3 groups: graph output 'y3' (layer b3)",
    "left alone: 3 groups more for 2 other reasons (--json lists them)",  # y2 (2) and y1 (1)
]


def test_left_alone_is_grouped_and_capped_for_prune_and_compact(tmp_path, capsys):
    model = _save(_many_reasons(), tmp_path / "m.onnx")
    params = 5 * 16 + 2 * (1 + 2 + 3 + 4 + 5 + 6)  # 122, nothing removable
    macs = f"MACs {params} -> {params} (by nonzero weights {params} -> {params})"  # one row of x
    out = tmp_path / "s.onnx"
    code, lines, _ = _run(capsys, "prune", model, "-o", str(out), "--structured", "l2",
                          "--sparsity", "0.5")  # fmt: skip
    assert code == 0
    assert lines == [
        "no group could be removed (target 50.00%)",
        *LEFT_ALONE,
        macs,
        f"parameters {params} -> {params}; wrote {out}",
    ]
    code, lines, errors = _run(capsys, "compact", model, "-o", str(out))
    assert (code, errors) == (0, [])
    unchanged = f"parameters {params} -> {params}; wrote {out} unchanged (nothing removed)"
    assert lines == [*LEFT_ALONE, macs, unchanged]
    code, lines, _ = _run(capsys, "compact", model, "-o", str(out), "--json")
    blocked = json.loads("\n".join(lines))["blocked"]
    assert len(blocked) == 7  # --json lists every reason
    assert blocked[0] == {
        "layers": ["a1", "a2", "a3", "a4", "a5"],
        "reason": "graph output 'y0'",
        "op_type": None,
        "node": None,
        "groups": 8,
    }


def test_compact_counts_a_dead_head_as_a_head_named_by_its_module(tmp_path, capsys):
    # tests/test_unit_report.py's attention: 2 heads of 4 channels. Head 1's rows of the output
    # projection are zero, so nothing reads its Q, K, V columns: compaction cuts the head, 4
    # columns of each of wq, wk, wv, and prints it as prune --structured counts it.
    rng = np.random.default_rng(0)
    wq, wv, wo = (rng.normal(size=(8, 8)).astype(np.float32) for _ in range(3))
    wo[4:, :] = 0
    model = _save(_attention(wq, wv, wo), tmp_path / "m.onnx")
    out = tmp_path / "c.onnx"
    code, lines, errors = _run(capsys, "compact", model, "-o", str(out))
    assert (code, errors) == (0, [])
    assert lines[:4] == [
        "/attn/q_proj/MatMul (wq): removed 1 of 2 heads",
        "/attn/k_proj/MatMul (wk): removed 1 of 2 heads",
        "/attn/v_proj/MatMul (wv): removed 1 of 2 heads",
        "units: heads 2 -> 1",  # wo's neurons feed the graph output: none free to go
    ]
    code, lines, _ = _run(capsys, "compact", model, "-o", str(out), "--json")
    data = json.loads("\n".join(lines))
    assert data["removed"] == {"wq": 4, "wk": 4, "wv": 4}  # along the weight: columns
    assert data["units"] == {"wq": [1, 2], "wk": [1, 2], "wv": [1, 2]}  # in heads
    assert data["kinds"] == {"wq": "head", "wk": "head", "wv": "head"}
    assert data["labels"]["wq"] == "/attn/q_proj/MatMul"
    assert data["labels"]["wo"] == "/attn/o_proj/MatMul"  # a blocked group's layer
    assert data["totals"] == {"head": [1, 2]}
