"""Batch results carry the comparisons with the unpruned model and a user metric (manifest, CLI).

The models are the 8-16-4 MLPs of ``tests.batch.models``; their data's labels are the dense
model's own top-1. Expected values come from a NumPy forward pass of the written pruned model's
weights (``x @ w1 -> relu -> @ w2``), independent of ONNX Runtime and of onnxprune.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from onnxprune import InvalidOptionError
from onnxprune.batch import PruneOptions, collect_items, run_batch
from onnxprune.batch.options import fingerprint
from tests.batch.models import eval_data, mlp, save
from tests.helpers import run_cli

METRIC = """
import numpy as np

def mean_top(outputs, labels):
    y = outputs["y"]
    return {"mean_top": float(y.max(axis=1).mean()), "hits": float((y.argmax(1) == labels).sum())}
"""


def _forward(path: Path, x: np.ndarray) -> np.ndarray:
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    return np.maximum(x.astype(np.float64) @ weights["w1"], 0) @ weights["w2"]


def _setup(tmp_path: Path) -> Path:
    a = save(mlp(1), tmp_path / "models" / "a.onnx")
    save(mlp(2), tmp_path / "models" / "b.onnx")
    eval_data(onnx.load(a), tmp_path / "evals" / "a.npz")
    (tmp_path / "metrics.py").write_text(METRIC)
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "defaults": {"sparsity": 0.5},
                "models": [
                    {
                        "path": "models/a.onnx",
                        "data": "evals/a.npz",
                        "metric": "metrics.py:mean_top",
                    },
                    {"path": "models/b.onnx"},
                ],
            }
        )
    )
    return manifest


def test_a_manifest_metric_and_the_comparisons_are_in_the_results(tmp_path: Path) -> None:
    manifest = _setup(tmp_path)
    batch = run_batch(manifest, tmp_path / "out", options=PruneOptions())
    a, b = batch.results
    with np.load(tmp_path / "evals" / "a.npz") as data:
        x, labels = data["x"], data["labels"]
    pruned = _forward(tmp_path / "out" / "models" / "a.onnx", x)
    dense = _forward(tmp_path / "models" / "a.onnx", x)
    assert a.user_metrics == {
        "mean_top": pytest.approx(pruned.max(axis=1).mean(), rel=1e-5),
        "hits": float((pruned.argmax(1) == labels).sum()),
    }
    cosine = (
        (pruned * dense).sum(1) / np.linalg.norm(pruned, axis=1) / np.linalg.norm(dense, axis=1)
    )
    assert a.comparison["cosine"] == pytest.approx(cosine.mean(), rel=1e-5)
    assert a.comparison["max_abs_error"] == pytest.approx(np.abs(pruned - dense).max(), rel=1e-4)
    assert a.comparison["agreement"] == a.agreement
    assert (b.user_metrics, b.comparison) == ({}, {})  # no data: not evaluated
    lines = [json.loads(x) for x in (tmp_path / "out" / "batch.jsonl").read_text().splitlines()]
    assert lines[0]["user_metrics"] == dict(a.user_metrics)
    assert lines[0]["comparison"]["cosine"] == pytest.approx(a.comparison["cosine"])
    # The metric is part of what a model's run depends on; without one the hash is as before.
    item = collect_items(manifest, tmp_path / "out", PruneOptions())[0]
    assert item.metric == f"{tmp_path / 'metrics.py'}:mean_top"
    assert fingerprint(item.options, item.data, "v") != fingerprint(
        item.options, item.data, "v", metric=item.metric
    )
    again = run_batch(manifest, tmp_path / "out", options=PruneOptions())
    assert [r.status for r in again.results] == ["skipped", "skipped"]
    assert again.results[0].user_metrics == a.user_metrics


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "models/a.onnx", "metric": 3}, "metric must look like module:function"),
        ({"path": "models/b.onnx", "metric": "metrics.py:mean_top"}, "give the entry 'data'"),
    ],
)
def test_manifest_metric_errors(tmp_path: Path, entry: dict, message: str) -> None:
    _setup(tmp_path)
    if entry["path"] == "models/a.onnx":
        entry["data"] = "evals/a.npz"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"models": [entry]}))
    with pytest.raises(InvalidOptionError, match=message):
        collect_items(tmp_path / "m.yaml", tmp_path / "out", PruneOptions(sparsity=0.5))


def test_a_metric_that_cannot_be_imported_fails_the_batch_before_any_model(tmp_path: Path) -> None:
    manifest = _setup(tmp_path)
    with pytest.raises(InvalidOptionError, match=r"^metric 'nope_m16:f': cannot import"):
        run_batch(manifest, tmp_path / "out", options=PruneOptions(), metric="nope_m16:f")
    assert not (tmp_path / "out").exists()


def test_the_batch_metric_applies_to_every_model_with_data(tmp_path: Path) -> None:
    _setup(tmp_path)
    batch = run_batch(
        tmp_path / "models",
        tmp_path / "out",
        options=PruneOptions(sparsity=0.5),
        data_dir=tmp_path / "evals",
        metric=f"{tmp_path / 'metrics.py'}:mean_top",
    )
    a, b = batch.results
    with np.load(tmp_path / "evals" / "a.npz") as data:
        pruned = _forward(tmp_path / "out" / "a.onnx", data["x"])
    assert a.user_metrics["mean_top"] == pytest.approx(pruned.max(axis=1).mean(), rel=1e-5)
    assert b.user_metrics == {}  # no evaluation data for b


@pytest.mark.slow
def test_cli_batch_metric_and_cosine(tmp_path: Path) -> None:
    _setup(tmp_path)
    common = ("batch", str(tmp_path / "models"), "--sparsity", "0.5",
              "--data-dir", str(tmp_path / "evals"))  # fmt: skip
    out = tmp_path / "out"
    ok = run_cli(*common, "--out", str(out), "--metric", f"{tmp_path / 'metrics.py'}:mean_top")
    assert ok.returncode == 0, ok.stderr
    header, _, *rows = ok.stdout.splitlines()
    a = json.loads((out / "batch.json").read_text())["results"][0]
    assert a["model"] == "a.onnx" and set(a["user_metrics"]) == {"mean_top", "hits"}
    row = next(r for r in rows if r.startswith("a.onnx"))
    assert row[header.index("cosine") :].split()[0] == f"{a['comparison']['cosine']:.4f}"
    bad = run_cli(*common, "--out", str(tmp_path / "bad"), "--metric", "nope_m16:f")
    assert bad.returncode == 2
    assert bad.stderr.startswith("InvalidOptionError: metric 'nope_m16:f': cannot import")
    assert bad.stderr.count("\n") == 1
