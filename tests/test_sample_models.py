"""The committed sample models in ``models/`` match what ``models/README.md`` says about them.

Each row of the README's table names a model, the ``digits_test.npz`` array that feeds it and its
dense test accuracy; the accuracy is recomputed with ONNX Runtime (argmax of the first output) and
must print the same. The skl2onnx model is also checked for what makes it useful to onnxprune:
probabilities as the first output, and its three ``MatMul`` weights found by ``analyze``.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxprune

MODELS = Path(__file__).resolve().parent.parent / "models"
SKL_MODEL = MODELS / "skl_mlp_digits.onnx"
SKL_HIDDEN = (128, 64)  # hidden_layer_sizes in models/build.py
ROW = re.compile(
    r"^\| `(?P<file>[\w.-]+\.onnx)` \|.*\| `(?P<input>\w+)` \[[^]]*\] \| (?P<acc>[\d.]+%) \|$"
)


def table_rows() -> list[tuple[str, str, str]]:
    """(file, input array name, accuracy as printed) for each model row of the README's table."""
    text = (MODELS / "README.md").read_text()
    return [
        (m["file"], m["input"], m["acc"])
        for line in text.splitlines()
        if (m := ROW.match(line.strip()))
    ]


ROWS = table_rows()


def test_table_lists_every_committed_model() -> None:
    assert len(ROWS) >= 4
    assert {row[0] for row in ROWS} == {p.name for p in MODELS.glob("*.onnx")}


@pytest.fixture(scope="module")
def digits_test() -> dict[str, np.ndarray]:
    with np.load(MODELS / "digits_test.npz") as data:
        return {k: data[k] for k in data.files}


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("file", "input_name", "printed"), ROWS, ids=[r[0] for r in ROWS])
def test_accuracy_matches_readme(
    file: str, input_name: str, printed: str, digits_test: dict[str, np.ndarray]
) -> None:
    sess = session(MODELS / file)
    assert [i.name for i in sess.get_inputs()] == [input_name]
    first = sess.run(None, {input_name: digits_test[input_name]})[0]
    labels = digits_test["labels"]
    assert first.shape == (len(labels), 10)
    accuracy = float((first.argmax(axis=1) == labels).mean())
    assert f"{100 * accuracy:.2f}%" == printed


@pytest.mark.parametrize("file", [r[0] for r in ROWS])
def test_ir_version_at_most_10(file: str) -> None:
    model = onnx.load(MODELS / file, load_external_data=False)
    assert 1 <= model.ir_version <= 10


def test_skl_outputs_probabilities_first(digits_test: dict[str, np.ndarray]) -> None:
    sess = session(SKL_MODEL)
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "label"]
    probabilities, label = sess.run(None, {"x": digits_test["x"]})
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(digits_test["x"]), 10)  # a tensor, not a ZipMap
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))  # classes are 0..9


def _ancestors(graph: onnx.GraphProto, output: str) -> set[str]:
    """Names of the nodes that ``output`` depends on."""
    producers = {out: node for node in graph.node for out in node.output}
    seen: set[str] = set()
    todo = [output]
    while todo:
        node = producers.get(todo.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            todo.extend(node.input)
    return seen


def test_skl_weights_found_by_analyze() -> None:
    report = onnxprune.analyze(SKL_MODEL)
    widths = (64, *SKL_HIDDEN, 10)
    assert len(report.layers) == len(SKL_HIDDEN) + 1
    assert [layer.op_type for layer in report.layers] == ["MatMul"] * len(report.layers)
    assert [layer.shape for layer in report.layers] == list(pairwise(widths))
    assert report.total_params == sum(a * b for a, b in pairwise(widths))
    assert report.direct_sparsity == 0
    assert report.effective_sparsity == 0
    assert all(layer.zeros == 0 and layer.dead_outputs == 0 for layer in report.layers)
    # Fallbacks (the ai.onnx.ml label branch) are allowed only off the path to the probabilities.
    graph = onnx.load(SKL_MODEL).graph
    on_path = _ancestors(graph, "probabilities")
    assert {layer.name for layer in report.layers} <= {i.name for i in graph.initializer}
    assert not [f for f in report.fallbacks if f.node in on_path]
