"""Models ONNX Runtime refuses are bad input in ``validate`` and ``sweep``, not bugs.

Issue 19, item 7: a custom-domain op, a float16 weight on a float input and a reshape that fails
on the data reached ``validate`` and ``sweep`` and ended with ``InternalError`` (exit 1). Now:
exit 2, one line with ONNX Runtime's first line (no prefix, no path), the input unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxprune.cli import main
from tests.hostile.malformed import RUNTIME_CASES, save
from tests.hostile.test_models_malformed import files


def argv(command: str, model: Path, data: Path, out: Path) -> list[str]:
    """``validate`` or a one-run ``sweep`` of ``model`` on ``data``."""
    if command == "validate":
        return ["validate", str(model), "--data", str(data), "--provider", "cpu"]
    return [
        *("sweep", str(model), "--data", str(data), "--sparsities", "0.5"),
        *("--out", str(out / "sweep"), "--provider", "cpu"),
    ]


RUNS = [(name, command) for name in RUNTIME_CASES for command in ("validate", "sweep")]


@pytest.mark.parametrize(("name", "command"), RUNS, ids=[f"{n}-{c}" for n, c in RUNS])
def test_what_onnx_runtime_refuses_is_bad_input(name, command, tmp_path, capsys):
    make, error = RUNTIME_CASES[name]
    model = save(make(), tmp_path)
    data = tmp_path / "data.npz"
    x = np.random.default_rng(0).uniform(size=(3, 4)).astype(np.float32)
    np.savez(data, x=x, labels=np.array([0, 1, 0]))
    before = files(tmp_path)
    code = main(argv(command, model, data, tmp_path))
    if command == "sweep":
        (tmp_path / "sweep").rmdir()  # made before the dense model runs; nothing written in it
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(f"{error.__name__}: ONNX Runtime "), err
    assert "[ONNXRuntimeError]" not in err and str(tmp_path) not in err
    assert files(tmp_path) == before
