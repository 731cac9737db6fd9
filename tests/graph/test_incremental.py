"""``MaskedChannels``: after any sequence of mask changes, the effective sparsity a full analysis of
the masked graph gives (``sparsity_report``), on random MLPs and CNNs (grouped, transposed and
padded convolutions, residual blocks, dense heads)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.build import build_graph
from onnxprune.graph.incremental import REBUILD, MaskedChannels, unsupported
from onnxprune.sparsity import sparsity_report
from tests.control_flow import control_flow_model
from tests.helpers import examples
from tests.reference import to_onnx
from tests.test_sparsity_reference import cnns, mlps


def _full(graph, masks) -> tuple[int, float]:
    """Inactive weights and effective sparsity of the masked graph, by a full analysis."""
    overrides = {}
    for layer in graph.layers:
        if layer.name in masks:
            kept = np.where(masks[layer.name], graph.weight(layer), 0)
            overrides[layer.name] = layer.contract.source.to_stored(kept)
    report = sparsity_report(dataclasses.replace(graph, overrides=overrides))
    inactive = sum(row.params - row.active for row in report.layers)
    return inactive, report.effective_sparsity


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mlps(), cnns()), st.integers(0, 2**16))
def test_changes_followed_one_by_one_equal_a_full_analysis(net, seed):
    graph = build_graph(to_onnx(net))
    rng = np.random.default_rng(seed)
    # Some layers masked (the others keep their weights), starting from random masks.
    masks = {
        layer.name: rng.random(layer.shape) < rng.choice([0.3, 0.8, 1.0])
        for layer in graph.layers
        if rng.random() < 0.8
    }
    channels = MaskedChannels(graph, masks)
    assert (channels.inactive(), channels.effective_sparsity()) == _full(graph, masks)
    for _ in range(6):
        changes = {}
        for name, mask in masks.items():
            # A few entries (updated in place) or many (the layer's edge rebuilt).
            share = rng.choice([0.0, 0.5 / REBUILD, 0.5])
            flat = np.flatnonzero(rng.random(mask.size) < share)
            if flat.size:
                changes[name] = flat
                mask.reshape(-1)[flat] ^= True
        channels.toggle(changes)
        assert (channels.inactive(), channels.effective_sparsity()) == _full(graph, masks)
    masks = {name: rng.random(mask.shape) < 0.5 for name, mask in masks.items()}
    channels.reset(masks)
    assert (channels.inactive(), channels.effective_sparsity()) == _full(graph, masks)


def _model(nodes, inits, x_shape, y_shape):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in inits],
    )
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def test_taps_that_only_see_padding_change_nothing():
    # A 3x3 kernel over a 1x1 map padded by 1: only the centre tap meets the input, so the 8
    # others carry nothing whether kept or not. Channel 0 -> 0 is cut at its centre first: the
    # pair is gone, however many of its padding taps come and go.
    conv = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = build_graph(_model([conv], [("w", (3, 3, 3, 3))], [1, 3, 1, 1], [1, 3, 1, 1]))
    masks = {"w": np.ones((3, 3, 3, 3), bool)}
    channels = MaskedChannels(graph, masks)
    centre, corner = np.ravel_multi_index((0, 0, 1, 1), (3, 3, 3, 3)), 0
    for flat in ([centre], [corner], [corner], [1, 2], [centre]):  # few: updated in place
        masks["w"].reshape(-1)[flat] ^= True
        channels.toggle({"w": np.array(flat)})
        assert (channels.inactive(), channels.effective_sparsity()) == _full(graph, masks)


def test_what_it_does_not_follow_is_named():
    # x -> MatMul(w) -> MatMul(w) -> y: one weight read by two layers.
    mm = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["y"]),
    ]
    shared = build_graph(_model(mm, [("w", (2, 2))], [1, 2], [1, 2]))
    assert unsupported(shared, "channel") == "weights used by several layers"
    with pytest.raises(ValueError, match="several layers"):
        MaskedChannels(shared, {"w": np.ones((2, 2), bool)})
    plain = build_graph(_model(mm[:1], [("w", (2, 2))], [1, 2], [1, 2]))
    assert unsupported(plain, "channel") is None
    assert unsupported(plain, "exact") == "the exact level"
    rnn = helper.make_node("RNN", ["x", "W", "R"], ["y"], hidden_size=2)
    recurrent = _model([rnn], [("W", (1, 2, 3)), ("R", (1, 2, 2))], [4, 1, 3], [4, 1, 1, 2])
    assert unsupported(build_graph(recurrent), "channel") == "recurrent layers"
    assert unsupported(build_graph(control_flow_model()), "channel") == "If/Loop/Scan bodies"
