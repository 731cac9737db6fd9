"""``onnxprune report`` renders the JSON of ``prune --structured``, ``compact`` and ``prune
--compact``, and every command's JSON end to end: what the commands write, the report reads."""

from __future__ import annotations

import json
import re

import onnx
import pytest

import onnxprune
from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.render import detect_kind, render_html, render_markdown
from tests.render.samples import MODELS
from tests.render.test_markdown import _tables
from tests.structured.test_cli_results import _many_reasons
from tests.structured.test_reached import chain

CNN = MODELS / "cnn_digits.onnx"


def structured_json() -> dict:
    """The chain of tests/structured/test_reached.py at 0.5, rounded to 4: 6 of 14 groups."""
    return onnxprune.structured_prune(chain(), sparsity=0.5, round_to=4).to_dict()


def compact_json() -> dict:
    """cnn_digits pruned to 90% (magnitude), then compacted."""
    return onnxprune.compact(onnxprune.prune(CNN, sparsity=0.9).model).to_dict()


def test_each_result_is_recognized():
    assert detect_kind(structured_json()) == "structured"
    assert detect_kind(compact_json()) == "compact"
    assert detect_kind(onnxprune.prune(CNN, sparsity=0.9, compact=True).to_dict()) == "sparsity"


def _error(data: dict) -> str:
    with pytest.raises(InvalidOptionError) as info:
        detect_kind(data)
    return str(info.value)


def test_malformed_results_name_the_key():
    data = structured_json()
    del data["groups_prunable"]
    assert _error(data) == "structured prune lacks the key 'groups_prunable'"
    data = structured_json()
    data["units"]["w1"] = 4
    assert _error(data) == "structured prune.units['w1'] must be [kept, total], got a number"
    data = structured_json()
    del data["blocked"][0]["reason"]
    assert _error(data) == "structured prune blocked[0] lacks the key 'reason'"
    data = compact_json()
    data["folded"]["down.weight"] = "7"
    assert _error(data) == "compaction.folded['down.weight'] must be a number, got a string"
    report = onnxprune.prune(CNN, sparsity=0.9, compact=True).to_dict()
    report["compaction"]["params_after"] = None
    assert _error(report) == "sparsity report compaction.params_after must be a number, got null"


def test_structured_markdown_states_target_reached_layers_and_blocked():
    text = render_markdown(structured_json())
    assert text.startswith("# Structured pruning\n")
    tables = _tables(text)
    totals = dict(tables["quantity"][1:])
    assert totals == {
        "target sparsity (groups)": "50.00%",
        "scope": "layer",
        "round to": "4",
        "groups removed": "6",
        "prunable groups": "14",
        "sparsity reached (groups)": "42.86%",
        "parameters before": "92",
        "parameters after": "40",
        "parameters removed": "56.52%",  # 52 / 92
        "MACs before": "92",  # one row of x: one MAC per weight, none of them zero
        "MACs after": "40",
        "MACs by nonzero weights before": "92",
        "MACs by nonzero weights after": "40",
    }
    assert tables["#"][1:] == [  # named by node (weight), counted in neurons
        ["1", "m1 (w1)", "neurons", "4", "8", "50.00%"],
        ["2", "m2 (w2)", "neurons", "4", "6", "33.33%"],
    ]
    assert tables["layer"][1:] == [["m1 (w1)", "4"], ["m2 (w2)", "2"]]  # channels cut
    assert tables["groups"][1:] == [["2", "graph output 'y'", "w3"]]
    assert "Warning: removed 42.86% of the prunable groups (6 of 14), 7.1 points below" in text


def test_compact_markdown_and_the_compaction_of_prune_compact():
    data = compact_json()
    tables = _tables(render_markdown(data))
    totals = dict(tables["quantity"][1:])
    assert totals["units removed"] == str(sum(data["removed"].values()))
    assert totals["of them folded into biases"] == str(sum(data["folded"].values()))
    assert totals["parameters before"] == "9,770"
    assert totals["parameters after"] == f"{data['params_after']:,}"
    rows = tables["layer"][1:]
    assert rows == [  # named "node (weight)": the CNN's nodes are named by module
        [re.sub(r"_", r"\\_", f"{data['labels'][name]} ({name})"), str(count),
         str(data["folded"].get(name, 0))]
        for name, count in data["removed"].items()
    ]  # fmt: skip
    assert rows[-1][0] == "/down/Conv (down.weight)"
    assert tables["groups"][1:] == [["10", "graph output 'logits'", "head.weight"]]
    report = onnxprune.prune(CNN, sparsity=0.9, compact=True).to_dict()
    text = render_markdown(report)
    assert text.startswith("# Sparsity report\n")
    assert "## Compaction\n" in text
    assert f"| parameters after | {report['compaction']['params_after']:,} |" in text


def test_many_blocked_reasons_are_merged_and_capped(monkeypatch):
    from onnxprune.render import structured

    monkeypatch.setattr(structured, "BLOCKED_ROWS", 3)
    monkeypatch.setattr(structured, "BLOCKED_LAYERS", 2)
    data = onnxprune.compact(_many_reasons()).to_dict()
    text = render_markdown(data)
    assert _tables(text)["groups"][1:] == [
        ["8", "graph output 'y0'", "a1, a2 and 3 more"],
        ["6", "graph output 'y6'", "b6"],
        ["5", "graph output 'y5'", "b5"],
    ]
    assert "And 10 groups for 4 other reasons." in text  # 4 + 3 + 2 + 1


def test_structured_page_plots_the_units_removed_per_layer():
    page = render_html(structured_json())
    assert page.count('src="data:image/png;base64,') == 1
    assert "Units removed per layer" in page
    assert render_html(compact_json()).count("data:image/png") == 0


def _json_of(tmp_path, capsys, *argv: str) -> str:
    """Run a command that writes ``r.json``; return the markdown ``report`` renders from it."""
    assert main(list(argv)) == 0, capsys.readouterr().err
    assert main(["report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]) == 0
    capsys.readouterr()
    return (tmp_path / "r.md").read_text().splitlines()[0]


def test_report_renders_what_every_command_writes(tmp_path, capsys):
    model, out, data = str(CNN), str(tmp_path / "o.onnx"), str(MODELS / "digits_test.npz")
    report = ["--report-out", str(tmp_path / "r.json")]
    titles = {
        "prune": _json_of(tmp_path, capsys, "prune", model, "-o", out, "--sparsity", "0.9",
                          *report),
        "prune --compact": _json_of(tmp_path, capsys, "prune", model, "-o", out, "--sparsity",
                                    "0.9", "--compact", *report),
        "prune --structured": _json_of(tmp_path, capsys, "prune", model, "-o", out,
                                       "--structured", "l1", "--sparsity", "0.5", *report),
        "compact": _json_of(tmp_path, capsys, "compact", out, "-o", str(tmp_path / "c.onnx"),
                            *report),
        "validate": _json_of(tmp_path, capsys, "validate", out, "--data", data, *report),
    }  # fmt: skip
    assert titles == {
        "prune": "# Sparsity report",
        "prune --compact": "# Sparsity report",
        "prune --structured": "# Structured pruning",
        "compact": "# Compaction report",
        "validate": "# Validation: o.onnx",
    }
    assert main(["analyze", model, "--json"]) == 0
    (tmp_path / "r.json").write_text(capsys.readouterr().out)
    assert main(["report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "a.md")]) == 0
    assert (tmp_path / "a.md").read_text().startswith("# Sparsity report\n")


def test_structured_json_from_a_real_model_renders_its_units():
    result = onnxprune.structured_prune(onnx.load(CNN), sparsity=0.5)
    text = render_markdown(json.loads(json.dumps(result.to_dict())))
    rows = _tables(text)["#"][1:]
    assert [row[3:5] for row in rows] == [
        [str(kept), str(total)] for kept, total in result.units.values()
    ]
    assert {row[2] for row in rows} == {"channels"}  # a CNN's units
    # Layers of groups: the residual pair Conv_39/Conv_45 (16), Conv_42 (16), down (32); half
    # of each goes: (8 + 8 + 16) of 64.
    assert (result.groups_removed, result.groups_prunable) == (32, 64)
