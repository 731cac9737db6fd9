"""``prune_streaming``: magnitude pruning of models with external data, tensor by tensor.

The graph is loaded without its large weights (``onnxprune.external_data``); every weight is read
from its external file in chunks, several times if needed, and never held whole:

1. the allocation gives each layer a number of weights to remove. Shape-only allocations
   (``uniform``, ``uniform+``, ``erk``, ``igq``) need no weights at all; ``global`` finds the
   k-th smallest magnitude over all layers by radix selection (``_select.py``), then counts each
   layer's share; ``--min-threshold`` re-balances those counts as in ``prune``;
2. each layer's cut (the magnitude below which weights go, and how many weights tied with it go
   too) is found the same way, layer by layer;
3. the model is written by ``save_model_streaming``: every pruned weight is read, masked and
   written a chunk at a time into the new external data file, its mask into the ``.npz``;
4. the written model is analyzed with a connectivity graph whose weights come from that file,
   one at a time.

The masks equal those of ``prune(..., score="magnitude")`` on the same model, ties included (they
are broken in the layout the layer consumes, as ``masks_from_counts`` does). Peak memory is the
analysis of one layer (its weight and its nonzero pattern), not the model size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from onnxprune.errors import InvalidOptionError
from onnxprune.external_data import (
    CHUNK_ELEMENTS,
    LazyModel,
    load_model_lazy,
    save_model_streaming,
    tensor_dtype,
)
from onnxprune.graph.build import ConnectivityGraph, Layer, build_graph
from onnxprune.model import DEFAULT_MAX_BYTES
from onnxprune.pruners._select import Keys, count_around, key_dtype, kth_smallest, to_keys
from onnxprune.pruners.allocations.minimum_threshold import minimum_threshold
from onnxprune.pruners.masks import MaskWriter, apply_masks, check_mask_names
from onnxprune.pruners.prune import (
    check_fraction,
    collapse_warnings,
    removal_count,
    select_layers,
    selected_sigma,
)
from onnxprune.pruners.registry import get_allocation
from onnxprune.report import SparsityReport
from onnxprune.sparsity import LEVELS, sparsity_report
from onnxprune.text import display_name

STREAMING_SCORES = ("magnitude",)
"""Scores ``prune_streaming`` computes (a function of each weight alone)."""
STREAMING_ALLOCATIONS = ("global", "uniform", "uniform_plus", "erk", "igq")
"""Allocations ``prune_streaming`` supports (CLI spellings such as ``uniform+`` accepted)."""


@dataclass(frozen=True)
class StreamedPrune:
    """What ``prune_streaming`` gives back; the model and its masks are on disk.

    Attributes:
        output: the pruned model (its tensors in ``<name>.<hex>.data`` next to it).
        masks: the ``.npz`` of boolean masks, keyed like ``PruneResult.masks``.
        report: direct and effective sparsity of the written model.
        warnings: one line each, as ``PruneResult.warnings``.
    """

    output: Path
    masks: Path
    report: SparsityReport
    warnings: tuple[str, ...] = ()


def prune_streaming(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    sparsity: float,
    score: str = "magnitude",
    allocation: str = "global",
    min_threshold: float | None = None,
    layers: str | None = None,
    exclude: str | None = None,
    prune_shared: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    level: str = "channel",
    masks_out: str | os.PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> StreamedPrune:
    """Prune a model with external data to ``sparsity`` without holding its weights in memory.

    Args:
        model: path of the ``.onnx`` file (its external data next to it).
        output: path of the pruned ``.onnx``; it gets its own external data file.
        sparsity: target direct sparsity of all prunable weights, in [0, 1).
        score: ``"magnitude"`` (the only score that is a function of each weight alone).
        allocation: ``global``, ``uniform``, ``uniform+``, ``erk`` or ``igq``.
        min_threshold: Gupta et al.'s minimum threshold, as in ``prune``.
        layers: regular expression; only weights whose name matches are pruned.
        exclude: regular expression; weights whose name matches are not pruned.
        prune_shared: prune weights several nodes read (``pruners.prune.select_layers``).
        input_shapes: fixed shapes for inputs with symbolic dimensions.
        dims: sizes of symbolic dimensions by name.
        level: reachability level of the report.
        masks_out: where the masks go (default ``<output stem>.masks.npz``).
        max_bytes: largest model accepted (file plus external data).
        chunk_elements: elements read at a time.

    Returns:
        A ``StreamedPrune``.

    Raises:
        InvalidOptionError: a bad target, a score or allocation that does not stream.
        InvalidModelError: the model cannot be read safely.
    """
    _check_method(score, allocation)
    check_fraction("sparsity", sparsity)
    if level not in LEVELS:
        raise InvalidOptionError(f"level={level!r} must be one of {sorted(LEVELS)}")
    output = Path(output)
    masks_out = Path(masks_out) if masks_out else output.with_suffix(".masks.npz")
    lazy = load_model_lazy(model, max_bytes=max_bytes)
    graph = build_graph(lazy.model, input_shapes, external=lazy.weights, dims=dims)
    first, selected, skipped = select_layers(graph, layers, exclude, prune_shared, _IN_BODIES)
    external = {t.name: t for t in lazy.lazy}
    weights = {
        name: _Weight(layer, external.get(name), lazy, graph, chunk_elements)
        for name, layer in first.items()
    }
    floats = key_dtype(weights[name].dtype for name in selected)
    everything = sum(w.size for w in weights.values())
    total = sum(weights[name].size for name in selected)
    zeros_outside = sum(weights[n].zeros() for n in first if n not in selected)
    k = removal_count(sparsity, everything, zeros_outside, total)
    sigma = selected_sigma(min_threshold, everything, total)
    chosen = [weights[name] for name in selected]
    check_mask_names(selected)  # before a chunk is read or a byte written
    cuts = _cuts(chosen, get_allocation(allocation).name, k, total, sigma, floats)
    _write(lazy, chosen, cuts, output, masks_out, floats)
    written = load_model_lazy(output, max_bytes=max_bytes)
    report = sparsity_report(
        build_graph(written.model, input_shapes, external=written.weights, dims=dims),
        level=level,
    )
    counts = {
        layer.name: (
            display_name(layer.name, layer.label),
            layer.params - layer.zeros,
            layer.params,
        )
        for layer in report.layers
    }
    collapsed = collapse_warnings(counts[name] for name in selected if name in counts)
    return StreamedPrune(output, masks_out, report, (*skipped, *collapsed))


_IN_BODIES = "a model streamed tensor by tensor keeps the weights of its bodies"


def _check_method(score: str, allocation: str) -> None:
    if score not in STREAMING_SCORES:
        raise InvalidOptionError(
            f"score {score!r} does not stream (models with external data are pruned tensor by "
            f"tensor); choose one of {', '.join(STREAMING_SCORES)}, or load the model whole"
        )
    if get_allocation(allocation).name not in STREAMING_ALLOCATIONS:
        raise InvalidOptionError(
            f"allocation {allocation!r} does not stream; choose one of "
            f"{', '.join(STREAMING_ALLOCATIONS)}, or load the model whole"
        )


@dataclass(frozen=True)
class _Weight:
    """One stored prunable tensor and where its values come from, chunk by chunk.

    ``tensor`` is its external initializer, or ``None`` when the weight is held inline (then
    the graph's constants give its value).
    """

    layer: Layer
    tensor: onnx.TensorProto | None
    lazy: LazyModel
    graph: ConnectivityGraph
    chunk: int

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def size(self) -> int:
        return math.prod(self.layer.shape)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return self.layer.contract.source.stored_shape(self.layer.shape)

    @property
    def dtype(self) -> np.dtype:
        dtype = tensor_dtype(self.tensor) if self.tensor is not None else None
        return dtype if dtype is not None else self._inline().dtype

    def values(self) -> Iterator[np.ndarray]:
        """The stored values in C order, a chunk at a time (fresh, writable arrays)."""
        if self.tensor is not None:
            yield from self.lazy.weights.chunks(self.tensor, self.chunk)
            return
        flat = self._inline().reshape(-1)
        for start in range(0, max(flat.size, 1), self.chunk):
            yield flat[start : start + self.chunk].copy()

    def keys(self, floats: np.dtype) -> Iterator[np.ndarray]:
        return (to_keys(v, floats) for v in self.values())

    def zeros(self) -> int:
        return sum(int(np.count_nonzero(v == 0)) for v in self.values())

    def _inline(self) -> np.ndarray:
        source = self.layer.contract.source
        if source.scope:  # stored inside a body: its value through the body's constants
            return source.to_stored(self.graph.weight(self.layer))
        value = self.graph.constants.value(source.name)
        if value is None:  # pragma: no cover - layers are only made for resolvable weights
            raise RuntimeError(f"weight {self.name!r} is no longer a constant")
        return value


@dataclass(frozen=True)
class _Cut:
    """Which weights of a layer go: keys below ``threshold``, and ``ties`` of those equal to it.

    ``threshold == 0`` removes the zeros only. Ties go in the order the layer consumes the
    weight: the first ``ties`` in storage order, or the stored positions in ``chosen`` when a
    transpose makes the two orders differ.
    """

    threshold: int
    ties: int = 0
    chosen: np.ndarray | None = None

    def masker(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function from each chunk of keys, in storage order, to its mask (``True`` = kept)."""
        seen, left = 0, self.ties

        def keep(chunk: np.ndarray) -> np.ndarray:
            nonlocal seen, left
            if self.threshold == 0:
                return chunk != 0
            kept = chunk > self.threshold
            tied = np.flatnonzero(chunk == self.threshold)
            if self.chosen is None:
                take = min(left, tied.size)
                left -= take
                kept[tied[take:]] = True
            else:
                kept[tied[~np.isin(tied + seen, self.chosen)]] = True
            seen += chunk.size
            return kept

        return keep


def _cuts(
    weights: list[_Weight],
    allocation: str,
    k: int,
    total: int,
    sigma: float | None,
    floats: np.dtype,
) -> list[_Cut]:
    """Each weight's cut, so that ``k`` weights go overall as ``allocation`` shares them."""
    if not total:
        return [_Cut(0) for _ in weights]
    bits = floats.itemsize * 8
    streams = [partial(w.keys, floats) for w in weights]
    shapes = {w.name: w.layer.shape for w in weights}
    if allocation != "global":
        counts = get_allocation(allocation).fn(shapes, k / total, {})
    elif k == 0:
        counts = dict.fromkeys(shapes, 0)
    else:  # one threshold over every layer; its ties go by layer order, as in ``global_``
        threshold = kth_smallest(streams, k, bits)
        around = [count_around(stream, threshold) for stream in streams]
        counts, ties_left = {}, k - sum(below for below, _ in around)
        for w, (below, equal) in zip(weights, around, strict=True):
            take = min(ties_left, equal)
            counts[w.name] = below + take
            ties_left -= take
        if sigma is None:
            return [
                _layer_cut(w, stream, counts[w.name], bits, threshold, pair)
                for w, stream, pair in zip(weights, streams, around, strict=True)
            ]
    if sigma is not None:
        counts = minimum_threshold(counts, shapes, sigma)
    return [
        _layer_cut(w, stream, counts[w.name], bits)
        for w, stream in zip(weights, streams, strict=True)
    ]


def _layer_cut(
    weight: _Weight,
    stream: Keys,
    count: int,
    bits: int,
    threshold: int | None = None,
    around: tuple[int, int] | None = None,
) -> _Cut:
    """The cut that removes ``count`` weights of one layer, lowest magnitude first."""
    if count == 0:
        return _Cut(0)
    if threshold is None:
        threshold = kth_smallest([stream], count, bits)
    if threshold == 0:
        return _Cut(0)
    below, equal = around or count_around(stream, threshold)
    ties = count - below
    source = weight.layer.contract.source
    if ties in (0, equal) or not any(op == "transpose" for op, _ in source.steps):
        return _Cut(threshold, ties)
    tied, start = [], 0
    for keys in stream():
        tied.append(np.flatnonzero(keys == threshold) + start)
        start += keys.size
    stored = np.concatenate(tied)
    consumed = source.consumed_index(stored, weight.layer.shape)
    return _Cut(threshold, ties, np.sort(stored[np.argsort(consumed, kind="stable")[:ties]]))


def _write(
    lazy: LazyModel,
    weights: list[_Weight],
    cuts: list[_Cut],
    output: Path,
    masks_out: Path,
    floats: np.dtype,
) -> None:
    """The pruned model and its masks: external weights streamed, inline ones masked whole."""
    inline: dict[str, np.ndarray] = {}
    replace = {}
    with MaskWriter(masks_out) as masks:
        for weight, cut in zip(weights, cuts, strict=True):
            if weight.tensor is not None:
                replace[weight.name] = partial(_masked, weight, cut, masks, floats)
                continue
            keep = cut.masker()
            mask = np.concatenate([keep(k) for k in weight.keys(floats)])
            inline[weight.name] = mask.reshape(weight.stored_shape)
            masks.add(weight.name, weight.stored_shape, [mask])
        sources = {w.name: w.layer.contract.source for w in weights if w.name in inline}
        graph = apply_masks(lazy.model, inline, sources) if inline else lazy.model
        save_model_streaming(graph, lazy.weights, output, replace, before_rename=masks.commit)


def _masked(
    weight: _Weight, cut: _Cut, masks: MaskWriter, floats: np.dtype
) -> Iterator[np.ndarray]:
    """The weight's pruned values, chunk by chunk; each chunk's mask is written as it goes."""
    keep = cut.masker()
    with masks.member(weight.name, weight.stored_shape) as write_mask:
        for chunk in weight.values():
            kept = keep(to_keys(chunk, floats))
            write_mask(kept)
            np.putmask(chunk, ~kept, np.zeros((), chunk.dtype))
            yield chunk
