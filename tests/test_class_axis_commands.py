"""``class_axis`` through every command that validates: sweep, sensitivity, batch, recipe, remote.

The model is one ``MatMul``: ``x [N, T, D]`` to logits ``[N, T, V]`` by ``W [D, V]``. Pruned to
50% by magnitude it loses its 18 smallest weights of 36, which the reference zeroes itself; both
models then run on ONNX Runtime, and loops over samples and tokens count the agreements.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.batch import run_batch
from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.sweep import sweep
from tests.helpers import refused

RNG = np.random.default_rng(11)
N, T, D, V = 8, 5, 4, 9
W = RNG.standard_normal((D, V)).astype(np.float32)
X = RNG.standard_normal((N, T, D)).astype(np.float32)


def _model(w: np.ndarray) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"])],
        "lm",
        [helper.make_tensor_value_info("x", f, ["N", T, D])],
        [helper.make_tensor_value_info("logits", f, ["N", T, V])],
        [numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _half() -> np.ndarray:
    """``W`` with its 18 smallest magnitudes zeroed: what 50% magnitude pruning keeps."""
    w = W.copy().ravel()
    w[np.argsort(np.abs(w))[: w.size // 2]] = 0
    return w.reshape(W.shape)


def _logits(w: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        _model(w).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"x": X})[0]


def _agreement() -> float:
    """Per-token top-1 agreement of the half-pruned model with the dense one, by loops."""
    a, b = _logits(_half()), _logits(W)
    hits = [np.argmax(a[n, t]) == np.argmax(b[n, t]) for n in range(N) for t in range(T)]
    return sum(hits) / len(hits)


LABELS = _logits(W).argmax(axis=-1)  # the dense model's tokens, but for two of them
LABELS[0, 0], LABELS[3, 2] = (LABELS[0, 0] + 1) % V, (LABELS[3, 2] + 1) % V


def _accuracy(w: np.ndarray) -> float:
    a = _logits(w)
    hits = [np.argmax(a[n, t]) == LABELS[n, t] for n in range(N) for t in range(T)]
    return sum(hits) / len(hits)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model, data = tmp_path / "zoo" / "lm.onnx", tmp_path / "data" / "lm.npz"
    model.parent.mkdir()
    data.parent.mkdir()
    onnx.save(_model(W), model)
    np.savez(data, x=X, labels=LABELS)
    return model, data


def test_the_reference_is_not_trivial() -> None:
    assert 0 < _agreement() < 1
    assert _accuracy(W) == 1 - 2 / (N * T)
    assert _accuracy(_half()) < _accuracy(W)


def test_sweep_runs_agree_per_token(files, tmp_path) -> None:
    model, data = files
    result = sweep(model, data, tmp_path / "sweep", sparsities=[0.5],
                   methods=[("magnitude", "global")], min_time=0.0, min_runs=1,
                   class_axis=-1)  # fmt: skip
    (run,) = result.runs
    assert run.agreement == pytest.approx(_agreement())
    assert run.top1 == pytest.approx(_accuracy(_half()))
    assert result.dense.top1 == pytest.approx(_accuracy(W))
    written = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert written["class_axis"] == -1
    assert written["dense"]["class_axis"] == -1


def test_sensitivity_measures_agreement_per_token(files, tmp_path) -> None:
    model, data = files
    result = onnxprune.analyze_sensitivity(
        model, data, levels=(0.5,), metric="agreement", class_axis=-1
    )
    assert result.layers[0].values == (pytest.approx(_agreement()),)
    assert result.to_dict()["class_axis"] == -1
    assert main(["sensitivity", str(model), "--data", str(data), "--out", str(tmp_path / "s"),
                 "--levels", "0.5", "--metric", "top1", "--class-axis", "-1"]) == 0  # fmt: skip
    written = json.loads((tmp_path / "s" / "sensitivity.json").read_text())
    assert written["baseline"] == pytest.approx(_accuracy(W))
    assert written["layers"][0]["values"] == [pytest.approx(_accuracy(_half()))]


def test_batch_evaluates_per_token_and_a_manifest_entry_may_differ(files, tmp_path) -> None:
    model, data = files
    options = onnxprune.PruneOptions(sparsity=0.5)
    batch = run_batch(model.parent, tmp_path / "out", options=options, data_dir=data.parent,
                      class_axis=-1)  # fmt: skip
    (item,) = batch.results
    assert item.agreement == pytest.approx(_agreement())
    assert item.accuracy == pytest.approx(_accuracy(_half()))
    assert item.class_axis == -1
    manifest = tmp_path / "models.yaml"
    manifest.write_text(f"- path: {model}\n  data: {data}\n  class_axis: null\n")
    flat = run_batch(manifest, tmp_path / "flat", options=options, class_axis=-1).results[0]
    assert flat.class_axis is None  # the entry's own: per sample, flattened over T * V
    assert flat.agreement != item.agreement
    manifest.write_text(f"- path: {model}\n  data: {data}\n  class_axis: 0\n")
    with pytest.raises(InvalidOptionError, match=r"^models.yaml models\[0\]: class_axis=0 is"):
        run_batch(manifest, tmp_path / "bad", options=options)
    with pytest.raises(InvalidOptionError, match=r"^class_axis is read on evaluation data"):
        run_batch(model.parent, tmp_path / "none", options=options, class_axis=-1)


def test_a_recipe_validates_per_token(files, tmp_path) -> None:
    from onnxprune.recipe import load_recipe, run_recipe

    model, data = files
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {model}\nout: {tmp_path / 'r'}\nprune: {{sparsity: 0.5}}\ncompact: false\n"
        f"validate: {{data: {data}, class_axis: -1, min_time: 0, min_runs: 1}}\n"
    )
    run_recipe(load_recipe(recipe))
    validation = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert validation["class_axis"] == -1
    assert validation["agreement"] == pytest.approx(_agreement())


def test_cli_sweep_and_batch_take_the_flag(files, tmp_path, capsys) -> None:
    model, data = files
    assert main(["sweep", str(model), "--data", str(data), "--out", str(tmp_path / "s"),
                 "--sparsities", "0.5", "--methods", "magnitude/global", "--min-time", "0",
                 "--min-runs", "1", "--class-axis", "-1"]) == 0  # fmt: skip
    assert "class axis: -1 (per position)" in capsys.readouterr().out
    err = refused(capsys, "batch", str(model.parent), "--out", str(tmp_path / "b"),
                  "--sparsity", "0.5", "--class-axis", "0")  # fmt: skip
    assert err.startswith("InvalidOptionError: class_axis=0 is the batch (samples) axis")
