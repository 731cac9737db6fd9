"""Agreement and accuracy per position (``class_axis``) against loops over samples and positions.

A sequence model maps ``x [N, T, D]`` to logits ``[N, T, V]`` (``MatMul`` by ``W [D, V]``), a
segmentation model ``x [N, K, H, W]`` to scores ``[N, C, H, W]`` (a 1x1 ``Conv``); each baseline
differs in its weights. References run the models on ONNX Runtime directly and compare argmaxes
position by position in Python loops; the library moves the class axis last and reshapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import DatasetError, InvalidOptionError, validate
from onnxprune.cli import main
from onnxprune.metrics import Comparer, scores_of
from onnxprune.render import render_html
from onnxprune.report import format_validation
from onnxprune.validation import Dataset
from tests.helpers import QUICK_TIMING, refused

RNG = np.random.default_rng(7)
N, T, D, V = 6, 5, 4, 9  # sequences of 5 tokens, 9 classes (top-5 applies)
K, C, H, WIDTH = 3, 6, 4, 3  # segmentation: 3 input channels, 6 classes, 4 x 3 pixels
X_SEQ = RNG.standard_normal((N, T, D)).astype(np.float32)
X_SEG = RNG.standard_normal((N, K, H, WIDTH)).astype(np.float32)


def _model(node: onnx.NodeProto, weight: np.ndarray, x: list, y: list) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", f, x)],
        [helper.make_tensor_value_info("logits", f, y)],
        [numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _sequence(seed: int) -> onnx.ModelProto:
    w = np.random.default_rng(seed).standard_normal((D, V)).astype(np.float32)
    return _model(helper.make_node("MatMul", ["x", "W"], ["logits"]), w, ["N", T, D], ["N", T, V])


def _segmentation(seed: int) -> onnx.ModelProto:
    w = np.random.default_rng(seed).standard_normal((C, K, 1, 1)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "W"], ["logits"])
    return _model(node, w, ["N", K, H, WIDTH], ["N", C, H, WIDTH])


SEQ, SEQ_BASE = _sequence(1), _sequence(2)
SEG, SEG_BASE = _segmentation(3), _segmentation(4)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _per_position(a: np.ndarray, b: np.ndarray, axis: int) -> tuple[float, float]:
    """Top-1 and top-5 agreement by loops: every sample and position one comparison."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    top1 = top5 = count = 0
    for index in np.ndindex(a.shape[:-1]):
        best = int(np.argmax(b[index]))
        top1 += int(np.argmax(a[index])) == best
        top5 += best in [int(i) for i in np.argsort(-a[index], kind="stable")[:5]]
        count += 1
    return top1 / count, top5 / count


def _accuracy(a: np.ndarray, labels: np.ndarray, axis: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy by loops against labels ``[N, *positions]``."""
    a = np.moveaxis(a, axis, -1)
    top1 = top5 = 0
    for index in np.ndindex(labels.shape):
        order = [int(i) for i in np.argsort(-a[index], kind="stable")]
        top1 += order[0] == labels[index]
        top5 += labels[index] in order[:5]
    return top1 / labels.size, top5 / labels.size


def test_per_token_agreement_where_the_flattened_one_says_nothing() -> None:
    # One sequence of 4 tokens over 3 classes. Per token the argmaxes are 1, 0, 2, 1 (model)
    # and 1, 0, 2, 0 (baseline): 3 of 4 agree. Flattened over the 12 values the model's largest
    # is the last token's 2.0 (index 10), the baseline's the last token's 5.0 (index 9): 0.
    a = np.array([[[0.0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 2, 0]]])
    b = np.array([[[0.0, 1, 0], [1, 0, 0], [0, 0, 1], [5, 0, 0]]])
    for axis in (-1, 2):
        per_token = Comparer(axis)
        per_token.add({"y": a}, {"y": b})
        assert per_token.result()["y"]["agreement"] == 0.75
        assert per_token.result()["y"]["top5_agreement"] is None  # 3 classes: no top-5
    flat = Comparer()
    flat.add({"y": a}, {"y": b})
    assert flat.result()["y"]["agreement"] == 0.0


def test_rank_2_outputs_give_todays_numbers() -> None:
    a, b = RNG.standard_normal((20, 7)), RNG.standard_normal((20, 7))
    today = Comparer()
    today.add({"y": a}, {"y": b})
    for axis in (-1, 1):
        comparer = Comparer(axis)
        comparer.add({"y": a}, {"y": b})
        assert comparer.result() == today.result()


def test_sequence_logits_agree_per_token_over_batches() -> None:
    a, b = _run(SEQ, X_SEQ), _run(SEQ_BASE, X_SEQ)
    top1, top5 = _per_position(a, b, -1)
    assert 0 < top1 < 1  # the two models differ somewhere, agree somewhere
    result = validate(
        SEQ, Dataset({"x": X_SEQ}, None, N), baseline=SEQ_BASE, provider="cpu", batch_size=4,
        class_axis=-1, **QUICK_TIMING,
    )  # fmt: skip
    got = result.outputs["logits"]
    assert got["agreement"] == pytest.approx(top1)
    assert got["top5_agreement"] == pytest.approx(top5)
    assert result.agreement == got["agreement"]
    flat = validate(SEQ, Dataset({"x": X_SEQ}, None, N), baseline=SEQ_BASE, provider="cpu",
                    batch_size=4, **QUICK_TIMING).outputs["logits"]  # fmt: skip
    for name in ("max_abs_error", "mean_abs_error", "cosine", "worst_cosine"):
        assert got[name] == flat[name]  # the other metrics do not read classes


def test_segmentation_agrees_per_pixel_with_class_axis_1() -> None:
    a, b = _run(SEG, X_SEG), _run(SEG_BASE, X_SEG)
    top1, top5 = _per_position(a, b, 1)
    result = validate(
        SEG, Dataset({"x": X_SEG}, None, N), baseline=SEG_BASE, provider="cpu", class_axis=1,
        **QUICK_TIMING,
    )  # fmt: skip
    assert result.outputs["logits"]["agreement"] == pytest.approx(top1)
    assert result.outputs["logits"]["top5_agreement"] == pytest.approx(top5)
    assert scores_of(a, 1, "logits").shape == (N * H * WIDTH, C)


@pytest.mark.parametrize(
    ("model", "x", "axis"), [(SEQ, X_SEQ, -1), (SEG, X_SEG, 1)], ids=["tokens", "pixels"]
)
def test_labelled_accuracy_per_position(model, x, axis) -> None:
    out, base = _run(model, x), _run(SEQ_BASE if model is SEQ else SEG_BASE, x)
    classes = out.shape[axis]
    labels = RNG.integers(0, classes, np.delete(out.shape, axis % out.ndim)).astype(np.int64)
    result = validate(
        model, Dataset({"x": x}, labels, N), baseline=SEQ_BASE if model is SEQ else SEG_BASE,
        provider="cpu", batch_size=4, class_axis=axis, **QUICK_TIMING,
    )  # fmt: skip
    assert (result.top1, result.top5) == pytest.approx(_accuracy(out, labels, axis))
    assert (result.baseline_top1, result.baseline_top5) == pytest.approx(
        _accuracy(base, labels, axis)
    )
    assert result.class_axis == axis


def test_labels_whose_positions_do_not_fit_are_refused() -> None:
    labels = np.zeros((N, T + 1), np.int64)
    with pytest.raises(DatasetError) as caught:
        validate(SEQ, Dataset({"x": X_SEQ}, labels, N), provider="cpu", class_axis=-1,
                 **QUICK_TIMING)  # fmt: skip
    assert str(caught.value) == (
        "labels are [N, 6]; with class_axis=-1 they must be [N, 5], one class per sample and "
        "position of output 'logits' [N, 5, 9]"
    )
    with pytest.raises(DatasetError, match=r"^labels are int64\[5\]; they must have shape \[6, "):
        validate(SEQ, Dataset({"x": X_SEQ}, np.zeros(5, np.int64), N), provider="cpu",
                 class_axis=-1, **QUICK_TIMING)  # fmt: skip


def test_bad_axes_are_refused_in_one_line() -> None:
    data = Dataset({"x": X_SEQ}, None, N)
    with pytest.raises(InvalidOptionError, match=r"^class_axis=0 is the batch \(samples\) axis"):
        validate(SEQ, data, baseline=SEQ_BASE, provider="cpu", class_axis=0)
    with pytest.raises(InvalidOptionError, match=r"^class_axis=True must be an integer axis$"):
        validate(SEQ, data, baseline=SEQ_BASE, provider="cpu", class_axis=True)
    for axis in (3, -3):
        with pytest.raises(InvalidOptionError) as caught:
            validate(SEQ, data, baseline=SEQ_BASE, provider="cpu", class_axis=axis)
        assert str(caught.value) == (
            f"class_axis={axis} is out of range for output 'logits' of rank 3 (allowed: 1..2 or "
            "-2..-1; axis 0 is the batch)"
        )
    with pytest.raises(InvalidOptionError, match=r"^class_axis reads scores against"):
        validate(SEQ, data, provider="cpu", class_axis=-1)  # nothing to compare with


def _files(tmp_path: Path, labels: np.ndarray | None = None) -> list[str]:
    paths = [tmp_path / "model.onnx", tmp_path / "base.onnx", tmp_path / "d.npz"]
    onnx.save(SEQ, paths[0])
    onnx.save(SEQ_BASE, paths[1])
    np.savez(paths[2], x=X_SEQ, **({} if labels is None else {"labels": labels}))
    return [str(paths[0]), "--baseline", str(paths[1]), "--data", str(paths[2])]


def test_cli_class_axis_reports_per_token_agreement(tmp_path, capsys) -> None:
    top1, _ = _per_position(_run(SEQ, X_SEQ), _run(SEQ_BASE, X_SEQ), -1)
    flags = [*_files(tmp_path), "--min-time", "0", "--min-runs", "1"]
    assert main(["validate", *flags, "--class-axis", "-1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"]["logits"]["agreement"] == pytest.approx(top1)
    assert data["class_axis"] == -1
    assert main(["validate", *flags, "--class-axis", "-1"]) == 0
    text = capsys.readouterr().out
    assert "class axis:  -1: accuracy and agreement are per position" in text
    assert main(["validate", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class_axis"] is None


def test_cli_bad_axes_and_labels_exit_2_in_one_line(tmp_path, capsys) -> None:
    flags = _files(tmp_path, np.zeros((N, 2), np.int64))
    err = refused(capsys, "validate", *flags, "--class-axis", "0")
    assert err.startswith("InvalidOptionError: class_axis=0 is the batch (samples) axis")
    err = refused(capsys, "validate", *flags, "--class-axis", "5")
    assert err == (
        "InvalidOptionError: class_axis=5 is out of range for output 'logits' of rank 3 "
        "(allowed: 1..2 or -2..-1; axis 0 is the batch)"
    )
    err = refused(capsys, "validate", *flags, "--class-axis", "-1")
    assert err.startswith("DatasetError: labels are [N, 2]; with class_axis=-1 they must be [N, 5]")


def test_reports_say_which_class_axis() -> None:
    result = validate(SEQ, Dataset({"x": X_SEQ}, None, N), baseline=SEQ_BASE, provider="cpu",
                      class_axis=2, **QUICK_TIMING)  # fmt: skip
    assert result.to_dict()["class_axis"] == 2
    assert "class axis:  2: accuracy and agreement" in format_validation(result)
    html = render_html(result.to_dict())
    assert "class axis (accuracy, agreement per position)" in html
    plain = validate(SEQ, Dataset({"x": X_SEQ}, None, N), baseline=SEQ_BASE, provider="cpu",
                     **QUICK_TIMING)  # fmt: skip
    assert "class axis: " not in format_validation(plain)
    assert "class axis (accuracy, agreement per position)" not in render_html(plain.to_dict())


def test_flattened_logits_get_a_hint_naming_the_class_axis(tmp_path, capsys) -> None:
    """Without a class axis, agreement on [N, T, V] is one argmax over T * V values: the result
    says so, once per such output, and how to ask for it per token; rank 2 and class_axis none."""
    data = Dataset({"x": X_SEQ}, None, N)
    flat = validate(SEQ, data, baseline=SEQ_BASE, provider="cpu", **QUICK_TIMING)
    hints = [w for w in flat.warnings if "class axis" in w]
    assert len(hints) == 1
    assert f"'logits' ({T} x {V} per sample)" in hints[0]
    assert f"one vector of {T * V} scores" in hints[0] and "--class-axis: -1" in hints[0]
    per_token = validate(
        SEQ, data, baseline=SEQ_BASE, provider="cpu", class_axis=-1, **QUICK_TIMING
    )
    assert not [w for w in per_token.warnings if "class axis" in w]
    rows = Comparer()
    rows.add({"y": RNG.standard_normal((4, 7))}, {"y": RNG.standard_normal((4, 7))})
    assert rows.hints() == ()
    flags = [*_files(tmp_path), "--min-time", "0", "--min-runs", "1"]
    assert main(["validate", *flags]) == 0
    assert "warning: output 'logits'" in capsys.readouterr().err
