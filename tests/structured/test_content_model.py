"""A real content-type model (Magika) whose groups are all blocked: the result says so and why.

Magika's ONNX model (PyPI ``magika``, ``models/standard_v3_3/model.onnx``) embeds bytes with a
Dense layer whose output is reshaped to a target computed at run time, runs a Conv whose output
is cut by a Slice, and ends in a Dense layer under a softmax over the classes written out as
ReduceMax/Sub/Exp/ReduceSum/Div. Structured pruning can remove none of its groups. ``magika``
is not a dependency (its wheel requires the CPU ``onnxruntime``, which would clash with the
``onnxruntime-gpu`` installed here), so the fixture uses its model when it is installed and
otherwise the same three blockers built by hand.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.cli import main
from tests.structured._group_models import graph_model

RNG = np.random.default_rng(0)


@dataclass(frozen=True)
class Expected:
    """What structured pruning reports: parameters, and (op, node, groups) per blocking reason,
    most groups first."""

    params: int
    blocked: tuple[tuple[str, str, int], ...]


MAGIKA = Expected(
    784_519,
    (
        ("Slice", "jax2tf_get_logits_/pjit_get_logits_/MagikaV2/Conv_0/strided_slice_2", 512),
        ("ReduceMax", "jax2tf_get_logits_/pjit_get_logits_/Max", 214),
        ("Reshape", "jax2tf_get_logits_/pjit_get_logits_/MagikaV2/Reshape", 64),
    ),
)
"""Magika 1.0's standard_v3_3: Conv 512 filters, Dense 512 -> 214 classes, byte Dense 257 -> 64."""


def magika_like() -> onnx.ModelProto:
    """x [N, 8, 4] -> MatMul dense0 (6 units) -> Reshape to [N, 4, 12], N read from Shape(x) at
    run time -> Unsqueeze -> Conv conv0 (5 filters, 3x1) -> Slice channels 0, 2, 4 (a step of 2:
    not followed, as a range of channels would be) -> GlobalMaxPool
    -> Flatten -> MatMul dense1 (3 classes) -> softmax as ReduceMax, Sub, Exp, ReduceSum, Div -> y.
    """
    nodes = [
        helper.make_node("MatMul", ["x", "dense0"], ["d"], name="dense0"),
        helper.make_node("Shape", ["x"], ["xs"], name="xshape", end=1),
        helper.make_node("Concat", ["xs", "rest"], ["t"], name="target", axis=0),
        helper.make_node("Reshape", ["d", "t"], ["r"], name="reshape"),
        helper.make_node("Unsqueeze", ["r", "axis3"], ["u"], name="unsqueeze"),
        helper.make_node("Conv", ["u", "conv0"], ["c"], name="conv0", kernel_shape=[3, 1]),
        helper.make_node("Slice", ["c", "starts", "ends", "axis1", "step2"], ["s"], name="slice"),
        helper.make_node("GlobalMaxPool", ["s"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "dense1"], ["logits"], name="dense1"),
        helper.make_node("ReduceMax", ["logits"], ["m"], name="max", axes=[1], keepdims=1),
        helper.make_node("Sub", ["logits", "m"], ["z"], name="sub"),
        helper.make_node("Exp", ["z"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axis1"], ["n"], name="sum", keepdims=1),
        helper.make_node("Div", ["e", "n"], ["y"], name="div"),
    ]
    ints = {"rest": [4, 12], "axis3": [3], "starts": [0], "ends": [5], "axis1": [1], "step2": [2]}
    inits = {name: np.array(values, np.int64) for name, values in ints.items()}
    inits |= {
        "dense0": RNG.normal(size=(4, 6)).astype(np.float32),
        "conv0": RNG.normal(size=(5, 4, 3, 1)).astype(np.float32),
        "dense1": RNG.normal(size=(3, 3)).astype(np.float32),
    }
    return graph_model(nodes, {"x": ["N", 8, 4]}, {"y": ["N", 3]}, inits, opset=15)


MAGIKA_LIKE = Expected(
    4 * 6 + 5 * 4 * 3 + 3 * 3 + 7,  # the weights, and the 7 int64 elements of shape constants
    (("Reshape", "reshape", 6), ("Slice", "slice", 5), ("ReduceMax", "max", 3)),
)


def _installed_magika() -> Path | None:
    spec = importlib.util.find_spec("magika")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "models" / "standard_v3_3" / "model.onnx"
    return path if path.is_file() else None


@pytest.fixture
def content_model(tmp_path) -> tuple[str, Expected]:
    """Magika's model when ``magika`` is installed, else the hand-built one."""
    real = _installed_magika()
    if real is not None:
        return str(real), MAGIKA
    path = tmp_path / "magika_like.onnx"
    onnx.save(magika_like(), path)
    return str(path), MAGIKA_LIKE


def _run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def _reason(op: str, node: str) -> str:
    if op == "Slice":
        return f"Slice node '{node}': its units cannot be followed here"
    if op == "ReduceMax":
        return f"ReduceMax node '{node}': it reduces over the units' axis"  # the softmax's max
    return f"Reshape node '{node}': target shape"  # then the target's name, computed at run time


def test_structured_prune_says_nothing_was_removed_and_why(content_model, tmp_path, capsys):
    model, expected = content_model
    out = tmp_path / "small.onnx"
    flags = ["--structured", "l1", "--sparsity", "0.4"]
    code, lines, errors = _run(capsys, "prune", model, "-o", str(out), *flags)
    assert code == 0
    (warning,) = errors
    head, reasons = warning.split(" mainly by ", 1)
    assert head == "warning: nothing was removed: every group is blocked,"
    for (op, node, groups), part in zip(expected.blocked, reasons.split("; "), strict=True):
        assert part.startswith(_reason(op, node))
        assert part.endswith(f"({groups} groups)")
    assert lines[0] == "no group could be removed (target 40.00%)"
    for (op, node, groups), line in zip(expected.blocked, lines[1:4], strict=True):
        assert line.startswith(f"left alone: {groups} groups: {_reason(op, node)}")
    assert lines[4].startswith("MACs ")
    assert lines[5] == f"parameters {expected.params} -> {expected.params}; wrote {out}"
    code, lines, _ = _run(capsys, "prune", model, "-o", str(out), *flags, "--json")
    summary = json.loads("\n".join(lines))
    assert summary["units"] == {}
    assert summary["group_sparsity"] is None
    assert (summary["groups_removed"], summary["groups_prunable"]) == (0, 0)
    found = sorted(((b["op_type"], b["node"], b["groups"]) for b in summary["blocked"]),
                   key=lambda b: -b[2])  # fmt: skip
    assert tuple(found) == expected.blocked


def test_compact_lists_the_same_blockers(content_model, tmp_path, capsys):
    model, expected = content_model
    code, lines, errors = _run(capsys, "compact", model, "-o", str(tmp_path / "c.onnx"))
    assert (code, errors) == (0, [])
    for (op, node, groups), line in zip(expected.blocked, lines, strict=False):
        assert line.startswith(f"left alone: {groups} groups: {_reason(op, node)}")
    assert lines[-1].startswith(f"parameters {expected.params} -> {expected.params}; ")
