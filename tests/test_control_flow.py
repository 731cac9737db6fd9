"""Weights inside If/Loop/Scan bodies: found, reported with their branch, pruned, analysed soundly.

The model (tests/control_flow.py) has a main-graph layer, layers in both ``If`` branches (Constant
weights), a main-graph initializer only the branches read, a ``Loop`` body initializer and a
``Scan`` body Constant; its numpy reference says what it computes for any weights.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.cli import main
from tests.control_flow import WEIGHTS, control_flow_model, reference
from tests.helpers import zero_inactive

X = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)


def _run(model: onnx.ModelProto, c: bool) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X, "c": np.array(c)})


def test_analyze_reports_every_body_weight_with_its_branch():
    report = onnxprune.analyze(control_flow_model())
    rows = {row.name: row for row in report.layers}
    assert set(rows) == set(WEIGHTS)
    assert report.total_params == sum(w.size for w in WEIGHTS.values())
    # t1's column 4 is zero (6 of 30 weights): its unit 4 is dead, so t2's row 4 (3 of its 15
    # weights) is dead inside the then branch although none of them is zero.
    t1, t2 = rows["If_2/then_branch/t1"], rows["If_2/then_branch/t2"]
    assert (t1.zeros, t1.active, t1.dead_outputs) == (6, 24, 1)
    assert (t2.zeros, t2.active, t2.dead_inputs) == (0, 12, 1)
    # the main-graph weight only the branches read: stored once, its use named by the branch
    assert rows["w_out"].label.startswith("If_2/")
    assert rows["Loop_3/body/lw"].active == 9 and rows["Scan_4/body/sw"].active == 6
    assert {f.op_type for f in report.fallbacks} == {"If", "Loop", "Scan"}


def test_cli_tables_and_json_name_the_branch(tmp_path, capsys):
    path = tmp_path / "cf.onnx"
    onnx.save(control_flow_model(), path)
    assert main(["analyze", str(path)]) == 0
    table = capsys.readouterr().out
    assert "If_2/then_branch/t1" in table and "If_2/else_branch/e1" in table
    assert main(["analyze", str(path), "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)["layers"]}
    assert names == set(WEIGHTS)


@pytest.mark.parametrize("c", [True, False])
def test_prune_masks_weights_inside_both_branches(c):
    model = control_flow_model()
    result = onnxprune.prune(model, sparsity=0.5)
    assert set(result.masks) == set(WEIGHTS)
    kept = sum(int(m.sum()) for m in result.masks.values())
    total = sum(w.size for w in WEIGHTS.values())
    assert total - kept == round(0.5 * total)  # the target counts the weights in bodies
    for name in WEIGHTS:  # every layer is pruned, none left whole
        assert not result.masks[name].all(), name
    onnx.checker.check_model(result.model, full_check=True)
    masked = {k: np.where(result.masks[k], w, 0) for k, w in WEIGHTS.items()}
    for got, want in zip(_run(result.model, c), reference(masked, X, c), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the pruned weight lives where it did: a Constant node inside the then branch
    then = next(a.g for a in result.model.graph.node[2].attribute if a.name == "then_branch")
    t1 = next(n for n in then.node if n.output[0] == "t1")
    stored = numpy_helper.to_array(t1.attribute[0].t)
    np.testing.assert_array_equal(stored, masked["If_2/then_branch/t1"])
    # the masks apply again from their keys, to the same model
    again = onnxprune.prune(model, masks=result.masks)
    assert again.model.SerializeToString() == result.model.SerializeToString()


@pytest.mark.parametrize("level", ["channel", "exact"])
def test_zeroing_dead_entries_leaves_outputs_unchanged(level):
    model = control_flow_model()
    zeroed, count = zero_inactive(model, level)
    assert count == 3  # t2's row 4
    for c in (True, False):
        for got, want in zip(_run(zeroed, c), _run(model, c), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_structured_prune_and_compact_leave_bodies_alone():
    model = control_flow_model()
    result = onnxprune.prune(model, structured="l1", sparsity=0.3)
    blocked = {name: g.reason for g in result.structured.blocked for name in g.layers}
    for name in WEIGHTS:
        if "/" in name:
            assert "leave If/Loop/Scan bodies alone" in blocked[name], name
    assert "read inside its subgraph" in blocked["w_top"]  # the branches read its units
    onnx.checker.check_model(result.model, full_check=True)
    for c in (True, False):
        for got, want in zip(_run(result.model, c), _run(model, c), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    compacted = onnxprune.compact(model)
    assert compacted.removed == {}
    assert {n for g in compacted.blocked for n in g.layers} == set(WEIGHTS)
    # every stored number counts, the bodies' too: the weights, tb (3), shape4 (4), and the
    # main graph's trips, keep_going and s0 (1 + 1 + 2); it said 37 (the main graph's alone)
    stored = sum(w.size for w in WEIGHTS.values()) + 3 + 4 + 1 + 1 + 2
    assert (compacted.params_before, compacted.params_after) == (stored, stored)
    cut = result.structured.compaction
    assert (cut.params_before, cut.params_after) == (stored, stored)


def test_scores_that_run_the_main_graph_leave_bodies_with_a_warning():
    result = onnxprune.prune(control_flow_model(), sparsity=0.1, score="synflow", rounds=1)
    inside = [w for w in result.warnings if "runs the main graph only" in w]
    assert sorted(w.split(":")[0] for w in inside) == sorted(n for n in WEIGHTS if n != "w_top")
    assert all(result.masks.get(n, np.ones(1, bool)).all() for n in WEIGHTS if n != "w_top")
    # 50% of all 111 weights needs more than w_top's 24: refused, saying why
    with pytest.raises(onnxprune.InvalidOptionError, match="in a body the score cannot see"):
        onnxprune.prune(control_flow_model(), sparsity=0.5, score="synflow", rounds=1)


def test_gather_beyond_a_symbolic_batch_inside_a_branch():
    # The voice-activity model's variant: inside an If branch, Gather(state, 1, axis=0) where
    # state is [N, 3] with N symbolic (counted as 1). Before the fix analyze raised IndexError;
    # now the Gather mixes densely with its reason, named inside its branch.
    def branch(name: str) -> onnx.GraphProto:
        nodes = [
            helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(np.array(1))),
            helper.make_node("Gather", ["state", "i"], ["g"], axis=0),
            helper.make_node("MatMul", ["g", "w"], [f"y_{name}"]),
        ]
        out = [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [2])]
        return helper.make_graph(nodes, name, [], out)

    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch("a"), else_branch=branch("b"))],
        "vad",
        [
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones((3, 2), np.float32), "w")],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    report = onnxprune.analyze(model)
    gathers = sorted(f.node for f in report.fallbacks if f.op_type == "Gather")
    assert gathers == ["If_0/else_branch/Gather_1", "If_0/then_branch/Gather_1"]
    reasons = [f.reason for f in report.fallbacks if f.node in gathers]
    assert all("outside axis 0 of size 1" in reason for reason in reasons)
    assert [(row.name, row.active) for row in report.layers] == [("w", 6)]


def test_a_body_weight_key_taken_by_another_tensor_is_refused():
    # The then branch stores "w" (key "If_0/then_branch/w") and the main graph has an
    # initializer named exactly "If_0/then_branch/w" used by its own MatMul: masks keyed by
    # these names could not tell them apart.
    then = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.ones((2, 2)))),
            helper.make_node("MatMul", ["x", "w"], ["t"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.DOUBLE, [1, 2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then),
            helper.make_node("MatMul", ["y", "If_0/then_branch/w"], ["z"]),
        ],
        "clash",
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("z", TensorProto.DOUBLE, [1, 2])],
        [numpy_helper.from_array(np.ones((2, 2)), "If_0/then_branch/w")],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnxprune.InvalidModelError, match="names two tensors"):
        onnxprune.analyze(model)


def test_exact_level_agrees_with_channel_inside_bodies():
    # Every layer here is a MatMul/Gemm or a 1x1 Conv: both levels are exact, so they agree.
    model = control_flow_model()
    channel = {row.name: row.active for row in onnxprune.analyze(model).layers}
    exact = {row.name: row.active for row in onnxprune.analyze(model, level="exact").layers}
    assert exact == channel
    assert exact["If_2/then_branch/t2"] == 12


def test_layers_regex_selects_one_branch():
    result = onnxprune.prune(control_flow_model(), sparsity=0.1, layers="then_branch")
    pruned = {name for name, mask in result.masks.items() if not mask.all()}
    assert pruned == {"If_2/then_branch/t1", "If_2/then_branch/t2"}


def test_a_streamed_prune_keeps_body_weights_and_says_so(tmp_path):
    # With external data the model is pruned tensor by tensor; weights inside bodies stay.
    model = control_flow_model()
    path = tmp_path / "cf.onnx"
    onnx.save(model, path, save_as_external_data=True, size_threshold=0, location="cf.data")
    out = tmp_path / "pruned.onnx"
    result = onnxprune.prune(path, sparsity=0.2, output=out, stream="always")
    assert result.streamed
    left = sorted(w.split(":")[0] for w in result.warnings if "streamed tensor by tensor" in w)
    assert left == sorted(n for n in WEIGHTS if "/" in n or n == "w_out")
    masks = np.load(tmp_path / "pruned.masks.npz")
    assert sorted(masks.files) == ["w_top"]
    pruned = onnx.load(out)
    masked = {**WEIGHTS, "w_top": np.where(masks["w_top"], WEIGHTS["w_top"], 0)}
    for c in (True, False):
        for got, want in zip(_run(pruned, c), reference(masked, X, c), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
