"""``onnxprune.prune`` and ``onnxprune.compact`` choose their path: one entry for every shell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune import InvalidOptionError, PruneOptions
from onnxprune.cli import main

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = MODELS / "mlp_digits.onnx"
CNN = MODELS / "cnn_digits.onnx"


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _digits_input(model: Path, n: int = 16) -> np.ndarray:
    data = np.load(MODELS / "digits_test.npz")
    name = onnx.load(model).graph.input[0].name
    return data[name][:n]


def _params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


@pytest.mark.parametrize("source", ["path", "bytes", "proto"])
def test_every_entry_takes_a_path_bytes_or_a_proto(source):
    given = {"path": str(CNN), "bytes": CNN.read_bytes(), "proto": onnx.load(CNN)}[source]
    structured = onnxprune.structured_prune(given, sparsity=0.25)
    compacted = onnxprune.compact(given)
    pruned = onnxprune.prune(given, sparsity=0.25, structured="l1")
    reference = onnxprune.structured_prune(onnx.load(CNN), sparsity=0.25)
    assert structured.units == pruned.structured.units == reference.units
    assert _params(pruned.model) == _params(reference.model) < _params(onnx.load(CNN))
    assert compacted.params_after == compacted.params_before  # a dense model has no dead unit


def test_options_and_keywords_are_the_same_prune():
    by_options = onnxprune.prune(MLP, PruneOptions(sparsity=0.8, allocation="erk", seed=1))
    by_keywords = onnxprune.prune(MLP, sparsity=0.8, allocation="erk", seed=1)
    overridden = onnxprune.prune(MLP, PruneOptions(sparsity=0.1), sparsity=0.8, allocation="erk")
    for other in (by_keywords, overridden):
        assert by_options.masks.keys() == other.masks.keys()
        for name, mask in by_options.masks.items():
            np.testing.assert_array_equal(mask, other.masks[name])
    with pytest.raises(TypeError, match="colour"):
        onnxprune.prune(MLP, sparsity=0.5, colour="red")


def test_structured_options_take_the_structured_path_and_keep_the_masked_outputs(tmp_path):
    output, masked, report = tmp_path / "s.onnx", tmp_path / "m.onnx", tmp_path / "s.json"
    result = onnxprune.prune(
        CNN,
        PruneOptions(sparsity=0.5, structured="l1"),
        output=output,
        masked_out=masked,
        report_out=report,
    )
    assert result.report is None and result.masks == {}
    assert result.structured is not None and result.compaction is result.structured.compaction
    x = _digits_input(CNN)
    np.testing.assert_allclose(_run(output, x), _run(masked, x), rtol=1e-4, atol=1e-4)
    written = json.loads(report.read_text())
    assert written == result.to_dict() == result.structured.to_dict()
    assert written["params_after"] == _params(onnx.load(output)) < written["params_before"]
    assert all(kept <= total // 2 + 1 for kept, total in written["units"].values())


def test_compact_option_compacts_after_an_unstructured_prune(tmp_path):
    plain = onnxprune.prune(CNN, sparsity=0.9)
    compacted = onnxprune.prune(CNN, sparsity=0.9, compact=True, output=tmp_path / "c.onnx")
    by_hand = onnxprune.compact(plain.model)
    assert compacted.compaction.removed == by_hand.removed
    assert compacted.compaction.params_after == _params(onnx.load(tmp_path / "c.onnx"))
    x = _digits_input(CNN)
    np.testing.assert_allclose(
        _run(tmp_path / "c.onnx", x), _run(plain.model, x), rtol=1e-4, atol=1e-5
    )
    assert compacted.to_dict()["compaction"] == by_hand.to_dict()


def _external_copy(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "mlp.onnx"
    onnx.save(onnx.load(MLP), path, save_as_external_data=True, location="mlp.bin",
              size_threshold=0)  # fmt: skip
    return path


def test_a_model_with_external_data_streams_when_the_options_allow_it(tmp_path):
    source = _external_copy(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    streamed = onnxprune.prune(source, sparsity=0.7, output=out / "s.onnx", masks_out=out / "s.npz")
    in_memory = onnxprune.prune(
        source, sparsity=0.7, stream="never", output=out / "m.onnx", masks_out=out / "m.npz"
    )
    lamp = onnxprune.prune(source, sparsity=0.7, score="lamp", output=out / "l.onnx")
    no_file = onnxprune.prune(source, sparsity=0.7)  # nothing to stream into: in memory
    assert streamed.streamed and streamed.model is None
    assert not in_memory.streamed and not lamp.streamed and not no_file.streamed
    a, b = np.load(out / "s.npz"), np.load(out / "m.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    assert streamed.report.to_dict() == in_memory.report.to_dict()
    with pytest.raises(InvalidOptionError, match=r"stream=always .* needs score magnitude"):
        onnxprune.prune(source, sparsity=0.7, score="lamp", stream="always", output=out / "x.onnx")


def test_outputs_are_checked_before_any_work(tmp_path):
    copy = tmp_path / "mlp.onnx"
    copy.write_bytes(MLP.read_bytes())
    with pytest.raises(InvalidOptionError, match="would overwrite the input model"):
        onnxprune.prune(copy, sparsity=0.5, output=copy)
    with pytest.raises(InvalidOptionError, match="would overwrite another output"):
        onnxprune.prune(
            copy, sparsity=0.5, output=tmp_path / "a.onnx", masks_out=tmp_path / "a.onnx"
        )
    with pytest.raises(InvalidOptionError, match="would overwrite the input model"):
        onnxprune.compact(copy, output=tmp_path / "c.onnx", report_out=copy)
    with pytest.raises(InvalidOptionError, match="need output"):
        onnxprune.prune(copy, sparsity=0.5, report_out=tmp_path / "r.json")
    assert copy.read_bytes() == MLP.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]


def _cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_cli_structured_writes_its_json_and_refuses_flags_it_does_not_use(tmp_path, capsys):
    out, report = tmp_path / "s.onnx", tmp_path / "s.json"
    assert _cli("prune", CNN, "-o", out, "--structured", "l1", "--sparsity", "0.25",
                "--report-out", report) == 0  # fmt: skip
    printed = capsys.readouterr().out
    written = json.loads(report.read_text())
    assert f"parameters {written['params_before']} -> {written['params_after']}" in printed
    refused = [
        ("--masks-out", tmp_path / "m.npz"),
        ("--exact",),
        ("--compact",),
        ("--score", "lamp"),
    ]
    for extra in refused:
        code = _cli("prune", CNN, "-o", tmp_path / "x.onnx", "--structured", "l1",
                    "--sparsity", "0.25", *extra)  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, extra
        assert err.startswith("InvalidOptionError: --structured takes no " + extra[0]), err
        assert err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_cli_compact_report_out_and_prune_compact(tmp_path, capsys):
    pruned, compacted = tmp_path / "p.onnx", tmp_path / "c.onnx"
    assert _cli("prune", CNN, "-o", pruned, "--sparsity", "0.9") == 0
    assert _cli("compact", pruned, "-o", compacted, "--report-out", tmp_path / "c.json") == 0
    written = json.loads((tmp_path / "c.json").read_text())
    assert written == onnxprune.compact(pruned).to_dict()
    assert written["params_after"] == _params(onnx.load(compacted))
    capsys.readouterr()
    both = tmp_path / "pc.onnx"
    assert _cli("prune", CNN, "-o", both, "--sparsity", "0.9", "--compact") == 0
    assert f"compacted: parameters {written['params_before']} -> {written['params_after']}" in (
        capsys.readouterr().out
    )
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(both).graph.initializer}
    assert sum(w.size for w in weights.values()) == written["params_after"]
