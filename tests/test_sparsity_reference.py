"""``analyze`` against the brute-force float64 reference of Vysogorets & Kempe on random small nets.

The exact level must equal the reference weight for weight; the channel level may only report more
active weights (it under-reports effective sparsity) and must equal it on MLPs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnxprune import analyze
from tests.helpers import examples
from tests.reference import (
    AUTO_PADS,
    Conv,
    ConvTranspose,
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
    ort_off_spec,
    output_shape,
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


def _divisors(c: int) -> list[int]:
    return [g for g in range(1, c + 1) if c % g == 0]


@st.composite
def conv(draw, name: str, shape: tuple[int, ...], same: bool = False) -> Conv:
    """A Conv on a [C, *spatial] map; ``same`` keeps the shape (stride 1).

    The shape-keeping conv is either centred (odd kernel, symmetric pads) or SAME_UPPER /
    SAME_LOWER with any kernel, even ones included (the odd pad then goes to one side).
    """
    c, spatial = shape[0], shape[1:]
    n = len(spatial)
    group = draw(st.sampled_from(_divisors(c)))
    out = c if same else group * draw(st.integers(1, max(1, 6 // group)))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(n))
    auto_pad = "NOTSET"
    if same:
        strides = (1,) * n
        if draw(st.booleans()):
            auto_pad = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
            kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
            pads = None
        else:
            kernel = tuple(draw(st.sampled_from([1, 3])) for _ in range(n))
            half = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dil, strict=True))
            pads = half + half
    else:
        auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", *AUTO_PADS[1:]]))
        kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
        strides = tuple(draw(st.integers(1, 2)) for _ in range(n))
        pads = tuple(draw(st.integers(0, 2)) for _ in range(2 * n))
        if auto_pad != "NOTSET":
            pads = None
        if auto_pad in ("NOTSET", "VALID"):
            padded = [0] * n if pads is None else [pads[a] + pads[n + a] for a in range(n)]
            fits = [_fit(*args) for args in zip(spatial, kernel, dil, padded, strict=True)]
            kernel, dil = tuple(k for k, _ in fits), tuple(d for _, d in fits)
    weight = draw(weights((out, c // group, *kernel)))
    return Conv(name, weight, strides, pads, dil, group, draw(st.booleans()), auto_pad)


@st.composite
def conv_transpose(draw, name: str, shape: tuple[int, ...]) -> ConvTranspose:
    """A ConvTranspose on a [C, *spatial] map: explicit pads, output_shape, SAME_* or VALID.

    Strides 1-3, dilations 1-2, output_padding below the stride. Left out: an output_shape
    smaller than the input, and SAME_* with output_padding, where onnx's shape inference
    disagrees with ONNX Runtime (tests/graph/test_rules_conv_geometry.py has both).
    """
    c, spatial = shape[0], shape[1:]
    n = len(spatial)
    group = draw(st.sampled_from(_divisors(c)))
    out_ch = group * draw(st.integers(1, max(1, 6 // group)))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(n))
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "same", "valid"]))
    extra = tuple(draw(st.integers(0, s - 1)) for s in strides)
    full = [
        s * (m - 1) + e + (k - 1) * d + 1
        for m, e, k, s, d in zip(spatial, extra, kernel, strides, dil, strict=True)
    ]
    pads, auto_pad, out_shape = None, "NOTSET", None
    if mode == "pads":
        begins = [min(draw(st.integers(0, 2)), f - 1) for f in full]
        ends = [min(draw(st.integers(0, 2)), f - 1 - b) for f, b in zip(full, begins, strict=True)]
        pads = (*begins, *ends)
    elif mode == "output_shape":
        auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER"]))
        # From the input size (onnx infers a wrong rank below it) to what ONNX Runtime accepts.
        out_shape = tuple(
            draw(st.integers(m, f + s - 1 - e))
            for m, f, s, e in zip(spatial, full, strides, extra, strict=True)
        )
    elif mode == "same":
        auto_pad = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
        extra = (0,) * n
    else:
        auto_pad = "VALID"
    if not any(extra) and draw(st.booleans()):
        extra = None
    weight = draw(weights((c, out_ch // group, *kernel)))
    bias = draw(st.booleans())
    return ConvTranspose(name, weight, strides, pads, dil, group, bias, auto_pad, extra, out_shape)


def _last_window_in_end_pad(size: int, k: int, s: int, d: int, begin: int, end: int) -> bool:
    """In ceil mode, whether the last window would start in the end padding.

    ONNX Runtime drops that window; onnx's opset-17 shape inference keeps it.
    """
    span = size + begin + end - ((k - 1) * d + 1)
    return (-(-span // s)) * s >= size + begin


@st.composite
def pool(draw, shape: tuple[int, ...], keep_dropped_window: bool = False) -> Pool:
    """MaxPool / AveragePool: pads below the kernel, MaxPool dilations, ceil_mode or auto_pad."""
    spatial = shape[1:]
    n = len(spatial)
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = [draw(st.integers(1, 3)) for _ in range(n)]
    strides = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dil = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(n)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", *AUTO_PADS[1:]]))
    begins = [draw(st.integers(0, k - 1)) for k in kernel]
    ends = [draw(st.integers(0, k - 1)) for k in kernel]
    if auto_pad != "NOTSET":
        begins = ends = [0] * n
    if auto_pad in ("NOTSET", "VALID"):
        for a in range(n):
            kernel[a], dil[a] = _fit(spatial[a], kernel[a], dil[a], begins[a] + ends[a])
            begins[a], ends[a] = min(begins[a], kernel[a] - 1), min(ends[a], kernel[a] - 1)
            kernel[a], dil[a] = _fit(spatial[a], kernel[a], dil[a], begins[a] + ends[a])
    ceil_mode = auto_pad == "NOTSET" and draw(st.booleans())
    if ceil_mode and not keep_dropped_window:  # trim end pads, else give up ceil_mode
        for a in range(n):
            geometry = (spatial[a], kernel[a], strides[a], dil[a], begins[a])
            while ends[a] and _last_window_in_end_pad(*geometry, ends[a]):
                ends[a] -= 1
        geometry = zip(spatial, kernel, strides, dil, begins, ends, strict=True)
        ceil_mode = not any(_last_window_in_end_pad(*args) for args in geometry)
    return Pool(
        tuple(kernel),
        strides,
        None if auto_pad != "NOTSET" else (*begins, *ends),
        kind,
        tuple(dil) if (kind == "max" and draw(st.booleans())) or max(dil) > 1 else None,
        ceil_mode,
        auto_pad,
    )


def _shape_after(layers: list, shape: tuple[int, ...]) -> tuple[int, ...]:
    """[C, *spatial] (or [F]) after ``layers``, from the reference's forward pass."""
    return output_shape(layers, (1, *shape))[1:]


@st.composite
def cnns(draw) -> Net:
    """1-D, 2-D or 3-D: a conv or transposed conv first, then up to 3 of conv / transposed conv /
    pool / relu / residual conv, then maybe a dense head."""
    names = Names()
    rank = draw(st.sampled_from([1, 1, 2, 2, 2, 3]))
    biggest = {1: 9, 2: 7, 3: 4}[rank]
    shape = (draw(st.integers(1, 4)), *(draw(st.integers(1, biggest)) for _ in range(rank)))
    first = shape
    layers: list = []
    for index in range(draw(st.integers(1, 4))):
        kinds = ["conv", "conv", "convt", "pool", "pool", "relu", "residual"]
        if max(shape[1:]) > (12 if rank < 3 else 6):  # keep maps small
            kinds.remove("convt")
        kind = draw(st.sampled_from(kinds[:3] if index == 0 else kinds))
        if kind == "conv":
            layers.append(draw(conv(names(), shape)))
        elif kind == "convt":
            layers.append(draw(conv_transpose(names(), shape)))
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
            shape = (shape[0], *(1 for _ in shape[1:]))
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


@settings(max_examples=examples(400), deadline=None, suppress_health_check=QUIET)
@given(mlps())
def test_mlp_channel_and_exact_equal_reference(net: Net) -> None:
    model, ref = to_onnx(net), reference_activity(net)
    for level in ("exact", "channel"):
        report = analyze(model, level=level)
        assert report.level == level
        _check_common(report, ref)
        _check_exact(report, ref)


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=QUIET)
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


@settings(max_examples=examples(300), deadline=None, suppress_health_check=QUIET)
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


def _session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=QUIET)
@given(st.one_of(mlps(), cnns()))
def test_reference_forward_matches_onnxruntime(net: Net) -> None:
    """The builder's linearized ONNX model and the reference compute the same function.

    The original model (MaxPool with its dilations and ceil_mode, biases) must give ONNX
    Runtime's output the shape the reference gives, except where Runtime is off the spec.
    """
    x = np.ones((1, *net.input_shape[1:]), np.float32)
    (got,) = _session(to_onnx(net, linearized=True)).run(None, {"x": x})
    np.testing.assert_allclose(got, forward(net), rtol=1e-4, atol=1e-6)
    if not ort_off_spec(net.layers, x.shape):
        (original,) = _session(to_onnx(net)).run(None, {"x": x})
        assert original.shape == got.shape


@st.composite
def lone_max_pools(draw) -> Net:
    """One MaxPool on a random 1-3-D map, last windows in the end padding included."""
    rank = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), *(draw(st.integers(1, 7 - rank)) for _ in range(rank)))
    layer = replace(draw(pool(shape, keep_dropped_window=True)), kind="max")
    assume(not ort_off_spec([layer], (1, *shape)))
    return Net((1, *shape), (layer,))


@settings(max_examples=examples(200), deadline=None, suppress_health_check=QUIET)
@given(lone_max_pools(), st.integers(0, 2**16))
def test_reference_pool_windows_match_onnxruntime_maxpool(net: Net, seed: int) -> None:
    """Each output's window, read off the linear reference one unit input at a time, holds
    exactly the input positions whose maximum ONNX Runtime's MaxPool returns (dilations,
    pads, ceil_mode and auto_pad as given; padding never wins a max)."""
    shape = (1, *net.input_shape[1:])
    size = int(np.prod(shape))
    columns = [forward(net, {}, np.eye(size)[j].reshape(shape)).reshape(-1) for j in range(size)]
    window = np.stack(columns, axis=1) > 0  # [outputs, inputs]
    x = np.random.default_rng(seed).permutation(size).astype(np.float32).reshape(shape)
    (got,) = _session(to_onnx(net)).run(None, {"x": x})
    assert got.shape == forward(net).shape
    flat = got.reshape(-1)
    for o in np.flatnonzero(window.any(axis=1)):
        assert flat[o] == x.reshape(-1)[window[o]].max(), o


@settings(max_examples=examples(60), deadline=None, suppress_health_check=QUIET)
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
