"""Names from a model never reach the terminal raw: escapes in text, exact in JSON.

The model's weights are named ``HOSTILE_NAME`` (an OSC clipboard write, a screen clear, CR, LF,
a right-to-left override) and ``b\\x1b[31m``; pruning ``w2`` (6 weights) to 100% warns about it.
"""

from __future__ import annotations

import json
import re

import numpy as np

from tests.hostile.builders import HOSTILE_NAME, cli, mlp, one_line, snapshot, unchanged

RED = "b\x1b[31m"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")
"""Control characters that must not be printed (a newline only ends a line)."""


def test_table_and_warning_show_escapes(tmp_path, capsys):
    model = mlp(tmp_path / "m.onnx", (HOSTILE_NAME, RED))
    before = snapshot(model)
    code, out, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.9")
    assert code == 0
    assert not RAW.search(out + err)
    rows = [line for line in out.splitlines() if "MatMul" in line]
    assert len(rows) == 2  # the newline in the name did not split its row
    assert rows[0].startswith(r"w\x1b]52;c;aGk=\x07\x1b[2J\r\nforged line\u202e  MatMul")
    assert "forged line" not in out.replace(rows[0], "")
    near, collapsed = err.rstrip("\n").split("\n")  # one line per warning, names escaped
    assert near == (
        r"warning: w\x1b]52;c;aGk=\x07\x1b[2J\r\nforged line\u202e: keeps 2 of 12 weights "
        "(16.67%; near layer collapse); try --min-threshold or another allocation"
    )
    assert collapsed == (
        r"warning: b\x1b[31m: pruned to 100% (layer collapse; every path through it is cut); "
        "try --min-threshold"
    )
    assert unchanged(before)
    code, out, _ = cli(capsys, "analyze", model, "--json")  # JSON: the names exactly
    assert code == 0
    assert [layer["name"] for layer in json.loads(out)["layers"]] == [HOSTILE_NAME, RED]


def test_markdown_report_shows_escapes(tmp_path, capsys):
    model = mlp(tmp_path / "m.onnx", (HOSTILE_NAME, RED))
    code, out, _ = cli(capsys, "analyze", model, "--json")
    assert code == 0
    (tmp_path / "r.json").write_text(out)
    code, _, _ = cli(capsys, "report", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert code == 0
    text = (tmp_path / "r.md").read_text()
    assert not RAW.search(text)
    assert r"b\\x1b\[31m" in text  # printable's escape, then Markdown's backslashes


def test_error_naming_a_mask_is_one_escaped_line(tmp_path, capsys):
    model = mlp(tmp_path / "m.onnx")
    masks = tmp_path / "masks.npz"
    np.savez(masks, **{HOSTILE_NAME: np.ones((4, 3), bool)})
    before = snapshot(model, masks)
    code, _, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", "--masks-in", masks)
    assert code == 2
    line = one_line(err)
    assert not RAW.search(err)
    assert line.startswith("InvalidOptionError: masks name no prunable weight: w\\x1b]52")
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()
