"""Bad arguments give one line on stderr and exit 2, naming the command and the argument."""

from __future__ import annotations

import pytest

from tests.hostile.builders import cli, mlp, one_line, snapshot, unchanged


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--sparsity", "abc"],
            "onnxprune prune: error: argument --sparsity: invalid float value: 'abc'",
        ),
        (["--nm", "-1:4"], "onnxprune prune: error: argument --nm: expected one argument"),
        (["--stream", "x\x1b[2J"], "onnxprune prune: error: argument --stream: invalid choice: "
         "'x\\x1b[2J' (choose from 'auto', 'always', 'never')"),
    ],
)  # fmt: skip
def test_bad_prune_argument_is_one_line(tmp_path, capsys, args, expected):
    model = mlp(tmp_path / "m.onnx")
    before = snapshot(model)
    code, out, err = cli(capsys, "prune", model, "-o", tmp_path / "p.onnx", *args)
    assert (code, out, one_line(err)) == (2, "", expected)
    assert unchanged(before)
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "m.onnx", "--data", "d.npz", "--provider", "tpu"],
         "onnxprune validate: error: argument --provider: invalid choice: 'tpu' "
         "(choose from 'auto', 'cuda', 'cpu')"),
        (["prune", "m.onnx"], "onnxprune prune: error: the following arguments are required: "
         "-o/--output"),
        (["nosuch"], "onnxprune: error: argument COMMAND: invalid choice: 'nosuch' (choose from "
         "'analyze', 'prune', 'methods', 'compact', 'validate', 'sweep', 'sensitivity', "
         "'batch', 'report', 'run', 'serve', 'remote')"),
        (["remote", "prune", "m.onnx", "-o", "p.onnx", "--timeout", "soon"],
         "onnxprune remote prune: error: argument --timeout: invalid float value: 'soon'"),
    ],
)  # fmt: skip
def test_bad_arguments_of_other_commands_are_one_line(capsys, args, expected):
    code, out, err = cli(capsys, *args)
    assert (code, out, one_line(err)) == (2, "", expected)


def test_usage_only_with_help(capsys):
    code, out, err = cli(capsys, "analyze", "--max-bytes", "1e9")
    assert (code, out) == (2, "")
    assert (
        one_line(err) == "onnxprune analyze: error: argument --max-bytes: invalid int value: '1e9'"
    )
    code, out, err = cli(capsys, "prune", "--help")
    assert (code, err) == (0, "")
    assert out.startswith("usage: onnxprune prune [-h]")
    assert "--sparsity SPARSITY" in out
