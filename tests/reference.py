"""Brute-force float64 reference for effective sparsity (Vysogorets & Kempe, arXiv 2107.02306).

Independent of ``onnxprune``: a small net is described once as a list of layers, and the same
description is turned into an ONNX model (``to_onnx``) and into the paper's reference computation
(``reference_activity``): a linearized copy of the net (no activations, max-pool as average-pool,
biases zero), kernels ``|w|`` with nonzero weights rescaled into [0.5, 1.5], an all-ones input, and
an explicit backward pass of ``sum(output)``. A weight is active iff ``grad * |w| != 0``.

Every value in the linearized net is a sum of products of positive numbers, so nothing cancels:
an entry of a gradient is zero exactly when no input-to-output path runs through it.

Convolutions, transposed convolutions and pooling windows have 1, 2 or 3 spatial axes and follow
the ONNX (opset 17) geometry: explicit ``pads`` or ``auto_pad``, ``dilations``, pooling
``ceil_mode``, and ConvTranspose ``output_padding`` / ``output_shape``. Each is computed tap by
tap from index lists: tap ``k`` joins the strided position ``o`` and the position
``o * stride + k * dilation - pad_begin`` on the other side, when that lies inside the map.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 10
AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


# --- the net description ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dense:
    """A fully connected layer.

    ``op`` is ``"matmul"`` (MatMul, weight stored [K, N]), ``"gemm"`` (Gemm, [K, N]) or
    ``"gemm_t"`` (Gemm with transB=1, weight stored [N, K]). ``bias`` only applies to Gemm.
    """

    name: str
    weight: np.ndarray = field(repr=False)
    op: str = "matmul"
    bias: bool = False


@dataclass(frozen=True)
class Conv:
    """A convolution over 1-3 spatial axes: ``weight`` [O, C / group, *kernel].

    ``strides``/``dilations`` default to ones, ``pads`` (all begins, then all ends) to zeros.
    With ``auto_pad`` other than ``"NOTSET"`` the ONNX node gets no ``pads``.
    """

    name: str
    weight: np.ndarray = field(repr=False)
    strides: tuple[int, ...] | None = None
    pads: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    group: int = 1
    bias: bool = False
    auto_pad: str = "NOTSET"


@dataclass(frozen=True)
class ConvTranspose:
    """A transposed convolution: ``weight`` [C, O / group, *kernel] (ONNX layout).

    Input position ``i`` and tap ``k`` write output position ``i * stride + k * dilation - begin``.
    ``output_shape`` (spatial sizes only) overrides ``pads`` as in the ONNX spec.
    """

    name: str
    weight: np.ndarray = field(repr=False)
    strides: tuple[int, ...] | None = None
    pads: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    group: int = 1
    bias: bool = False
    auto_pad: str = "NOTSET"
    output_padding: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Pool:
    """MaxPool (``kind="max"``) or AveragePool over ``kernel``; the reference averages both.

    ``dilations`` only for MaxPool (AveragePool-11 has none); ``ceil_mode`` only with explicit pads.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    pads: tuple[int, ...] | None = None
    kind: str = "max"
    dilations: tuple[int, ...] | None = None
    ceil_mode: bool = False
    auto_pad: str = "NOTSET"


@dataclass(frozen=True)
class GlobalPool:
    """GlobalAveragePool: [N, C, *spatial] -> [N, C, 1, ...]."""


@dataclass(frozen=True)
class Relu:
    """An activation: the identity in the linearized net (its inputs are all positive)."""


@dataclass(frozen=True)
class Flatten:
    """Flatten with axis=1: [N, C, *spatial] -> [N, C * prod(spatial)]."""


@dataclass(frozen=True)
class Residual:
    """``y = x + body(x)``; ``body`` must keep the shape."""

    body: tuple


@dataclass(frozen=True)
class Net:
    """A graph input of ``input_shape`` (batch first) followed by ``layers``.

    With ``symbolic_batch`` the ONNX input's batch dimension is the symbol ``"N"``.
    """

    input_shape: tuple[int, ...]
    layers: tuple
    symbolic_batch: bool = False


Prunable = Dense | Conv | ConvTranspose


def prunable(layers: Sequence) -> Iterator[Prunable]:
    """The Dense, Conv and ConvTranspose layers of ``layers``, in graph order (residuals too)."""
    for layer in layers:
        if isinstance(layer, (Dense, Conv, ConvTranspose)):
            yield layer
        elif isinstance(layer, Residual):
            yield from prunable(layer.body)


# --- geometry (ONNX opset 17), one spatial axis at a time ---------------------------------------


def _or(values: tuple[int, ...] | None, fill: int, n: int) -> tuple[int, ...]:
    return tuple(values) if values is not None else (fill,) * n


def _attrs(layer: Conv | ConvTranspose | Pool) -> tuple[tuple[int, ...], ...]:
    """(kernel, strides, dilations, pads) with the ONNX defaults filled in."""
    kernel = tuple(layer.kernel if isinstance(layer, Pool) else layer.weight.shape[2:])
    n = len(kernel)
    return (
        kernel,
        _or(layer.strides, 1, n),
        _or(layer.dilations, 1, n),
        _or(layer.pads, 0, 2 * n),
    )


def _split(total: int, auto_pad: str) -> int:
    """Begin pad of a ``total`` auto pad: the odd one goes to the end for SAME_UPPER."""
    return total // 2 if auto_pad == "SAME_UPPER" else total - total // 2


def window_geometry(
    layer: Conv | Pool, spatial: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(output sizes, begin pads) of a convolution or pooling window on ``spatial``.

    Explicit pads: ``out = floor((n + pads - ext) / s) + 1`` (ceil with ``ceil_mode``, dropping a
    last window that would start in the end padding, as ONNX Runtime and later opsets do).
    SAME_*: ``out = ceil(n / s)``, total pad ``max(0, (out - 1) * s + ext - n)``. VALID: no pads.
    """
    kernel, strides, dilations, pads = _attrs(layer)
    auto_pad = layer.auto_pad
    ceil_mode = isinstance(layer, Pool) and layer.ceil_mode
    if ceil_mode and auto_pad != "NOTSET":
        raise ValueError("ceil_mode with auto_pad: ONNX Runtime and the spec disagree")
    n_ax = len(kernel)
    outs, begins = [], []
    for a, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=True)):
        ext = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out, room = -(-n // s), 0
            begin = _split(max(0, (out - 1) * s + ext - n), auto_pad)
        else:
            begin, end = (0, 0) if auto_pad == "VALID" else (pads[a], pads[n_ax + a])
            room = n + begin + end - ext  # how far the window can slide over the padded map
            out = (-(-room // s) if ceil_mode else room // s) + 1
            if ceil_mode and (out - 1) * s >= n + begin:
                out -= 1
        if room < 0:
            raise ValueError(f"no window fits on axis {a} of {tuple(spatial)} for {layer!r}")
        outs.append(out)
        begins.append(begin)
    return tuple(outs), tuple(begins)


def transpose_geometry(
    layer: ConvTranspose, spatial: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(output sizes, begin crops) of a ConvTranspose on input ``spatial`` (ONNX spec).

    ``full = s * (n - 1) + output_padding + (k - 1) * d + 1``. With ``output_shape`` the total
    crop is ``full - out`` (at least 0, as ONNX Runtime), split with the larger half first unless
    SAME_UPPER; SAME_*: ``out = min(n * s, full)``; VALID: no crop; explicit: ``out = full - pads``.
    """
    kernel, strides, dilations, pads = _attrs(layer)
    n_ax = len(kernel)
    extra = _or(layer.output_padding, 0, n_ax)
    outs, begins = [], []
    for a, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=True)):
        full = s * (n - 1) + extra[a] + (k - 1) * d + 1
        if layer.output_shape is not None:
            out = layer.output_shape[a]
            begin = _split(max(0, full - out), layer.auto_pad)
        elif layer.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            # The spec says out = n * s; ONNX Runtime and onnx's shape inference never grow the
            # output past ``full`` (no crop), which matters when s > output_padding + extent.
            out = min(n * s, full)
            begin = _split(full - out, layer.auto_pad)
        elif layer.auto_pad == "VALID":
            out, begin = full, 0
        else:
            begin = pads[a]
            out = full - begin - pads[n_ax + a]
        if out < 1:
            raise ValueError(f"empty output on axis {a} of {tuple(spatial)} for {layer!r}")
        outs.append(out)
        begins.append(begin)
    return tuple(outs), tuple(begins)


def _tap_pairs(
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begins: Sequence[int],
    strided: Sequence[int],
    other: Sequence[int],
) -> Iterator[tuple[tuple[int, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]]:
    """Per tap: the open-mesh indices of the strided side and of the side it meets.

    Position ``o`` (``0 <= o < strided``) meets ``p = o * s + k * d - begin`` on the other side,
    kept only if ``0 <= p < other``. For a convolution or pooling window the strided side is the
    output and ``p`` is read from the input; for a transposed convolution the strided side is the
    input and ``p`` is written in the output. Within one tap every ``o`` and every ``p`` is
    distinct, so ``a[mesh] += b`` is safe.
    """
    for tap in itertools.product(*(range(k) for k in kernel)):
        o_axes, p_axes = [], []
        for t, s, d, b, n_o, n_p in zip(
            tap, strides, dilations, begins, strided, other, strict=True
        ):
            o = np.arange(n_o)
            p = o * s + t * d - b
            keep = (p >= 0) & (p < n_p)
            o_axes.append(o[keep])
            p_axes.append(p[keep])
        yield tap, np.ix_(*o_axes), np.ix_(*p_axes)


# --- the reference computation ----------------------------------------------------------------


@dataclass(frozen=True)
class LayerReference:
    """What the reference says about one weight (counts in the stored tensor)."""

    params: int
    zeros: int
    active: int
    dead_inputs: int
    dead_outputs: int


def linear_weights(net: Net) -> dict[str, np.ndarray]:
    """``|w| * mask`` of every prunable weight, nonzero entries rescaled into (0.5, 1.5]."""
    out = {}
    for layer in prunable(net.layers):
        w = np.abs(layer.weight.astype(np.float64))
        top = w.max() if w.size and w.max() > 0 else 1.0
        out[layer.name] = np.where(w != 0, 0.5 + w / top, 0.0)
    return out


Back = Callable[[np.ndarray], np.ndarray]
Step = tuple[np.ndarray, Back]


def _at(channels: slice, mesh: tuple[np.ndarray, ...]) -> tuple:
    """Index [all batch, ``channels``, spatial ``mesh``] of an [N, C, *spatial] array."""
    return (slice(None), channels, *mesh)


def _contract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of ``a[n, i, *p] * b[n, j, *p]`` over batch and positions: an [I, J] array."""
    axes = [0, *range(2, a.ndim)]
    return np.tensordot(a, b, axes=(axes, axes))


def _conv(layer: Conv, x: np.ndarray, w: np.ndarray, grads: dict) -> Step:
    """Float64 convolution, group by group and tap by tap, with its backward pass."""
    kernel, strides, dilations, _ = _attrs(layer)
    o_all, cg = w.shape[:2]
    g = layer.group
    og = o_all // g
    out, begins = window_geometry(layer, x.shape[2:])
    pairs = list(_tap_pairs(kernel, strides, dilations, begins, out, x.shape[2:]))
    y = np.zeros((x.shape[0], o_all, *out))
    for group in range(g):
        outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
        for tap, o_mesh, p_mesh in pairs:
            y[_at(outs, o_mesh)] += np.einsum(
                "oc,nc...->no...", w[(outs, slice(None), *tap)], x[_at(ins, p_mesh)]
            )

    def back(gy: np.ndarray) -> np.ndarray:
        gx = np.zeros_like(x)
        gw = np.zeros_like(w)
        for group in range(g):
            outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
            for tap, o_mesh, p_mesh in pairs:
                w_tap, g_out = w[(outs, slice(None), *tap)], gy[_at(outs, o_mesh)]
                gx[_at(ins, p_mesh)] += np.einsum("oc,no...->nc...", w_tap, g_out)
                gw[(outs, slice(None), *tap)] += _contract(g_out, x[_at(ins, p_mesh)])
        grads[layer.name] = grads.get(layer.name, 0) + gw
        return gx

    return y, back


def _conv_transpose(layer: ConvTranspose, x: np.ndarray, w: np.ndarray, grads: dict) -> Step:
    """Float64 transposed convolution: every input position scatters into the output."""
    kernel, strides, dilations, _ = _attrs(layer)
    c_all, og = w.shape[:2]
    g = layer.group
    cg = c_all // g
    out, begins = transpose_geometry(layer, x.shape[2:])
    pairs = list(_tap_pairs(kernel, strides, dilations, begins, x.shape[2:], out))
    y = np.zeros((x.shape[0], og * g, *out))
    for group in range(g):
        outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
        for tap, i_mesh, p_mesh in pairs:
            y[_at(outs, p_mesh)] += np.einsum(
                "co,nc...->no...", w[(ins, slice(None), *tap)], x[_at(ins, i_mesh)]
            )

    def back(gy: np.ndarray) -> np.ndarray:
        gx = np.zeros_like(x)
        gw = np.zeros_like(w)
        for group in range(g):
            outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
            for tap, i_mesh, p_mesh in pairs:
                w_tap, g_out = w[(ins, slice(None), *tap)], gy[_at(outs, p_mesh)]
                gx[_at(ins, i_mesh)] += np.einsum("co,no...->nc...", w_tap, g_out)
                gw[(ins, slice(None), *tap)] += _contract(x[_at(ins, i_mesh)], g_out)
        grads[layer.name] = grads.get(layer.name, 0) + gw
        return gx

    return y, back


def _pool(layer: Pool, x: np.ndarray) -> Step:
    """Average over the window with a fixed divisor (padding counts as zeros)."""
    kernel, strides, dilations, _ = _attrs(layer)
    out, begins = window_geometry(layer, x.shape[2:])
    pairs = list(_tap_pairs(kernel, strides, dilations, begins, out, x.shape[2:]))
    scale = 1.0 / int(np.prod(kernel))
    everything = slice(None)
    y = np.zeros((*x.shape[:2], *out))
    for _, o_mesh, p_mesh in pairs:
        y[_at(everything, o_mesh)] += scale * x[_at(everything, p_mesh)]

    def back(gy: np.ndarray) -> np.ndarray:
        gx = np.zeros_like(x)
        for _, o_mesh, p_mesh in pairs:
            gx[_at(everything, p_mesh)] += scale * gy[_at(everything, o_mesh)]
        return gx

    return y, back


def _dense(layer: Dense, x: np.ndarray, w: np.ndarray, grads: dict) -> Step:
    wc = w.T if layer.op == "gemm_t" else w  # consumed [K, N]
    y = x @ wc

    def back(gy: np.ndarray) -> np.ndarray:
        gw = x.T @ gy
        grads[layer.name] = grads.get(layer.name, 0) + (gw.T if layer.op == "gemm_t" else gw)
        return gy @ wc.T

    return y, back


def _global_pool(x: np.ndarray) -> Step:
    shape, axes = x.shape, tuple(range(2, x.ndim))
    size = int(np.prod(shape[2:]))
    return x.mean(axis=axes, keepdims=True), lambda gy: np.broadcast_to(gy / size, shape).copy()


def _flatten(x: np.ndarray) -> Step:
    shape = x.shape
    return x.reshape(shape[0], -1), lambda gy: gy.reshape(shape)


def _residual(layer: Residual, x: np.ndarray, weights: dict, grads: dict) -> Step:
    y, inner = _forward(layer.body, x, weights, grads)
    if y.shape != x.shape:
        raise ValueError(f"residual body changes the shape {x.shape} -> {y.shape}")
    return x + y, lambda gy: gy + inner(gy)


def _step(layer, x: np.ndarray, weights: dict, grads: dict) -> Step:
    """One layer of the linearized net: its output and the function that pulls gradients back."""
    if isinstance(layer, Conv):
        return _conv(layer, x, weights[layer.name], grads)
    if isinstance(layer, ConvTranspose):
        return _conv_transpose(layer, x, weights[layer.name], grads)
    if isinstance(layer, Dense):
        return _dense(layer, x, weights[layer.name], grads)
    if isinstance(layer, Pool):
        return _pool(layer, x)
    if isinstance(layer, Residual):
        return _residual(layer, x, weights, grads)
    if isinstance(layer, GlobalPool):
        return _global_pool(x)
    if isinstance(layer, Flatten):
        return _flatten(x)
    if isinstance(layer, Relu):  # identity on the positive values of the linearized net
        return x, lambda gy: gy
    raise TypeError(f"unknown layer {layer!r}")


def _forward(layers: Sequence, x: np.ndarray, weights: dict, grads: dict) -> Step:
    backs: list[Back] = []
    for layer in layers:
        x, back = _step(layer, x, weights, grads)
        backs.append(back)

    def backward(gy: np.ndarray) -> np.ndarray:
        for back in reversed(backs):
            gy = back(gy)
        return gy

    return x, backward


def forward(
    net: Net, weights: dict[str, np.ndarray] | None = None, x: np.ndarray | None = None
) -> np.ndarray:
    """Output of the linearized net on ``x`` (default: an all-ones input, batch 1)."""
    weights = linear_weights(net) if weights is None else weights
    x = np.ones((1, *net.input_shape[1:])) if x is None else np.asarray(x, np.float64)
    y, _ = _forward(net.layers, x, weights, {})
    return y


def output_shape(layers: Sequence, shape: Sequence[int]) -> tuple[int, ...]:
    """Shape (batch first) after ``layers`` on an input of ``shape``."""
    weights = {layer.name: layer.weight.astype(np.float64) for layer in prunable(layers)}
    y, _ = _forward(layers, np.zeros(tuple(shape)), weights, {})
    return y.shape


def gradients(net: Net, weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``d sum(output) / d weight`` of the linearized net, per weight, in the stored layout."""
    weights = linear_weights(net) if weights is None else weights
    grads: dict[str, np.ndarray] = {}
    y, backward = _forward(net.layers, np.ones((1, *net.input_shape[1:])), weights, grads)
    backward(np.ones_like(y))
    return grads


def _dead_units(layer: Prunable, active: np.ndarray) -> tuple[int, int]:
    """(dead input units, dead output units) of an active-weight pattern in stored layout."""
    if isinstance(layer, Dense):
        kn = active.T if layer.op == "gemm_t" else active
        return int((~kn.any(axis=1)).sum()), int((~kn.any(axis=0)).sum())
    a, b = active.shape[:2]  # Conv [O, C/G]: a = outputs; ConvTranspose [C, O/G]: a = inputs
    per_a = active.reshape(a, -1).any(axis=1)
    per_b = active.reshape(layer.group, a // layer.group, b, -1).any(axis=(1, 3))
    if isinstance(layer, Conv):
        return int((~per_b).sum()), int((~per_a).sum())
    return int((~per_a).sum()), int((~per_b).sum())


def reference_activity(net: Net) -> dict[str, LayerReference]:
    """Per prunable weight: params, zeros, active count and dead units, by the reference."""
    weights = linear_weights(net)
    grads = gradients(net, weights)
    out = {}
    for layer in prunable(net.layers):
        active = (grads[layer.name] * weights[layer.name]) != 0
        dead_in, dead_out = _dead_units(layer, active)
        out[layer.name] = LayerReference(
            params=int(layer.weight.size),
            zeros=int((layer.weight == 0).sum()),
            active=int(active.sum()),
            dead_inputs=dead_in,
            dead_outputs=dead_out,
        )
    return out


# --- the same net as ONNX ----------------------------------------------------------------------


def explicit_pads(layer: Conv | Pool, spatial: Sequence[int]) -> tuple[int, ...]:
    """Explicit ``pads`` that give ``layer``'s windows (auto_pad and ceil_mode resolved)."""
    kernel, strides, dilations, _ = _attrs(layer)
    out, begins = window_geometry(layer, spatial)
    ends = [
        max(0, (o - 1) * s + (k - 1) * d + 1 - n - b)
        for o, b, k, s, d, n in zip(out, begins, kernel, strides, dilations, spatial, strict=True)
    ]
    return (*begins, *ends)


def _same_needs_no_pad(layer: Pool, spatial: Sequence[int]) -> bool:
    """A SAME_* pool whose raw total pad ``(out - 1) * s + ext - n`` is negative on some axis."""
    kernel, strides, dilations, _ = _attrs(layer)
    return layer.auto_pad.startswith("SAME") and any(
        (-(-n // s) - 1) * s + (k - 1) * d + 1 < n
        for n, k, s, d in zip(spatial, kernel, strides, dilations, strict=True)
    )


def ort_off_spec(layers: Sequence, shape: Sequence[int]) -> bool:
    """Whether ONNX Runtime 1.2x departs from the ONNX spec on some layer, given the input shape.

    SAME_* with dilations: Runtime refuses it on Conv and sizes MaxPool's output without the
    dilation. SAME_* pools whose total pad would be negative (stride above the window) are
    refused ("padding values must be non-negative"); the spec clamps the pad at 0.
    """
    shape = tuple(shape)
    for layer in layers:
        if isinstance(layer, Residual) and ort_off_spec(layer.body, shape):
            return True
        if isinstance(layer, (Conv, Pool)) and layer.auto_pad.startswith("SAME"):
            if max(_attrs(layer)[2]) > 1:
                return True
            if isinstance(layer, Pool) and _same_needs_no_pad(layer, shape[2:]):
                return True
        shape = output_shape([layer], shape)
    return False


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray] | None, linearized: bool) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.weights = weights
        self.linearized = linearized
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, layer: Prunable) -> str:
        value = layer.weight if self.weights is None else self.weights[layer.name]
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), layer.name))
        return layer.name

    def constant(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def bias(self, name: str, size: int) -> str:
        value = np.zeros(size) if self.linearized else np.linspace(0.5, 1.0, size)
        return self.constant(name, value)

    def node(self, op: str, inputs: list[str], stem: str, **attrs) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layers(self, layers: Sequence, x: str, shape: tuple[int, ...]) -> str:
        for layer in layers:
            x = self.layer(layer, x, shape)
            shape = output_shape([layer], shape)
        return x

    def layer(self, layer, x: str, shape: tuple[int, ...]) -> str:
        if isinstance(layer, Dense):
            inputs = [x, self.weight(layer)]
            if layer.op == "matmul":
                return self.node("MatMul", inputs, "matmul")
            if layer.bias:
                n = layer.weight.shape[0 if layer.op == "gemm_t" else 1]
                inputs.append(self.bias(f"{layer.name}_bias", n))
            return self.node("Gemm", inputs, "gemm", transB=int(layer.op == "gemm_t"))
        if isinstance(layer, Conv):
            return self.conv(layer, x, shape)
        if isinstance(layer, ConvTranspose):
            return self.conv_transpose(layer, x)
        if isinstance(layer, Pool):
            return self.pool(layer, x, shape)
        if isinstance(layer, GlobalPool):
            return self.node("GlobalAveragePool", [x], "gap")
        if isinstance(layer, Relu):
            return self.node("Relu", [x], "relu")
        if isinstance(layer, Flatten):
            return self.node("Flatten", [x], "flatten", axis=1)
        if isinstance(layer, Residual):
            return self.node("Add", [x, self.layers(layer.body, x, shape)], "add")
        raise TypeError(f"unknown layer {layer!r}")

    def conv(self, layer: Conv, x: str, shape: tuple[int, ...]) -> str:
        kernel, strides, dilations, pads = _attrs(layer)
        inputs = [x, self.weight(layer)]
        if layer.bias:
            inputs.append(self.bias(f"{layer.name}_bias", layer.weight.shape[0]))
        attrs: dict = {"kernel_shape": kernel, "strides": strides, "dilations": dilations}
        if self.linearized and layer.auto_pad.startswith("SAME") and max(dilations) > 1:
            # ONNX Runtime refuses SAME_* with dilations; the linear copy spells the pads out.
            attrs["pads"] = explicit_pads(layer, shape[2:])
        elif layer.auto_pad != "NOTSET":
            attrs["auto_pad"] = layer.auto_pad
        else:
            attrs["pads"] = pads
        return self.node("Conv", inputs, "conv", group=layer.group, **attrs)

    def conv_transpose(self, layer: ConvTranspose, x: str) -> str:
        kernel, strides, dilations, pads = _attrs(layer)
        inputs = [x, self.weight(layer)]
        if layer.bias:
            inputs.append(self.bias(f"{layer.name}_bias", layer.weight.shape[1] * layer.group))
        attrs: dict = {"kernel_shape": kernel, "strides": strides, "dilations": dilations}
        if layer.output_padding is not None:
            attrs["output_padding"] = layer.output_padding
        if layer.output_shape is not None:
            attrs["output_shape"] = layer.output_shape
        if layer.auto_pad != "NOTSET":
            attrs["auto_pad"] = layer.auto_pad
        elif layer.output_shape is None:
            attrs["pads"] = pads
        return self.node("ConvTranspose", inputs, "convt", group=layer.group, **attrs)

    def pool(self, layer: Pool, x: str, shape: tuple[int, ...]) -> str:
        kernel, strides, dilations, pads = _attrs(layer)
        if self.linearized and (
            layer.ceil_mode or max(dilations) > 1 or _same_needs_no_pad(layer, shape[2:])
        ):
            # A depthwise conv of 1/K with the pads spelled out: AveragePool-11 has no dilations;
            # in ceil mode ONNX Runtime shrinks the divisor of the last windows; and it refuses
            # a SAME_* pool whose total pad is negative.
            c = shape[1]
            value = np.full((c, 1, *kernel), 1.0 / int(np.prod(kernel)))
            w = self.constant(self.fresh("pool_w"), value)
            return self.node(
                "Conv",
                [x, w],
                "pool",
                kernel_shape=kernel,
                strides=strides,
                dilations=dilations,
                pads=explicit_pads(layer, shape[2:]),
                group=c,
            )
        op = "AveragePool" if layer.kind == "avg" or self.linearized else "MaxPool"
        attrs: dict = {"kernel_shape": kernel, "strides": strides}
        if op == "AveragePool":
            attrs["count_include_pad"] = 1
        elif layer.dilations is not None:
            attrs["dilations"] = dilations
        if layer.ceil_mode:
            attrs["ceil_mode"] = 1
        if layer.auto_pad != "NOTSET":
            attrs["auto_pad"] = layer.auto_pad
        else:
            attrs["pads"] = pads
        return self.node(op, [x], "pool", **attrs)


def to_onnx(net: Net, *, linearized: bool = False) -> onnx.ModelProto:
    """The net as an ONNX model with input ``x`` and output ``y``.

    With ``linearized`` the model is the reference's linear copy (weights ``linear_weights``, biases
    zero, max-pool as average-pool including padding), so ONNX Runtime can check ``forward``.
    """
    b = _Builder(linear_weights(net) if linearized else None, linearized)
    out = b.layers(net.layers, "x", (1, *net.input_shape[1:]))
    b.nodes.append(helper.make_node("Identity", [out], ["y"], name="output"))
    batch = "N" if net.symbolic_batch else 1
    y_shape = output_shape(net.layers, (1, *net.input_shape[1:]))
    graph = helper.make_graph(
        b.nodes,
        "reference_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *net.input_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, *y_shape[1:]])],
        b.inits,
    )
    return helper.make_model(
        graph, ir_version=IR_VERSION, opset_imports=[helper.make_opsetid("", OPSET)]
    )
