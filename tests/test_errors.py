"""The error tree: every class carries an exit code and a gRPC status, as the docstring draws it;
the CLI exits with the class's code, with or without ``--debug``."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from onnxprune import errors
from onnxprune.cli import main
from onnxprune.errors import CallRefusedError, ConnectionFailedError, OnnxpruneError

MLP = Path(__file__).resolve().parents[1] / "models" / "mlp_digits.onnx"


def _tree(cls: type) -> list[type]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _tree(sub)]


def test_every_class_has_an_exit_code_and_a_real_status():
    classes = _tree(OnnxpruneError)
    assert len(classes) >= 9  # the eight of errors.py and the base, plus any defined elsewhere
    for cls in classes:
        assert cls.exit_code in {1, 2, 5}, cls  # 3 and 4 are values (a gate, a batch), not errors
        assert cls.grpc_status in grpc.StatusCode.__members__, cls
        assert cls.grpc_status != "OK", cls


def _drawn(doc: str) -> dict[str, tuple[str | None, int, str]]:
    """``{class: (parent, exit code, status)}`` read from the tree drawn in ``doc``."""
    drawn, path = {}, []
    line = re.compile(r"^    ((?:[│ ]   )*)([├└]── )?(\w+)\s+(\d)\s+([A-Z_]+)\b")
    for match in filter(None, map(line.match, doc.splitlines())):
        indent, branch, name, code, status = match.groups()
        depth = len(indent) // 4 + (branch is not None)
        drawn[name] = (path[depth - 1] if depth else None, int(code), status)
        path[depth:] = [name]
    return drawn


def test_the_docstring_draws_the_tree_with_each_code_and_status():
    defined = {
        name: (
            None if value is OnnxpruneError else value.__base__.__name__,
            value.exit_code,
            value.grpc_status,
        )
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, OnnxpruneError)
    }
    assert _drawn(errors.__doc__) == defined


def test_received_statuses_choose_one_class_each():
    names = set(grpc.StatusCode.__members__)
    assert CallRefusedError.statuses <= names
    assert ConnectionFailedError.statuses == {"UNAVAILABLE"}
    assert not CallRefusedError.statuses & ConnectionFailedError.statuses
    assert {"INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "OK"}.isdisjoint(
        CallRefusedError.statuses | ConnectionFailedError.statuses
    )  # those stay plain RemoteError (exit 1)


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["analyze", "missing.onnx"], "InvalidModelError: model file not found: missing.onnx"),
        (
            ["prune", str(MLP), "-o", "p.onnx", "--sparsity", "2"],
            "InvalidOptionError: sparsity=2.0 must be in [0, 1)",
        ),
    ],
)
def test_debug_keeps_the_exit_code_and_adds_the_traceback(
    argv, line, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *argv)
    assert (code, err) == (2, line + "\n")  # one line, no traceback
    debug_code, debug_err = _run(capsys, "--debug", *argv)
    assert debug_code == 2
    assert debug_err.startswith("Traceback (most recent call last):")
    assert debug_err.endswith("\n" + line + "\n")  # the same line closes the traceback
    assert not (tmp_path / "p.onnx").exists()
