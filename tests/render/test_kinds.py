"""Recognizing report JSON: the four known kinds, and one clear line for anything else."""

from __future__ import annotations

import pytest

import onnxprune.render
from onnxprune.errors import InvalidOptionError
from onnxprune.render import detect_kind
from tests.render import samples


def test_all_is_sorted_and_names_what_exists():
    assert onnxprune.render.__all__ == sorted(onnxprune.render.__all__)
    for name in onnxprune.render.__all__:
        assert hasattr(onnxprune.render, name), name


def test_each_kind_is_recognized_by_its_keys():
    report, validation = samples.sparsity_report(), samples.validation_result()
    assert detect_kind(report) == "sparsity"
    assert detect_kind(validation) == "validation"
    assert detect_kind(samples.sweep()) == "sweep"
    assert detect_kind({"report": report, "validation": validation}) == "combined"
    assert detect_kind({"report": report, "validation": None}) == "combined"


def _error(data: object) -> str:
    with pytest.raises(InvalidOptionError) as info:
        detect_kind(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_an_unknown_shape_names_its_keys_and_the_known_kinds():
    message = _error({"foo": 1, "bar\nbaz": 2})
    assert message.startswith("unknown report JSON (top-level keys: 'bar\\nbaz', 'foo')")
    assert "sparsity report" in message
    assert "validation result" in message
    assert '"kind": "sweep"' in message


def test_not_an_object_and_unknown_kinds_are_errors():
    assert _error([1, 2]) == "a report must be a JSON object, got a list"
    assert _error(None) == "a report must be a JSON object, got null"
    assert (
        _error({"kind": "benchmark"})
        == "unknown report kind 'benchmark'; known: 'sweep', 'batch', 'sensitivity'"
    )


def test_a_layer_without_a_documented_key_is_named():
    report = samples.sparsity_report()
    del report["layers"][1]["params"]
    assert _error(report) == "sparsity report layers[1] lacks the key 'params'"


def test_mistyped_values_say_what_they_must_be():
    report = samples.sparsity_report()
    report["direct_sparsity"] = "95%"
    assert _error(report) == "sparsity report.direct_sparsity must be a number, got a string"
    report = samples.sparsity_report()
    report["layers"][0]["dead_inputs"] = True  # a bool is not a count
    assert _error(report) == "sparsity report layers[0].dead_inputs must be a number, got a boolean"
    report = samples.sparsity_report()
    report["total_params"] = None  # only compressions may be null (infinite)
    assert "total_params must be a number, got null" in _error(report)
    report = samples.sparsity_report()
    report["layers"][2]["shape"] = [10, "N"]
    assert _error(report) == "sparsity report layers[2].shape[1] must be a number, got a string"


def test_nested_validation_and_gate_are_checked():
    gate = {"passed": "yes", "reason": None, "max_accuracy_drop": None, "min_agreement": None}
    message = _error(samples.validation_result(gate=gate))
    assert message == "validation result gate.passed must be true or false, got a string"
    sweep = samples.sweep()
    del sweep["dense"]["throughput"]
    assert _error(sweep) == "sweep dense lacks the key 'throughput'"
    message = _error(samples.validation_result(speedup="2.65x"))
    assert message == "validation result.speedup must be a number or null, got a string"
    message = _error(samples.validation_result(warnings=["fine", 3]))
    assert message == "validation result.warnings[1] must be a string, got a number"
    message = _error(samples.validation_result(speedup_low="2.5"))
    assert message == "validation result.speedup_low must be a number or null, got a string"
    sweep = samples.sweep()
    sweep["runs"][2]["warnings"] = "wide"
    assert _error(sweep) == "sweep runs[2].warnings must be a list, got a string"
    sweep["runs"][2]["warnings"] = [None]
    assert _error(sweep) == "sweep runs[2].warnings[0] must be a string, got null"
    sweep = samples.sweep()
    sweep["runs"][3]["sparsity"] = None
    assert _error(sweep) == "sweep runs[3].sparsity must be a number, got null"
    combined = {"report": samples.sparsity_report(), "validation": {"top1": 0.9}}
    assert _error(combined) == "validation lacks the key 'model'"
    assert _error({"report": [], "validation": None}) == (
        "report JSON.report must be an object, got a list"
    )


def test_extra_keys_are_allowed():
    report = samples.sparsity_report()
    report["notes"] = "written by a newer onnxprune"
    assert detect_kind(report) == "sparsity"
