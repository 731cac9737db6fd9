"""The digits round trip of ``examples/finetune_digits.py``: prune, fine-tune, export, validate.

The bundled MLP (97.56% top-1 on the test split) pruned to 95% by global magnitude drops to
34.67%; eight epochs of SGD (lr 0.1, then 0.01 from epoch 5) on the training split bring it back
to within one point of dense, and the exported model has exactly the pruned model's zeros.

Structured (``--structured l1``, half the neurons of each hidden layer): 90.67% before fine-tuning,
97.33% after the same schedule; compaction cuts the model from 50,610 to 17,810 weights without
changing its outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")  # the training split comes from scikit-learn's digits

import onnxprune  # noqa: E402
from onnxprune.pruners.masks import load_masks  # noqa: E402
from tests.torch.helpers import LEGACY_EXPORTER_WARNINGS  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_digits.py"
pytestmark = [
    pytest.mark.slow,  # trains, prunes and exports the digits nets
    *[pytest.mark.filterwarnings(w) for w in LEGACY_EXPORTER_WARNINGS],
]


def load_example():
    spec = importlib.util.spec_from_file_location("finetune_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_digits_round_trip(tmp_path):
    r = load_example().run(tmp_path)
    assert r.dense_accuracy == pytest.approx(0.9756, abs=1e-4)
    assert r.pruned_accuracy < r.dense_accuracy - 0.3  # pruning hurts
    assert r.finetuned_accuracy >= r.dense_accuracy - 0.01  # fine-tuning recovers
    assert r.mapping.ok and [m.method for m in r.mapping.matched] == ["name"] * 3
    assert r.export.held
    assert r.criterion is r.units is r.compact_params is r.compact_accuracy is r.speed is None
    # analyze shows the same direct sparsity before and after fine-tuning, weight by weight.
    assert r.pruned_direct_sparsity == pytest.approx(0.95, abs=1e-4)
    assert r.finetuned_direct_sparsity == r.pruned_direct_sparsity
    before = onnxprune.analyze(tmp_path / "pruned.onnx")
    after = onnxprune.analyze(tmp_path / "finetuned.onnx")
    assert [(x.name, x.zeros) for x in after.layers] == [(x.name, x.zeros) for x in before.layers]
    assert_same_zeros(tmp_path)
    # The schedule is recorded with the history (Wang et al.'s fair-comparison report).
    f = r.finetune
    assert f.schedule == ((0, 0.1), (5, 0.01)) and len(f.history) == f.epochs == 8
    assert f.initial_accuracy == pytest.approx(r.pruned_accuracy, abs=1e-6)
    assert f.final_accuracy == pytest.approx(r.finetuned_accuracy, abs=1e-6)
    assert 0 < f.trainability_accuracy <= 1
    assert [x.name for x in onnx.load(str(tmp_path / "finetuned.onnx")).graph.input] == ["x"]


def assert_same_zeros(out: Path) -> None:
    """The same zeros, not just as many: every masked entry is zero, every kept one is not."""
    masks = load_masks(out / "pruned.masks.npz")
    weights = {t.name: t for t in onnx.load(str(out / "finetuned.onnx")).graph.initializer}
    for name, keep in masks.items():
        value = onnx.numpy_helper.to_array(weights[name])
        assert ((value != 0) == keep).all(), name


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_digits_structured_round_trip(tmp_path):
    example = load_example()
    r = example.run(tmp_path, structured="l1", sparsity=0.5)
    assert r.criterion == "l1"
    assert r.pruned_accuracy < r.dense_accuracy  # removing half the neurons costs accuracy
    assert r.finetuned_accuracy >= r.dense_accuracy - 0.03  # the same schedule wins it back
    # Masks: the masked model's nonzeros, on all three weights, held through fine-tuning.
    assert sorted(load_masks(tmp_path / "pruned.masks.npz")) == [f"fc{i}.weight" for i in (1, 2, 3)]
    assert r.mapping.ok and r.export.held
    assert_same_zeros(tmp_path)
    assert r.finetune.initial_accuracy == pytest.approx(r.pruned_accuracy, abs=1e-6)
    # Compaction removes the zeroed neurons and nothing else: same outputs, same accuracy.
    exported, compacted = tmp_path / "finetuned.onnx", tmp_path / "finetuned_compact.onnx"
    with np.load(example.MODELS / "digits_test.npz") as data:
        x = data["x"]
    want, got = ort_outputs(exported, x), ort_outputs(compacted, x)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert r.compact_accuracy == r.finetuned_accuracy
    # MLP 64-300-100-10 keeping k1 and k2 hidden neurons: weights and biases by hand.
    k1, k2 = r.units["fc1.weight"][0], r.units["fc2.weight"][0]
    assert r.units == {"fc1.weight": (k1, 300), "fc2.weight": (k2, 100)}
    assert (k1, k2) == (150, 50)
    assert r.compact_params == k1 * 65 + k2 * (k1 + 1) + 10 * k2 + 10 == 17810
    assert r.compact_params == sum(
        t.size for t in map(onnx.numpy_helper.to_array, onnx.load(str(compacted)).graph.initializer)
    )
    assert r.dense_params == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    # Latency of dense and compacted, from one validate call (not asserted faster: timing noise).
    assert r.speed.baseline_latency_ms_p50 > 0 and r.speed.speedup > 0
    lines = example.summary(r)
    assert any(line.startswith("compacted  top-1 ") for line in lines)
    assert any(line.startswith("latency") and "speedup" in line for line in lines)
