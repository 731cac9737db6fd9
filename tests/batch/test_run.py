"""``run_batch`` with the local executor: mixed folders, results, resume, force, memory limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune import InvalidOptionError, analyze, compact, prune
from onnxprune.batch import PruneOptions, merge_options, run_batch
from onnxprune.pruners.masks import load_masks
from tests.batch.models import eval_data, mlp, save, zoo

GOOD = ("a.onnx", "sub/b.onnx")
BROKEN = ("corrupt.onnx", "sub/unknown_op.onnx")
HALF = PruneOptions(sparsity=0.5)


def _by_model(batch):
    return {r.model: r for r in batch.results}


def test_good_models_are_pruned_and_broken_ones_recorded(tmp_path):
    zoo(tmp_path / "zoo")
    done = []
    batch = run_batch(
        tmp_path / "zoo",
        tmp_path / "out",
        options=PruneOptions(sparsity=0.75, allocation="uniform"),
        jobs=2,
        on_done=done.append,
    )
    results = _by_model(batch)
    # Input order is the sorted relative paths; every model reported once, as it finished.
    assert [r.model for r in batch.results] == sorted([*GOOD, *BROKEN])
    assert sorted(r.model for r in done) == sorted(results)
    for name in GOOD:
        r = results[name]
        assert (r.status, r.error, r.streamed, r.target) == ("ok", None, False, 0.75)
        # 75% of 128 and of 64 weights (uniform): exactly 144 of 192 removed.
        assert r.direct_sparsity == pytest.approx(0.75)
        written = tmp_path / "out" / name
        assert analyze(written).direct_sparsity == pytest.approx(0.75)
        expected = prune(tmp_path / "zoo" / name, sparsity=0.75, allocation="uniform")
        masks = load_masks(written.with_suffix(".masks.npz"))
        assert all(np.array_equal(masks[k], expected.masks[k]) for k in expected.masks)
        report = json.loads(written.with_suffix(".report.json").read_text())
        assert report["direct_sparsity"] == pytest.approx(0.75)
    assert results["corrupt.onnx"].status == "failed"
    assert "truncated or not ONNX" in results["corrupt.onnx"].error
    assert results["sub/unknown_op.onnx"].status == "failed"
    assert "No Op registered for NoSuchOp" in results["sub/unknown_op.onnx"].error
    assert [r.model for r in batch.failed] == sorted(BROKEN)
    assert not (tmp_path / "out" / "corrupt.onnx").exists()


def test_json_lines_and_summary_hold_every_model(tmp_path):
    models = zoo(tmp_path / "zoo")
    eval_data(onnx.load(models["a.onnx"]), tmp_path / "evals" / "a.npz")
    batch = run_batch(
        tmp_path / "zoo",
        tmp_path / "out",
        options=PruneOptions(sparsity=0.5),
        data_dir=tmp_path / "evals",
    )
    lines = (tmp_path / "out" / "batch.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["model"] for r in records] == [r.model for r in batch.results]
    keys = {
        "model", "status", "output", "streamed", "target", "direct_sparsity",
        "effective_sparsity", "accuracy", "baseline_accuracy", "agreement", "macs",
        "nonzero_macs", "baseline_macs", "size_bytes", "seconds", "error", "warnings", "comparison",
        "user_metrics", "class_axis",
    }  # fmt: skip
    assert all(set(r) == keys for r in records)
    a = next(r for r in records if r["model"] == "a.onnx")
    # The labels are the dense model's own predictions: 100% before pruning.
    assert a["baseline_accuracy"] == 1.0
    assert 0.0 <= a["accuracy"] <= 1.0 and 0.0 <= a["agreement"] <= 1.0
    assert a["accuracy"] == pytest.approx(a["agreement"])
    assert a["seconds"] > 0 and a["output"] == "a.onnx"
    # one sample (the batch is symbolic): one MAC per weight, half of the 192 pruned
    assert (a["baseline_macs"], a["macs"], a["nonzero_macs"]) == (192, 192, 96)
    b = next(r for r in records if r["model"] == "sub/b.onnx")
    assert b["accuracy"] is None  # no evaluation data for it
    summary = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert (summary["kind"], summary["models"], summary["ok"], summary["failed"]) == (
        "batch",
        4,
        2,
        2,
    )
    # batch.json adds what is judged across models: the gate and the front of accuracy vs MACs
    extra = {"passed", "gate_reason", "front_macs"}
    assert [{k: v for k, v in r.items() if k not in extra} for r in summary["results"]] == records
    assert [r["passed"] for r in summary["results"]] == [None] * 4  # no gate was set
    assert (summary["gated"], summary["recommended"]) == (False, None)


def test_a_rerun_skips_done_models_and_redoes_failed_ones(tmp_path):
    zoo(tmp_path / "zoo")
    out = tmp_path / "out"
    options = PruneOptions(sparsity=0.5)
    first = _by_model(run_batch(tmp_path / "zoo", out, options=options))
    stamps = {name: (out / name).stat().st_mtime_ns for name in GOOD}
    again = _by_model(run_batch(tmp_path / "zoo", out, options=options))
    for name in GOOD:
        assert again[name].status == "skipped"
        assert (out / name).stat().st_mtime_ns == stamps[name]  # not rewritten
        assert again[name].direct_sparsity == first[name].direct_sparsity
        assert again[name].seconds == first[name].seconds  # the original run's figures
    assert {again[name].status for name in BROKEN} == {"failed"}  # tried again
    lines = [json.loads(x) for x in (out / "batch.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["skipped", "failed", "skipped", "failed"]


def test_changed_options_changed_inputs_and_force_redo_work(tmp_path):
    zoo(tmp_path / "zoo")
    out = tmp_path / "out"
    run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.5))
    other = _by_model(run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.75)))
    assert [other[name].status for name in GOOD] == ["ok", "ok"]
    assert analyze(out / "a.onnx").direct_sparsity == pytest.approx(0.75)
    # An input newer than its outputs is done again; the other model is not.
    later = (out / "a.onnx").stat().st_mtime_ns + 10**9
    os.utime(tmp_path / "zoo" / "a.onnx", ns=(later, later))
    touched = _by_model(run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.75)))
    assert (touched["a.onnx"].status, touched["sub/b.onnx"].status) == ("ok", "skipped")
    forced = _by_model(
        run_batch(tmp_path / "zoo", out, options=PruneOptions(sparsity=0.75), force=True)
    )
    assert [forced[name].status for name in GOOD] == ["ok", "ok"]


def test_out_inside_the_source_folder_is_not_pruned_again(tmp_path):
    save(mlp(1), tmp_path / "a.onnx")
    run_batch(tmp_path, tmp_path / "pruned", options=PruneOptions(sparsity=0.5))
    batch = run_batch(tmp_path, tmp_path / "pruned", options=PruneOptions(sparsity=0.5))
    assert [(r.model, r.status) for r in batch.results] == [("a.onnx", "skipped")]


@pytest.mark.slow
def test_out_of_memory_in_a_worker_is_recorded_and_the_others_go_on(tmp_path):
    save(mlp(1), tmp_path / "zoo" / "small.onnx")
    # One 3000 x 3000 float32 weight (36 MB): pruning it in memory needs several copies.
    big = mlp(2)
    rng = np.random.default_rng(0)
    big.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(rng.standard_normal((8, 3000 * 375), np.float32), "w1")
    )
    big.graph.initializer[1].CopyFrom(
        numpy_helper.from_array(rng.standard_normal((3000 * 375, 4), np.float32), "w2")
    )
    save(big, tmp_path / "zoo" / "big.onnx")
    batch = _by_model(
        run_batch(
            tmp_path / "zoo",
            tmp_path / "out",
            options=PruneOptions(sparsity=0.5),
            memory_limit=60 * 2**20,
            jobs=2,
        )
    )
    assert batch["small.onnx"].status == "ok"
    assert batch["big.onnx"].status == "failed"
    assert batch["big.onnx"].error.startswith("MemoryError: out of memory in the worker")
    # Without the limit the same model prunes.
    again = _by_model(
        run_batch(tmp_path / "zoo", tmp_path / "out", options=PruneOptions(sparsity=0.5), jobs=2)
    )
    assert (again["big.onnx"].status, again["small.onnx"].status) == ("ok", "skipped")


def test_a_bad_option_fails_before_any_model_runs(tmp_path):
    save(mlp(1), tmp_path / "zoo" / "a.onnx")

    with pytest.raises(InvalidOptionError, match="unknown score 'magnitud'"):
        merge_options(PruneOptions(), {"score": "magnitud"}, "command line")
    with pytest.raises(InvalidOptionError, match="executor 'slurm' must be one of local, ray"):
        run_batch(tmp_path / "zoo", tmp_path / "out", executor="slurm", options=HALF)
    with pytest.raises(InvalidOptionError, match="batch source not found"):
        run_batch(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(InvalidOptionError, match=r"^a\.onnx: nothing to do: give sparsity"):
        run_batch(tmp_path / "zoo", tmp_path / "out")  # no target: refused, nothing runs
    assert not (tmp_path / "out" / "a.onnx").exists()


def test_ray_is_an_optional_extra(monkeypatch, tmp_path):
    code = (
        "import sys\n"
        "import onnxprune, onnxprune.batch, onnxprune.cli\n"
        "loaded = [m for m in ('ray', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    save(mlp(1), tmp_path / "zoo" / "a.onnx")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(
        InvalidOptionError, match=r"needs the 'ray' extra: pip install 'onnxprune\[ray\]'"
    ):
        run_batch(tmp_path / "zoo", tmp_path / "out", executor="ray", options=HALF)


def test_a_manifest_prunes_structurally_and_compacts_by_the_same_entry(tmp_path):
    # The batch takes every prune option: a structured model and a compacted one, each equal
    # to what ``onnxprune.prune`` gives for the same options.
    save(mlp(1), tmp_path / "zoo" / "s.onnx")
    save(mlp(2), tmp_path / "zoo" / "c.onnx")
    manifest = tmp_path / "zoo" / "batch.yaml"
    manifest.write_text(
        "models:\n"
        "  - path: s.onnx\n"
        "    options: {structured: l1, sparsity: 0.5}\n"
        "  - path: c.onnx\n"
        "    options: {sparsity: 0.9, allocation: uniform, compact: true}\n"
    )
    batch = run_batch(manifest, tmp_path / "out")
    results = _by_model(batch)
    assert [(r.status, r.error) for r in batch.results] == [("ok", None), ("ok", None)]
    structured = prune(tmp_path / "zoo" / "s.onnx", structured="l1", sparsity=0.5)
    written = onnx.load(tmp_path / "out" / "s.onnx")
    shapes = {t.name: tuple(t.dims) for t in written.graph.initializer}
    # 16 hidden units, half go: w1 [8, 8], w2 [8, 4].
    assert shapes == {t.name: tuple(t.dims) for t in structured.model.graph.initializer}
    assert shapes == {"w1": (8, 8), "w2": (8, 4)}
    report = json.loads((tmp_path / "out" / "s.report.json").read_text())
    assert report == structured.to_dict()
    assert not (tmp_path / "out" / "s.masks.npz").exists()  # a structured prune writes no masks
    assert results["s.onnx"].direct_sparsity is None
    compacted = json.loads((tmp_path / "out" / "c.report.json").read_text())["compaction"]
    by_hand = prune(tmp_path / "zoo" / "c.onnx", sparsity=0.9, allocation="uniform")
    assert compacted["params_before"] == 192
    assert compacted["params_after"] == sum(
        int(np.prod(t.dims)) for t in onnx.load(tmp_path / "out" / "c.onnx").graph.initializer
    )
    assert compacted["removed"] == compact(by_hand.model).removed
    # A rerun finds both done (a structured model has no masks file and still counts as done).
    again = run_batch(manifest, tmp_path / "out")
    assert [r.status for r in again.results] == ["skipped", "skipped"]
