"""Structured Prune and Compact through the server equal ``structured_prune`` and ``compact``."""

from __future__ import annotations

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.errors import InvalidOptionError, LimitExceededError
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.client import Client
from onnxprune.service.messages import compact_dict, structured_dict
from onnxprune.service.wire import file_info, read_chunks
from onnxprune.structured import compact, structured_prune
from tests.server.conftest import DATA, MLP, MODELS

CNN = MODELS / "cnn_digits.onnx"
FEEDS = {MLP: "x", CNN: "image"}  # the input of each model, named like its array in DATA


def _outputs(path, model) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with np.load(DATA) as data:
        feed = {FEEDS[model]: data[FEEDS[model]][:64]}
    return session.run(None, feed)[0]


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _assert_same_model(remote_path, local: onnx.ModelProto, model) -> None:
    """The file the server sent is ``local``: bytes, weights, shapes and ORT outputs."""
    local_path = remote_path.with_name("local.onnx")
    onnxprune.save_model(local, local_path)
    assert remote_path.read_bytes() == local_path.read_bytes()
    remote = onnx.load(remote_path)
    assert _shapes(remote) == _shapes(local)
    for name, array in _weights(local).items():
        np.testing.assert_array_equal(_weights(remote)[name], array)
    np.testing.assert_array_equal(_outputs(remote_path, model), _outputs(local_path, model))


@pytest.mark.parametrize(
    ("model", "options"),
    [
        (CNN, {"structured": "l1", "sparsity": 0.5, "round_to": 8}),
        (CNN, {"structured": "random", "sparsity": 0.3, "seed": 7, "exclude": "Conv_39"}),
        (MLP, {"structured": "l2", "sparsity": 0.3, "scope": "global"}),
    ],
)
def test_structured_prune_equals_the_library(address, tmp_path, model, options):
    out = tmp_path / "small.onnx"
    events = []
    with Client(address, on_progress=lambda stage, fraction: events.append(stage)) as client:
        remote = client.prune(model, out, **options)
    kwargs = {"criterion" if k == "structured" else k: v for k, v in options.items()}
    local = structured_prune(onnx.load(model), **kwargs)
    _assert_same_model(out, local.model, model)
    assert {u.name: (u.kept, u.total) for u in remote.units} == local.units
    assert [u.name for u in remote.units] == list(local.units)  # graph order kept
    c = local.compaction
    assert {r.name: r.removed for r in remote.removed} == c.removed
    assert (remote.params_before, remote.params_after) == (c.params_before, c.params_after)
    assert remote.params_after < remote.params_before
    assert (remote.macs_before, remote.macs_after) == (c.macs_before.macs, c.macs_after.macs)
    assert remote.macs_after < remote.macs_before  # the smaller shapes cost fewer MACs
    assert structured_dict(remote) == local.to_dict()  # sparsity, warnings, blocked: all of it
    assert remote.groups_removed == local.groups_removed > 0
    assert [b.reason for b in remote.blocked] == [b.reason for b in local.blocked]
    assert not remote.HasField("report")
    assert not (tmp_path / "small.masks.npz").exists()  # a structured prune sends no masks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.onnx", "small.onnx"]
    assert events.index("upload") < events.index("prune") < events.index("download")


def test_structured_cnn_at_half_keeps_half_the_channels(address, tmp_path):
    # cnn_digits: stem Conv_39 (16 ch) -> residual pair Conv_42/Conv_45 (16) -> down (32) -> head.
    # Half of each layer goes: 8 of 16 and 16 of 32; the down conv then reads 8 channels.
    with Client(address) as client:
        remote = client.prune(CNN, tmp_path / "s.onnx", structured="l1", sparsity=0.5)
    assert {u.name: (u.kept, u.total) for u in remote.units} == {
        "onnx::Conv_39": (8, 16),
        "onnx::Conv_42": (8, 16),
        "onnx::Conv_45": (8, 16),
        "down.weight": (16, 32),
    }
    assert _shapes(onnx.load(tmp_path / "s.onnx"))["down.weight"] == (16, 8, 3, 3)


def test_structured_prune_with_reconstruction_equals_the_library(address, tmp_path):
    calib = tmp_path / "calib.npz"
    with np.load(DATA) as data:
        np.savez(calib, image=data["image"][:64])
    with Client(address) as client:
        remote = client.prune(
            CNN, tmp_path / "s.onnx", structured="l1", sparsity=0.3, reconstruct=True,
            ridge=0.05, calibration=calib,
        )  # fmt: skip
    with np.load(calib) as data:
        local = structured_prune(onnx.load(CNN), sparsity=0.3, calibration=dict(data), ridge=0.05)
    got = structured_dict(remote)
    assert [layer["name"] for layer in got["reconstruction"]["layers"]] == [
        "onnx::Conv_42", "onnx::Conv_45", "down.weight", "head.weight",
    ]  # fmt: skip
    assert (got["reconstruction"]["samples"], got["reconstruction"]["ridge"]) == (64, 0.05)
    want = local.to_dict()
    errors = ("error_before", "error_after")
    for a, b in zip(got["reconstruction"]["layers"], want["reconstruction"]["layers"], strict=True):
        assert [a[k] for k in errors] == pytest.approx([b[k] for k in errors], rel=1e-6)
        a.update((k, b[k]) for k in errors)  # the rest to the bit, as without reconstruction
    assert got == want
    remote_weights = _weights(onnx.load(tmp_path / "s.onnx"))
    for name, array in _weights(local.model).items():
        np.testing.assert_allclose(remote_weights[name], array, rtol=1e-5, atol=1e-6)


def test_compact_equals_the_library(address, tmp_path):
    pruned = tmp_path / "pruned.onnx"  # 90% magnitude: dead channels, some of them folded
    onnxprune.save_model(onnxprune.prune(CNN, sparsity=0.9).model, pruned)
    events = []
    with Client(address, on_progress=lambda stage, fraction: events.append(stage)) as client:
        remote = client.compact(pruned, tmp_path / "small.onnx")
    local = compact(onnx.load(pruned))
    _assert_same_model(tmp_path / "small.onnx", local.model, CNN)
    assert [r.name for r in remote.removed] == list(local.removed)
    assert {r.name: r.removed for r in remote.removed} == local.removed
    assert {r.name: r.folded for r in remote.removed if r.folded} == local.folded
    assert sum(local.folded.values()) > 0  # the folding path is exercised
    assert (remote.params_before, remote.params_after) == (
        local.params_before,
        local.params_after,
    )
    assert compact_dict(remote) == local.to_dict()
    assert remote.nonzero_macs_after == local.macs_after.nonzero_macs
    assert remote.macs_after == local.macs_after.macs < remote.macs_before
    assert [(b.reason, b.groups) for b in remote.blocked] == [("graph output 'logits'", 10)]
    np.testing.assert_allclose(
        _outputs(tmp_path / "small.onnx", CNN), _outputs(pruned, CNN), rtol=1e-4, atol=1e-4
    )
    stages = list(dict.fromkeys(events))
    assert stages == ["upload", "compact", "save", "download"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.onnx", "pruned.onnx", "small.onnx"]


def test_compact_of_a_dense_model_removes_nothing_and_refuses_overwriting(address, tmp_path):
    with Client(address) as client:
        remote = client.compact(MLP, tmp_path / "m.onnx")
        with pytest.raises(InvalidOptionError, match="overwrite the input model"):
            client.compact(tmp_path / "m.onnx", tmp_path / "m.onnx")
        with pytest.raises(LimitExceededError, match="over the limit"):
            client.compact(MLP, tmp_path / "n.onnx", max_bytes=1000)
    assert remote.removed == []  # the dense MLP has no dead unit
    assert remote.params_before == remote.params_after == 50_610
    assert not (tmp_path / "n.onnx").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"score": "lamp", "allocation": "erk"},
            "structured takes no score, allocation (they choose single weights); "
            "see scope and round_to",
        ),
        ({"effective": True}, "structured takes no effective"),
        ({"nm": "2:4", "min_threshold": 0.0}, "structured takes no min_threshold, nm"),
        ({"sparsity": None}, "structured needs sparsity"),
        ({"structured": "lamp"}, "structured 'lamp' must be one of l1, l2, random"),
        ({"round_to": 0}, "round_to=0 must be at least 1"),
        ({"structured": None, "scope": "global"}, "scope needs structured"),
        ({"structured": None, "round_to": 8}, "round_to needs structured"),
    ],
)
def test_bad_structured_options_are_invalid_argument(stub, options, message):
    values = {"structured": "l1", "sparsity": 0.5, **options}
    header = pb.PruneHeader(
        model=file_info(MLP, MLP.name),
        options=pb.PruneOptions(**{k: v for k, v in values.items() if v is not None}),
    )
    requests = [pb.PruneRequest(header=header)]
    requests += [pb.PruneRequest(chunk=c) for c in read_chunks(MLP)]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Prune(iter(requests), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert dict(caught.value.trailing_metadata())["onnxprune-error"] == "InvalidOptionError"


def test_structured_refuses_uploaded_masks_in_one_message(address, tmp_path):
    masks = tmp_path / "m.npz"
    np.savez(masks, **{"fc1.weight": np.ones((64, 300), bool)})
    with Client(address) as client, pytest.raises(InvalidOptionError) as caught:
        client.prune(
            MLP, tmp_path / "p.onnx", structured="l1", sparsity=0.5, score="lamp", masks=masks
        )
    assert str(caught.value) == (
        "structured takes no score, masks (they choose single weights); see scope and round_to"
    )
    assert not (tmp_path / "p.onnx").exists()


def test_unstructured_prune_takes_the_default_structured_fields(address, tmp_path):
    # What `remote prune` sends without --structured: scope and round_to at their defaults.
    with Client(address) as client:
        remote = client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5, scope="layer", round_to=1)
    assert remote.report.direct_sparsity == pytest.approx(0.5, abs=1e-4)
    assert not remote.units
    assert not remote.HasField("params_before")
    onnxprune.save_model(onnxprune.prune(MLP, sparsity=0.5).model, tmp_path / "local.onnx")
    assert (tmp_path / "p.onnx").read_bytes() == (tmp_path / "local.onnx").read_bytes()


def test_prune_with_compact_equals_the_library(address, tmp_path):
    # The request's `compact` option reaches the same entry as `onnxprune prune --compact`.
    out = tmp_path / "c.onnx"
    with Client(address) as client:
        remote = client.prune(CNN, out, sparsity=0.9, compact=True)
    local = onnxprune.prune(CNN, sparsity=0.9, compact=True)
    _assert_same_model(out, local.model, CNN)
    assert local.compaction.params_after < local.compaction.params_before
    assert remote.report.direct_sparsity == pytest.approx(local.report.direct_sparsity)


def test_blocked_groups_and_a_missed_target_travel_as_typed_fields(address, tmp_path):
    # cnn_digits, global 0.3 rounded to 8: 8 of the 64 prunable groups go (12.5%), a warning;
    # the head's 10 output channels (the graph output) stay.
    options = {"structured": "l1", "sparsity": 0.3, "scope": "global", "round_to": 8}
    with Client(address) as client:
        remote = client.prune(CNN, tmp_path / "s.onnx", **options)
    assert (remote.groups_removed, remote.groups_prunable) == (8, 64)
    assert remote.group_sparsity == 0.125
    assert (remote.sparsity, remote.scope, remote.round_to) == (0.3, "global", 8)
    assert [(u.name, u.sparsity) for u in remote.units][-1] == ("down.weight", 0.25)
    (blocked,) = remote.blocked
    assert (list(blocked.layers), blocked.reason, blocked.groups) == (
        ["head.weight"],
        "graph output 'logits'",
        10,
    )
    assert not blocked.HasField("op_type")
    assert not blocked.HasField("node")
    (warning,) = remote.warnings
    assert warning.startswith("removed 12.50% of the prunable groups (8 of 64), 17.5 points below")
