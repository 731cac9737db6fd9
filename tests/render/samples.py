"""Report JSON for the render tests: a real sparsity report; validation and sweep dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

import onnxprune
from tests.helpers import single_io_model

MODELS = Path(__file__).resolve().parents[2] / "models"
PRUNED = MODELS / "mlp_digits_pruned95.onnx"


def sparsity_report() -> dict:
    """``onnxprune analyze --json`` of the bundled 95%-pruned LeNet-300-100 (3 Gemm layers)."""
    return onnxprune.analyze(PRUNED).to_dict()


def all_zero_report(tmp_path: Path) -> dict:
    """x[1, 4] -> MatMul w (4x3, all zero) -> y: every weight is zero, compression is infinite."""
    model = single_io_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [1, 4], [1, 3], {"w": np.zeros((4, 3))}
    )
    path = tmp_path / "zero.onnx"
    path.write_bytes(model.SerializeToString())
    return onnxprune.analyze(path).to_dict()


def validation_result(**changes: object) -> dict:
    """A validation of a pruned model against its dense baseline, with a failed gate."""
    result = {
        "model": "mlp_pruned.onnx",
        "baseline": "mlp_digits.onnx",
        "provider": "CPUExecutionProvider",
        "samples": 360,
        "batch_size": 64,
        "top1": 0.95,
        "top5": 0.9944,
        "baseline_top1": 0.9722,
        "baseline_top5": 0.9972,
        "agreement": 0.9611,
        "max_abs_diff": 3.25,
        "mean_abs_diff": 0.41,
        "latency_ms_p50": 0.1234,
        "latency_ms_p95": 0.2,
        "throughput": 251234.5,
        "baseline_latency_ms_p50": 0.3271,
        "baseline_latency_ms_p95": 0.4,
        "speedup": 0.3271 / 0.1234,  # 2.65x
        "gate": {
            "passed": False,
            "reason": "top-1 dropped 2.22% > 1.00% allowed",
            "max_accuracy_drop": 0.01,
            "min_agreement": 0.95,
        },
    }
    result.update(changes)
    return result


DENSE_MACS = 50_200
"""MACs of the digits MLP (64-300-100-10) on one sample: one per weight."""


def sweep_run(
    method: str,
    target: float,
    direct: float,
    effective: float,
    accuracy: float,
    labels: bool = True,
) -> dict:
    """One completed sweep run; compressions follow from the sparsities (1 is infinite: null).

    Without labels top-1 is null; agreement with the dense model is ``0.99 - (1 - accuracy) / 2``.
    The model has 50,200 MACs (the digits MLP), ``1 - direct`` of them by nonzero weights;
    unstructured zeros do not speed ONNX Runtime up: a speedup of 1.02 in [0.98, 1.06].
    """
    score, allocation = method.split("/")
    return {
        "method": method,
        "score": score,
        "allocation": allocation,
        "sparsity": target,
        "direct_sparsity": direct,
        "effective_sparsity": effective,
        "direct_compression": None if direct >= 1 else 1 / (1 - direct),
        "effective_compression": None if effective >= 1 else 1 / (1 - effective),
        "macs": DENSE_MACS,
        "nonzero_macs": round(DENSE_MACS * (1 - direct)),
        "top1": accuracy if labels else None,
        "agreement": 0.99 - (1 - accuracy) / 2,
        "provider": "CPUExecutionProvider",
        "model_path": f"out/{score}-{allocation}-{target}.onnx",
        "report_path": f"out/{score}-{allocation}-{target}.json",
        "error": None,
        "speedup": 1.02,
        "speedup_low": 0.98,
        "speedup_high": 1.06,
        "warnings": [],
        "size_bytes": 200_000,
        "passed": None,
        "gate_reason": None,
        "front_macs": False,
        "front_speedup": False,
    }


def sweep(*, labels: bool = True) -> dict:
    """Two methods at 50/90/99%; lamp at 99% has every weight inactive (effective 1: infinite)."""
    runs = [
        sweep_run("magnitude/global", 0.5, 0.5, 0.5, 0.97, labels),
        sweep_run("magnitude/global", 0.9, 0.9, 0.92, 0.95, labels),
        sweep_run("magnitude/global", 0.99, 0.99, 0.995, 0.60, labels),
        sweep_run("lamp/global", 0.5, 0.5, 0.5, 0.971, labels),
        sweep_run("lamp/global", 0.9, 0.9, 0.9, 0.96, labels),
        sweep_run("lamp/global", 0.99, 0.99, 1.0, 0.10, labels),
    ]
    dense = validation_result(
        model="mlp_digits.onnx",
        baseline=None,
        top1=0.9722 if labels else None,
        top5=None,
        baseline_top1=None,
        baseline_top5=None,
        agreement=None,
        max_abs_diff=None,
        mean_abs_diff=None,
        baseline_latency_ms_p50=None,
        baseline_latency_ms_p95=None,
        speedup=None,
        gate=None,
    )
    # Accuracy vs MACs by nonzero weights: lamp beats magnitude at 50% (same MACs, 0.971 > 0.97)
    # and at 90%; at 99% magnitude (0.60) beats lamp (0.10). Every speedup is 1.02: the front
    # of accuracy vs speedup is the most accurate run alone, lamp at 50%.
    for index in (2, 3, 4):
        runs[index]["front_macs"] = True
    runs[3]["front_speedup"] = True
    document = {"kind": "sweep", "model": "mlp_digits.onnx", "dense": dense, "runs": runs}
    if not labels:  # a gate on top-1 drop needs labels
        return {**document, "classes": 10, "gated": False, "recommended": None}
    # Gate: at most 2 points below the dense 97.22%: magnitude 50%, lamp 50% and lamp 90% pass;
    # lamp 90% has the fewest MACs of them (5.02K).
    for run in runs:
        run["passed"] = 0.9722 - run["top1"] <= 0.02
        run["gate_reason"] = "passed" if run["passed"] else "top-1 dropped too far"
    return {**document, "classes": 10, "gated": True, "recommended": runs[4]["model_path"]}


def failed_run(method: str, target: float, error: str) -> dict:
    """A sweep run that did not complete: every result is null and ``error`` says why."""
    run = sweep_run(method, target, 0.0, 0.0, 0.0)
    for key in ("direct_sparsity", "effective_sparsity", "direct_compression", "top1", "agreement"):
        run[key] = None
    run.update(effective_compression=None, provider=None, model_path=None, report_path=None)
    run.update(macs=None, nonzero_macs=None)
    run.update(speedup=None, speedup_low=None, speedup_high=None, size_bytes=None)
    run["error"] = error
    return run
