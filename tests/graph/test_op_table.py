"""The op table: one family per op type, registered once, complete on first read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxprune import graph
from onnxprune.graph.registry import FAMILIES, OPS, lookup, op_rule
from onnxprune.graph.rules import elementwise, mixing
from onnxprune.graph.transfers import Pointwise


def _never(node):
    raise AssertionError("a refused registration must not be used")


def test_every_op_type_has_exactly_one_family():
    listed = [op for family in FAMILIES.values() for op in family.op_types]
    assert len(listed) == len(set(listed)) == len(OPS)
    for family in FAMILIES.values():
        assert all(OPS[op] is family for op in family.op_types), family.name
        assert set(family.constants) <= set(family.op_types), family.name


def test_a_transfer_rule_may_serve_several_families():
    # Activations and arithmetic are followed differently by structured pruning, but units flow
    # through both element by element.
    assert OPS["Relu"].name == "activation"
    assert OPS["Add"].name == "arithmetic"
    assert OPS["Relu"].transfer is OPS["Add"].transfer is elementwise.pointwise
    assert lookup("Relu")(None) == Pointwise()
    assert lookup("NotAnOp") is None


def test_an_op_type_registered_twice_is_refused_and_nothing_is_added():
    with pytest.raises(ValueError, match="op type 'Relu' registered twice"):
        op_rule("Relu", "BrandNewOp", family="brand_new")(_never)
    assert "brand_new" not in FAMILIES
    assert "BrandNewOp" not in OPS
    assert OPS["Relu"].name == "activation"


def test_a_family_registered_twice_is_refused():
    with pytest.raises(ValueError, match="op family 'softmax' registered twice"):
        op_rule("BrandNewOp", family="softmax")(_never)
    assert "BrandNewOp" not in OPS
    assert FAMILIES["softmax"].transfer is mixing.softmax


def test_constants_must_belong_to_the_family():
    with pytest.raises(ValueError, match="outside family"):
        op_rule("BrandNewOp", family="brand_new", constants={"Relu": np.abs})(_never)
    assert "brand_new" not in FAMILIES


def test_family_constants_apply_the_op():
    # Values worked out by hand: relu(-1, 2) = (0, 2); Sub of (5, 1) and (2, 3) = (3, -2).
    relu = OPS["Relu"].constants["Relu"]
    assert relu(np.array([-1.0, 2.0]), None).tolist() == [0.0, 2.0]
    sub = OPS["Sub"].constants["Sub"]
    assert sub(np.array([[5.0, 1.0], [2.0, 3.0]])).tolist() == [3.0, -2.0]


def test_the_table_is_complete_on_first_read():
    code = (
        "from onnxprune.graph.registry import FAMILIES, OPS\n"
        "assert OPS['Conv'].name == 'conv' and 'softmax' in FAMILIES\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_graph_never_imports_its_downstream_layers():
    downstream = ("onnxprune.structured", "onnxprune.pruners", "onnxprune.sparsity")
    for path in Path(graph.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not [n for n in names if n.startswith(downstream)], (path.name, names)
