"""The sensitivity allocation: loss curves (monotone, convex envelope) worked out by hand, the
least predicted loss against a brute force over every whole count, exact totals, and the
refusals of files measured on another model."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxprune
from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations.sensitivity import loss_curve, read_curves, sensitivity
from onnxprune.pruners.registry import get_allocation
from tests.helpers import examples, refused

MODELS = Path(__file__).resolve().parents[2] / "models"
MLP = str(MODELS / "mlp_digits.onnx")
LEVELS = [0.2, 0.4, 0.6, 0.8]
# Convex, increasing losses (slopes from (0, 0): a 0.5 0.75 1 1.25; b 0.05 0.1 0.2 0.4;
# c 0 0.1 0.2 0.7): a is the most sensitive, c the least until 0.6.
LOSSES = {
    "a": [0.1, 0.25, 0.45, 0.7],
    "b": [0.01, 0.03, 0.07, 0.15],
    "c": [0.0, 0.02, 0.06, 0.2],
}
SIZES = {"a": 10, "b": 20, "c": 40}


def _document(losses, sizes, baseline=0.9, higher=True, levels=LEVELS):
    """A sensitivity JSON as ``onnxprune sensitivity`` writes it (values = baseline -+ loss)."""
    sign = -1 if higher else 1
    return {
        "kind": "sensitivity",
        "metric": "top1" if higher else "mean_abs_error",
        "higher_is_better": higher,
        "baseline": baseline,
        "levels": levels,
        "layers": [
            {
                "name": name,
                "params": sizes[name],
                "levels": levels,
                "values": [None if v is None else baseline + sign * v for v in loss],
            }
            for name, loss in losses.items()
        ],
    }


def _predicted(name, count):
    """Independent predicted loss: np.interp through (0, 0) and the (convex) points."""
    return float(np.interp(count / SIZES[name], [0.0, *LEVELS], [0.0, *LOSSES[name]]))


def test_loss_curve_is_the_convex_envelope_of_the_running_maximum():
    # (0.4, 0.03) dips below (0.2, 0.05): the running maximum lifts it to 0.05; then
    # (0.2, 0.05) lies above the chord (0, 0)-(0.4, 0.05) (0.025 at 0.2) and is dropped.
    curve = loss_curve(10, [0.6, 0.2, 0.4], [0.3, 0.05, 0.03])
    assert curve.levels == (0.0, 0.4, 0.6)
    assert curve.losses == (0.0, 0.05, 0.3)
    assert curve.predict(0.2) == pytest.approx(0.025)
    assert curve.predict(0.7) == math.inf  # above the measured range
    # A metric that improves at first predicts no gain: the running maximum starts at 0.
    assert loss_curve(10, [0.5], [-0.2]).losses == (0.0, 0.0)
    # The curve ends before a value that was not finite.
    assert loss_curve(10, [0.2, 0.4, 0.6], [0.1, None, 0.2]).levels == (0.0, 0.2)


def test_read_curves_turns_each_metric_into_a_loss():
    accuracy = read_curves(_document({"a": [0.1, 0.2]}, {"a": 10}, levels=[0.5, 0.9]))
    assert accuracy["a"].losses == pytest.approx((0.0, 0.1, 0.2))
    error = read_curves(
        _document({"a": [0.1, 0.2]}, {"a": 10}, baseline=0.0, higher=False, levels=[0.5, 0.9])
    )
    assert error["a"].losses == pytest.approx((0.0, 0.1, 0.2))


@pytest.mark.parametrize("t", [0.1, 0.3, 0.5, 0.7])
def test_least_predicted_loss_equals_a_brute_force_over_whole_counts(t):
    curves = read_curves(_document(LOSSES, SIZES))
    shapes = {name: (n,) for name, n in SIZES.items()}
    counts = sensitivity(shapes, t, {}, curves=curves)
    budget = round(t * 70)
    assert sum(counts.values()) == budget
    got = sum(_predicted(name, c) for name, c in counts.items())
    best = min(
        _predicted("a", ca) + _predicted("b", cb) + _predicted("c", budget - ca - cb)
        for ca, cb in itertools.product(range(9), range(17))
        if 0 <= budget - ca - cb <= 32
    )
    assert got == pytest.approx(best, abs=1e-12)


def test_the_least_sensitive_layer_is_pruned_most():
    curves = read_curves(_document(LOSSES, SIZES))
    counts = sensitivity({name: (n,) for name, n in SIZES.items()}, 0.5, {}, curves=curves)
    share = {name: counts[name] / SIZES[name] for name in SIZES}
    assert share["c"] > share["b"] > share["a"]


def test_ties_are_shared_in_proportion_and_unmeasured_weights_go_last():
    flat = _document({"a": [0.0], "b": [0.0]}, {"a": 10, "b": 30}, levels=[0.5])
    curves = read_curves(flat)
    shapes = {"a": (10,), "b": (30,)}
    # Both curves are flat up to 0.5: 10 weights are shared 1:3, as the sizes (2.5 and 7.5,
    # the tied remainder going to the earlier layer).
    assert sensitivity(shapes, 0.25, {}, curves=curves) == {"a": 3, "b": 7}
    # Above 0.5 nothing was measured: the rest goes in proportion to what each has left.
    assert sensitivity(shapes, 0.75, {}, curves=curves) == {"a": 8, "b": 22}


curve_st = st.lists(
    st.one_of(st.none(), st.floats(-0.5, 1.0, allow_nan=False)), min_size=1, max_size=5
)


@settings(max_examples=examples(100), deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=5),
    values=st.lists(curve_st, min_size=5, max_size=5),
    t=st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
)
def test_counts_add_up_exactly_and_beat_uniform(sizes, values, t):
    names = [f"l{i}" for i in range(len(sizes))]
    losses = {name: values[i] for i, name in enumerate(names)}
    levels = {name: [(j + 1) / (len(v) + 1) for j in range(len(v))] for name, v in losses.items()}
    document = _document(losses, dict(zip(names, sizes, strict=True)))
    for layer in document["layers"]:
        layer["levels"] = levels[layer["name"]]
        layer["values"] = [None if v is None else 0.9 - v for v in losses[layer["name"]]]
    curves = read_curves(document)
    shapes = {name: (n,) for name, n in zip(names, sizes, strict=True)}
    counts = sensitivity(shapes, t, {}, curves=curves)
    assert sum(counts.values()) == round(t * sum(sizes))
    assert all(0 <= counts[name] <= n for name, n in zip(names, sizes, strict=True))
    # On the predicted curves no allocation beats it, uniform included (one weight of
    # rounding per layer aside), when uniform stays inside every measured range.
    uniform = get_allocation("uniform").fn(shapes, t, {})
    predicted = {name: curves[name] for name in names}
    slack = sum(
        max(np.diff(c.losses) / np.diff(c.levels), default=0.0) / c.params
        for c in predicted.values()
    )
    ours = sum(predicted[n].predict(counts[n] / predicted[n].params) for n in names)
    theirs = sum(predicted[n].predict(uniform[n] / predicted[n].params) for n in names)
    if math.isfinite(theirs):
        assert ours <= theirs + slack + 1e-9


def test_refusals(tmp_path):
    shapes = {"a": (10,)}
    with pytest.raises(InvalidOptionError, match="needs the curves"):
        sensitivity(shapes, 0.5, {})
    with pytest.raises(InvalidOptionError, match="no curve for 1 layer"):
        sensitivity(
            shapes, 0.5, {}, curves=read_curves(_document({"b": [0.1]}, {"b": 10}, levels=[0.5]))
        )
    with pytest.raises(InvalidOptionError, match="'a' has 10 weights, the file says 12"):
        sensitivity(
            shapes, 0.5, {}, curves=read_curves(_document({"a": [0.1]}, {"a": 12}, levels=[0.5]))
        )
    with pytest.raises(InvalidOptionError, match="not the JSON of `onnxprune sensitivity`"):
        read_curves({"kind": "sweep"})
    with pytest.raises(InvalidOptionError, match=r"layers\[0\] lacks 'values'"):
        read_curves(
            {
                "kind": "sensitivity",
                "higher_is_better": True,
                "baseline": 1.0,
                "layers": [{"name": "a", "params": 3, "levels": []}],
            }
        )
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidOptionError, match=r"bad\.json is not valid JSON"):
        read_curves(bad)


# --- through onnxprune.prune and the CLI on the bundled MLP --------------------------------

MLP_SIZES = {"fc1.weight": 19200, "fc2.weight": 30000, "fc3.weight": 1000}


def _mlp_document():
    # fc3 (the classifier) is the most sensitive, fc2 the least.
    losses = {
        "fc1.weight": [0.0, 0.01, 0.05, 0.2],
        "fc2.weight": [0.0, 0.0, 0.01, 0.05],
        "fc3.weight": [0.05, 0.2, 0.4, 0.6],
    }
    return _document(losses, MLP_SIZES)


def test_prune_reaches_the_target_exactly_with_the_allocated_counts():
    document = _mlp_document()
    result = onnxprune.prune(MLP, sparsity=0.6, allocation="sensitivity", sensitivity=document)
    total = sum(MLP_SIZES.values())
    removed = {name: int((~mask).sum()) for name, mask in result.masks.items()}
    assert sum(removed.values()) == round(0.6 * total)
    expected = sensitivity(
        {name: (n,) for name, n in MLP_SIZES.items()}, 0.6, {}, curves=read_curves(document)
    )
    assert removed == expected
    assert removed["fc2.weight"] / 30000 > removed["fc1.weight"] / 19200
    assert removed["fc1.weight"] / 19200 > removed["fc3.weight"] / 1000


def test_cli_refusals(tmp_path, capsys):
    out = str(tmp_path / "p.onnx")
    prune = ["prune", MLP, "-o", out, "--sparsity", "0.5"]
    with_file = [*prune, "--allocation", "sensitivity", "--sensitivity"]
    good = tmp_path / "sens.json"
    good.write_text(json.dumps(_mlp_document()))
    err = refused(capsys, *prune, "--allocation", "sensitivity")
    assert err == "InvalidOptionError: --allocation sensitivity needs --sensitivity"
    err = refused(capsys, *prune, "--sensitivity", str(good))
    assert err == "InvalidOptionError: --sensitivity is read by --allocation sensitivity only"
    other = _document({"conv.weight": [0.1, 0.2, 0.3, 0.4]}, {"conv.weight": 144})
    (tmp_path / "other.json").write_text(json.dumps(other))
    err = refused(capsys, *with_file, str(tmp_path / "other.json"))
    assert err.startswith("InvalidOptionError: the sensitivity file does not match the model")
    assert not Path(out).exists()
    assert main([*with_file, str(good)]) == 0
    assert Path(out).exists()
