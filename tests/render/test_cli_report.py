"""``onnxprune report``: writes the asked-for files; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from onnxprune.cli import main
from onnxprune.render import render_html, render_markdown
from tests.helpers import run_cli
from tests.render import samples


@pytest.fixture
def report_json(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(samples.sparsity_report(), indent=2))
    return path


def test_writes_html_and_markdown(report_json, tmp_path, capsys):
    html, md = tmp_path / "out" / "r.html", tmp_path / "r.md"
    html.parent.mkdir()
    assert main(["report", str(report_json), "--html", str(html), "--markdown", str(md)]) == 0
    data = json.loads(report_json.read_text())
    assert html.read_text() == render_html(data)
    assert md.read_text() == render_markdown(data)
    assert "| 2 | /fc2/Gemm | fc2.weight | Gemm | 100x300 | 30,000 |" in md.read_text()
    assert html.read_text().count('src="data:image/png;base64,') == 2
    assert capsys.readouterr().out.splitlines() == [f"wrote {html}", f"wrote {md}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.md", "report.json"]


def test_only_the_asked_output_is_written(tmp_path):
    source = tmp_path / "sweep.json"
    source.write_text(json.dumps(samples.sweep()))
    assert main(["report", str(source), "--markdown", str(tmp_path / "s.md")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.md", "sweep.json"]
    assert "| lamp/global | 99% |" in (tmp_path / "s.md").read_text()


def _fails(args: list[str], capsys) -> str:
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.strip()


def test_unknown_json_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "other.json"
    source.write_text(json.dumps({"accuracy": 0.9, "epochs": 3}))
    out = tmp_path / "r.html"
    err = _fails([str(source), "--html", str(out)], capsys)
    assert err.startswith("InvalidOptionError: unknown report JSON (top-level keys: 'accuracy'")
    assert not out.exists()


def test_bad_inputs_exit_2(report_json, tmp_path, capsys):
    out = str(tmp_path / "r.md")
    assert _fails([str(report_json)], capsys) == (
        "InvalidOptionError: nothing to write: give --html OUT.html, --markdown OUT.md or both"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"total_params": ')
    assert _fails([str(broken), "--markdown", out], capsys).startswith(
        "InvalidOptionError: broken.json is not valid JSON: Expecting value at line 1"
    )
    assert _fails([str(tmp_path / "missing.json"), "--markdown", out], capsys) == (
        "InvalidOptionError: report file not found: missing.json"
    )
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    assert _fails([str(listing), "--markdown", out], capsys) == (
        "InvalidOptionError: a report must be a JSON object, got a list"
    )
    assert not (tmp_path / "r.md").exists()


def test_never_overwrites_the_report_json(report_json, capsys):
    before = report_json.read_text()
    err = _fails([str(report_json), "--html", str(report_json)], capsys)
    assert (
        err == "InvalidOptionError: an output would overwrite the report JSON; choose another path"
    )
    assert report_json.read_text() == before


def test_console_entry_point_exits_2_without_traceback(tmp_path):
    source = tmp_path / "x.json"
    source.write_text('{"kind": "benchmark"}')
    result = run_cli("report", str(source), "--html", str(tmp_path / "x.html"))
    assert result.returncode == 2
    assert (
        result.stderr
        == "InvalidOptionError: unknown report kind 'benchmark'; known: 'sweep', 'batch', "
        "'sensitivity'\n"
    )
    assert "Traceback" not in result.stderr
