"""``onnxprune batch``: exit codes, the failed list, the table, the files it writes."""

from __future__ import annotations

import json

import pytest

from tests.batch.models import mlp, save, zoo
from tests.helpers import run_cli


@pytest.mark.slow
def test_some_failed_exits_4_and_lists_them_then_a_clean_folder_exits_0(tmp_path):
    zoo(tmp_path / "zoo")
    out = tmp_path / "out"
    args = ("batch", str(tmp_path / "zoo"), "--out", str(out), "--sparsity", "0.5", "--jobs", "2")
    result = run_cli(*args, "--allocation", "erk")
    assert result.returncode == 4, result.stderr
    failed = result.stderr.splitlines()
    assert failed[0] == "2 of 4 models failed:"
    assert failed[1].startswith("  corrupt.onnx: InvalidModelError: not a valid ONNX model")
    assert failed[2].startswith("  sub/unknown_op.onnx: InvalidModelError:")
    assert "Traceback" not in result.stderr
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "model", "status", "target", "direct", "effective", "MACs", "size", "top-1", "dense",
        "top-1", "cosine", "gate", "front", "time",
    ]  # fmt: skip
    assert any(line.split()[:3] == ["sub/b.onnx", "ok", "0.5"] for line in table)
    assert "4 models: 2 pruned, 0 already done, 2 failed" in result.stdout
    lines = [json.loads(x) for x in (out / "batch.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok", "failed", "ok", "failed"]
    assert (out / "batch.md").read_text().startswith("# Batch pruning")
    page = run_cli("report", str(out / "batch.json"), "--html", str(tmp_path / "batch.html"))
    assert page.returncode == 0, page.stderr
    assert "sub/unknown_op.onnx" in (tmp_path / "batch.html").read_text()

    # The same folder without the broken models: the good ones are done already.
    (tmp_path / "zoo" / "corrupt.onnx").unlink()
    (tmp_path / "zoo" / "sub" / "unknown_op.onnx").unlink()
    again = run_cli(*args, "--allocation", "erk")
    assert again.returncode == 0, again.stderr
    assert "2 models: 0 pruned, 2 already done, 0 failed" in again.stdout


def test_a_bad_option_exits_2_before_pruning(tmp_path):
    save(mlp(1), tmp_path / "zoo" / "a.onnx")
    result = run_cli(
        "batch", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"), "--score", "magnitud"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("InvalidOptionError: command line: unknown score 'magnitud'")
    assert not (tmp_path / "out").exists()
