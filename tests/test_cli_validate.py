"""``onnxprune validate`` from the command line: summary, JSON, report file and exit codes.

Exit codes: 0 when the gate passes or there is none, 3 when it fails (a value, not an error),
2 for bad input, with one line on stderr and no traceback. The numbers come from the sample
models: mlp_digits is 97.56% (439/450) on digits_test.npz, mlp_digits_pruned95 34.67% (156/450),
so the drop is 283/450 = 0.6289.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxprune.cli import EXIT_GATE_FAILED, main
from onnxprune.runtime import create_session
from tests.helpers import run_cli

MODELS = Path(__file__).resolve().parents[1] / "models"
DIGITS = str(MODELS / "digits_test.npz")
DENSE = str(MODELS / "mlp_digits.onnx")
PRUNED = str(MODELS / "mlp_digits_pruned95.onnx")
CNN = str(MODELS / "cnn_digits.onnx")
# Accuracies print in percent, so the drop and the allowance are in percentage points.
FAIL_LINE = "top-1 dropped 62.89 points (97.56% -> 34.67%), more than the allowed 1.00 points"


def test_summary_names_the_provider_and_the_gate(capsys) -> None:
    code = main(
        ["validate", PRUNED, "--data", DIGITS, "--baseline", DENSE, "--provider", "cpu",
         "--max-accuracy-drop", "0.7", "--batch-size", "100"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "model:       mlp_digits_pruned95.onnx on CPUExecutionProvider" in out
    assert "baseline:    mlp_digits.onnx on CPUExecutionProvider" in out
    assert "samples:     450 in batches of 100" in out
    assert "top-1:       34.67%   baseline 97.56%" in out
    assert out.rstrip().splitlines()[-1] == (
        "gate:        passed: top-1 dropped 62.89 points (97.56% -> 34.67%), within the allowed "
        "70.00 points"
    )


@pytest.mark.slow
def test_gate_failure_exits_3_with_the_reason() -> None:
    result = run_cli("validate", PRUNED, "--data", DIGITS, "--baseline", DENSE,
                     "--max-accuracy-drop", "0.01")  # fmt: skip
    assert result.returncode == EXIT_GATE_FAILED == 3
    assert result.stdout.rstrip().splitlines()[-1] == f"gate:        FAILED: {FAIL_LINE}"
    assert result.stderr == f"gate FAILED: {FAIL_LINE}\n"  # a pipeline log shows it


@pytest.mark.slow
def test_gate_pass_and_no_gate_exit_0() -> None:
    passed = run_cli("validate", DENSE, "--data", DIGITS, "--baseline", DENSE,
                     "--min-agreement", "1", "--max-accuracy-drop", "0")  # fmt: skip
    assert passed.returncode == 0, passed.stderr
    assert "gate:        passed: top-1 dropped 0.00 points (97.56% -> 97.56%)" in passed.stdout
    assert "agreement with the baseline 100.00%, at least the required 100.00%" in passed.stdout
    none = run_cli("validate", CNN, "--data", DIGITS)
    assert none.returncode == 0, none.stderr
    assert "top-1:       98.22%" in none.stdout
    assert none.stdout.rstrip().endswith("gate:        none")


def test_json_and_report_out_with_a_failed_gate(tmp_path: Path, capsys) -> None:
    report = tmp_path / "validation.json"
    code = main(
        ["validate", PRUNED, "--data", DIGITS, "--baseline", DENSE, "--json",
         "--max-accuracy-drop", "0.01", "--report-out", str(report)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 3
    printed = json.loads(captured.out)
    assert captured.err == f"gate FAILED: {FAIL_LINE}\n"
    assert json.loads(report.read_text()) == printed
    assert printed["gate"] == {
        "passed": False,
        "reason": FAIL_LINE,
        "max_accuracy_drop": 0.01,
        "min_agreement": None,
        "limits": {},
    }
    assert printed["model"] == "mlp_digits_pruned95.onnx"
    assert printed["baseline"] == "mlp_digits.onnx"
    assert printed["top1"] == pytest.approx(156 / 450)
    assert printed["baseline_top1"] == pytest.approx(439 / 450)
    assert printed["provider"] == create_session(PRUNED)[1]
    assert list(tmp_path.iterdir()) == [report]  # written atomically, no temporary left


def _write_bad_data(tmp_path: Path) -> dict[str, Path]:
    x = np.load(DIGITS)["x"]
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=x)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    files = {"truncated": truncated, "corrupt": tmp_path / "corrupt.npz"}
    files["corrupt"].write_bytes(b"PK\x03\x04 this is not a zip archive")
    for name, arrays in {
        "missing": {"image": x.reshape(-1, 1, 8, 8)},
        "dtype": {"x": x.astype(np.int32)},
        "rank": {"x": x.reshape(-1, 8, 8)},
    }.items():
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], **arrays)
    return files


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "DatasetError: dataset truncated.npz is not a readable .npz: "),
        ("corrupt", "DatasetError: dataset corrupt.npz is not a readable .npz: "),
        ("missing", "DatasetError: dataset has no 'x' (given: image; wants x: float32[batch, 64])"),
        ("dtype", "DatasetError: dataset 'x' is int32[450, 64]; the model wants x: float32"),
        ("rank", "DatasetError: dataset 'x' is float32[450, 8, 8]; the model wants rank 2"),
    ],
)
def test_bad_data_exits_2_with_one_line(tmp_path: Path, capsys, case: str, message: str) -> None:
    path = _write_bad_data(tmp_path)[case]
    assert main(["validate", DENSE, "--data", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert captured.out == ""


@pytest.mark.slow
def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    missing = run_cli("validate", DENSE, "--data", str(tmp_path / "nope.npz"))
    assert missing.returncode == 2
    assert missing.stderr == "DatasetError: dataset file not found: nope.npz\n"
    no_baseline = run_cli("validate", DENSE, "--data", DIGITS, "--min-agreement", "0.9")
    assert no_baseline.returncode == 2
    assert no_baseline.stderr.startswith("InvalidOptionError: the gate compares with a baseline")
    assert "Traceback" not in missing.stderr + no_baseline.stderr


def test_cuda_on_a_machine_without_it_exits_2(capsys) -> None:
    if create_session(DENSE)[1] == "CUDAExecutionProvider":
        pytest.skip("CUDA works on this machine")
    assert main(["validate", DENSE, "--data", DIGITS, "--provider", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("InvalidOptionError: provider='cuda' ")
    assert err.count("\n") == 1


def test_labels_needed_by_the_drop_gate(tmp_path: Path, capsys) -> None:
    data = tmp_path / "unlabelled.npz"
    np.savez(data, x=np.load(DIGITS)["x"])
    code = main(["validate", PRUNED, "--data", str(data), "--baseline", DENSE,
                 "--max-accuracy-drop", "0.1"])  # fmt: skip
    assert code == 2
    assert "needs labels" in capsys.readouterr().err
    assert main(["validate", PRUNED, "--data", str(data), "--baseline", DENSE, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["top1"] is None
    assert printed["agreement"] == pytest.approx(0.3489, abs=5e-5)
