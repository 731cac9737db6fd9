"""Every command refuses each malformed model in one line, exit 2, leaving the input alone.

Issue 19, item 7: these models crashed ``analyze``, ``prune`` or ``compact`` with an
``InternalError`` (exit 1) deep in NumPy, or were taken as they were. The builders are in
``malformed.py``, one per case; the CLI runs in-process (``onnxprune.cli.main``).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import onnxprune
from onnxprune.cli import main
from tests.hostile.malformed import CASES


def argv(command: str, model: Path, out: Path) -> list[str]:
    """The command line of ``command`` on ``model``, writing into ``out``."""
    return {
        "analyze": ["analyze", str(model)],
        "exact": ["analyze", "--exact", str(model)],
        "prune": ["prune", str(model), "--sparsity", "0.5", "-o", str(out / "pruned.onnx")],
        "compact": ["compact", str(model), "-o", str(out / "compact.onnx")],
    }[command]


def files(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


RUNS = [(name, command) for name, case in CASES.items() for command in case.commands]


@pytest.mark.parametrize(("name", "command"), RUNS, ids=[f"{n}-{c}" for n, c in RUNS])
def test_every_command_refuses_a_malformed_model_in_one_line(name, command, tmp_path, capsys):
    case = CASES[name]
    model = case.build(tmp_path)
    before = files(tmp_path)
    code = main([*argv(command, model, tmp_path), *case.options])
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(f"{case.error.__name__}: "), err
    assert files(tmp_path) == before  # the input as it was, nothing written


LIBRARY = [name for name, case in CASES.items() if "analyze" in case.commands and not case.options]


@pytest.mark.parametrize("name", [n for n in LIBRARY if n != "external_short"])
def test_the_library_refuses_the_same_model_given_as_a_proto(name, tmp_path):
    case = CASES[name]
    proto = onnx.load_model_from_string(case.build(tmp_path).read_bytes())
    with pytest.raises(case.error):
        onnxprune.analyze(proto)
