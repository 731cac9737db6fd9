"""``batch.jsonl`` agrees with the files on disk after any run: complete, failed, interrupted."""

from __future__ import annotations

import json

import pytest

import onnxprune
from onnxprune import analyze
from onnxprune.batch import PruneOptions, lock_folder, run_batch
from onnxprune.batch.options import fingerprint
from tests.batch.models import mlp, save

MODELS = ("a.onnx", "b.onnx", "sub/c.onnx")


def _zoo(root):
    for seed, name in enumerate(MODELS):
        save(mlp(seed), root / name)
    return root


def _lines(out):
    return [json.loads(x) for x in (out / "batch.jsonl").read_text().splitlines()]


def _check_agreement(out, options_of, complete=True):
    """Every line describes the files there; with ``complete``, every marker on disk has its line.

    ``options_of(model)``: the options the line's run used, whose fingerprint the marker holds.
    """
    lines = _lines(out)
    assert len({x["model"] for x in lines}) == len(lines)
    for line in lines:
        model = out / line["output"]
        marker = model.with_suffix(".batch.json")
        if line["status"] == "failed":
            assert line["direct_sparsity"] is None
            stems = (
                model,
                marker,
                model.with_suffix(".masks.npz"),
                model.with_suffix(".report.json"),
            )
            assert not any(p.exists() for p in stems), line
            continue
        stored = json.loads(marker.read_text())
        expected = fingerprint(options_of(line["model"]), None, onnxprune.__version__)
        assert stored["fingerprint"] == expected
        assert stored["result"] == {**line, "status": "ok"}
        report = json.loads(model.with_suffix(".report.json").read_text())
        assert report["direct_sparsity"] == pytest.approx(line["direct_sparsity"])
        # Recomputed from the pruned model itself, not read from what the run wrote.
        assert analyze(model).direct_sparsity == pytest.approx(line["direct_sparsity"])
    listed = {x["output"] for x in lines if x["status"] != "failed"}
    markers = {
        str(p.relative_to(out)).replace(".batch.json", ".onnx") for p in out.rglob("*.batch.json")
    }
    assert markers == listed if complete else markers >= listed


def test_two_runs_with_different_options_leave_the_second_runs_files_and_lines(tmp_path):
    zoo, out = _zoo(tmp_path / "zoo"), tmp_path / "out"
    half = PruneOptions(sparsity=0.5)
    run_batch(zoo, out, options=half)
    _check_agreement(out, lambda _: half)
    # Uniform 75% of 128 + 64 weights: exactly 144 of 192 gone, in every model.
    uniform = PruneOptions(sparsity=0.75, allocation="uniform")
    second = run_batch(zoo, out, options=uniform)
    assert [(r.status, r.direct_sparsity) for r in second.results] == [("ok", 0.75)] * 3
    _check_agreement(out, lambda _: uniform)
    assert (out / "batch.json").exists() and (out / "batch.md").exists()


def test_a_model_that_fails_on_a_rerun_leaves_only_its_failed_line(tmp_path):
    zoo, out = _zoo(tmp_path / "zoo"), tmp_path / "out"
    half = PruneOptions(sparsity=0.5)
    run_batch(zoo, out, options=half)
    b = [out / f"b{suffix}" for suffix in (".onnx", ".masks.npz", ".report.json", ".batch.json")]
    assert all(p.exists() for p in b)
    # The same models, b now asked for 2:3 sparsity: its inputs have 8 rows, no multiple of 3.
    manifest = zoo / "batch.yaml"
    manifest.write_text(
        "defaults: {sparsity: 0.5}\n"
        "models:\n"
        "  - a.onnx\n"
        "  - {path: b.onnx, options: {sparsity: null, nm: '2:3'}}\n"
        "  - sub/c.onnx\n"
    )
    again = run_batch(manifest, out)
    assert [(r.model, r.status) for r in again.results] == [
        ("a.onnx", "skipped"),
        ("b.onnx", "failed"),
        ("sub/c.onnx", "skipped"),
    ]
    assert "not a multiple of M=3" in again.failed[0].error
    assert not any(p.exists() for p in b)  # the first run's b is not passed off as this one's
    _check_agreement(out, lambda _: half)


def test_an_interrupted_run_leaves_lines_for_the_models_it_finished(tmp_path):
    zoo, out = _zoo(tmp_path / "zoo"), tmp_path / "out"
    half, uniform = PruneOptions(sparsity=0.5), PruneOptions(sparsity=0.75, allocation="uniform")
    run_batch(zoo, out, options=half)
    seen = []

    def interrupt_after_one(result):
        seen.append(result)
        if len(seen) == 1:
            # Mid-run: the line of the one model finished so far.
            _check_agreement(out, lambda _: uniform, complete=False)
            raise KeyboardInterrupt  # Ctrl-C between two models

    with pytest.raises(KeyboardInterrupt):
        run_batch(zoo, out, options=uniform, on_done=interrupt_after_one)
    assert [x["model"] for x in _lines(out)] == ["a.onnx"]
    _check_agreement(out, lambda _: uniform, complete=False)
    # b and c were not reached: the first run's files and markers, which no line claims.
    assert [analyze(out / name).direct_sparsity for name in ("b.onnx", "sub/c.onnx")] == [
        pytest.approx(0.5)
    ] * 2
    # The first run's summaries described files since replaced: they are gone.
    assert not (out / "batch.json").exists() and not (out / "batch.md").exists()
    with lock_folder(out):  # released on the way out
        pass
    resumed = run_batch(zoo, out, options=uniform)
    assert [r.status for r in resumed.results] == ["skipped", "ok", "ok"]
    _check_agreement(out, lambda _: uniform)
