"""The digits round trip of ``examples/finetune_digits.py``: prune, fine-tune, export, validate.

The bundled MLP (97.56% top-1 on the test split) pruned to 95% by global magnitude drops to
34.67%; eight epochs of SGD (lr 0.1, then 0.01 from epoch 5) on the training split bring it back
to within one point of dense, and the exported model has exactly the pruned model's zeros.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")  # the training split comes from scikit-learn's digits

import onnxprune  # noqa: E402
from onnxprune.pruners.masks import load_masks  # noqa: E402
from tests.torch.helpers import LEGACY_EXPORTER_WARNINGS  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_digits.py"
pytestmark = [pytest.mark.filterwarnings(w) for w in LEGACY_EXPORTER_WARNINGS]


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
    # analyze shows the same direct sparsity before and after fine-tuning, weight by weight.
    assert r.pruned_direct_sparsity == pytest.approx(0.95, abs=1e-4)
    assert r.finetuned_direct_sparsity == r.pruned_direct_sparsity
    before = onnxprune.analyze(tmp_path / "pruned.onnx")
    after = onnxprune.analyze(tmp_path / "finetuned.onnx")
    assert [(x.name, x.zeros) for x in after.layers] == [(x.name, x.zeros) for x in before.layers]
    # The same zeros, not just as many: every masked entry is zero, every kept one is not.
    masks = load_masks(tmp_path / "pruned.masks.npz")
    weights = {t.name: t for t in onnx.load(str(tmp_path / "finetuned.onnx")).graph.initializer}
    for name, keep in masks.items():
        value = onnx.numpy_helper.to_array(weights[name])
        assert ((value != 0) == keep).all(), name
    # The schedule is recorded with the history (Wang et al.'s fair-comparison report).
    f = r.finetune
    assert f.schedule == ((0, 0.1), (5, 0.01)) and len(f.history) == f.epochs == 8
    assert f.initial_accuracy == pytest.approx(r.pruned_accuracy, abs=1e-6)
    assert f.final_accuracy == pytest.approx(r.finetuned_accuracy, abs=1e-6)
    assert 0 < f.trainability_accuracy <= 1
    assert [x.name for x in onnx.load(str(tmp_path / "finetuned.onnx")).graph.input] == ["x"]
