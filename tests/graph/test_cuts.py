"""``cut_by``: empty layers that cut every path leave effective sparsity exactly 1.

The certificate is checked against full analyses (channel and exact level) of random MLPs and
CNNs with residual blocks, some layers zeroed whole; by hand on a residual net, where an empty
convolution inside a block is no cut (the skip connection carries on) but an empty stem or head
is; and it is never given for graphs whose analysis it cannot vouch for (bodies, recurrent).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxprune.graph.build import build_graph
from onnxprune.graph.cuts import cut_by
from onnxprune.sparsity import sparsity_report
from tests.control_flow import control_flow_model
from tests.graph.test_rules_recurrent import _model as recurrent_model
from tests.graph.test_rules_recurrent import _weights as recurrent_weights
from tests.helpers import examples
from tests.pruners.test_effective_search import _residual
from tests.reference import to_onnx
from tests.test_sparsity_reference import cnns, mlps


def _emptied(graph, empty, level: str = "channel", rng=None):
    """The report with the layers named ``empty`` zeroed whole (a full analysis); with ``rng``,
    the others keep about half their weights at random."""
    overrides = {}
    for layer in graph.layers:
        kept = np.zeros(layer.shape, bool) if layer.name in empty else np.ones(layer.shape, bool)
        if rng is not None and layer.name not in empty:
            kept = rng.random(layer.shape) < 0.5
        weight = np.where(kept, graph.weight(layer), 0)
        overrides[layer.name] = layer.contract.source.to_stored(weight)
    return sparsity_report(dataclasses.replace(graph, overrides=overrides), level=level)


@pytest.mark.parametrize(
    ("empty", "cut"),
    [
        # stem -> [r0 -> r1] + skip -> [r2] + skip -> head: the stem and the head are on
        # every path; a block's convolutions are bypassed by its skip connection.
        ((), False),
        (("stem",), True),
        (("head",), True),
        (("r0",), False),
        (("r1",), False),
        (("r0", "r1", "r2"), False),
        (("r2", "head"), True),
    ],
)
def test_residual_net_is_cut_only_on_every_path(empty, cut):
    graph = build_graph(to_onnx(_residual()))
    assert cut_by(graph, set(empty)) is cut
    report = _emptied(graph, set(empty))
    assert (report.effective_sparsity == 1.0) is cut  # here the analysis agrees both ways


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mlps(), cnns()), st.integers(0, 2**16))
def test_a_cut_means_effective_sparsity_one(net, seed):
    graph = build_graph(to_onnx(net))
    rng = np.random.default_rng(seed)
    names = [layer.name for layer in graph.layers]
    empty = {name for name in names if rng.random() < 0.4}
    if cut_by(graph, empty):  # whatever the other layers keep
        for level in ("channel", "exact"):
            assert _emptied(graph, empty, level, rng).effective_sparsity == 1.0
    assert not cut_by(graph, set())  # a net's input always reaches its output


def test_no_certificate_for_bodies_or_recurrent_layers():
    graph = build_graph(control_flow_model())
    assert not cut_by(graph, {layer.name for layer in graph.all_layers})
    w, r, b = recurrent_weights("LSTM", np.random.default_rng(0))
    graph = build_graph(recurrent_model("LSTM", w, r, b))
    assert graph.layers
    assert not cut_by(graph, {layer.name for layer in graph.layers})
