"""Batch items whose score reads calibration data get the item's evaluation data as it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune import analyze
from onnxprune.batch import run_batch
from tests.batch.models import eval_data, mlp, save


def test_sparsegpt_items_calibrate_on_their_data_and_fail_without(tmp_path):
    a = save(mlp(1), tmp_path / "models" / "a.onnx")
    save(mlp(2), tmp_path / "models" / "b.onnx")
    eval_data(onnx.load(a), tmp_path / "evals" / "a.npz")
    manifest = tmp_path / "batch.json"
    manifest.write_text(
        json.dumps(
            {
                "defaults": {"sparsity": 0.5, "score": "sparsegpt", "allocation": "uniform"},
                "models": [{"path": "models/a.onnx", "data": "evals/a.npz"}, "models/b.onnx"],
            }
        )
    )
    batch = run_batch(manifest, tmp_path / "out")
    with_data, without = batch.results
    assert with_data.status == "ok", with_data.error
    pruned = tmp_path / "out" / "models" / "a.onnx"
    assert analyze(pruned).direct_sparsity == pytest.approx(0.5)
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(a).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(pruned).graph.initializer}
    refitted = [
        name
        for name, w in after.items()
        if w.ndim == 2 and not np.array_equal(w[w != 0], before[name][w != 0])
    ]
    assert refitted  # the kept weights were re-fitted, not only masked
    assert without.status == "failed"
    assert "the sparsegpt score needs calibration data" in without.error
