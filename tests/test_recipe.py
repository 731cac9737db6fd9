"""``onnxprune run recipe.yaml``: a pipeline stage, its outputs, verdicts and refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxprune
from onnxprune.errors import InvalidOptionError
from onnxprune.recipe import load_recipe, run_recipe
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
EXAMPLE = ROOT / "examples" / "pipeline"


@pytest.fixture
def folder(tmp_path):
    shutil.copy(MODELS / "mlp_digits.onnx", tmp_path / "model.onnx")
    shutil.copy(MODELS / "digits_test.npz", tmp_path / "eval.npz")
    return tmp_path


def _write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_a_passing_recipe_writes_every_output_and_a_summary_that_matches_them(folder):
    recipe = _write(
        folder,
        "model: model.onnx\nout: out\nprune: {sparsity: 0.5}\n"
        "validate: {data: eval.npz, max_accuracy_drop: 0.05}\n",
    )
    before = _digest(folder / "model.onnx")
    done = run_cli("run", str(recipe))
    assert done.returncode == 0, done.stderr
    out = folder / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_model"] == "compact.onnx"
    assert [s["step"] for s in summary["steps"]] == ["prune", "compact", "validate", "report"]
    for name, digest in summary["outputs"].items():  # every output named, hashed as written
        assert _digest(out / name) == digest
    assert set(summary["outputs"]) == {
        "pruned.onnx", "pruned.masks.npz", "prune.json", "compact.onnx", "compact.json",
        "validation.json", "report.html", "report.md",
    }  # fmt: skip
    final = onnx.load(out / "compact.onnx")
    params = sum(int(np.prod(t.dims)) for t in final.graph.initializer if len(t.dims) == 2)
    assert summary["params_after"] == params  # the weight matrices of the compacted MLP
    assert summary["params_before"] == 50_200
    assert summary["gate"]["passed"] is True
    assert summary["passed"] is True
    validation = json.loads((out / "validation.json").read_text())
    assert validation["gate"]["passed"] is True
    # The compacted model computes what the pruned one does (compaction keeps outputs).
    x = np.load(folder / "eval.npz")["x"][:32]
    pruned = ort.InferenceSession(str(out / "pruned.onnx"), providers=["CPUExecutionProvider"])
    small = ort.InferenceSession(str(out / "compact.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(small, x), _run(pruned, x), rtol=1e-4, atol=1e-5)
    assert _digest(folder / "model.onnx") == before  # the input is never touched
    assert "<html" in (out / "report.html").read_text().lower()


def test_a_failed_gate_exits_3_with_failed_on_stderr_and_still_writes_everything(folder):
    recipe = _write(
        folder,
        "model: model.onnx\nprune: {sparsity: 0.97}\n"
        "validate: {data: eval.npz, max_accuracy_drop: 0.001}\n",
    )
    done = run_cli("run", str(recipe))
    assert done.returncode == 3
    assert done.stderr.startswith("gate FAILED: top-1 dropped")
    assert len(done.stderr.strip().splitlines()) == 1
    out = folder / "recipe-out"  # the default folder: <recipe name>-out beside the recipe
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert summary["gate"]["passed"] is False
    assert (out / "report.md").exists()


def test_a_structured_recipe_is_compact_without_a_compact_step(folder):
    recipe = load_recipe(
        _write(
            folder, "model: model.onnx\nprune: {structured: l1, sparsity: 0.25}\nreport: false\n"
        )
    )
    result = run_recipe(recipe)
    assert [s["step"] for s in result.summary["steps"]] == ["prune"]
    assert result.summary["final_model"] == "pruned.onnx"
    assert result.summary["params_after"] < result.summary["params_before"]
    assert result.summary["gate"] is None
    assert result.passed is True
    assert (
        result.summary["params_after"] == onnxprune.analyze(recipe.out / "pruned.onnx").total_params
    )


def test_out_from_the_command_line_is_relative_to_the_working_directory(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cwd")
    recipe = _write(
        folder, "model: model.onnx\nout: inside\nprune: {sparsity: 0.5}\nreport: false\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "onnxprune.cli", "run", str(recipe), "--out", "here"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "here" / "summary.json").exists()
    assert not (folder / "inside").exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("model: model.onnx\nprune: {sparsity: 0.5}\nshipping: yes\n", "unknown key(s) shipping"),
        ("model: model.onnx\nprune: {sparsity: 0.5, colour: red}\n", "unknown option 'colour'"),
        ("model: missing.onnx\nprune: {sparsity: 0.5}\n", "model 'missing.onnx' not found"),
        ("model: model.onnx\nprune: {sparsity: 0.5}\nvalidate: {max_accuracy_drop: 0.1}\n",
         "validate needs data"),
        ("model: model.onnx\nprune: {sparsity: 0.5}\nvalidate: {data: eval.npz, speed: 9}\n",
         "unknown key(s) speed"),
        ("model: model.onnx\nprune: {sparsity: 0.5, calibration: nope.npz}\n",
         "prune.calibration 'nope.npz' not found"),
        ("model: model.onnx\nprune: [0.5]\n", "prune must be a mapping"),
        ("model: model.onnx\nprune: {sparsity: 0.5}\ncompact: maybe\n",
         "compact must be true or false"),
        ("- model.onnx\n", "expected a mapping"),
        ("model: [unclosed\n", "is not valid YAML"),
        ("a: &a [*a, *a]\nmodel: model.onnx\n", "nested more than 32 levels"),
    ],
)  # fmt: skip
def test_a_bad_recipe_is_refused_in_one_line_with_exit_2(folder, text, says):
    recipe = _write(folder, text)
    done = run_cli("run", str(recipe))
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (folder / "recipe-out").exists()  # nothing ran


def test_an_output_folder_holding_the_model_cannot_replace_it(folder):
    (folder / "model.onnx").rename(folder / "pruned.onnx")
    recipe = _write(folder, "model: pruned.onnx\nout: .\nprune: {sparsity: 0.5}\n")
    before = _digest(folder / "pruned.onnx")
    done = run_cli("run", str(recipe))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert _digest(folder / "pruned.onnx") == before


def test_out_naming_a_file_is_refused(folder):
    (folder / "taken").write_text("x")
    recipe = _write(folder, "model: model.onnx\nout: taken\nprune: {sparsity: 0.5}\n")
    with pytest.raises(InvalidOptionError, match="is a file"):
        run_recipe(load_recipe(recipe))
    assert (folder / "taken").read_text() == "x"


@pytest.mark.slow
def test_the_pipeline_example_runs_as_ci_runs_it(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        [  # noqa: S607 - bash from PATH, as CI runs the script
            "bash",
            str(EXAMPLE / "prune-stage.sh"),
            str(EXAMPLE / "recipe.yaml"),
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["final_model"] == "compact.onnx"
    # The CI examples call the same script with the same recipe.
    for ci in ("github-actions.yml", "gitlab-ci.yml"):
        assert (
            "examples/pipeline/prune-stage.sh examples/pipeline/recipe.yaml"
            in (EXAMPLE / ci).read_text()
        )


def test_a_user_metric_file_is_found_beside_the_recipe(folder, tmp_path_factory, monkeypatch):
    (folder / "score.py").write_text(
        "import numpy as np\n\n"
        "def top1(outputs, labels):\n"
        "    return float((next(iter(outputs.values())).argmax(1) == labels).mean())\n"
    )
    recipe = _write(
        folder,
        "model: model.onnx\nprune: {sparsity: 0.5}\nreport: false\n"
        "validate: {data: eval.npz, metric: score.py:top1, limits: {min_metric: 0.5}, min_runs: 1,"
        " min_time: 0}\n",
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    result = run_recipe(load_recipe(recipe))
    validation = result.summary["validation"]
    assert result.passed is True
    labels = np.load(folder / "eval.npz")["labels"]
    session = ort.InferenceSession(str(folder / "recipe-out" / "compact.onnx"))
    expected = float((_run(session, np.load(folder / "eval.npz")["x"]).argmax(1) == labels).mean())
    assert validation["user_metrics"]["top1"] == pytest.approx(expected)
