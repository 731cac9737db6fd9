"""Readable layer names: the exporter's module, else the node's name, else the weight's."""

from __future__ import annotations

import numpy as np
from onnx import helper

import onnxprune
from onnxprune.graph.build import NAME_SCOPES
from onnxprune.render import render_markdown
from onnxprune.report import format_table
from tests.helpers import single_io_model
from tests.render.test_markdown import _tables


def _model():
    # three MatMuls: one with PyTorch's module metadata, one named, one with neither
    first = helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["a"], name="node_matmul")
    first.metadata_props.add(key=NAME_SCOPES, value="['', 'encoder.layers.0.fc1', 'matmul']")
    second = helper.make_node("MatMul", ["a", "w2"], ["b"], name="/decoder/MatMul")
    third = helper.make_node("MatMul", ["b", "w3"], ["y"])
    inits = {"onnx::MatMul_7": np.ones((4, 3)), "w2": np.ones((3, 2)), "w3": np.ones((2, 2))}
    return single_io_model([first, second, third], [1, 4], [1, 2], inits)


def test_layers_are_named_after_module_then_node_then_weight():
    report = onnxprune.analyze(_model())
    assert [(layer.name, layer.label) for layer in report.layers] == [
        ("onnx::MatMul_7", "encoder.layers.0.fc1"),
        ("w2", "/decoder/MatMul"),
        ("w3", None),  # nothing better than the weight's own name
    ]
    rows = _tables(render_markdown(report.to_dict()))["#"][1:]
    assert [row[1:3] for row in rows] == [
        ["encoder.layers.0.fc1", "onnx::MatMul\\_7"],  # markdown escapes the underscore
        ["/decoder/MatMul", "w2"],
        ["w3", "w3"],
    ]


def test_unreadable_scopes_fall_back_to_the_node_name():
    model = _model()
    model.graph.node[0].metadata_props[0].value = "['', " * 5000  # not a literal, and too long
    assert onnxprune.analyze(model).layers[0].label == "node_matmul"
    model.graph.node[0].metadata_props[0].value = "[1, 2]"  # a list, but not of names
    assert onnxprune.analyze(model).layers[0].label == "node_matmul"


def test_the_text_table_gives_the_label_beside_the_weight():
    lines = format_table(onnxprune.analyze(_model())).splitlines()
    assert lines[0].split()[-1] == "label"
    rows = [line.split() for line in lines[2:5]]
    assert [(row[0], row[-1]) for row in rows] == [
        ("onnx::MatMul_7", "encoder.layers.0.fc1"),
        ("w2", "/decoder/MatMul"),
        ("w3", "4"),  # no label: the row ends with its nonzero MACs (1 x 2x2 ones)
    ]


def test_a_model_without_labels_has_no_label_column():
    inits = {"w": np.ones((4, 2))}
    model = single_io_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [1, 4], [1, 2], inits)
    assert "label" not in format_table(onnxprune.analyze(model)).splitlines()[0]
