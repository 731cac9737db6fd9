"""Reconstruction after structured pruning: re-fit the layers that lost inputs, on calibration data.

The reconstruction step of channel pruning (He, Zhang and Sun, arXiv 1707.06168): once channels
are removed, each layer reading them (a *consumer*: a Conv, through its im2col view, a Gemm or a
MatMul) is re-fit by ridge least squares so that, on the calibration inputs, its output from the
channels it keeps matches what the dense model's layer computed from all of them
(``least_squares``); its bias takes the mean contribution of the removed channels. Consumers go in
graph (topological) order, each fed by the pruned model with the earlier ones already re-fit, so a
later layer corrects what an earlier one could not. A BatchNormalization right after a consumer has
its running mean and variance re-estimated from the calibration activations of the pruned model:
from the re-fit's own sums when the consumer was re-fit (exactly the statistics of its output),
by a pass over the data otherwise.

Grouped and transposed convolutions are not re-fit (listed as ``skipped``, with the reason); a
BatchNormalization after one is still re-estimated. Everything happens on the masked model (the
pruned units zeroed, original shapes), which compaction then cuts.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune import progress
from onnxprune.graph.build import Layer, build_graph
from onnxprune.options import DEFAULT_RIDGE
from onnxprune.pruners.layer_inputs import BATCH_SIZE, calibration_batches
from onnxprune.pruners.layer_views import input_columns, weight_from_rows, weight_rows
from onnxprune.structured.groups import Consumer, Groups
from onnxprune.structured.least_squares import (
    Moments,
    output_statistics,
    refit,
    relative_error,
)
from onnxprune.structured.surgery import Names, attach_bias, write_back
from onnxprune.weights import attr


@dataclass(frozen=True)
class LayerRefit:
    """One re-fit layer and its output error against the dense model, before and after.

    The error is the relative mean squared error ``sum (y - y_dense)^2 / sum y_dense^2`` over the
    calibration data and the layer's kept output units; "before" is the layer as pruned, on the
    same inputs (the earlier layers already re-fit).

    Attributes:
        name: the layer's weight.
        op_type: ``Conv``, ``Gemm`` or ``MatMul``.
        inputs_kept: input units (channels, features) it kept.
        inputs: input units it had.
        error_before: relative MSE of the pruned layer.
        error_after: relative MSE of the re-fit layer.
    """

    name: str
    op_type: str
    inputs_kept: int
    inputs: int
    error_before: float
    error_after: float

    def to_dict(self) -> dict:
        """JSON form: every attribute."""
        return asdict(self)


@dataclass(frozen=True)
class Reconstruction:
    """What reconstruction re-fit and re-estimated.

    Attributes:
        samples: calibration samples used.
        ridge: the damping asked for (relative to the mean input variance).
        layers: the re-fit layers, in graph order.
        batchnorms: the BatchNormalization nodes whose statistics were re-estimated.
        skipped: layers that lost inputs but could not be re-fit, with the reason.
    """

    samples: int
    ridge: float
    layers: tuple[LayerRefit, ...] = ()
    batchnorms: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        """JSON form; ``skipped`` as ``{layer: reason}``."""
        return {
            "samples": self.samples,
            "ridge": self.ridge,
            "layers": [layer.to_dict() for layer in self.layers],
            "batchnorms": list(self.batchnorms),
            "skipped": dict(self.skipped),
        }


@dataclass
class _Run:
    """What every re-fit needs: the dense model, the model being re-fit, and the data."""

    dense: onnx.ModelProto
    work: onnx.ModelProto
    arrays: dict[str, np.ndarray]
    inputs: tuple[str, ...]
    calibration: Mapping[str, np.ndarray]
    batch_size: int

    def batches(self, model: onnx.ModelProto, tensor: str) -> Iterator[dict[str, np.ndarray]]:
        return calibration_batches(
            model,
            self.inputs,
            self.calibration,
            [tensor],
            batch_size=self.batch_size,
            reader="reconstruction",
        )

    def store(self, *names: str) -> None:
        """Write the arrays ``names`` (changed or new) into the working model."""
        write_back(self.work, {name: self.arrays[name] for name in names})


def reconstruct(
    dense: onnx.ModelProto,
    masked: onnx.ModelProto,
    groups: Groups,
    drop: np.ndarray,
    calibration: Mapping[str, np.ndarray],
    *,
    ridge: float = DEFAULT_RIDGE,
    batch_size: int = BATCH_SIZE,
) -> tuple[onnx.ModelProto, Reconstruction]:
    """Re-fit the consumers of the units of ``drop`` groups in ``masked`` (module docstring).

    Args:
        dense: the model before pruning (the targets).
        masked: the pruned model with the units of ``drop`` zeroed (not modified).
        groups: the dependency groups of ``masked``.
        drop: per group, whether its units were removed.
        calibration: arrays keyed by graph input name, samples along axis 0.
        ridge: damping, relative to the mean variance of a layer's inputs (>= 0).
        batch_size: samples per ONNX Runtime call.

    Returns:
        The re-fit masked model (new) and what was done.

    Raises:
        DatasetError: the calibration data does not fit the model.
    """
    work = copy.deepcopy(masked)
    graph = build_graph(work)
    layers_by_output = {layer.y: layer for layer in graph.layers}
    arrays = {t.name: numpy_helper.to_array(t) for t in work.graph.initializer}
    run = _Run(dense, work, arrays, graph.inputs, calibration, batch_size)
    fresh = Names(work)
    writers = {n.output[0]: n for n in work.graph.node if n.output}
    uses = Counter(i for n in work.graph.node for i in n.input)
    layers, norms, skipped = [], [], []
    consumers = [c for c in groups.consumers if drop[groups.inputs(c)].any()]
    for i, c in enumerate(consumers):
        progress.report("reconstruction", i, len(consumers), c.weight)
        kept_in = ~drop[groups.inputs(c)]
        out = c.node.output[0]
        layer = layers_by_output.get(out)
        why = _why_not(c, layer, uses)
        stats = None
        if why is None:
            space = groups.spaces.get(out)
            kept_out = ~drop[groups.of(out)] if space is not None else None
            done, stats = _refit(run, c, writers[out], layer, kept_in, kept_out, ridge, fresh)
            layers.append(done)
        else:
            skipped.append((c.weight, why))
        norm = _batchnorm_after(work, out, arrays)
        if norm is not None:
            _set_statistics(run, norm, *(stats or _measure(run, norm.input[0])))
            norms.append(norm.name or norm.output[0])
    progress.report("reconstruction", len(consumers), len(consumers))
    samples = len(calibration[graph.inputs[0]]) if graph.inputs else 0
    return work, Reconstruction(samples, ridge, tuple(layers), tuple(norms), tuple(skipped))


def _why_not(c: Consumer, layer: Layer | None, uses: Counter[str]) -> str | None:
    """Why consumer ``c`` cannot be re-fit, or None (``uses``: readers of each tensor)."""
    if layer is None:
        return "not a layer with a constant weight"
    if layer.contract.kind == "conv_transpose":
        return "a transposed convolution"
    if c.groups > 1 or layer.contract.group > 1:
        return "a grouped convolution"
    if c.node.op_type == "Gemm" and attr(c.node, "beta", 1.0) == 0:
        return "a Gemm with beta=0 (no bias to correct)"
    if c.bias is not None and uses[c.bias] != 1:
        return f"its bias {c.bias!r} is shared"
    return None


def _refit(
    run: _Run,
    c: Consumer,
    node: onnx.NodeProto,
    layer: Layer,
    kept_in: np.ndarray,
    kept_out: np.ndarray | None,
    ridge: float,
    fresh: Names,
) -> tuple[LayerRefit, tuple[np.ndarray, np.ndarray] | None]:
    """Re-fit one consumer in ``run.work`` and say how its output error changed.

    The layer is ``W X`` (``pruners.layer_views``: a Conv's columns tap-major, channels within),
    its Gemm ``alpha`` and ``beta`` folded into ``W`` and the bias while it is solved.

    Returns:
        The re-fit, and the mean and variance of the re-fit output per channel (axis 1) over
        the calibration data, from the same sums; None when the units are not on axis 1.
    """
    w = run.arrays[c.weight]
    alpha, beta = _scales(node)
    (matrix,) = weight_rows(layer, w.astype(np.float64) * alpha)  # [outputs, taps * inputs]
    bias = np.zeros(matrix.shape[0])
    if c.bias is not None:
        bias = run.arrays[c.bias].astype(np.float64).reshape(-1) * beta
    features = np.tile(kept_in, matrix.shape[1] // kept_in.size)
    kept_out = np.ones(matrix.shape[0], bool) if kept_out is None else kept_out
    w0, b0 = matrix[np.ix_(kept_out, features)], bias[kept_out]
    moments = Moments.zeros(w0.shape[1], w0.shape[0])
    pruned, dense = run.batches(run.work, c.tensor), run.batches(run.dense, node.output[0])
    on_axis_1 = layer.contract.kind == "conv"
    for p, d in zip(pruned, dense, strict=True):
        on_axis_1 = on_axis_1 or d[node.output[0]].ndim == 2
        ys = _output_rows(layer, d[node.output[0]])[:, kept_out]
        done = 0
        for (xs,) in input_columns(layer, p[c.tensor]):
            moments.add(xs[features].T, ys[done : done + xs.shape[1]])
            done += xs.shape[1]
    w1, b1 = refit(moments, w0, ridge)
    matrix[np.ix_(kept_out, features)] = w1
    bias[kept_out] = b1
    run.arrays[c.weight] = weight_from_rows(layer, [matrix / alpha], w.shape).astype(w.dtype)
    changed = [c.weight]
    if c.bias is not None:
        old = run.arrays[c.bias]
        run.arrays[c.bias] = (bias / beta).reshape(old.shape).astype(old.dtype)
        changed.append(c.bias)
    else:
        had = set(run.arrays)
        attach_bias(node, (bias / beta).astype(w.dtype), run.arrays, run.work.graph, fresh)
        changed += sorted(set(run.arrays) - had)
    run.store(*changed)
    done = LayerRefit(
        c.weight,
        node.op_type,
        int(kept_in.sum()),
        int(kept_in.size),
        relative_error(moments, w0, b0),
        relative_error(moments, w1, b1),
    )
    # Every output unit, removed ones too (zero rows: their bias), is W[:, kept] x + b.
    return done, output_statistics(moments, matrix[:, features], bias) if on_axis_1 else None


def _scales(node: onnx.NodeProto) -> tuple[float, float]:
    """What the layer multiplies its weight and its bias by (a Gemm's alpha and beta)."""
    if node.op_type == "Gemm":
        return float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    return 1.0, 1.0


def _output_rows(layer: Layer, y: np.ndarray) -> np.ndarray:
    """A layer's output as [samples, units], samples ordered as ``input_columns`` orders them."""
    contract = layer.contract
    axis = 1 if contract.kind == "conv" else contract.y_axis
    moved = np.moveaxis(y, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def _batchnorm_after(
    model: onnx.ModelProto, tensor: str, arrays: Mapping[str, np.ndarray]
) -> onnx.NodeProto | None:
    """The BatchNormalization reading ``tensor`` whose statistics it alone owns, if any."""
    uses = Counter(i for n in model.graph.node for i in n.input)
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or node.input[0] != tensor:
            continue
        stats = node.input[3:5]
        owned = len(stats) == 2 and all(s in arrays and uses[s] == 1 for s in stats)
        if owned and not attr(node, "training_mode", 0):
            return node
    return None


def _measure(run: _Run, tensor: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of each channel (axis 1) of ``tensor``, by a data pass."""
    total = squares = 0.0
    count = 0
    for values in run.batches(run.work, tensor):
        v = np.moveaxis(np.asarray(values[tensor], np.float64), 1, 0)
        v = v.reshape(v.shape[0], -1)
        total = total + v.sum(axis=1)
        squares = squares + np.einsum("ij,ij->i", v, v)
        count += v.shape[1]
    mean = total / count
    return mean, np.maximum(squares / count - mean**2, 0.0)


def _set_statistics(run: _Run, node: onnx.NodeProto, mean: np.ndarray, var: np.ndarray) -> None:
    """Make ``mean`` and ``var`` the running statistics of BatchNormalization ``node``.

    The population variance (divided by the count), as BatchNormalization computes it in training.
    """
    for name, value in zip(node.input[3:5], (mean, var), strict=True):
        old = run.arrays[name]
        run.arrays[name] = value.astype(old.dtype).reshape(old.shape)
    run.store(*node.input[3:5])
