"""The dependency groups in a user's units: attention heads, neurons, channels, hidden units.

Structured pruning removes dependency groups (``groups``); a user counts heads and neurons, and
knows layers by their modules. A *structured layer* is the groups sharing the same filters
(``prune.layer_groups``: one attention block's heads, one FFN's neurons). Its groups are heads
when a Reshape splits their units into heads (the ``ops.heads`` rules tie each head of the
Reshape's output to its channels of the input), or when they are the output channels of ONNX
Runtime's fused attention ops (``ops.attention``): a group then holds as many query heads as the
largest such split gives it (one, or ``n_rep`` with the fused ``GroupQueryAttention``, where a
K/V head goes with its query heads). Grouped-query attention written out in plain ops makes a
K/V head a group of its own that its query heads live within (``structured.nests``): the K and
V projections are a layer of *K/V heads*, the Q projection one of heads, each counted once.
Otherwise the op of the filters names them: a Conv's
channels, an LSTM/GRU/RNN's hidden units, anything else's neurons.

Names come from the exporter (``graph.build.layer_label``: the module in node metadata, else
the node's name); a structured layer is named by the module its layers share
(``model.layers.0.self_attn`` for the Q, K, V and output projections).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph.build import layer_label, stacked_layers
from onnxprune.structured.groups import Groups, Slice
from onnxprune.structured.norms import NormLayer
from onnxprune.weights import attr

HEAD = "head"
KV_HEAD = "K/V head"
KINDS = (HEAD, KV_HEAD, "neuron", "channel", "hidden unit")
"""What a unit of a structured layer is, by the singular noun reports use."""

_KIND_OF_OP = {
    "Conv": "channel",
    "ConvTranspose": "channel",
    "LSTM": "hidden unit",
    "GRU": "hidden unit",
    "RNN": "hidden unit",
}


def plural_kind(kind: str) -> str:
    """``head`` -> ``heads``, ``hidden unit`` -> ``hidden units``, ``K/V head`` -> ``K/V heads``."""
    return f"{kind}s"


@dataclass(frozen=True)
class UnitLayer:
    """One structured layer: dependency groups sharing the same filters, in a user's units.

    Attributes:
        module: a readable name, the module its layers share (``model.layers.0.self_attn``).
        kind: one of ``KINDS``.
        groups: its dependency groups, in the order of the first filter's units (head 0 first).
        units: per group, how many units of ``kind`` it is (heads: query heads; else 1).
        filters: the weights whose output units these are, in graph order.
        readers: the weights of the layers reading them (an attention block's output
            projection), in graph order.
    """

    module: str
    kind: str
    groups: np.ndarray
    units: np.ndarray
    filters: tuple[str, ...]
    readers: tuple[str, ...]

    @property
    def heads(self) -> bool:
        """Its units are attention heads (query heads, or the K/V heads they share)."""
        return self.kind in (HEAD, KV_HEAD)

    @property
    def total(self) -> int:
        """Units of ``kind`` in the layer."""
        return int(self.units.sum())


@dataclass(frozen=True)
class ModelUnits:
    """The structured layers of a model and readable names of the weights they hold.

    Attributes:
        groups: the dependency groups they are made of.
        layers: one per structured layer, in the order of their first filter.
        labels: a readable name per filter and reader weight (``graph.build.layer_label``).
        counts: per filter weight, how many units of its layer's kind each of its groups is
            (a GQA K projection holds one head per group where the Q projection holds two).
        norms: the normalization layers (``structured.norms``), when asked for.
    """

    groups: Groups
    layers: tuple[UnitLayer, ...]
    labels: dict[str, str]
    counts: dict[str, dict[int, int]]
    norms: tuple[NormLayer, ...] = ()

    def readable(self, names: Iterable[str]) -> dict[str, str]:
        """The labels of ``names`` that say more than the name itself, in their order."""
        return {n: self.labels[n] for n in dict.fromkeys(names) if self.labels.get(n, n) != n}

    def kind_of(self, weight: str) -> str | None:
        """The kind of the units whose filter ``weight`` is (None: not a filter)."""
        return next((u.kind for u in self.layers if weight in u.filters), None)

    def kept(self, weight: str, drop: np.ndarray) -> tuple[int, int]:
        """(kept, total) units of filter ``weight`` when the groups ``drop`` go."""
        counts = self.counts[weight]
        total = sum(counts.values())
        return total - sum(n for g, n in counts.items() if drop[g]), total

    def totals(self, drop: np.ndarray, fixed: np.ndarray) -> dict[str, tuple[int, int]]:
        """Per kind (in ``KINDS`` order): (kept, total) units when the groups ``drop`` go.

        Only the structured layers with a group free to go (not ``fixed``) count.
        """
        return kind_totals(self.layer_counts(drop, fixed).values())

    def layer_counts(
        self, drop: np.ndarray, fixed: np.ndarray
    ) -> dict[tuple[str, ...], LayerCount]:
        """Per structured layer with a group free to go (not ``fixed``): kind, kept and total.

        Keyed by the layer's filters; kept counts the units left when the groups ``drop`` go.
        """
        return {
            layer.filters: (layer.kind, int(layer.units[~drop[layer.groups]].sum()), layer.total)
            for layer in self.layers
            if not fixed[layer.groups].all()
        }


LayerCount = tuple[str, int, int]
"""A structured layer's kind of unit, the units kept and its total."""


def kind_totals(counts: Iterable[LayerCount]) -> dict[str, tuple[int, int]]:
    """Per kind (in ``KINDS`` order): (kept, total) units over the layers ``counts``."""
    sums: dict[str, list[int]] = {}
    for kind, kept, total in counts:
        entry = sums.setdefault(kind, [0, 0])
        entry[0] += kept
        entry[1] += total
    return {kind: (sums[kind][0], sums[kind][1]) for kind in KINDS if kind in sums}


def model_units(groups: Groups, graph: onnx.GraphProto) -> ModelUnits:
    """The structured layers of ``graph`` (its dependency groups ``groups``), named and counted."""
    producers = {out: node for node in graph.node for out in node.output}
    stacked = stacked_layers(graph)
    labels = {s.name: layer_label(producers[s.tensor], s.name, stacked) for s in groups.filters}
    labels.update({c.weight: layer_label(c.node, c.weight, stacked) for c in groups.consumers})
    heads, width = _heads(groups, graph)
    parents = {int(g) for nest in groups.nests for g in nest.parents}  # K/V heads
    members_of = _by_filters(groups)
    counts = {s.name: _counts(groups, s, heads, width) for s in groups.filters}
    reading = _readers(groups, members_of.values())
    layers = []
    for (key, members), readers in zip(members_of.items(), reading, strict=True):
        ids = np.array(members)
        slices = [s for s in groups.filters if s.name in key]
        kind = HEAD if any(g in heads for g in members) else _kind(slices, producers)
        if kind == HEAD and parents.issuperset(members):
            kind = KV_HEAD
        names = [labels[name] for name in key]
        if kind == HEAD:
            names += [labels[name] for name in readers]
        units = np.array([heads.get(g, 1) for g in members])
        layers.append(UnitLayer(common_module(names), kind, ids, units, key, readers))
    return ModelUnits(groups, tuple(layers), labels, counts)


def _readers(groups: Groups, layers: Iterable[list[int]]) -> list[tuple[str, ...]]:
    """Per structured layer (its groups): the consumer weights reading any of its groups.

    In consumer order, each once. The layers partition the filters' groups, so each consumer's
    groups are looked up once (not every layer against every consumer: quadratic in depth).
    """
    layer_of = np.full(groups.count, -1, np.int64)
    reading: list[dict[str, None]] = []
    for index, members in enumerate(layers):
        layer_of[members] = index
        reading.append({})
    for c in groups.consumers:
        for index in np.unique(layer_of[groups.inputs(c)]).tolist():
            if index >= 0:
                reading[index][c.weight] = None
    return [tuple(found) for found in reading]


def _by_filters(groups: Groups) -> dict[tuple[str, ...], list[int]]:
    """The groups of the filters, keyed by the names of the filters holding them.

    A key lists the names in filter order; the keys, and each key's groups, come in the order of
    the groups' first units along the filters (each layer's groups in its first filter's order).
    Groups held by the same filters are found by refining a partition filter by filter (NumPy,
    not a Python step per unit); their key is then read once per class.
    """
    held = [np.unique(groups.of(s.tensor)) for s in groups.filters]
    if not held:
        return {}
    classes = np.zeros(groups.count, np.int64)  # equal: held by the same filters so far
    top = 1
    for found in held:
        _, inverse = np.unique(classes[found], return_inverse=True)
        classes[found] = top + inverse
        top += int(inverse.max(initial=-1)) + 1
    units = np.concatenate([groups.of(s.tensor) for s in groups.filters])
    seen, first = np.unique(units, return_index=True)
    ordered = seen[np.argsort(first, kind="stable")]  # groups by their first unit
    sets = [set(found.tolist()) for found in held]
    of_class = classes[ordered]
    starts = np.unique(of_class, return_index=True)[1]
    key_index = np.zeros(top, np.int64)
    keys: dict[tuple[str, ...], int] = {}
    for start in np.sort(starts).tolist():
        g = int(ordered[start])
        names = (s.name for s, found in zip(groups.filters, sets, strict=True) if g in found)
        key_index[of_class[start]] = keys.setdefault(tuple(dict.fromkeys(names)), len(keys))
    per_unit = key_index[of_class]
    return {key: ordered[per_unit == i].tolist() for key, i in keys.items()}


def _heads(groups: Groups, graph: onnx.GraphProto) -> tuple[dict[int, int], dict[int, int]]:
    """Per group holding heads: its (query) heads and the channels of its narrowest head."""
    heads: dict[int, int] = {}
    width: dict[int, int] = {}
    for node in graph.node:
        found = _head_split(groups, node)
        if found is None:
            continue
        labels, d = found
        for g, n in zip(*np.unique(labels, return_counts=True), strict=True):
            heads[int(g)] = max(heads.get(int(g), 0), int(n) // d)
            width[int(g)] = min(width.get(int(g), d), d)
    return heads, width


FUSED_ATTENTION = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention"})
"""ONNX Runtime's fused attention ops (``com.microsoft``): their output holds ``num_heads``
query heads' channels side by side (``ops.attention``)."""


def _head_split(groups: Groups, node: onnx.NodeProto) -> tuple[np.ndarray, int] | None:
    """The groups of the channels ``node`` splits into heads, and the channels of a head.

    A head split is a Reshape whose output units each tie to several units of its input, each
    input unit to one output unit, with an axis added for the head size
    (``ops.heads.split_heads``): every output unit is a head of ``input units // output units``
    channels. A fused attention op's output holds
    ``num_heads`` heads' channels. None for any other node.
    """
    if node.domain == "com.microsoft" and node.op_type in FUSED_ATTENTION and node.output:
        ys, n = groups.spaces.get(node.output[0]), attr(node, "num_heads", 0)
        if ys is None or ys.inner or n < 1 or ys.size % n:
            return None
        return groups.of(ys.tensor), ys.size // n
    if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or not node.output:
        return None
    xs, ys = groups.spaces.get(node.input[0]), groups.spaces.get(node.output[0])
    if xs is None or ys is None or xs.inner or ys.inner or ys.size >= xs.size:
        return None
    if ys.rank <= xs.rank:  # no head-size axis: channels merged in blocks (GroupNorm's groups)
        return None
    if xs.size % ys.size:
        return None
    d = xs.size // ys.size
    out = groups.of(ys.tensor)
    if not (groups.of(xs.tensor).reshape(ys.size, d) == out[:, None]).all():
        return None
    return np.repeat(out, d), d


def _counts(
    groups: Groups, s: Slice, heads: Mapping[int, int], width: Mapping[int, int]
) -> dict[int, int]:
    """Per group of filter ``s``: how many units of its kind the group is in this layer.

    A head group holds ``channels / head width`` heads of a projection, at most its query heads
    (a fused QKV projection holds a head's Q, K and V channels: one head).
    """
    groups_of, n = np.unique(groups.of(s.tensor), return_counts=True)
    return {
        int(g): min(heads[g], max(1, int(c) // width[g])) if g in heads else int(c)
        for g, c in zip(groups_of.tolist(), n.tolist(), strict=True)
    }


def _kind(slices: Iterable[Slice], producers: Mapping[str, onnx.NodeProto]) -> str:
    """Channels of a Conv, hidden units of a recurrent layer, else neurons."""
    ops = {producers[s.tensor].op_type for s in slices}
    return next((_KIND_OF_OP[op] for op in sorted(ops) if op in _KIND_OF_OP), "neuron")


def common_module(labels: Iterable[str]) -> str:
    """The module path ``labels`` share, cut at a ``/`` or ``.`` (all of it for one label).

    Example:
        >>> common_module(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj"])
        'model.layers.0.self_attn'
        >>> common_module(["/encoder/layer.0/attention/self/query/MatMul", "/encoder/layer.0/x"])
        '/encoder/layer.0'
    """
    labels = list(dict.fromkeys(labels))
    if len(labels) == 1:
        return labels[0]
    prefix = os.path.commonprefix(labels)  # noqa: RUF071 - by character, cut below
    if not all(len(label) == len(prefix) or label[len(prefix)] in "/." for label in labels):
        cut = max(prefix.rfind("/"), prefix.rfind("."))
        prefix = prefix[: max(cut, 0)]
    return prefix.rstrip("/.") or labels[0]
