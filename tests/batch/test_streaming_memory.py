"""Peak memory of streaming pruning: near the largest tensor, not the model size.

A 256 MiB model (eight 2048 x 4096 float32 MatMul weights of 32 MiB, in one external file) is
pruned to 90% with the global allocation, its hardest case (a threshold over every layer), in a
fresh process. The peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after the
imports) may grow by at most 3x the largest tensor; loading the model whole would take 256 MiB.
"""

from __future__ import annotations

import pytest

from tests.batch.models import measure_streaming, write_big_model

LAYERS, A, B = 8, 2048, 4096
TENSOR = A * B * 4  # bytes of each weight


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_stays_near_the_largest_tensor(tmp_path):
    model = write_big_model(tmp_path, LAYERS, A, B)
    try:
        result = measure_streaming(model, tmp_path / "pruned.onnx", "global")
        assert result["direct"] == pytest.approx(0.9, abs=1e-6)
        assert result["growth"] <= 3 * TENSOR, f"{result['growth'] / TENSOR:.2f}x the largest"
    finally:
        for path in tmp_path.glob("*.data"):
            path.unlink()
