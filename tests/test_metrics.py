"""Label-free comparisons with a baseline (``onnxprune.metrics``) against independent arithmetic.

The hand case is worked out in comments. The three-output model (built below) has an output of
logits ``[N, 7]``, one of features ``[N, 2, 3]`` and one of values ``[N]``; its baseline differs
in every weight, so each metric has something to measure. References use other code than the
library: Python loops, ``math``, ``scipy.spatial.distance.cosine``, a full sort for top-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.spatial.distance import cosine as cosine_distance

from onnxprune import InvalidModelError, InvalidOptionError, validate
from onnxprune.metrics import COMPARISONS, REL_EPS, Comparer, check_limits, worst
from onnxprune.validation import Dataset

RNG = np.random.default_rng(16)
N = 40
X = RNG.standard_normal((N, 6)).astype(np.float32)


def _three_outputs(scale: float) -> tuple:
    """``logits = x @ W`` [N, 7], ``features = reshape(x @ V)`` [N, 2, 3], ``value = sum(x)`` * s.

    Returns:
        The model and its weights (for the NumPy forward pass).
    """
    w = (RNG.standard_normal((6, 7)) * scale).astype(np.float32)
    v = (RNG.standard_normal((6, 6)) * scale).astype(np.float32)
    s = np.array([scale], np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["logits"]),
        helper.make_node("MatMul", ["x", "V"], ["xv"]),
        helper.make_node("Reshape", ["xv", "shape"], ["features"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "S"], ["value"]),
    ]
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(v, "V"),
        numpy_helper.from_array(s, "S"),
        numpy_helper.from_array(np.array([-1, 2, 3], np.int64), "shape"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "three",
        [helper.make_tensor_value_info("x", f, ["N", 6])],
        [
            helper.make_tensor_value_info("logits", f, ["N", 7]),
            helper.make_tensor_value_info("features", f, ["N", 2, 3]),
            helper.make_tensor_value_info("value", f, ["N"]),
        ],
        inits,
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    return model, w, v, s[0]


MODEL, W, V, S = _three_outputs(1.0)
BASE, W_B, V_B, S_B = _three_outputs(1.3)


def _forward(w: np.ndarray, v: np.ndarray, s: float) -> dict[str, np.ndarray]:
    x = X.astype(np.float64)
    return {
        "logits": x @ w,
        "features": (x @ v).reshape(N, 2, 3),
        "value": x.sum(axis=1) * s,
    }


def _reference(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """Every metric by loops over samples and elements."""
    a, b = a.reshape(N, -1), b.reshape(N, -1)
    abs_err = [
        [abs(x - y) for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)
    ]
    rel_err = [
        [abs(x - y) / (abs(y) + 1e-6) for x, y in zip(ra, rb, strict=True)]
        for ra, rb in zip(a, b, strict=True)
    ]
    cosines = [1.0 - cosine_distance(ra, rb) for ra, rb in zip(a, b, strict=True)]
    classes = a.shape[1]
    top1 = [int(np.argmax(ra) == np.argmax(rb)) for ra, rb in zip(a, b, strict=True)]
    top5 = [int(np.argmax(rb) in np.argsort(-ra)[:5]) for ra, rb in zip(a, b, strict=True)]
    return {
        "max_abs_error": max(max(r) for r in abs_err),
        "mean_abs_error": sum(sum(r) for r in abs_err) / a.size,
        "max_rel_error": max(max(r) for r in rel_err),
        "mean_rel_error": sum(sum(r) for r in rel_err) / a.size,
        "cosine": sum(cosines) / N,
        "worst_cosine": min(cosines),
        "agreement": sum(top1) / N if classes >= 2 else None,
        "top5_agreement": sum(top5) / N if classes >= 5 else None,
    }


def test_registry_holds_the_documented_metrics() -> None:
    assert list(COMPARISONS) == [
        "max_abs_error", "mean_abs_error", "max_rel_error", "mean_rel_error", "cosine",
        "worst_cosine", "agreement", "top5_agreement",
    ]  # fmt: skip
    assert REL_EPS == 1e-6


def test_a_hand_worked_case() -> None:
    a = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[1.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    comparer = Comparer()
    comparer.add({"y": a[:2]}, {"y": b[:2]})  # two batches: the reductions carry over
    comparer.add({"y": a[2:]}, {"y": b[2:]})
    got = comparer.result()["y"]
    # |a - b| = [0, 2], [0, 0], [3, 4]: max 4, mean 9 / 6.
    assert got["max_abs_error"] == 4.0
    assert got["mean_abs_error"] == pytest.approx(9 / 6)
    # Relative to |b| + 1e-6: [0, 2 / 4.000001], [0, 0], [3e6, 4e6].
    assert got["max_rel_error"] == pytest.approx(4 / 1e-6)
    assert got["mean_rel_error"] == pytest.approx((2 / (4 + 1e-6) + 3e6 + 4e6) / 6)
    # Cosines: (1 + 8) / (sqrt 5 sqrt 17); both zero: 1; one zero: 0.
    first = 9 / (math.sqrt(5) * math.sqrt(17))
    assert got["cosine"] == pytest.approx((first + 1 + 0) / 3)
    assert got["worst_cosine"] == 0.0
    # argmax: a -> 1, 0, 1; b -> 1, 0, 0: two of three agree. Two classes: no top-5.
    assert got["agreement"] == pytest.approx(2 / 3)
    assert got["top5_agreement"] is None


def test_nan_never_agrees_and_makes_the_errors_nan() -> None:
    a = np.array([[np.nan, 1.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0]])
    got = Comparer()
    got.add({"y": a}, {"y": b})
    values = got.result()["y"]
    assert values["agreement"] == 0.5  # argmax of [nan, 1] is 0, a disagreement either way
    assert math.isnan(values["max_abs_error"])
    assert math.isnan(values["cosine"])
    assert math.isnan(worst({"y": values, "z": {**values, "max_abs_error": 0.0}})["max_abs_error"])


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_every_output_of_a_three_output_model(batch_size: int) -> None:
    result = validate(
        MODEL, Dataset({"x": X}, None, N), baseline=BASE, provider="cpu", batch_size=batch_size
    )
    model, base = _forward(W, V, S), _forward(W_B, V_B, S_B)
    assert list(result.outputs) == ["logits", "features", "value"]
    for name in result.outputs:
        expected = _reference(model[name], base[name])
        if model[name].ndim == 1:  # value [N]: not scores
            expected["agreement"] = expected["top5_agreement"] = None
        for metric, value in expected.items():
            got = result.outputs[name][metric]
            if value is None:
                assert got is None, (name, metric)
            else:
                assert got == pytest.approx(value, rel=1e-4, abs=1e-5), (name, metric)
    # The three outputs differ, and the summary fields read the first one.
    assert result.agreement == result.outputs["logits"]["agreement"]
    assert 0 < result.agreement < 1
    assert result.max_abs_diff == result.outputs["logits"]["max_abs_error"]
    assert result.outputs["value"]["worst_cosine"] == pytest.approx(1.0)  # same sign, 1-D
    assert result.to_dict()["outputs"] == {k: dict(v) for k, v in result.outputs.items()}


def test_worst_over_outputs_is_what_the_gate_reads() -> None:
    result = validate(MODEL, Dataset({"x": X}, None, N), baseline=BASE, provider="cpu")
    summary = worst(result.outputs)
    errors = [v["max_abs_error"] for v in result.outputs.values()]
    cosines = [v["cosine"] for v in result.outputs.values()]
    assert summary["max_abs_error"] == max(errors)
    assert summary["cosine"] == min(cosines)
    # features [N, 2, 3] read as 6 scores has an agreement too; value [N] has none.
    agreements = [result.outputs[o]["agreement"] for o in ("logits", "features")]
    assert summary["agreement"] == min(agreements)
    assert result.outputs["value"]["agreement"] is None
    lowest = min(result.outputs, key=lambda o: result.outputs[o]["cosine"])
    gated = validate(
        MODEL,
        Dataset({"x": X}, None, N),
        baseline=BASE,
        provider="cpu",
        limits={"min_cosine": 0.9999, "max_abs_error": 1e9},
    )
    assert not gated.gate.passed
    assert gated.gate.reason == (
        f"cosine similarity (mean over samples) {min(cosines):.6g} (output {lowest!r}), less "
        "than the required 0.9999"
    )
    assert gated.gate.limits == {"min_cosine": 0.9999, "max_abs_error": 1e9}


def test_outputs_pair_by_position_when_the_names_differ() -> None:
    a = {"p": np.ones((2, 3)), "q": np.zeros((2, 1))}
    b = {"r": np.ones((2, 3)), "s": np.ones((2, 1))}
    comparer = Comparer()
    comparer.add(a, b)
    got = comparer.result()
    assert list(got) == ["p", "q"]
    assert got["p"]["max_abs_error"] == 0.0
    assert got["q"]["max_abs_error"] == 1.0
    assert got["q"]["agreement"] is None  # one class: not scores


def test_outputs_of_different_shapes_are_refused() -> None:
    with pytest.raises(InvalidModelError, match=r"^output 'y' differs in shape: model \[2, 3\]"):
        Comparer().add({"y": np.ones((2, 3))}, {"y": np.ones((2, 4))})


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ({"min_cosine": 1.5}, r"^min_cosine=1.5 must be in \[-1, 1\]$"),
        ({"max_abs_error": -1.0}, r"^max_abs_error=-1.0 must be a number >= 0$"),
        ({"min_top5_agreement": float("nan")}, r"^min_top5_agreement=nan must be in \[0, 1\]$"),
        ({"min_cosines": 0.9}, r"^unknown gate 'min_cosines'; the gates are: max_abs_error, "),
    ],
)
def test_bad_limits_are_refused(limits: dict, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        check_limits(limits)


def test_comparison_gates_need_a_baseline_and_a_fitting_output() -> None:
    data = Dataset({"x": X}, None, N)
    with pytest.raises(InvalidOptionError, match="give --baseline too"):
        validate(MODEL, data, provider="cpu", limits={"min_cosine": 0.5})
    value_only = _value_only()
    with pytest.raises(InvalidOptionError, match=r"^min_agreement needs a baseline and an output"):
        validate(value_only, data, baseline=value_only, provider="cpu", min_agreement=0.5)


def _value_only():
    """The three-output model with only its 1-D ``value`` output left."""
    model = MODEL.__deepcopy__()
    kept = [o for o in model.graph.output if o.name == "value"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def _mean_value(outputs: dict, labels: np.ndarray | None) -> float:
    """A user metric: the mean of the ``value`` output over the whole dataset."""
    assert labels is None
    return float(outputs["value"].mean())


def test_a_user_metric_sees_every_output_over_the_whole_dataset() -> None:
    seen = []

    def shapes(outputs: dict, labels: np.ndarray | None) -> dict[str, float]:
        seen.append({name: array.shape for name, array in outputs.items()})
        return {"samples": len(outputs["logits"]), "top": np.float32(outputs["logits"].max())}

    data = Dataset({"x": X}, None, N)
    result = validate(MODEL, data, baseline=BASE, provider="cpu", batch_size=7, metric=shapes)
    assert seen == [{"logits": (N, 7), "features": (N, 2, 3), "value": (N,)}] * 2
    model, base = _forward(W, V, S), _forward(W_B, V_B, S_B)
    assert result.user_metrics == pytest.approx({"samples": N, "top": model["logits"].max()})
    assert result.baseline_user_metrics["top"] == pytest.approx(base["logits"].max(), rel=1e-6)
    low = {"max_metric": -1000.0}  # no baseline needed for a user metric's gate
    mean = validate(MODEL, data, provider="cpu", metric=_mean_value, limits=low)
    assert mean.user_metrics == {"_mean_value": pytest.approx(model["value"].mean(), rel=1e-5)}
    assert mean.baseline_user_metrics == {}
    assert not mean.gate.passed
    value = mean.user_metrics["_mean_value"]
    assert mean.gate.reason == f"metric _mean_value {value:.6g}, more than the allowed -1000"
