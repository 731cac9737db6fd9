"""Brute-force float64 reference for effective sparsity (Vysogorets & Kempe, arXiv 2107.02306).

Independent of ``onnxprune``: a small net is described once as a list of layers, and the same
description is turned into an ONNX model (``to_onnx``) and into the paper's reference computation
(``reference_activity``): a linearized copy of the net (no activations, max-pool as average-pool,
biases zero), kernels ``|w|`` with nonzero weights rescaled into [0.5, 1.5], an all-ones input, and
an explicit backward pass of ``sum(output)``. A weight is active iff ``grad * |w| != 0``.

Every value in the linearized net is a sum of products of positive numbers, so nothing cancels:
an entry of a gradient is zero exactly when no input-to-output path runs through it.
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
    """A 2-D convolution: ``weight`` [O, C / group, kh, kw], ``pads`` (top, left, bottom, right)."""

    name: str
    weight: np.ndarray = field(repr=False)
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1
    bias: bool = False


@dataclass(frozen=True)
class Pool:
    """MaxPool (``kind="max"``) or AveragePool over ``kernel``; the reference averages both."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    kind: str = "max"


@dataclass(frozen=True)
class GlobalPool:
    """GlobalAveragePool: [N, C, H, W] -> [N, C, 1, 1]."""


@dataclass(frozen=True)
class Relu:
    """An activation: the identity in the linearized net (its inputs are all positive)."""


@dataclass(frozen=True)
class Flatten:
    """Flatten with axis=1: [N, C, H, W] -> [N, C * H * W]."""


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


def prunable(layers: Sequence) -> Iterator[Dense | Conv]:
    """The Dense and Conv layers of ``layers``, in graph order (residual bodies included)."""
    for layer in layers:
        if isinstance(layer, (Dense, Conv)):
            yield layer
        elif isinstance(layer, Residual):
            yield from prunable(layer.body)


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


def _conv_geometry(x_shape, kernel, strides, pads, dilations):
    _, _, h, w = x_shape
    sizes = []
    for n, k, s, d, pb, pe in zip(
        (h, w), kernel, strides, dilations, pads[:2], pads[2:], strict=True
    ):
        sizes.append((n + pb + pe - ((k - 1) * d + 1)) // s + 1)
    return tuple(sizes)


def _pad(x: np.ndarray, pads) -> np.ndarray:
    top, left, bottom, right = pads
    out = np.zeros((*x.shape[:2], x.shape[2] + top + bottom, x.shape[3] + left + right))
    out[:, :, top : top + x.shape[2], left : left + x.shape[3]] = x
    return out


def _tap_slices(kernel, strides, dilations, out_hw) -> Iterator[tuple[int, int, slice, slice]]:
    """For each tap (i, j): the rows and columns of the padded input it reads."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    for i, j in itertools.product(range(kh), range(kw)):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
        yield i, j, rows, cols


def _conv(layer: Conv, x: np.ndarray, w: np.ndarray, grads: dict) -> Step:
    """Float64 convolution by explicit loops over groups and taps, with its backward pass."""
    o_all, cg, kh, kw = w.shape
    g = layer.group
    og = o_all // g
    oh, ow = _conv_geometry(x.shape, (kh, kw), layer.strides, layer.pads, layer.dilations)
    xp = _pad(x, layer.pads)
    y = np.zeros((x.shape[0], o_all, oh, ow))
    geometry = list(_tap_slices((kh, kw), layer.strides, layer.dilations, (oh, ow)))
    for group in range(g):
        outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
        for i, j, rows, cols in geometry:
            y[:, outs] += np.einsum("oc,nchw->nohw", w[outs, :, i, j], xp[:, ins, rows, cols])

    def back(gy: np.ndarray) -> np.ndarray:
        gxp = np.zeros_like(xp)
        gw = np.zeros_like(w)
        for group in range(g):
            outs, ins = slice(group * og, (group + 1) * og), slice(group * cg, (group + 1) * cg)
            for i, j, rows, cols in geometry:
                patch = xp[:, ins, rows, cols]
                gxp[:, ins, rows, cols] += np.einsum("oc,nohw->nchw", w[outs, :, i, j], gy[:, outs])
                gw[outs, :, i, j] += np.einsum("nohw,nchw->oc", gy[:, outs], patch)
        grads[layer.name] = grads.get(layer.name, 0) + gw
        top, left = layer.pads[:2]
        return gxp[:, :, top : top + x.shape[2], left : left + x.shape[3]]

    return y, back


def _pool(layer: Pool, x: np.ndarray) -> Step:
    """Average over the window, padding included (count_include_pad=1)."""
    oh, ow = _conv_geometry(x.shape, layer.kernel, layer.strides, layer.pads, (1, 1))
    xp = _pad(x, layer.pads)
    scale = 1.0 / (layer.kernel[0] * layer.kernel[1])
    geometry = list(_tap_slices(layer.kernel, layer.strides, (1, 1), (oh, ow)))
    y = np.zeros((*x.shape[:2], oh, ow))
    for _, _, rows, cols in geometry:
        y += scale * xp[:, :, rows, cols]

    def back(gy: np.ndarray) -> np.ndarray:
        gxp = np.zeros_like(xp)
        for _, _, rows, cols in geometry:
            gxp[:, :, rows, cols] += scale * gy
        top, left = layer.pads[:2]
        return gxp[:, :, top : top + x.shape[2], left : left + x.shape[3]]

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
    shape, hw = x.shape, x.shape[2] * x.shape[3]
    return x.mean(axis=(2, 3), keepdims=True), lambda gy: np.broadcast_to(gy / hw, shape).copy()


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


def forward(net: Net, weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Output of the linearized net on an all-ones input (batch 1)."""
    weights = linear_weights(net) if weights is None else weights
    y, _ = _forward(net.layers, np.ones((1, *net.input_shape[1:])), weights, {})
    return y


def gradients(net: Net, weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``d sum(output) / d weight`` of the linearized net, per weight, in the stored layout."""
    weights = linear_weights(net) if weights is None else weights
    grads: dict[str, np.ndarray] = {}
    y, backward = _forward(net.layers, np.ones((1, *net.input_shape[1:])), weights, grads)
    backward(np.ones_like(y))
    return grads


def reference_activity(net: Net) -> dict[str, LayerReference]:
    """Per prunable weight: params, zeros, active count and dead units, by the reference."""
    weights = linear_weights(net)
    grads = gradients(net, weights)
    out = {}
    for layer in prunable(net.layers):
        active = (grads[layer.name] * weights[layer.name]) != 0
        if isinstance(layer, Dense):
            kn = active.T if layer.op == "gemm_t" else active
            dead_in, dead_out = (~kn.any(axis=1)).sum(), (~kn.any(axis=0)).sum()
        else:
            o, cg = active.shape[:2]
            per_out = active.any(axis=(1, 2, 3))
            per_in = active.reshape(layer.group, o // layer.group, cg, -1).any(axis=(1, 3))
            dead_in, dead_out = (~per_in).sum(), (~per_out).sum()
        out[layer.name] = LayerReference(
            params=int(layer.weight.size),
            zeros=int((layer.weight == 0).sum()),
            active=int(active.sum()),
            dead_inputs=int(dead_in),
            dead_outputs=int(dead_out),
        )
    return out


# --- the same net as ONNX ----------------------------------------------------------------------


def _ints(name: str, values) -> onnx.AttributeProto:
    return helper.make_attribute(name, [int(v) for v in values])


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

    def weight(self, layer: Dense | Conv) -> str:
        value = layer.weight if self.weights is None else self.weights[layer.name]
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), layer.name))
        return layer.name

    def bias(self, name: str, size: int) -> str:
        value = np.zeros(size) if self.linearized else np.linspace(0.5, 1.0, size)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layers(self, layers: Sequence, x: str) -> str:
        for layer in layers:
            x = self.layer(layer, x)
        return x

    def layer(self, layer, x: str) -> str:
        if isinstance(layer, Dense):
            inputs = [x, self.weight(layer)]
            if layer.op == "matmul":
                return self.node("MatMul", inputs, "matmul")
            if layer.bias:
                n = layer.weight.shape[0 if layer.op == "gemm_t" else 1]
                inputs.append(self.bias(f"{layer.name}_bias", n))
            return self.node("Gemm", inputs, "gemm", transB=int(layer.op == "gemm_t"))
        if isinstance(layer, Conv):
            inputs = [x, self.weight(layer)]
            if layer.bias:
                inputs.append(self.bias(f"{layer.name}_bias", layer.weight.shape[0]))
            return self.node(
                "Conv",
                inputs,
                "conv",
                kernel_shape=list(layer.weight.shape[2:]),
                strides=list(layer.strides),
                pads=list(layer.pads),
                dilations=list(layer.dilations),
                group=layer.group,
            )
        if isinstance(layer, Pool):
            op = "AveragePool" if layer.kind == "avg" or self.linearized else "MaxPool"
            extra = {"count_include_pad": 1} if op == "AveragePool" else {}
            geometry = {
                "kernel_shape": list(layer.kernel),
                "strides": list(layer.strides),
                "pads": list(layer.pads),
            }
            return self.node(op, [x], "pool", **geometry, **extra)
        if isinstance(layer, GlobalPool):
            return self.node("GlobalAveragePool", [x], "gap")
        if isinstance(layer, Relu):
            return self.node("Relu", [x], "relu")
        if isinstance(layer, Flatten):
            return self.node("Flatten", [x], "flatten", axis=1)
        if isinstance(layer, Residual):
            return self.node("Add", [x, self.layers(layer.body, x)], "add")
        raise TypeError(f"unknown layer {layer!r}")


def to_onnx(net: Net, *, linearized: bool = False) -> onnx.ModelProto:
    """The net as an ONNX model with input ``x`` and output ``y``.

    With ``linearized`` the model is the reference's linear copy (weights ``linear_weights``, biases
    zero, max-pool as average-pool including padding), so ONNX Runtime can check ``forward``.
    """
    b = _Builder(linear_weights(net) if linearized else None, linearized)
    out = b.layers(net.layers, "x")
    b.nodes.append(helper.make_node("Identity", [out], ["y"], name="output"))
    batch = "N" if net.symbolic_batch else 1
    y_shape = forward(net).shape
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
