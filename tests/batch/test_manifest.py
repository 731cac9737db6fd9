"""Manifests (YAML and JSON): per-model options, evaluation data, outputs; and their errors."""

from __future__ import annotations

import json
import os

import onnx
import pytest
import yaml

from onnxprune import InvalidOptionError, analyze
from onnxprune.batch import PruneOptions, collect_items, run_batch
from tests.batch.models import eval_data, mlp, save


def _manifest(tmp_path):
    """Two models with their own options; the first with evaluation data."""
    a = save(mlp(1), tmp_path / "models" / "a.onnx")
    save(mlp(2), tmp_path / "models" / "b.onnx")
    eval_data(onnx.load(a), tmp_path / "evals" / "a.npz")
    return {
        "defaults": {"sparsity": 0.5, "allocation": "uniform"},
        "models": [
            {"path": "models/a.onnx", "data": "evals/a.npz"},
            {
                "path": "models/b.onnx",
                "options": {"sparsity": 0.75, "allocation": "global", "min-threshold": 0.05},
                "output": "renamed/b_075.onnx",
            },
        ],
    }


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_manifest_gives_each_model_its_options_data_and_output(tmp_path, suffix):
    document = _manifest(tmp_path)
    manifest = tmp_path / f"batch{suffix}"
    dump = yaml.safe_dump if suffix == ".yaml" else json.dumps
    manifest.write_text(dump(document))
    # The command line's options are the least specific: the manifest's win.
    batch = run_batch(manifest, tmp_path / "out", options=PruneOptions(sparsity=0.25))
    a, b = batch.results
    assert (a.model, a.status, a.target, a.output) == ("models/a.onnx", "ok", 0.5, "models/a.onnx")
    assert a.direct_sparsity == pytest.approx(0.5)
    assert a.baseline_accuracy == 1.0 and a.accuracy is not None  # evaluated on its data
    assert (b.model, b.status, b.target) == ("models/b.onnx", "ok", 0.75)
    assert b.output == "renamed/b_075.onnx" and b.accuracy is None
    assert analyze(tmp_path / "out" / "renamed" / "b_075.onnx").direct_sparsity == pytest.approx(
        0.75
    )
    # min-threshold 0.05 of 192 weights: every layer keeps at least 10; global alone would
    # prune the small second layer (64 weights) harder than uniform.
    layers = {
        layer.name: layer for layer in analyze(tmp_path / "out" / "renamed" / "b_075.onnx").layers
    }
    assert layers["w2"].params - layers["w2"].zeros >= 10
    uniform_a = {
        layer.name: layer for layer in analyze(tmp_path / "out" / "models" / "a.onnx").layers
    }
    assert uniform_a["w1"].direct_sparsity == uniform_a["w2"].direct_sparsity == 0.5


def test_entries_may_be_plain_paths_and_data_dir_fills_in_data(tmp_path):
    a = save(mlp(1), tmp_path / "a.onnx")
    eval_data(onnx.load(a), tmp_path / "evals" / "a.npz")
    (tmp_path / "m.yaml").write_text("- a.onnx\n")
    options = PruneOptions(sparsity=0.5)
    items = collect_items(tmp_path / "m.yaml", tmp_path / "out", options, tmp_path / "evals")
    assert [(i.name, i.data) for i in items] == [("a.onnx", tmp_path / "evals" / "a.npz")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [{path: a.onnx, options: {sparsty: 0.5}}]", "unknown option 'sparsty'"),
        ("models: [{path: a.onnx, options: {sparsity: high}}]", "sparsity must be a number"),
        ("models: [{path: a.onnx, weights: 1}]", "unknown key 'weights'"),
        ("models: [{data: a.npz}]", "an entry needs a 'path'"),
        ("models: [{path: a.onnx, output: ../x.onnx}]", "must be a relative path inside OUT"),
        ("models: [a.onnx, {path: a.onnx}]", "would both write a.onnx"),
        ("modles: []", "expected a list of models"),
        ("models: [a.onnx\n", "is not valid YAML"),
        ("defaults: {allocation: magic}\nmodels: []", "unknown allocation 'magic'"),
        # Combinations a prune refuses are refused for the model, before anything runs.
        (
            "defaults: {allocation: erk}\nmodels: [{path: a.onnx, options: {structured: l1}}]",
            r"^a\.onnx: structured takes no allocation",
        ),
        (
            "models: [{path: a.onnx, options: {round_to: 8}}]",
            r"^a\.onnx: round_to needs structured",
        ),
    ],
)
def test_manifest_errors_say_where_and_what(tmp_path, text, message):
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(InvalidOptionError, match=message):
        collect_items(tmp_path / "m.yaml", tmp_path / "out", PruneOptions(sparsity=0.5))


def test_a_json_manifest_error_names_the_line(tmp_path):
    (tmp_path / "m.json").write_text('{"models": [\n  "a.onnx",\n]}')
    with pytest.raises(InvalidOptionError, match=r"not valid JSON: .* at line 3"):
        collect_items(tmp_path / "m.json", tmp_path / "out", PruneOptions())


def test_a_directory_keeps_its_layout_and_skips_hidden_files(tmp_path):
    save(mlp(1), tmp_path / "z" / "deep" / "er" / "m.onnx")
    save(mlp(1), tmp_path / "z" / ".cache" / "m.onnx")
    save(mlp(1), tmp_path / "z" / ".tmp.onnx")
    items = collect_items(tmp_path / "z", tmp_path / "out", PruneOptions(sparsity=0.5))
    assert [(i.name, str(i.output)) for i in items] == [("deep/er/m.onnx", "deep/er/m.onnx")]


def test_an_entry_s_sensitivity_file_feeds_the_sensitivity_allocation(tmp_path):
    save(mlp(1), tmp_path / "a.onnx")
    # w1 (128 weights) loses nothing up to 75%, w2 (64) loses 1 at 75%: half of the 192
    # weights is 96 = 75% of w1, and w2 stays dense.
    curves = {
        "kind": "sensitivity",
        "higher_is_better": True,
        "baseline": 1.0,
        "layers": [
            {"name": "w1", "params": 128, "levels": [0.75], "values": [1.0]},
            {"name": "w2", "params": 64, "levels": [0.75], "values": [0.0]},
        ],
    }
    sens = tmp_path / "sens.json"
    sens.write_text(json.dumps(curves))
    entry = {"path": "a.onnx", "options": {"sparsity": 0.5, "allocation": "sensitivity"}}
    manifest = tmp_path / "batch.json"
    manifest.write_text(json.dumps([entry]))
    with pytest.raises(InvalidOptionError, match=r"^a\.onnx: allocation sensitivity needs "):
        collect_items(manifest, tmp_path / "out", PruneOptions())
    manifest.write_text(json.dumps([{**entry, "sensitivity": "sens.json"}]))
    (result,) = run_batch(manifest, tmp_path / "out").results
    assert (result.status, result.direct_sparsity) == ("ok", 0.5)
    layers = {layer.name: layer for layer in analyze(tmp_path / "out" / "a.onnx").layers}
    assert (layers["w1"].direct_sparsity, layers["w2"].direct_sparsity) == (0.75, 0.0)
    assert run_batch(manifest, tmp_path / "out").results[0].status == "skipped"
    later = (tmp_path / "out" / "a.onnx").stat().st_mtime + 10
    os.utime(sens, (later, later))  # new curves: the model is pruned again
    assert run_batch(manifest, tmp_path / "out").results[0].status == "ok"
