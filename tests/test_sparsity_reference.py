"""``analyze`` against the brute-force float64 reference of Vysogorets & Kempe on random small nets.

The exact level must equal the reference weight for weight; the channel level may only report more
active weights (it under-reports effective sparsity) and must equal it on MLPs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnxprune import analyze
from tests.reference import (
    Conv,
    Dense,
    Flatten,
    GlobalPool,
    Net,
    Pool,
    Relu,
    Residual,
    forward,
    gradients,
    linear_weights,
    reference_activity,
    to_onnx,
)

QUIET = [HealthCheck.too_slow]


# --- strategies -------------------------------------------------------------------------------


@st.composite
def masks(draw, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask: hypothesis-shaped (mostly one value, shrinks well) or random at a density."""
    if draw(st.integers(0, 3)) == 0:
        return draw(arrays(np.bool_, shape))
    density = draw(st.sampled_from([0.05, 0.25, 0.5, 0.75, 0.9, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.random(shape) < density


@st.composite
def weights(draw, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 weight of ``shape``: signed values in +-[0.1, 2] where the mask is set."""
    mask = draw(masks(shape))
    rng = np.random.default_rng(len(shape) * 1000 + int(np.prod(shape)))
    values = rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return np.where(mask, values, 0.0).astype(np.float32)


class Names:
    """Fresh weight names w0, w1, ... for one drawn net."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"w{self.count - 1}"


@st.composite
def dense(draw, name: str, fan_in: int, fan_out: int) -> Dense:
    op = draw(st.sampled_from(["matmul", "gemm", "gemm_t"]))
    shape = (fan_out, fan_in) if op == "gemm_t" else (fan_in, fan_out)
    bias = op != "matmul" and draw(st.booleans())
    return Dense(name, draw(weights(shape)), op, bias)


@st.composite
def mlps(draw) -> Net:
    """1-4 Gemm/MatMul layers (some inside residual blocks), widths 1-6, optional Relu."""
    names = Names()
    features = first = draw(st.integers(1, 6))
    layers: list = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 3)) == 0:  # residual block of one or two layers
            if draw(st.booleans()):
                body = (draw(dense(names(), features, features)),)
            else:
                hidden = draw(st.integers(1, 6))
                first_layer = draw(dense(names(), features, hidden))
                body = (first_layer, Relu(), draw(dense(names(), hidden, features)))
            layers.append(Residual(body))
        else:
            out = draw(st.integers(1, 6))
            layers.append(draw(dense(names(), features, out)))
            features = out
        if draw(st.booleans()):
            layers.append(Relu())
    return Net((1, first), tuple(layers), draw(st.booleans()))


def _fit(size: int, kernel: int, dilation: int, pads: int) -> tuple[int, int]:
    """Kernel and dilation shrunk until the (padded) map holds at least one window."""
    if size + pads < (kernel - 1) * dilation + 1:
        return min(kernel, size + pads), 1
    return kernel, dilation


@st.composite
def conv(draw, name: str, shape: tuple[int, int, int], same: bool = False) -> Conv:
    """A Conv on a [C, H, W] map; ``same`` keeps the shape (stride 1, centred odd kernel)."""
    c, h, w = shape
    group = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    out = c if same else group * draw(st.integers(1, max(1, 6 // group)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if same:
        kernel = (draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3])))
        strides = (1, 1)
        half = [d * (k - 1) // 2 for k, d in zip(kernel, dil, strict=True)]
        pads = (half[0], half[1], half[0], half[1])
    else:
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        kh, dh = _fit(h, kernel[0], dil[0], pads[0] + pads[2])
        kw, dw = _fit(w, kernel[1], dil[1], pads[1] + pads[3])
        kernel, dil = (kh, kw), (dh, dw)
    weight = draw(weights((out, c // group, *kernel)))
    return Conv(name, weight, strides, pads, dil, group, draw(st.booleans()))


@st.composite
def pool(draw, shape: tuple[int, int, int]) -> Pool:
    _, h, w = shape
    kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (
        draw(st.integers(0, kernel[0] - 1)),
        draw(st.integers(0, kernel[1] - 1)),
        draw(st.integers(0, kernel[0] - 1)),
        draw(st.integers(0, kernel[1] - 1)),
    )
    return Pool(kernel, strides, pads, draw(st.sampled_from(["max", "avg"])))


def _shape_after(layers: list, shape: tuple[int, ...]) -> tuple[int, ...]:
    """[C, H, W] (or [F]) after ``layers``, read off the reference's forward pass."""
    return tuple(forward(Net((1, *shape), tuple(layers))).shape[1:])


@st.composite
def cnns(draw) -> Net:
    """A conv first, then up to 3 of conv / pool / relu / residual conv, then maybe a dense head."""
    names = Names()
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    first = shape
    layers: list = [draw(conv(names(), shape))]
    shape = _shape_after(layers[-1:], shape)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "relu", "residual"]))
        if kind == "conv":
            layers.append(draw(conv(names(), shape)))
        elif kind == "pool":
            layers.append(draw(pool(shape)))
        elif kind == "relu":
            layers.append(Relu())
        else:
            body = [draw(conv(names(), shape, same=True))]
            if draw(st.booleans()):
                body += [Relu(), draw(conv(names(), shape, same=True))]
            layers.append(Residual(tuple(body)))
        shape = _shape_after(layers[-1:], shape)
    head = draw(st.sampled_from(["none", "flatten", "global"]))
    if head != "none":
        if head == "global" or int(np.prod(shape)) > 48:
            layers.append(GlobalPool())
            shape = (shape[0], 1, 1)
        layers.append(Flatten())
        layers.append(draw(dense(names(), int(np.prod(shape)), draw(st.integers(1, 4)))))
    return Net((1, *first), tuple(layers), draw(st.booleans()))


# --- properties -------------------------------------------------------------------------------


def _by_name(report) -> dict:
    return {layer.name: layer for layer in report.layers}


def _check_common(report, ref) -> None:
    """Names and counts, whatever the level; active weights are a subset of the nonzero ones."""
    assert [layer.name for layer in report.layers] == list(ref)
    assert report.fallback_ops == ()
    for layer in report.layers:
        want = ref[layer.name]
        assert (layer.params, layer.zeros) == (want.params, want.zeros), layer.name
        assert 0 <= layer.active <= layer.params - layer.zeros, layer.name


def _check_exact(report, ref) -> None:
    for layer in report.layers:
        want = ref[layer.name]
        got = (layer.active, layer.dead_inputs, layer.dead_outputs)
        assert got == (want.active, want.dead_inputs, want.dead_outputs), layer.name


@settings(max_examples=400, deadline=None, suppress_health_check=QUIET)
@given(mlps())
def test_mlp_channel_and_exact_equal_reference(net: Net) -> None:
    model, ref = to_onnx(net), reference_activity(net)
    for level in ("exact", "channel"):
        report = analyze(model, level=level)
        assert report.level == level
        _check_common(report, ref)
        _check_exact(report, ref)


@settings(max_examples=1000, deadline=None, suppress_health_check=QUIET)
@given(cnns())
def test_cnn_exact_equals_reference_and_channel_under_reports(net: Net) -> None:
    model, ref = to_onnx(net), reference_activity(net)
    exact = analyze(model, level="exact")
    channel = analyze(model, level="channel")
    _check_common(exact, ref)
    _check_common(channel, ref)
    _check_exact(exact, ref)
    for name, c in _by_name(channel).items():
        e = _by_name(exact)[name]
        assert c.active >= e.active, name
        assert c.dead_inputs <= e.dead_inputs, name
        assert c.dead_outputs <= e.dead_outputs, name
    assert channel.effective_sparsity <= exact.effective_sparsity + 1e-12


@settings(max_examples=300, deadline=None, suppress_health_check=QUIET)
@given(st.one_of(mlps(), cnns()))
def test_effective_sparsity_is_at_least_direct(net: Net) -> None:
    model = to_onnx(net)
    for level in ("exact", "channel"):
        report = analyze(model, level=level)
        for layer in report.layers:
            assert layer.effective_sparsity >= layer.direct_sparsity, layer.name
        assert report.effective_sparsity >= report.direct_sparsity


def test_effective_sparsity_is_not_rounded_below_direct() -> None:
    # x[1,1] @ W[1,5], W = [0, 1, 1, 1, 1]: 1 zero, 4 active. Direct = 1/5 = 0.2 and effective
    # must be 0.2 too, but 1 - 4/5 rounds to 0.19999999999999996 < 0.2 in float64.
    w = np.array([[0, 1, 1, 1, 1]], np.float32)
    report = analyze(to_onnx(Net((1, 1), (Dense("w0", w),))), level="exact")
    (layer,) = report.layers
    assert (layer.zeros, layer.active) == (1, 4)
    assert layer.effective_sparsity >= layer.direct_sparsity
    assert report.effective_sparsity >= report.direct_sparsity


# --- the reference checks itself ----------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=QUIET)
@given(st.one_of(mlps(), cnns()))
def test_reference_forward_matches_onnxruntime(net: Net) -> None:
    """The builder's linearized ONNX model and the reference compute the same function."""
    ort = pytest.importorskip("onnxruntime")
    model = to_onnx(net, linearized=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((1, *net.input_shape[1:]), np.float32)
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, forward(net), rtol=1e-4, atol=1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=QUIET)
@given(st.one_of(mlps(), cnns()), st.integers(0, 2**16))
def test_reference_gradient_is_the_exact_difference(net: Net, seed: int) -> None:
    """sum(output) is affine in any single weight, so its gradient is f(w + e) - f(w)."""
    base = linear_weights(net)
    grads = gradients(net, base)
    total = forward(net, base).sum()
    rng = np.random.default_rng(seed)
    for name, w in base.items():
        for flat in rng.choice(w.size, size=min(w.size, 4), replace=False):
            index = np.unravel_index(flat, w.shape)
            bumped = dict(base)
            bumped[name] = w.copy()
            bumped[name][index] += 1.0
            diff = forward(net, bumped).sum() - total
            assert diff == pytest.approx(grads[name][index], rel=1e-9, abs=1e-9 * max(1.0, total))


def test_reference_tap_that_only_sees_padding_is_inactive() -> None:
    # 3x3 kernel, pads 1, on a 1x1 map: only the centre tap ever meets the input pixel.
    net = Net((1, 1, 1, 1), (Conv("w0", np.ones((1, 1, 3, 3), np.float32), pads=(1, 1, 1, 1)),))
    assert reference_activity(net)["w0"].active == 1


def test_reference_residual_keeps_a_cut_path() -> None:
    # x -> [w0: 2x2 dense] -> h; h + [w1: zero 2x2](h) -> y. w1 is all zero, yet w0 stays active.
    w0, w1 = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
    net = Net((1, 2), (Dense("w0", w0), Residual((Dense("w1", w1),))))
    ref = reference_activity(net)
    assert (ref["w0"].active, ref["w1"].active) == (4, 0)
