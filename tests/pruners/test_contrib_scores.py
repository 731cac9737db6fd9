"""Every score prunes ONNX Runtime's fused attention (tests/attention_models.py).

The fused QKV weight is a layer like any MatMul; SynFlow's linearized net reads the heads as
``_log_maps`` says (queries and keys steer the outputs as much as values), so none of the three
parts of the weight scores zero and is emptied first.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import onnxprune
from tests import attention_models as am

CALIBRATED = {"activation", "sparsegpt"}


def _calibration() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((8, am.T, 8)).astype(np.float32), "mask": np.ones((8, am.T))}


@pytest.mark.parametrize("score", ["magnitude", "random", "lamp", "synflow", *sorted(CALIBRATED)])
def test_every_score_prunes_the_fused_projection_in_all_three_parts(score):
    model = am.fused()
    calibration = _calibration() if score in CALIBRATED else None
    if calibration is not None:
        calibration["mask"] = calibration["mask"].astype(np.int64)
    pruned = onnxprune.prune(model, sparsity=0.5, score=score, calibration=calibration).model
    qkv = numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == "qkv"))
    kept = [
        int(np.count_nonzero(qkv[:, part])) for part in (slice(0, 8), slice(8, 16), slice(16, 24))
    ]
    # Q, K and V (64 entries each) each keep some weights and lose some: with queries and keys
    # scoring zero, half of the weight would be taken from them alone and V kept whole
    assert all(0 < k < 64 for k in kept), kept
    am.run(pruned, am.fused_feeds())
