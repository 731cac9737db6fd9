"""Every gate of ``onnxprune validate`` from the command line, and user metrics (``--metric``).

The models: mlp_digits_pruned95 (95% of its weights pruned) against mlp_digits on the digits test
split (450 samples, one output ``logits`` [N, 10]). Expected values are computed here from the
two models' outputs, run with ONNX Runtime directly and compared with NumPy: a failing gate's
reason must carry the measured number. A failed gate exits 3, prints ``gate: FAILED: <reason>``
last on stdout and ``gate FAILED: <reason>`` on stderr; bad metric specs exit 2 with one line.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnxprune.cli import main
from onnxprune.cli._validate import COMPARISON_GATES, USER_GATE_FLAGS
from onnxprune.metrics import COMPARISONS
from tests.helpers import run_cli

MODELS = Path(__file__).resolve().parents[1] / "models"
DIGITS = MODELS / "digits_test.npz"
DENSE = str(MODELS / "mlp_digits.onnx")
PRUNED = str(MODELS / "mlp_digits_pruned95.onnx")


def _logits(path: str) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.load(DIGITS)["x"]})[0].astype(np.float64)


def _measured() -> dict[str, float]:
    a, b = _logits(PRUNED), _logits(DENSE)
    labels = np.load(DIGITS)["labels"]
    diff = np.abs(a - b)
    rel = diff / (np.abs(b) + 1e-6)
    cos = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    order = np.argsort(-a, axis=1)
    return {
        "max_abs_error": diff.max(),
        "max_mean_abs_error": diff.mean(),
        "max_rel_error": rel.max(),
        "max_mean_rel_error": rel.mean(),
        "min_cosine": cos.mean(),
        "min_worst_cosine": cos.min(),
        "min_agreement": np.mean(a.argmax(1) == b.argmax(1)),
        "min_top5_agreement": np.mean([b[i].argmax() in order[i, :5] for i in range(len(a))]),
        "accuracy": np.mean(a.argmax(1) == labels),
    }


# gate, flag value that fails, the reason's words (written out here, not read from the code)
CASES = [
    ("max_abs_error", "1", "max absolute error {:.6g}, more than the allowed 1"),
    ("max_mean_abs_error", "0.5", "mean absolute error {:.6g}, more than the allowed 0.5"),
    ("max_rel_error", "2", "max relative error {:.6g}, more than the allowed 2"),
    ("max_mean_rel_error", "0.25", "mean relative error {:.6g}, more than the allowed 0.25"),
    (
        "min_cosine",
        "0.99",
        "cosine similarity (mean over samples) {:.6g}, less than the required 0.99",
    ),
    (
        "min_worst_cosine",
        "0.5",
        "cosine similarity of the worst sample {:.6g}, less than the required 0.5",
    ),
    (
        "min_agreement",
        "0.9",
        "top-1 agreement with the baseline {:.2%}, less than the required 90.00%",
    ),
    (
        "min_top5_agreement",
        "0.95",
        "top-5 agreement with the baseline {:.2%}, less than the required 95.00%",
    ),
]


def test_the_cli_has_a_flag_for_every_registered_gate() -> None:
    assert [gate for gate, _ in COMPARISON_GATES] == [c.gate for c in COMPARISONS.values()]
    assert [gate for gate, _ in USER_GATE_FLAGS] == ["min_metric", "max_metric"]
    assert [gate for gate, _, _ in CASES] == [c.gate for c in COMPARISONS.values()]


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    return _measured()


@pytest.fixture
def metric_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_metrics.py"
    path.write_text(
        textwrap.dedent(
            """
            import numpy as np

            def accuracy(outputs, labels):
                return float((outputs["logits"].argmax(1) == labels).mean())

            def summary(outputs, labels):
                return {"samples": len(outputs["logits"]), "top": outputs["logits"].max()}

            def broken(outputs, labels):
                raise ValueError("no good\\nsecond line")

            def words(outputs, labels):
                return "high"

            NOT_CALLABLE = 3
            """
        )
    )
    return path


def _assert_failed(result, reason: str) -> None:
    assert result.returncode == 3, result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == f"gate:        FAILED: {reason}"
    assert result.stderr == f"gate FAILED: {reason}\n"


@pytest.mark.slow
@pytest.mark.parametrize(("gate", "value", "reason"), CASES, ids=[c[0] for c in CASES])
def test_every_comparison_gate_fails_with_exit_3_and_its_reason(
    gate: str, value: str, reason: str, measured: dict[str, float]
) -> None:
    flag = "--" + gate.replace("_", "-")
    result = run_cli("validate", PRUNED, "--data", str(DIGITS), "--baseline", DENSE, flag, value)
    _assert_failed(result, reason.format(measured[gate]))


@pytest.mark.slow
@pytest.mark.parametrize(("gate", "value", "verdict"), [
    ("min-metric", "0.9", "less than the required 0.9"),
    ("max-metric", "0.1", "more than the allowed 0.1"),
    ("max-accuracy-drop", "0.01", None),
])  # fmt: skip
def test_the_metric_and_accuracy_gates_fail_with_exit_3(
    gate: str, value: str, verdict: str | None, measured: dict[str, float], metric_file: Path
) -> None:
    flags = ["--metric", f"{metric_file}:accuracy"] if verdict else []
    result = run_cli(
        "validate", PRUNED, "--data", str(DIGITS), "--baseline", DENSE, f"--{gate}", value, *flags
    )
    if verdict is None:
        reason = "top-1 dropped 62.89 points (97.56% -> 34.67%), more than the allowed 1.00 points"
    else:
        reason = f"metric accuracy {measured['accuracy']:.6g}, {verdict}"
    _assert_failed(result, reason)


@pytest.mark.slow
def test_label_free_gates_on_data_without_labels(tmp_path: Path, measured: dict) -> None:
    data = tmp_path / "inputs_only.npz"
    np.savez(data, x=np.load(DIGITS)["x"])
    passed = run_cli("validate", DENSE, "--data", str(data), "--baseline", DENSE,
                     "--min-cosine", "0.99", "--max-abs-error", "0")  # fmt: skip
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.rstrip().splitlines()[-1] == (
        "gate:        passed: max absolute error 0, within the allowed 0; cosine similarity "
        "(mean over samples) 1, at least the required 0.99"
    )
    failed = run_cli("validate", PRUNED, "--data", str(data), "--baseline", DENSE,
                     "--min-cosine", "0.99", "--json")  # fmt: skip
    assert failed.returncode == 3
    printed = json.loads(failed.stdout)
    assert printed["top1"] is None
    assert printed["outputs"]["logits"]["cosine"] == pytest.approx(measured["min_cosine"])
    assert printed["gate"]["limits"] == {"min_cosine": 0.99}
    assert failed.stderr.startswith("gate FAILED: cosine similarity (mean over samples) ")


def test_text_shows_the_comparison_table_and_the_metric(metric_file: Path, capsys) -> None:
    code = main(["validate", PRUNED, "--data", str(DIGITS), "--baseline", DENSE,
                 "--metric", f"{metric_file}:summary"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "metric:      samples 450   baseline 450" in out
    lines = out.splitlines()
    table = lines.index("outputs against the baseline:")
    assert lines[table + 1].split() == [
        "output", "max", "abs", "mean", "abs", "max", "rel", "mean", "rel", "cosine", "worst",
        "cos", "top-1", "agr", "top-5", "agr",
    ]  # fmt: skip
    assert lines[table + 3].split()[0] == "logits"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "metric 'nocolon' must look like module:function"),
        ("no_such_module_m16:f", "metric 'no_such_module_m16:f': cannot import "
         "no_such_module_m16: ModuleNotFoundError: No module named 'no_such_module_m16'"),
        ("FILE:missing", "metric 'FILE:missing': FILE has no 'missing'"),
        ("FILE:NOT_CALLABLE", "metric 'FILE:NOT_CALLABLE': NOT_CALLABLE is not a function"),
        ("BAD:f", "metric 'BAD:f': cannot import BAD: RuntimeError: boom"),
        ("nothere.py:f", "metric file not found: nothere.py"),
        ("FILE:broken", "metric broken raised ValueError: no good"),
        ("FILE:words", "metric words returned str 'high'; it must return a float or a dict"),
    ],
)  # fmt: skip
def test_bad_metrics_exit_2_with_one_line(
    spec: str, message: str, metric_file: Path, tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "bad_import.py"
    bad.write_text("raise RuntimeError('boom')\n")
    spec = spec.replace("FILE", str(metric_file)).replace("BAD", str(bad))
    message = message.replace("FILE", str(metric_file)).replace("BAD", str(bad))
    code = main(["validate", PRUNED, "--data", str(DIGITS), "--baseline", DENSE, "--metric", spec])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"InvalidOptionError: {message}")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-metric", "0.5"], "min_metric and max_metric need a metric"),
        (["--min-cosine", "0.5"], "the gate compares with a baseline; give --baseline too"),
        (["--min-cosine", "2"], "min_cosine=2.0 must be in [-1, 1]"),
    ],
)
def test_gate_flags_without_what_they_need_exit_2(flags: list, message: str, capsys) -> None:
    assert main(["validate", PRUNED, "--data", str(DIGITS), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"InvalidOptionError: {message}")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_a_raising_metric_has_no_traceback(metric_file: Path) -> None:
    result = run_cli("validate", PRUNED, "--data", str(DIGITS), "--metric", f"{metric_file}:broken")
    assert result.returncode == 2
    assert result.stderr == "InvalidOptionError: metric broken raised ValueError: no good\n"
