"""Streaming pruning of models with external data: the same result as in memory, tensor by tensor.

The model: x[N, 64] -> MatMul w1[64, 96] -> Relu -> MatMul Transpose(w2t[80, 96]) -> Relu
-> Gemm(transB) w3[10, 80] -> y. w1 and w2t are large enough to stay in the external file
(``load_model_lazy`` reads tensors of up to 4096 elements in), w3 is read in. Weights are rounded
to one decimal, so many magnitudes tie and the tie-breaking order matters; w2 is stored
transposed, so storage order and the order the layer consumes differ (ties go in the consumed
order, as ``masks_from_counts`` breaks them).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import InvalidModelError, InvalidOptionError, prune
from onnxprune.batch import PruneOptions, run_batch
from onnxprune.external_data import load_model_lazy
from onnxprune.pruners.masks import load_masks
from onnxprune.pruners.streaming import prune_streaming
from onnxprune.weights import WeightSource
from tests.batch.models import save


def _tied_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w1 = np.round(rng.standard_normal((64, 96)), 1).astype(np.float32)
    w1[0, :40] = 0.0  # already pruned: stays pruned, goes first
    w2t = np.round(rng.standard_normal((80, 96)), 1).astype(np.float32)
    w3 = np.round(rng.standard_normal((10, 80)), 1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["r1"]),
            helper.make_node("Transpose", ["w2t"], ["w2"], perm=[1, 0]),
            helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["r2"]),
            helper.make_node("Gemm", ["r2", "w3"], ["y"], transB=1),
        ],
        "tied",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2t, "w2t"), (w3, "w3"))],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


CASES = [
    (allocation, sparsity, sigma)
    for allocation, sparsity, sigma in itertools.product(
        ("global", "uniform", "erk", "igq", "uniform+"), (0.3, 0.5), (None, 0.05)
    )
] + [("global", 0.0, None), ("global", 0.002, None)]  # zeros only; zeros and a few more


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    return save(_tied_model(), tmp_path_factory.mktemp("tied") / "m.onnx", external=True)


@pytest.mark.parametrize(("allocation", "sparsity", "sigma"), CASES)
def test_streaming_equals_pruning_in_memory(tied, tmp_path, allocation, sparsity, sigma):
    kwargs = {"sparsity": sparsity, "allocation": allocation, "min_threshold": sigma}
    expected = prune(tied, **kwargs)
    # Chunks of 1000 elements: thresholds, ties and masks cross chunk borders.
    got = prune_streaming(tied, tmp_path / "p.onnx", chunk_elements=1000, **kwargs)
    masks = load_masks(got.masks)
    assert masks.keys() == expected.masks.keys()
    for name, mask in expected.masks.items():
        assert np.array_equal(masks[name], mask), name
    written = onnx.load(tmp_path / "p.onnx")  # onnx reads the external data back
    values = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    for tensor in expected.model.graph.initializer:
        assert np.array_equal(values[tensor.name], numpy_helper.to_array(tensor)), tensor.name
    assert got.report.to_dict() == expected.report.to_dict()
    assert got.warnings == expected.warnings


def test_the_written_model_keeps_its_weights_in_one_new_data_file(tied, tmp_path):
    prune_streaming(tied, tmp_path / "p.onnx", sparsity=0.5)
    lazy = load_model_lazy(tmp_path / "p.onnx")
    locations = {e.value for t in lazy.lazy for e in t.external_data if e.key == "location"}
    assert len(locations) == 1 and locations.pop().startswith("p.onnx.")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("p.onnx.")) == [
        "p.masks.npz",
        "p.onnx",
    ]
    # A second save to the same path replaces the data file; the stale one is gone.
    prune_streaming(tied, tmp_path / "p.onnx", sparsity=0.6)
    assert len(list(tmp_path.glob("p.onnx.*.data"))) == 1


def test_streaming_refuses_what_it_cannot_do(tied, tmp_path):
    with pytest.raises(InvalidOptionError, match="score 'lamp' does not stream"):
        prune_streaming(tied, tmp_path / "p.onnx", sparsity=0.5, score="lamp")
    with pytest.raises(InvalidOptionError, match=r"sparsity=1\.0 must be in"):
        prune_streaming(tied, tmp_path / "p.onnx", sparsity=1.0)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    model = _tied_model()
    save(model, tmp_path / "elsewhere" / "m.onnx", external=True)
    lazy = load_model_lazy(tmp_path / "elsewhere" / "m.onnx")
    for tensor in lazy.model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere/m.data"
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "m.onnx").write_bytes(lazy.model.SerializeToString())
    with pytest.raises(InvalidModelError, match=r"leaves the model's directory \('..'"):
        load_model_lazy(tmp_path / "here" / "m.onnx")


def test_a_batch_prunes_external_data_models_tensor_by_tensor(tied, tmp_path):
    save(_tied_model(), tmp_path / "zoo" / "inline.onnx")
    save(_tied_model(), tmp_path / "zoo" / "ext" / "big.onnx", external=True)
    batch = run_batch(tmp_path / "zoo", tmp_path / "out", options=PruneOptions(sparsity=0.6))
    by = {r.model: r for r in batch.results}
    assert (by["ext/big.onnx"].status, by["ext/big.onnx"].streamed) == ("ok", True)
    assert (by["inline.onnx"].status, by["inline.onnx"].streamed) == ("ok", False)
    assert by["ext/big.onnx"].direct_sparsity == by["inline.onnx"].direct_sparsity
    assert list((tmp_path / "out" / "ext").glob("big.onnx.*.data"))
    # Options the streaming path cannot do load the model whole (stream=auto)...
    lamp = run_batch(
        tmp_path / "zoo", tmp_path / "lamp", options=PruneOptions(sparsity=0.6, score="lamp")
    )
    by = {r.model: r for r in lamp.results}
    assert [(r.status, r.streamed) for r in lamp.results] == [("ok", False), ("ok", False)]
    assert by["ext/big.onnx"].direct_sparsity == by["inline.onnx"].direct_sparsity
    # ...and fail that model with a message saying why when streaming is required.
    always = PruneOptions(sparsity=0.6, score="lamp", stream="always")
    by = {r.model: r for r in run_batch(tmp_path / "zoo", tmp_path / "a", options=always).results}
    assert by["ext/big.onnx"].status == by["inline.onnx"].status == "failed"
    assert "stream=always prunes tensor by tensor, which needs score magnitude" in (
        by["ext/big.onnx"].error
    )


def test_consumed_index_matches_to_consumed():
    source = WeightSource("w", "initializer", (("transpose", (2, 0, 1)), ("reshape", (4, 2, 3))))
    consumed_shape = (2, 12)
    stored = np.arange(24).reshape(2, 3, 4)
    consumed = source.to_consumed(stored, consumed_shape)
    flat = np.arange(24)
    positions = source.consumed_index(flat, consumed_shape)
    assert np.array_equal(consumed.reshape(-1)[positions], flat)
