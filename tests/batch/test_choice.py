"""A batch with a gate: each evaluated model judged, the most compressed that passes recommended."""

from __future__ import annotations

import json

import pytest

from onnxprune import InvalidOptionError
from onnxprune.batch import run_batch
from tests.batch.models import eval_data, mlp, save
from tests.helpers import run_cli

SPARSITIES = (0.3, 0.6, 0.95)


def _variants(tmp_path):
    """One MLP pruned at three sparsities (three manifest entries), evaluated on data whose
    labels are its own predictions (100% before pruning)."""
    model = save(mlp(3), tmp_path / "zoo" / "m.onnx")
    eval_data(mlp(3), tmp_path / "zoo" / "m.npz")
    entries = [
        {"path": "m.onnx", "data": "m.npz", "output": f"m{int(s * 100)}.onnx",
         "options": {"sparsity": s}}
        for s in SPARSITIES
    ]  # fmt: skip
    manifest = tmp_path / "zoo" / "batch.json"
    manifest.write_text(json.dumps({"models": entries}))
    return model, manifest


def test_the_most_compressed_model_that_passes_is_recommended(tmp_path):
    _, manifest = _variants(tmp_path)
    batch = run_batch(manifest, tmp_path / "out", max_accuracy_drop=0.25)
    results = batch.results
    for result, gate in zip(results, batch.gates, strict=True):
        # the gate as the flag says it: top-1 at most 25 points below the unpruned model's
        assert gate.passed == (result.baseline_accuracy - result.accuracy <= 0.25), gate.reason
        assert result.size_bytes == (tmp_path / "out" / result.output).stat().st_size
    passing = [r for r in results if r.baseline_accuracy - r.accuracy <= 0.25]
    assert passing, "the 30% model keeps most of its accuracy"
    fewest = min(r.nonzero_macs for r in passing)
    best = min((r for r in passing if r.nonzero_macs == fewest), key=lambda r: r.size_bytes)
    assert batch.recommended == best
    document = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert (document["gated"], document["recommended"]) == (True, best.output)
    # the front of accuracy vs MACs, by brute force
    for i, r in enumerate(document["results"]):
        beaten = any(
            o["accuracy"] >= r["accuracy"] and o["nonzero_macs"] <= r["nonzero_macs"]
            and (o["accuracy"], o["nonzero_macs"]) != (r["accuracy"], r["nonzero_macs"])
            for j, o in enumerate(document["results"]) if j != i
        )  # fmt: skip
        assert r["front_macs"] is not beaten
    report = (tmp_path / "out" / "batch.md").read_text()
    expected = f"- Recommended model: {best.output} (pruned from m.onnx), the most compressed"
    assert expected in report.replace("\\", "")  # markdown escapes the dots


def test_no_model_passing_is_said_and_bad_gates_are_refused(tmp_path):
    _, manifest = _variants(tmp_path)
    # every variant changes some predictions (30% keeps 92.5% of them): none passes
    batch = run_batch(manifest, tmp_path / "out", min_agreement=1.0, max_accuracy_drop=0.0)
    assert [gate.passed for gate in batch.gates] == [False, False, False]
    assert batch.recommended is None
    assert json.loads((tmp_path / "out" / "batch.json").read_text())["recommended"] is None
    with pytest.raises(InvalidOptionError, match=r"--max-accuracy-drop 2\.0 must be a fraction"):
        run_batch(manifest, tmp_path / "bad", max_accuracy_drop=2.0)


def test_cli_exits_3_when_no_model_passes(tmp_path):
    _, manifest = _variants(tmp_path)
    done = run_cli("batch", str(manifest), "--out", str(tmp_path / "out"), "--min-agreement", "1")
    assert done.returncode == 3, done.stderr
    assert "gate FAILED: no model passes the gate" in done.stderr
    assert done.stdout.splitlines()[-2] == "recommended: none passes the gate"
