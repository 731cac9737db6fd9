"""Analyze, Prune, Validate and ListMethods through the server equal the library calls."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import onnx
import pytest
from google.protobuf import json_format
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.pruners.registry import ALLOCATIONS, CRITERIA, SCORES
from onnxprune.report import format_table
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.client import Client
from tests.server.conftest import DATA, MLP

TIMINGS = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p95", "throughput", "timed_runs")
BASELINE_TIMINGS = (
    *("baseline_latency_ms_p50", "baseline_latency_ms_p90", "baseline_latency_ms_p95"),
    *("speedup", "speedup_low", "speedup_high"),
)


def _big_mlp(path, hidden=1024, seed=0):
    """x[N,64] -> Gemm 64xH -> Relu -> Gemm HxH -> Relu -> Gemm Hx10: about 4 MB of weights."""
    rng = np.random.default_rng(seed)
    sizes = [64, hidden, hidden, 10]
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        inits += [
            numpy_helper.from_array(rng.standard_normal((k, n), np.float32), f"w{i}"),
            numpy_helper.from_array(np.zeros(n, np.float32), f"b{i}"),
        ]
        out = "y" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(
            helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}" if out != "y" else out])
        )
        if out != "y":
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_analyze_equals_the_library(address):
    with Client(address) as client:
        remote = client.analyze(MLP, level="exact")
    local = onnxprune.analyze(MLP, level="exact")
    assert json.loads(remote.json) == local.to_dict()
    assert remote.json == json.dumps(local.to_dict(), indent=2)
    assert remote.text == format_table(local)
    typed = json_format.MessageToDict(
        remote, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    del typed["json"], typed["text"]
    assert typed == {**local.to_dict(), "layers": [  # int64 fields come back as strings in JSON
        {**layer, "shape": [str(d) for d in layer["shape"]], "params": str(layer["params"]),
         "dead_inputs": str(layer["dead_inputs"]), "dead_outputs": str(layer["dead_outputs"]),
         "macs": str(layer["macs"]), "nonzero_macs": str(layer["nonzero_macs"]),
         "gates": layer.get("gates", [])}  # a repeated field: empty but for recurrent weights
        for layer in local.to_dict()["layers"]
    ], "total_params": str(local.total_params), "macs": str(local.macs),
        "nonzero_macs": str(local.nonzero_macs), "dead_inputs": str(local.dead_inputs),
        "dead_outputs": str(local.dead_outputs), "blocks": [
            {**block, **{k: str(block[k]) for k in ("units", "dead", "blocked", "params")}}
            for block in local.to_dict()["blocks"]  # the MLP's: neurons, no heads
        ]}  # fmt: skip


def test_prune_gives_byte_identical_model_and_equal_masks(address, tmp_path):
    options = {"sparsity": 0.9, "allocation": "erk", "min_threshold": 0.001}
    with Client(address) as client:
        remote = client.prune(MLP, tmp_path / "remote.onnx", **options)
    local = onnxprune.prune(MLP, **options)
    onnxprune.save_model(local.model, tmp_path / "local.onnx")
    assert (tmp_path / "remote.onnx").read_bytes() == (tmp_path / "local.onnx").read_bytes()
    with np.load(tmp_path / "remote.masks.npz") as masks:
        assert set(masks.files) == set(local.masks)
        for name, mask in local.masks.items():
            assert masks[name].dtype == bool
            np.testing.assert_array_equal(masks[name], mask)
    assert json.loads(remote.report.json) == local.report.to_dict()
    assert list(remote.warnings) == list(local.warnings)
    assert remote.report.direct_sparsity == pytest.approx(0.9, abs=1e-4)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_prune_effective_target_and_uploaded_masks(address, tmp_path):
    with Client(address) as client:
        first = client.prune(MLP, tmp_path / "a.onnx", nm="2:4")
        again = client.prune(
            MLP, tmp_path / "b.onnx", masks=tmp_path / "a.masks.npz", sparsity=0.97, effective=True
        )
    assert first.report.direct_sparsity == pytest.approx(0.5)
    local = onnxprune.prune(MLP, masks=tmp_path / "a.masks.npz", sparsity=0.97, effective=True)
    assert again.analyses == local.analyses > 0
    assert json.loads(again.report.json) == local.report.to_dict()


def test_validate_equals_the_library_but_for_timings(address, tmp_path):
    pruned = tmp_path / "pruned.onnx"
    onnxprune.save_model(onnxprune.prune(MLP, sparsity=0.95).model, pruned)
    gate = {"max_accuracy_drop": 0.01, "min_agreement": 0.5}
    with Client(address) as client:
        remote = client.validate(pruned, DATA, baseline=MLP, provider="cpu", **gate)
    local = onnxprune.validate(pruned, DATA, baseline=MLP, provider="cpu", **gate).to_dict()
    remote_dict = json.loads(remote.json)
    for key in TIMINGS + BASELINE_TIMINGS:
        assert remote_dict[key] > 0
        assert getattr(remote, key) == remote_dict.pop(key)  # the typed field is set too
        local.pop(key)
    assert list(remote.warnings) == remote_dict.pop("warnings")  # they depend on the timings
    local.pop("warnings")
    assert remote_dict == local
    assert remote.speedup == remote.baseline_latency_ms_p50 / remote.latency_ms_p50
    assert "vs baseline: p50 " in remote.text
    assert remote.model == "pruned.onnx"
    assert remote.baseline == "mlp_digits.onnx"
    assert remote.HasField("gate")
    assert not remote.gate.passed  # 95% without fine-tuning loses far more than 1 point
    assert remote.gate.reason == local["gate"]["reason"]
    assert "gate:" in remote.text


def test_validate_returns_the_label_free_comparisons_and_their_gates(address, tmp_path):
    pruned = tmp_path / "pruned.onnx"
    onnxprune.save_model(onnxprune.prune(MLP, sparsity=0.95).model, pruned)
    unlabelled = tmp_path / "inputs.npz"
    np.savez(unlabelled, x=np.load(DATA)["x"])
    limits = {"min_cosine": 0.99, "max_abs_error": 1e6, "min_top5_agreement": 0.1}
    with Client(address) as client:
        remote = client.validate(pruned, unlabelled, baseline=MLP, provider="cpu", limits=limits)
    local = onnxprune.validate(pruned, unlabelled, baseline=MLP, provider="cpu", limits=limits)
    assert list(remote.outputs) == list(local.outputs) == ["logits"]
    typed = remote.outputs["logits"]
    for metric, value in local.outputs["logits"].items():
        assert getattr(typed, metric) == pytest.approx(value, rel=1e-12), metric
    assert 0 < typed.cosine < 0.99  # measured, not a default
    assert json.loads(remote.json)["outputs"] == local.to_dict()["outputs"]
    assert not remote.gate.passed
    assert remote.gate.reason == local.gate.reason
    assert remote.gate.reason.startswith("cosine similarity (mean over samples) ")
    assert dict(remote.gate.limits) == limits
    assert not remote.HasField("top1")  # no labels


def test_validate_without_a_baseline_leaves_the_baseline_timings_unset(address):
    with Client(address) as client:
        remote = client.validate(MLP, DATA, provider="cpu")
    assert remote.latency_ms_p50 > 0
    assert not any(remote.HasField(key) for key in BASELINE_TIMINGS)
    assert [json.loads(remote.json)[key] for key in BASELINE_TIMINGS] == [None] * 6
    assert "vs baseline" not in remote.text


def test_validate_timing_options_reach_the_server(address):
    # digits_test.npz: 450 samples, 8 batches of 64; 12 runs then cycle back to the first batches.
    with Client(address) as client:
        remote = client.validate(
            MLP, DATA, baseline=MLP, provider="cpu", min_time=0.0, min_runs=12, threads=2
        )
    assert (remote.timed_runs, remote.threads) == (12, 2)
    assert remote.speedup_low <= remote.speedup <= remote.speedup_high
    assert "12 runs per side after warm-up, 2 intra-op threads" in remote.text


def test_list_methods_equals_the_registries(address):
    with Client(address) as client:
        reply = client.list_methods()
    assert [m.name for m in reply.scores] == sorted(SCORES)
    assert [m.name for m in reply.allocations] == sorted(ALLOCATIONS)
    by_name = {m.name: m for m in reply.allocations}
    assert "uniform+" in by_name["uniform_plus"].aliases
    assert by_name["erk"].summary == ALLOCATIONS["erk"].summary
    assert [m.name for m in reply.criteria] == sorted(CRITERIA) == ["l1", "l2", "random"]
    assert reply.criteria[0].summary == CRITERIA["l1"].summary


def test_many_small_chunks_both_ways(address, tmp_path):
    model = _big_mlp(tmp_path / "big.onnx")
    size = model.stat().st_size
    assert size > 4 * 2**20
    events = []
    with Client(address, chunk_size=64 * 1024, on_progress=lambda s, f: events.append((s, f))) as c:
        remote = c.prune(model, tmp_path / "out.onnx", sparsity=0.8, allocation="uniform")
    local = onnxprune.prune(model, sparsity=0.8, allocation="uniform")
    onnxprune.save_model(local.model, tmp_path / "local.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == (tmp_path / "local.onnx").read_bytes()
    assert json.loads(remote.report.json) == local.report.to_dict()
    uploads = [f for s, f in events if s == "upload"]
    assert len(uploads) >= 10  # 5% steps over ~70 chunks
    assert uploads == sorted(uploads)
    assert uploads[-1] == 1.0
    stages = [s for s, _ in events]
    assert stages.index("upload") < stages.index("prune") < stages.index("download")
    downloads = [f for s, f in events if s == "download"]
    assert len(downloads) > 4  # the 4 MB model came back in 1 MiB chunks, then the masks


def test_model_with_external_data_goes_up_with_its_data(address, tmp_path):
    folder = tmp_path / "ext"
    (folder / "weights").mkdir(parents=True)
    model = onnx.load(MLP)
    onnx.save(model, folder / "m.onnx", save_as_external_data=True, location="weights/m.bin",
              size_threshold=0)  # fmt: skip
    assert (folder / "weights" / "m.bin").is_file()
    with Client(address) as client:
        remote = client.analyze(folder / "m.onnx", units=True)
    assert json.loads(remote.json) == onnxprune.analyze(MLP, units=True).to_dict()


def test_typed_request_fields_match_the_library_options():
    # A request field the library does not take would fail at the first call; catch it here.
    import inspect

    # The request's prune options are the library's, one for one (max_bytes is the server's).
    prune_fields = set(pb.PruneOptions.DESCRIPTOR.fields_by_name)
    options = {f.name for f in dataclasses.fields(onnxprune.PruneOptions)}
    assert prune_fields - {"max_bytes"} == options
    compact_args = set(inspect.signature(onnxprune.compact).parameters)
    assert set(pb.CompactOptions.DESCRIPTOR.fields_by_name) <= compact_args
    analyze_args = set(inspect.signature(onnxprune.analyze).parameters)
    assert set(pb.AnalyzeOptions.DESCRIPTOR.fields_by_name) <= analyze_args
    validate_args = set(inspect.signature(onnxprune.validate).parameters)
    assert set(pb.ValidateOptions.DESCRIPTOR.fields_by_name) <= validate_args


def test_validate_class_axis_reaches_the_server_and_comes_back(address, tmp_path):
    # Logits [N, 5, 9] of two MatMuls; the server's per-token agreement equals the library's.
    rng = np.random.default_rng(5)
    paths = {}
    for name in ("model", "base"):
        w = numpy_helper.from_array(rng.standard_normal((4, 9)).astype(np.float32), "W")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["logits"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5, 9])], [w],
        )  # fmt: skip
        paths[name] = tmp_path / f"{name}.onnx"
        opset = [helper.make_opsetid("", 17)]
        onnx.save(helper.make_model(graph, ir_version=10, opset_imports=opset), paths[name])
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.standard_normal((6, 5, 4)).astype(np.float32))
    options = {"baseline": paths["base"], "provider": "cpu", "min_time": 0.0, "min_runs": 1}
    with Client(address) as client:
        remote = client.validate(paths["model"], data, class_axis=-1, **options)
        with pytest.raises(onnxprune.InvalidOptionError, match=r"^class_axis=0 is the batch"):
            client.validate(paths["model"], data, class_axis=0, **options)
    local = onnxprune.validate(paths["model"], data, class_axis=-1, **options)
    assert remote.outputs["logits"].agreement == local.outputs["logits"]["agreement"]
    assert remote.class_axis == -1
    assert json.loads(remote.json)["class_axis"] == -1
