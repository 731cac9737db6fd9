"""SparseGPT: one-shot pruning that re-fits the kept weights from calibration data.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(arXiv 2301.00774; PAPERS.md section 4). Per layer, the Hessian ``H = 2 X X^T`` of the
layer-wise reconstruction error ``||W X - W' X||^2`` is accumulated in float64 from the layer's
inputs over the calibration set (read in ONNX Runtime batch by batch, ``pruners.layer_inputs``);
the blocked OBS algorithm (``pruners.obs``) then chooses the mask and updates the remaining
weights. Conv and ConvTranspose layers are seen through im2col (and its scatter), Gemm/MatMul
in either layout (``pruners.layer_views``).

Two registered parts:

- the **score** ``w^2 / U[j, j]^2`` (``U`` the upper Cholesky factor of the dampened ``H^-1``,
  from the dense model's inputs): the paper's selection criterion, which ranks weights across
  layers when the allocation compares layers (``global``);
- the **reconstruction**, run once each layer's number of weights to remove (or the N:M pattern)
  is known: layers in graph order, each fed by the model pruned so far (the inputs of a layer
  are read from the model with every earlier layer's updated weights; layers whose inputs do
  not depend on one another share one pass over the data). Its masks and weights are what the
  prune writes; nothing else of the model changes.

Weights that are not floating point are refused (quantized weights are never selected), as is
a ConvTranspose whose output shape is not static.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxprune import progress
from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.layer_inputs import calibration_batches, layers_named
from onnxprune.pruners.nm import SKIP_HINT, input_axis
from onnxprune.pruners.registry import LayerTargets, Reconstruction, ScoreContext, score

if TYPE_CHECKING:
    import onnx

    from onnxprune.graph.build import ConnectivityGraph, Layer

READER = "the sparsegpt score"

HESSIAN_BYTES = 1 << 30
"""Most bytes of Hessians held at once: layers beyond it are read in another pass."""


def reconstruct(
    weights: Mapping[str, np.ndarray], ctx: ScoreContext, targets: LayerTargets
) -> Reconstruction:
    """Prune every layer of ``weights`` to ``targets`` with SparseGPT, in graph order.

    Args:
        weights: consumed-layout weights keyed by layer name, in graph order.
        ctx: needs ``model``, ``graph``, ``calibration``; ``masks`` (``False`` = already
            pruned) are honoured: those weights stay pruned and count towards a layer's target.
        targets: the number of weights each layer loses, or the N:M pattern.

    Returns:
        Masks and updated weights (the weights' dtype) for every layer of ``weights``.

    Raises:
        InvalidOptionError: a ConvTranspose without a static output shape, a weight that is
            not floating point, a shared weight its uses see in different layouts, an N:M that
            does not divide a layer's input size (unless ``skip_indivisible``).
        DatasetError: no calibration data, or data that does not fit the model.
    """
    from onnxprune.pruners.masks import set_weights

    names = list(weights)
    _check_layers(ctx.graph, weights, targets)
    sources = {name: layers_named(ctx.graph, name)[0].contract.source for name in names}
    masks: dict[str, np.ndarray] = {}
    updated: dict[str, np.ndarray] = {}
    for stage in _stages(ctx.graph, names):
        done = {name: sources[name].to_stored(updated[name]) for name in updated}
        running = set_weights(ctx.model, done, sources) if done else ctx.model
        found = hessians(running, ctx.graph, ctx.calibration, stage)
        for name in stage:
            w = weights[name]
            pruned = ~np.asarray(ctx.masks.get(name, np.ones(w.shape, bool)), bool)
            new, keep = _prune_layer(ctx.graph, name, w, found.pop(name), pruned, targets)
            updated[name], masks[name] = new.astype(w.dtype), keep
            progress.report("sparsegpt", len(updated), len(names), name)
    return Reconstruction(masks, updated)


@score(
    "sparsegpt",
    "OBS pruning with re-fitted weights from calibration data (SparseGPT, arXiv 2301.00774)",
    calibrated=True,
    reconstruct=reconstruct,
)
def sparsegpt(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """SparseGPT's selection score ``w^2 / U[j, j]^2`` from the dense model's inputs.

    Ranks weights across layers for allocations that compare layers; the prune then runs
    :func:`reconstruct`, which chooses the masks itself (block by block, on the updated weights)
    at the number of weights the allocation gives each layer.

    Args:
        weights: consumed-layout weights keyed by layer name.
        ctx: needs ``model``, ``graph`` and ``calibration``.

    Returns:
        float64 scores keyed like ``weights``.
    """
    from onnxprune.pruners.layer_views import weight_from_rows, weight_rows
    from onnxprune.pruners.obs import inverse_factor, saliency

    _check_layers(ctx.graph, weights, LayerTargets())
    out = {}
    for part in _stages(ctx.graph, list(weights), sequential=False):
        found = hessians(ctx.model, ctx.graph, ctx.calibration, part)
        for name in part:
            w, layer = weights[name], layers_named(ctx.graph, name)[0]
            rows = weight_rows(layer, np.asarray(w, np.float64))
            hs = found.pop(name)
            scores = [saliency(r, inverse_factor(h)) for r, h in zip(rows, hs, strict=True)]
            out[name] = weight_from_rows(layer, scores, w.shape)
    return out


def hessians(
    model: onnx.ModelProto,
    graph: ConnectivityGraph,
    calibration: Mapping[str, np.ndarray] | None,
    names: Sequence[str],
) -> dict[str, list[np.ndarray]]:
    """``2 X X^T`` (float64, summed over the calibration set) per group of each named layer.

    A weight used by several layers sums the Hessians of all its uses.

    Raises:
        DatasetError: no calibration data, or data that does not fit the model.
    """
    from onnxprune.pruners.layer_views import input_columns
    from onnxprune.pruners.obs import hessian

    uses = {name: layers_named(graph, name) for name in names}
    tensors = sorted({layer.x for layers in uses.values() for layer in layers})
    sums: dict[str, list[np.ndarray]] = {}
    run = calibration_batches(model, graph.inputs, calibration, tensors, reader=READER)
    for values in run:
        for name, layers in uses.items():
            for layer in layers:
                y = graph.static_shape(layer.y)
                for chunk in input_columns(layer, values[layer.x], y and y[2:]):
                    parts = [hessian(columns) for columns in chunk]
                    old = sums.get(name, [0.0] * len(parts))
                    sums[name] = [a + b for a, b in zip(old, parts, strict=True)]
    return sums


def _prune_layer(
    graph: ConnectivityGraph,
    name: str,
    w: np.ndarray,
    h: list[np.ndarray],
    pruned: np.ndarray,
    targets: LayerTargets,
) -> tuple[np.ndarray, np.ndarray]:
    """One layer: its new consumed weights (float64) and mask, per group with ``obs``."""
    from onnxprune.pruners.layer_views import weight_from_rows, weight_rows
    from onnxprune.pruners.masks import share
    from onnxprune.pruners.obs import inverse_factor, prune_matrix

    layer = layers_named(graph, name)[0]
    rows = weight_rows(layer, np.asarray(w, np.float64))
    forced = weight_rows(layer, pruned)
    if targets.nm is not None:
        if targets.skip_indivisible and not _divides(layer, w.shape, targets.nm[1]):
            return np.asarray(w, np.float64), np.ones(w.shape, bool)
        removes = [None] * len(rows)
    else:
        count = int(targets.counts.get(name, 0)) if targets.counts else 0
        floors = np.array([int(f.sum()) for f in forced])
        sizes = np.array([r.size for r in rows])
        removes = list(floors + share(count - int(floors.sum()), sizes - floors))
        if not any(removes):
            return np.asarray(w, np.float64), np.ones(w.shape, bool)
    done = [
        prune_matrix(r, inverse_factor(hg), remove=k, nm=targets.nm, forced=f)
        for r, hg, k, f in zip(rows, h, removes, forced, strict=True)
    ]
    return (
        weight_from_rows(layer, [d[0] for d in done], w.shape),
        weight_from_rows(layer, [d[1] for d in done], w.shape),
    )


def _check_layers(
    graph: ConnectivityGraph, weights: Mapping[str, np.ndarray], targets: LayerTargets
) -> None:
    """Refuse layers SparseGPT cannot prune, each message naming the layer."""
    for name, w in weights.items():
        uses = layers_named(graph, name)
        first = uses[0]
        if first.contract.kind == "recurrent":
            raise InvalidOptionError(
                f"score sparsegpt does not prune recurrent (LSTM/GRU/RNN) weights ({name!r}); "
                "leave them out with --exclude"
            )
        transposed = [u for u in uses if u.contract.kind == "conv_transpose"]
        if any(graph.static_shape(u.y) is None for u in transposed):
            raise InvalidOptionError(
                f"score sparsegpt needs the output shape of ConvTranspose {name!r}; give "
                "--input-shape, or leave it out with --exclude"
            )
        if np.asarray(w).dtype.kind != "f":
            raise InvalidOptionError(
                f"score sparsegpt re-fits weights; {name!r} is {np.asarray(w).dtype}, not float"
            )
        if any(_view(layer) != _view(first) for layer in uses):
            raise InvalidOptionError(
                f"score sparsegpt: weight {name!r} is used in different layouts; leave it out "
                "with --exclude"
            )
        nm = targets.nm
        if nm is not None and not targets.skip_indivisible and not _divides(first, w.shape, nm[1]):
            raise InvalidOptionError(
                f"layer {name!r} has an input size that is not a multiple of M={nm[1]} for "
                f"{nm[0]}:{nm[1]}; {SKIP_HINT}"
            )


def _view(layer: Layer) -> tuple:
    """What decides how a use of a weight is seen as rows and columns."""
    c = layer.contract
    return (c.kind, layer.shape, c.w_transposed, c.group)


def _divides(layer: Layer, shape: tuple[int, ...], m: int) -> bool:
    """Whether runs of ``m`` fit the layer's input units (``pruners.nm``'s input size)."""
    return input_axis(layer.name, shape, layer.contract)[1] % m == 0


def _stages(
    graph: ConnectivityGraph, names: Sequence[str], *, sequential: bool = True
) -> list[list[str]]:
    """``names`` in order, cut into runs that are read in one pass over the calibration data.

    A run ends where its Hessians would pass ``HESSIAN_BYTES`` (one layer alone may), and,
    ``sequential``, before a layer whose input depends on a layer of the run (it must be read
    from the model with that layer pruned).
    """
    wanted = set(names)
    upstream: dict[str, frozenset[str]] = {}
    for step in graph.steps:
        deps = frozenset().union(*(upstream.get(t, frozenset()) for t in step.inputs))
        if step.layer is not None and step.layer.name in wanted:
            deps = deps | {step.layer.name}
        upstream.update(dict.fromkeys(step.outputs, deps))
    stages: list[list[str]] = []
    held = 0
    for name in names:
        uses = layers_named(graph, name)
        needs = frozenset().union(*(upstream.get(u.x, frozenset()) for u in uses))
        size = _hessian_bytes(uses[0])
        if not stages or held + size > HESSIAN_BYTES or (sequential and needs & set(stages[-1])):
            stages.append([])
            held = 0
        stages[-1].append(name)
        held += size
    return stages


def _hessian_bytes(layer: Layer) -> int:
    """Bytes of the float64 Hessians of ``layer`` (one ``cols x cols`` matrix per group)."""
    c, shape = layer.contract, layer.shape
    if c.kind == "matmul":
        return 8 * shape[0 if not c.w_transposed else 1] ** 2
    if c.kind == "conv_transpose":
        return 8 * c.group * (shape[0] // c.group * math.prod(shape[2:])) ** 2
    return 8 * c.group * (math.prod(shape[1:])) ** 2
