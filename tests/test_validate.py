"""``validate`` and ``load_dataset`` against a NumPy forward pass, and on the sample models.

The test MLP: x[N, 6] -> MatMul W1[6, 8] -> Add B1 -> Relu -> MatMul W2[8, 7] -> Add B2 -> y[N, 7].
Its baseline has the same shape and a perturbed W2, so the two agree on most but not all samples.
Every metric is recomputed here from NumPy logits with independent code (sorting for top-5).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxprune
from onnxprune import DatasetError, InvalidModelError, InvalidOptionError, load_dataset, validate
from onnxprune.runtime import create_session
from onnxprune.validation import Dataset
from tests.helpers import QUICK_TIMING, single_io_model

MODELS = Path(__file__).resolve().parents[1] / "models"
DIGITS = MODELS / "digits_test.npz"
RNG = np.random.default_rng(0)
N, FEATURES, HIDDEN, CLASSES = 50, 6, 8, 7

W1 = RNG.standard_normal((FEATURES, HIDDEN)).astype(np.float32)
B1 = RNG.standard_normal(HIDDEN).astype(np.float32)
W2 = RNG.standard_normal((HIDDEN, CLASSES)).astype(np.float32)
B2 = RNG.standard_normal(CLASSES).astype(np.float32)
W2_BASE = (W2 + 0.5 * RNG.standard_normal(W2.shape)).astype(np.float32)
X = RNG.standard_normal((N, FEATURES)).astype(np.float32)
LABELS = RNG.integers(0, CLASSES, N)


def _mlp(w2: np.ndarray, x_shape: list = ("N", FEATURES), y_shape: list = ("N", CLASSES)):
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Add", ["h", "B1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["z"]),
        helper.make_node("Add", ["z", "B2"], ["y"]),
    ]
    inits = {"W1": W1, "B1": B1, "W2": w2, "B2": B2}
    return single_io_model(nodes, list(x_shape), list(y_shape), inits)


MODEL, BASELINE = _mlp(W2), _mlp(W2_BASE)


def _forward(x: np.ndarray, w2: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W1 + B1, 0) @ w2 + B2


def _reference(labels: np.ndarray) -> dict[str, float]:
    """The metrics from NumPy logits: argmax for top-1, a full sort for top-5."""
    out, base = _forward(X, W2), _forward(X, W2_BASE)
    top5 = np.argsort(-out, axis=1)[:, :5]
    base_top5 = np.argsort(-base, axis=1)[:, :5]
    diff = np.abs(out.astype(np.float64) - base.astype(np.float64))
    return {
        "top1": float(np.mean(out.argmax(1) == labels)),
        "top5": float(np.mean([labels[i] in top5[i] for i in range(N)])),
        "baseline_top1": float(np.mean(base.argmax(1) == labels)),
        "baseline_top5": float(np.mean([labels[i] in base_top5[i] for i in range(N)])),
        "agreement": float(np.mean(out.argmax(1) == base.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _assert_metrics(result, expected: dict[str, float]) -> None:
    for key in ("top1", "top5", "baseline_top1", "baseline_top5", "agreement"):
        assert getattr(result, key) == pytest.approx(expected[key], abs=1e-12), key
    assert result.max_abs_diff == pytest.approx(expected["max_abs_diff"], rel=1e-5, abs=1e-5)
    assert result.mean_abs_diff == pytest.approx(expected["mean_abs_diff"], rel=1e-5, abs=1e-6)


def test_metrics_equal_a_numpy_reference(tmp_path: Path) -> None:
    expected = _reference(LABELS)
    # The data is random, so neither model is perfect nor useless: the metrics test something.
    assert 0 < expected["top1"] < expected["top5"] < 1
    assert 0.5 < expected["agreement"] < 1
    data = _npz(tmp_path / "d.npz", x=X, labels=LABELS, unused=np.zeros(3))
    result = validate(MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING)
    _assert_metrics(result, expected)
    assert result.samples == N
    assert result.batch_size == 64
    assert result.gate is None
    assert result.model is None  # in memory
    assert result.baseline is None
    assert 0 < result.latency_ms_p50 <= result.latency_ms_p95
    assert result.throughput > 0


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_does_not_change_the_metrics(batch_size: int) -> None:
    data = Dataset(inputs={"x": X}, labels=LABELS, samples=N)
    result = validate(
        MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, batch_size=batch_size
    )
    _assert_metrics(result, _reference(LABELS))
    assert result.batch_size == batch_size


def test_fixed_batch_size_is_used_and_the_last_batch_padded(tmp_path: Path) -> None:
    # A model that takes exactly 4 samples; 50 = 12 * 4 + 2, so the last batch is padded.
    fixed = _mlp(W2, x_shape=[4, FEATURES], y_shape=[4, CLASSES])
    data = _npz(tmp_path / "d.npz", x=X, labels=LABELS)
    result = validate(fixed, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, batch_size=64)
    assert result.batch_size == 4
    _assert_metrics(result, _reference(LABELS))


def test_without_labels_and_baseline_only_latency_is_measured(tmp_path: Path) -> None:
    result = validate(
        MODEL, _npz(tmp_path / "d.npz", x=X), provider="cpu", **QUICK_TIMING, warmup=0
    )
    data = result.to_dict()
    assert [k for k, v in data.items() if v is None] == [
        "model", "baseline", "top1", "top5", "baseline_top1", "baseline_top5", "agreement",
        "max_abs_diff", "mean_abs_diff", "baseline_latency_ms_p50", "baseline_latency_ms_p95",
        "speedup", "gate", "baseline_latency_ms_p90", "speedup_low", "speedup_high",
        "speedup_confidence", "class_axis",
    ]  # fmt: skip
    assert data["provider"] == "CPUExecutionProvider"
    assert data["samples"] == N


def test_top5_is_absent_with_fewer_than_5_classes() -> None:
    w = W1[:, :4]
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    model = single_io_model([node], ["N", FEATURES], ["N", 4], {"W": w})
    labels = RNG.integers(0, 4, N)
    result = validate(model, Dataset({"x": X}, labels, N), provider="cpu", **QUICK_TIMING)
    assert result.top5 is None
    assert result.top1 == pytest.approx(np.mean((X @ w).argmax(1) == labels))


def test_gate_passes_and_fails_at_the_measured_drop() -> None:
    # Labels = the baseline's predictions: baseline top-1 is 1, the drop is 1 - agreement.
    labels = _forward(X, W2_BASE).argmax(1)
    agreement = _reference(labels)["agreement"]
    drop = 1.0 - agreement
    data = Dataset({"x": X}, labels, N)
    ok = validate(
        MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, max_accuracy_drop=drop
    )
    assert ok.baseline_top1 == 1.0
    assert ok.gate.passed  # exactly at the allowed drop passes (no float round-off failure)
    points = f"{drop * 100:.2f} points"
    assert ok.gate.reason == (
        f"passed: top-1 dropped {points} (100.00% -> {agreement:.2%}), within the allowed {points}"
    )
    bad = validate(
        MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, max_accuracy_drop=0.01
    )
    assert not bad.gate.passed
    assert bad.gate.reason == (
        f"top-1 dropped {points} (100.00% -> {agreement:.2%}), more than the allowed 1.00 points"
    )
    assert bad.gate.to_dict() == {
        "passed": False,
        "reason": bad.gate.reason,
        "max_accuracy_drop": 0.01,
        "min_agreement": None,
        "limits": {},
    }


def test_gate_on_agreement_lists_only_what_failed() -> None:
    data = Dataset({"x": X}, LABELS, N)
    agreement = _reference(LABELS)["agreement"]
    result = validate(
        MODEL, data, baseline=BASELINE, provider="cpu", max_accuracy_drop=1.0, min_agreement=0.99
    )
    assert not result.gate.passed
    assert result.gate.reason == (
        f"top-1 agreement with the baseline {agreement:.2%}, less than the required 99.00%"
    )
    result = validate(
        MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, min_agreement=0.5
    )
    assert result.gate.passed
    assert result.gate.reason.startswith("passed: top-1 agreement")
    assert "\n" not in result.gate.reason


def test_a_model_pruned_at_zero_agrees_fully_with_its_baseline() -> None:
    source = MODELS / "mlp_digits.onnx"
    pruned = onnxprune.prune(source, sparsity=0.0).model
    result = validate(
        pruned, DIGITS, baseline=source, provider="cpu", **QUICK_TIMING, min_agreement=1.0
    )
    assert result.agreement == 1.0
    assert result.max_abs_diff == 0.0
    assert result.mean_abs_diff == 0.0
    assert result.top1 == result.baseline_top1 == pytest.approx(0.9756, abs=5e-5)
    assert result.gate.passed
    assert (result.model, result.baseline) == (None, "mlp_digits.onnx")


def test_provider_is_recorded() -> None:
    data = Dataset({"x": X}, LABELS, N)
    result = validate(MODEL, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING)
    assert result.provider == result.baseline_provider == "CPUExecutionProvider"
    expected = create_session(MODEL.SerializeToString(), "auto")[1]
    assert validate(MODEL, data, provider="auto", **QUICK_TIMING).provider == expected


def test_cuda_that_does_not_start_is_a_clear_error() -> None:
    if create_session(MODEL.SerializeToString(), "auto")[1] == "CUDAExecutionProvider":
        pytest.skip("CUDA works on this machine")
    with pytest.raises(InvalidOptionError, match=r"^provider='cuda' .*; use 'auto' or 'cpu'$"):
        validate(MODEL, Dataset({"x": X}, None, N), provider="cuda")


def test_to_dict_has_exactly_the_documented_keys(tmp_path: Path) -> None:
    data = _npz(tmp_path / "d.npz", x=X, labels=LABELS)
    model_path = tmp_path / "pruned.onnx"
    onnx.save(MODEL, model_path)
    result = validate(
        model_path, data, baseline=BASELINE, provider="cpu", **QUICK_TIMING, min_agreement=0.1
    )
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert list(as_dict) == [
        "model", "baseline", "provider", "samples", "batch_size", "top1", "top5",
        "baseline_top1", "baseline_top5", "agreement", "max_abs_diff", "mean_abs_diff",
        "latency_ms_p50", "latency_ms_p95", "throughput", "baseline_latency_ms_p50",
        "baseline_latency_ms_p95", "speedup", "gate", "outputs", "user_metrics",
        "baseline_user_metrics", "latency_ms_p90", "baseline_latency_ms_p90", "speedup_low",
        "speedup_high", "speedup_confidence", "timed_runs", "threads", "warnings", "class_axis",
    ]  # fmt: skip
    assert list(as_dict["gate"]) == [
        "passed", "reason", "max_accuracy_drop", "min_agreement", "limits"
    ]  # fmt: skip
    assert as_dict["gate"]["limits"] == {"min_agreement": 0.1}
    assert list(as_dict["outputs"]) == ["y"]
    assert as_dict["model"] == "pruned.onnx"
    assert as_dict["top1"] == pytest.approx(_reference(LABELS)["top1"])


# --- datasets that do not fit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"z": X}, r"^dataset has no 'x' \(given: z; wants x: float32\[N, 6\]\)$"),
        ({"x": X.astype(np.int64)}, r"'x' is int64\[50, 6\]; the model wants x: float32\[N, 6\]"),
        ({"x": X.astype(np.float64)}, r"'x' is float64\[50, 6\]; the model wants x: float32"),
        ({"x": X[None]}, r"float32\[1, 50, 6\]; the model wants rank 2: x: float32\[N, 6\]"),
        ({"x": X[:, :5]}, r"float32\[50, 5\]; the model wants x: float32\[N, 6\]"),
        ({"x": X[:0]}, r"^dataset has no samples"),
        ({"x": X, "labels": LABELS[:-1]}, r"labels are int64\[49\]; they must have shape \[50\]"),
        ({"x": X, "labels": LABELS[:, None]}, r"labels are int64\[50, 1\]; they must have shape"),
        ({"x": X, "labels": LABELS.astype(np.float32)}, r"labels are float32\[50\]; .* integer"),
        ({"x": X, "labels": LABELS + 3}, r"labels range over \[\d, 9\]; .* must be in \[0, 6\]"),
        ({"x": X, "labels": LABELS - 1}, r"labels range over \[-1, 5\]"),
    ],
)
def test_data_that_does_not_fit_is_refused(tmp_path: Path, arrays: dict, match: str) -> None:
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(path, MODEL)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError, match=match):
        validate(MODEL, path, provider="cpu")


def test_inputs_with_different_sample_counts_are_refused(tmp_path: Path) -> None:
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("a", "b", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", info[:2], info[2:])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    two = np.ones((2, 2), np.float32)
    path = _npz(tmp_path / "d.npz", a=two, b=np.ones((3, 2), np.float32))
    with pytest.raises(DatasetError, match=r"different sample counts: \{'a': 2, 'b': 3\}"):
        load_dataset(path, model)
    assert load_dataset(_npz(tmp_path / "ok.npz", a=two, b=two), model).samples == 2


def test_a_dataset_built_by_hand_is_checked_too() -> None:
    with pytest.raises(DatasetError, match=r"labels are int64\[49\]; they must have shape \[50\]"):
        validate(MODEL, Dataset({"x": X}, LABELS[:-1], N), provider="cpu")
    with pytest.raises(DatasetError, match=r"Dataset.samples=40 but the inputs hold 50"):
        validate(MODEL, Dataset({"x": X}, None, 40), provider="cpu")
    with pytest.raises(DatasetError, match=r"'x' is float64\[50, 6\]"):
        validate(MODEL, Dataset({"x": X.astype(np.float64)}, None, N), provider="cpu")
    result = validate(
        MODEL, Dataset({"x": X}, LABELS, N), provider="cpu", **QUICK_TIMING, batch_size=np.int64(8)
    )
    assert json.loads(json.dumps(result.to_dict()))["batch_size"] == 8


def test_labels_beyond_undeclared_classes_are_found_when_run(tmp_path: Path) -> None:
    model = _mlp(W2, y_shape=["N", "C"])  # the class count is known only from the output
    path = _npz(tmp_path / "d.npz", x=X, labels=np.full(N, CLASSES))
    assert load_dataset(path, model).labels is not None
    with pytest.raises(DatasetError, match=r"labels range over \[7, 7\]; .* in \[0, 6\]"):
        validate(model, path, provider="cpu")


def _damaged(tmp_path: Path) -> list[Path]:
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=X, labels=LABELS)
    raw = good.read_bytes()
    files = []
    for i, cut in enumerate((10, len(raw) // 2, len(raw) - 30, len(raw) - 1)):
        files.append(tmp_path / f"cut{i}.npz")
        files[-1].write_bytes(raw[:cut])
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # inside the compressed data of a member
    files += [tmp_path / "flipped.npz", tmp_path / "noise.npz", tmp_path / "empty.npz"]
    files[-3].write_bytes(bytes(flipped))
    files[-2].write_bytes(RNG.bytes(500))
    files[-1].write_bytes(b"")
    return files


def test_corrupted_or_truncated_files_are_a_dataset_error(tmp_path: Path) -> None:
    for path in _damaged(tmp_path):
        with pytest.raises(DatasetError, match=rf"^dataset {path.name} is not a readable \.npz"):
            load_dataset(path, MODEL)
    npy = tmp_path / "one.npy"
    np.save(npy, X)
    with pytest.raises(DatasetError, match=r"is one \.npy array, not an \.npz archive"):
        load_dataset(npy, MODEL)
    with pytest.raises(DatasetError, match=r"^dataset file not found: nothing\.npz$"):
        load_dataset(tmp_path / "nothing.npz", MODEL)


def test_scalar_output_cannot_give_accuracy() -> None:
    node = helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0)  # y[N]
    model = single_io_model([node], ["N", FEATURES], ["N"], {})
    with pytest.raises(InvalidModelError, match=r"first output has shape \[50\]"):
        validate(model, Dataset({"x": X}, LABELS, N), provider="cpu")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_accuracy_drop": 0.01}, "give --baseline too"),
        ({"min_agreement": 0.9}, "give --baseline too"),
        ({"max_accuracy_drop": 0.01, "baseline": BASELINE, "labels": None}, "needs labels"),
        ({"batch_size": 0}, r"batch_size=0 must be a positive integer"),
        ({"warmup": -1}, r"warmup=-1 must be an integer >= 0"),
        ({"min_agreement": 1.5, "baseline": BASELINE}, r"min_agreement=1.5 must be in \[0, 1\]"),
        ({"provider": "tpu"}, r"provider='tpu' must be one of auto, cuda, cpu"),
    ],
)
def test_bad_options_are_refused(options: dict, match: str) -> None:
    labels = options.pop("labels", LABELS)
    with pytest.raises(InvalidOptionError, match=match):
        validate(MODEL, Dataset({"x": X}, labels, N), **options)


# --- the sample models -------------------------------------------------------------------------


def _readme_rows() -> list[dict[str, str]]:
    """Rows of the models/README.md table, keyed by the header's column names."""
    lines = [line.strip() for line in (MODELS / "README.md").read_text().splitlines()]
    table = [line for line in lines if line.startswith("|") and line.endswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    header = cells[0]
    return [dict(zip(header, row, strict=True)) for row in cells[2:]]


def _model_rows() -> list[tuple[str, str, float]]:
    rows = []
    for row in _readme_rows():
        name = re.fullmatch(r"`([\w.-]+\.onnx)`", row["file"])
        accuracy_key = next(k for k in row if "accuracy" in k)
        accuracy = re.fullmatch(r"([\d.]+)%", row[accuracy_key])
        if name and accuracy and (MODELS / name[1]).is_file():
            given = re.match(r"`(\w+)`", row["inputs"])
            rows.append((name[1], given[1] if given else "", float(accuracy[1]) / 100))
    return rows


def test_readme_table_is_parsed() -> None:
    names = {name for name, _, _ in _model_rows()}
    assert {"mlp_digits.onnx", "cnn_digits.onnx"} <= names


@pytest.mark.parametrize(("name", "given", "accuracy"), _model_rows())
def test_sample_model_accuracy_matches_the_readme(name: str, given: str, accuracy: float) -> None:
    path = MODELS / name
    assert [i.name for i in onnx.load(path).graph.input] == [given]
    dataset = load_dataset(DIGITS, path)
    assert list(dataset.inputs) == [given]
    assert dataset.samples == 450
    result = validate(path, dataset, provider="cpu", **QUICK_TIMING)
    assert result.top1 == pytest.approx(accuracy, abs=5e-5 + 1e-9)  # printed to 0.01%
    assert result.model is None or result.model == name
