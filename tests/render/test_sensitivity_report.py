"""The sensitivity JSON rendered: recognized and checked, a table row and a plot per curve."""

from __future__ import annotations

import pytest

from onnxprune.errors import InvalidOptionError
from onnxprune.render import detect_kind, render_html, render_markdown

DOC = {
    "kind": "sensitivity",
    "model": "m.onnx",
    "metric": "top1",
    "higher_is_better": True,
    "percent": True,
    "baseline": 0.9,
    "levels": [0.5, 0.9],
    "score": "magnitude",
    "structured": "l1",
    "provider": "CPUExecutionProvider",
    "samples": 10,
    "layers": [
        {"name": "w1", "op_type": "Gemm", "shape": [4, 2], "params": 8, "levels": [0.5, 0.875],
         "values": [0.9, 0.5], "error": None},
        {"name": "w2", "op_type": "Gemm", "shape": [2, 2], "params": 4, "levels": [],
         "values": [], "error": "DatasetError: broken"},
    ],
    "groups": [
        {"name": "w1", "layers": ["w1"], "params": 4, "levels": [0.5, 0.75], "values": [0.8, None],
         "error": None},
    ],
}  # fmt: skip


def test_recognized_and_rendered_with_a_plot_per_curve():
    assert detect_kind(DOC) == "sensitivity"
    page = render_html(DOC)
    assert page.count("<figure>") == 3
    assert 'alt="w1 (structured)"' in page
    text = render_markdown(DOC)
    assert "| w1 | unstructured | 8 | 90.00% | 50.00% |" in text
    assert "| w1 | structured | 4 | 80.00% | n/a |" in text
    assert "DatasetError: broken" in text


def test_levels_and_values_go_in_pairs():
    bad = {**DOC, "groups": [{**DOC["groups"][0], "values": [0.8]}]}
    with pytest.raises(InvalidOptionError, match=r"groups\[0\] has 2 levels and 1 values"):
        detect_kind(bad)


def test_a_class_axis_is_shown_when_the_measure_was_per_position():
    row = "class axis (accuracy, agreement per position)"
    assert row not in render_html(DOC)
    per_token = {**DOC, "class_axis": -1}
    assert f"| {row} | -1 |" in render_markdown(per_token)
    assert row in render_html(per_token)
