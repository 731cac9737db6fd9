"""Random small CNN-like graphs: structured pruning and compaction keep what they must keep.

A drawn net chains 1-5 building blocks on an NCHW map: Conv (k 1/3, dilation, stride 1/2, even,
uneven or SAME_* pads, bias or not), depthwise (multiplier 1/2), 2-group and transposed convs,
BatchNormalization or InstanceNormalization, activations, per-channel and scalar Mul/Add/Sub/Div,
residual Add/Sum-of-three/Max/Min/Mean/Mul/Sub with an earlier map of the same shape, Concat of
two branches then a conv, Split into two branches merged by Concat or Add, Max/AveragePool with
pads, a global pool, an NHWC Transpose pair around [C] constants or a MatMul, a channel shuffle
(Reshape into groups, Transpose, Reshape back), Pad (constant, reflect, edge), Resize, a conv
whose weight is used twice. A head follows: GlobalAveragePool then Flatten or Squeeze,
ReduceMean(keepdims=0), Flatten or Reshape; maybe a hidden layer; Gemm (transB, alpha, beta) or
MatMul, or a MatMul between Unsqueeze and Squeeze. Sometimes a hidden map is a second graph
output.

1. ``structured_prune``: the compacted model passes the full checker, has the original output
   shapes and computes what the masked model computes; no layer keeps 0 units; parameters do not
   grow.
2. ``compact`` after zeroing filters, input channels or single weights (dead units) or filters
   whose biases stay, BN scales and Mul constants (constant units): same outputs, checker passes,
   compacting again removes nothing.

Outputs match when max |diff| <= 1e-4 * max(1, max |expected|). What the properties found is
kept as minimal graphs in test_regressions.py.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from onnxprune.structured import CRITERIA, SCOPES, compact, structured_prune
from tests.structured._common import params, run
from tests.structured._random_nets import SPARSITIES, Drawn, dims, nets


def _valid(drawn: Drawn) -> list[np.ndarray]:
    """The outputs of a drawn model that shape inference and the checker accept (else reject)."""
    try:
        onnx.shape_inference.infer_shapes(drawn.model, check_type=True, strict_mode=True)
        onnx.checker.check_model(drawn.model, full_check=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        assume(False)
    outputs = run(drawn.model, drawn.feed)
    assert [list(o.shape) for o in outputs] == [dims(o) for o in drawn.model.graph.output]
    assert all(np.isfinite(o).all() for o in outputs)
    return outputs


def _assert_same(expected: list[np.ndarray], got: list[np.ndarray]) -> None:
    assert [a.shape for a in expected] == [b.shape for b in got]
    for a, b in zip(expected, got, strict=True):
        diff = float(np.abs(a.astype(np.float64) - b).max())
        assert diff <= 1e-4 * max(1.0, float(np.abs(a).max())), f"max |diff| {diff}"


# --- property 1: structured pruning -------------------------------------------------------------


@settings(deadline=None, derandomize=True)  # examples: the profile (tests/conftest.py)
@given(
    nets(),
    SPARSITIES,
    st.sampled_from(sorted(CRITERIA)),
    st.sampled_from(SCOPES),
    st.sampled_from([1, 2, 4]),
    st.integers(0, 3),
)
def test_structured_prune_equals_masked(drawn, sparsity, criterion, scope, round_to, seed):
    expected = _valid(drawn)
    result = structured_prune(
        drawn.model,
        sparsity=sparsity,
        criterion=criterion,
        scope=scope,
        round_to=round_to,
        seed=seed,
    )
    onnx.checker.check_model(result.model, full_check=True)
    got = run(result.model, drawn.feed)
    assert [a.shape for a in got] == [a.shape for a in expected]
    _assert_same(run(result.masked, drawn.feed), got)
    assert all(kept >= 1 for kept, _ in result.units.values()), result.units
    assert result.compaction.params_after <= result.compaction.params_before
    assert result.compaction.params_after == params(result.model)


# --- property 2: compaction of zeroed units ----------------------------------------------------

STYLES = ("constant", "filters", "inputs", "elements")


def zeroed(drawn: Drawn, style: str, density: float, seed: int) -> onnx.ModelProto:
    """``drawn.model`` with units zeroed: ``filters`` (and their biases), ``inputs`` (input
    channels), single ``elements``, or ``constant`` (filters, biases kept, and some BN scales
    and Mul constants); ``mixed`` picks one per weight. ``density``: the chance of each."""
    rng = np.random.default_rng(seed)
    arrays = {t.name: numpy_helper.to_array(t).copy() for t in drawn.model.graph.initializer}
    for wt in drawn.weights:
        how = rng.choice(STYLES) if style == "mixed" else style
        w = arrays[wt.name]
        if how == "elements":
            w[rng.random(w.shape) < density] = 0
            continue
        axis = wt.in_axis if how == "inputs" else wt.out_axis
        drop = rng.random(w.shape[axis]) < density
        np.moveaxis(w, axis, 0)[drop] = 0
        if how == "filters" and wt.bias is not None:
            arrays[wt.bias][drop] = 0
    if style in ("constant", "mixed"):
        for name in drawn.scales:
            k = arrays[name]
            k[rng.random(k.shape) < density / 2] = 0
    model = onnx.ModelProto()
    model.CopyFrom(drawn.model)
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(arrays[t.name], t.name))
    return model


@settings(deadline=None, derandomize=True)  # examples: the profile (tests/conftest.py)
@given(
    nets(),
    st.sampled_from([*STYLES, "mixed"]),
    st.sampled_from([0.25, 0.5, 0.8, 1.0]),
    st.integers(0, 2**16),
)
def test_compact_keeps_outputs_and_is_idempotent(drawn, style, density, seed):
    _valid(drawn)
    model = zeroed(drawn, style, density, seed)
    expected = run(model, drawn.feed)
    result = compact(model)
    onnx.checker.check_model(result.model, full_check=True)
    _assert_same(expected, run(result.model, drawn.feed))
    assert result.params_after <= result.params_before
    again = compact(result.model)
    assert again.removed == {}, again.removed
