"""Dependency groups: the units (channels, neurons) of a graph that must be removed together.

Every tensor whose units can be removed gets a *space*: one slot per unit along its unit axis
(the channel axis of an ``N, C, ...`` tensor, the last axis of a features-last one). Op handlers
(``ops``) create spaces for layer outputs and tie slots of different spaces together: an
element-wise op ties its output to its inputs slot by slot (a residual Add joins both branches),
a Concat places its inputs' slots at their offsets, a Flatten ties every feature to its channel,
a depthwise Conv ties each output channel to the input channel it filters. The connected
components of those ties (``scipy.sparse.csgraph``) are the dependency groups: removing a unit
means removing every slot of its group, from every producer, consumer and per-channel parameter
on the way. Some slots live within others instead (a query head within the K/V head it reads):
those groups form a ``Nest`` (``nests``). A group that touches anything the handlers cannot slice
(a graph output, an unknown op, a shared weight) is *blocked* and never removed; the first
``Block`` met in graph order says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxprune.bodies import subgraphs
from onnxprune.graph.conv_geometry import in_bounds
from onnxprune.structured.blocked import Block
from onnxprune.structured.handlers import rule_for
from onnxprune.structured.nests import Nest, settle

Arrays = MutableMapping[str, np.ndarray]
Consts = dict[str, np.ndarray]
"""Per tensor with a space: the value each unit holds everywhere, NaN where it varies."""
Kept = Callable[[str], np.ndarray]
"""The kept-units mask of a tensor's space."""


@dataclass(frozen=True)
class Space:
    """The units of ``tensor`` along ``axis`` (of ``rank`` axes): slots ``base .. base+size``.

    With ``inner`` set, the units span two axes, ``axis`` (``size // inner`` long) and
    ``axis + 1`` (``inner`` long), in row-major order: a channel axis split into groups, as a
    channel shuffle does. Only Reshape and Transpose follow such a space.

    With ``period`` set, slots ``i`` and ``i + period`` are tied (the same unit): the axis holds
    units merged with the batch axis before them (``ops.interleaved``). A Reshape splitting it
    back reads it so, rather than as heads.
    """

    tensor: str
    axis: int
    rank: int
    base: int
    size: int
    inner: int = 0
    period: int = 0

    @property
    def slots(self) -> np.ndarray:
        """The slot ids of the units, in order."""
        return np.arange(self.base, self.base + self.size)


@dataclass(frozen=True)
class Repeat:
    """An ``Expand`` output holding ``count`` copies of each unit along the axis after the units'.

    Attributes:
        target: the Expand's shape input, whose entry ``index`` is ``count``.
        index: that entry.
        shape: the shape's value (the static output shape when computed at run time).
        node: the Expand, when ``target`` is not its own to rewrite (``ops._common.set_dim``).
    """

    target: str
    index: int
    shape: np.ndarray
    node: onnx.NodeProto | None


@dataclass(frozen=True)
class Slice:
    """Initializer ``name`` loses the entries of removed units of ``tensor`` along ``axis``.

    With ``tile`` > 1 the axis holds that many consecutive blocks, each one entry per unit (the
    gates of an LSTM's ``W`` rows, ``[i; o; f; c]``): a unit's entries go from every block.
    """

    name: str
    axis: int
    tensor: str
    tile: int = 1

    def entries(self, units: np.ndarray) -> np.ndarray:
        """A per-unit mask of ``tensor`` as a mask of the entries along ``axis``."""
        return np.tile(units, self.tile)

    def rows(self, w: np.ndarray) -> np.ndarray:
        """``w`` as [units, everything else]: each unit's entries from every block."""
        moved = np.moveaxis(w, self.axis, 0)
        blocks = moved.reshape(self.tile, moved.shape[0] // self.tile, -1)
        return np.swapaxes(blocks, 0, 1).reshape(blocks.shape[1], -1)


@dataclass(frozen=True)
class Consumer:
    """A layer reading units of ``tensor`` through the ``in_axis`` of its weight.

    Attributes:
        node: the layer.
        weight: its weight initializer.
        in_axis: the weight axis indexing the units read.
        out_axis: the weight axis indexing the layer's output units.
        tensor: the tensor read.
        bias: an initializer of one value per output unit a folded constant can be added to;
            None when the layer has none (a new one is made).
        scale: what a folded contribution is multiplied by before it joins the bias.
        foldable: a unit holding a constant gives this layer a contribution known ahead: a
            constant its bias can take, or (``window``) a fixed map over its output positions.
        window: for a padded Conv, where its kernel taps fall inside the input: there a
            constant input unit contributes a map that varies near the borders.
        groups: a grouped Conv's groups: its weight's input axis holds one group's units, and
            every group keeps the same ones (they are tied across groups).
    """

    node: onnx.NodeProto
    weight: str
    in_axis: int
    out_axis: int
    tensor: str
    bias: str | None
    scale: float
    foldable: bool
    window: Window | None = None
    groups: int = 1


@dataclass(frozen=True)
class Window:
    """Per spatial axis of a Conv: padding before, stride, dilation, input and output size."""

    begins: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    sizes_in: tuple[int, ...]
    sizes_out: tuple[int, ...]

    def taps(self, axis: int, kernel: int) -> np.ndarray:
        """[kernel, output] bool: kernel tap k of output position o reads inside the input."""
        return in_bounds(
            kernel,
            self.strides[axis],
            self.dilations[axis],
            self.begins[axis],
            self.sizes_in[axis],
            self.sizes_out[axis],
        )

    def spread(self, kernel: np.ndarray) -> np.ndarray:
        """[units, *output] map a constant input of 1 makes through ``kernel`` [units, *taps].

        The taps landing in the padding add nothing, so the map changes near the borders.
        """
        m = kernel.astype(np.float64)
        for axis in range(m.ndim - 1):
            taps = self.taps(axis, m.shape[1 + axis])
            m = np.moveaxis(np.tensordot(m, taps, axes=([1 + axis], [0])), -1, 1 + axis)
        return m


@dataclass
class Folded:
    """What constant input units, folded away, add to one layer's output units.

    Attributes:
        bias: per output unit, for a layer with no bias of its own to take it.
        kernel: [units, *taps], the consumer's kernel summed over the folded inputs weighted by
            their constants, when the layer is a padded Conv (``window``): its contribution
            varies near the borders and is added back as that kernel run over a constant 1.
        window: where that Conv's taps fall.
    """

    bias: np.ndarray
    kernel: np.ndarray | None = None
    window: Window | None = None

    def per_unit(self) -> np.ndarray:
        """The constant each output unit gains, NaN where it varies over positions."""
        if self.kernel is None:
            return self.bias
        flat = self.window.spread(self.kernel).reshape(self.bias.size, -1)
        return self.bias + np.where((flat == flat[:, :1]).all(axis=1), flat[:, 0], np.nan)


Rule = Callable[[Consts, Arrays, Mapping[str, "Folded"]], None]
"""Sets the constants of one node's output spaces from its inputs' (and pending folds)."""
Edit = Callable[[Kept, Arrays, Callable[[str], str]], None]
"""Rewrites what slicing initializers cannot (an attribute, split sizes, a shape constant)."""


@dataclass
class Groups:
    """The dependency groups of a graph.

    Attributes:
        spaces: space of each tensor whose units can be removed.
        labels: group of each slot.
        count: number of groups.
        blocked: per group, whether it must be kept.
        reasons: why, per blocked group.
        slices: initializers to slice when units go.
        filters: producer weights (one filter per unit) and depthwise kernels, for importance.
        consumers: layers reading units, whose input weights are sliced.
        edits: node rewrites applied after slicing.
        rules: constant propagation, in graph order.
        opset: the model's ai.onnx opset.
        nests: groups living within others, the same number in each (``nests``).
    """

    spaces: dict[str, Space]
    labels: np.ndarray
    count: int
    blocked: np.ndarray
    reasons: dict[int, Block] = field(default_factory=dict)
    slices: list[Slice] = field(default_factory=list)
    filters: list[Slice] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    opset: int = 17
    nests: list[Nest] = field(default_factory=list)

    def of(self, tensor: str) -> np.ndarray:
        """The group of each unit of ``tensor``."""
        return self.labels[self.spaces[tensor].slots]

    def inputs(self, c: Consumer) -> np.ndarray:
        """The group of each entry along consumer ``c``'s weight input axis."""
        labels = self.of(c.tensor)
        return labels[: labels.size // c.groups]

    def constants(self, arrays: Arrays, pending: Mapping[str, Folded]) -> Consts:
        """What each unit holds when it is the same everywhere (NaN where it varies)."""
        consts: Consts = {}
        with np.errstate(all="ignore"):
            for rule in self.rules:
                rule(consts, arrays, pending)
        return consts

    def per_group(self, tensor: str, values: np.ndarray, reduce=np.logical_or) -> np.ndarray:
        """``values`` of the units of ``tensor`` combined per group (``reduce.at``)."""
        out = np.zeros(self.count, bool if values.dtype == bool else values.dtype)
        reduce.at(out, self.of(tensor), values)
        return out


def components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """The connected components of ``n`` slots tied by the edges ``a[i] - b[i]``.

    Returns their count and each slot's component, numbered in the order of their lowest slot.

    Label propagation with pointer jumping, in numpy: scipy's ``csgraph`` would load
    ``scipy.linalg`` into every ``analyze`` (which lists heads by these groups).
    """
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # jump to the root's label
        if np.array_equal(labels, before):
            break
    roots, labels = np.unique(labels, return_inverse=True)
    return roots.size, labels


class Builder:
    """What op handlers see while the groups are built: spaces, ties, and what to slice."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        arrays: Arrays,
        shapes: Mapping[str, tuple],
        opset: int,
        shared: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.graph = graph
        self.arrays = arrays
        self.shared = dict(shared or {})
        """Tensors whose stored weight other nodes read too, maybe past a chain (``Identity``,
        ``Cast``...): their readers (``weights.weight_readers``)."""
        self.opset = opset
        self.shapes = shapes
        self.uses: Counter[str] = Counter(i for node in graph.node for i in node.input if i)
        self.fills: dict[str, float] = {}
        """Tensors whose every element is one value (``ConstantOfShape``), by name."""
        self.spaces: dict[str, Space] = {}
        self.next = 0
        self.ties: list[tuple[np.ndarray, np.ndarray]] = []
        self.nests: list[tuple[np.ndarray, np.ndarray]] = []
        """Slots ``(children, parents)``: each child slot lives in its parent slot."""
        self.repeats: dict[str, Repeat] = {}
        """Expand outputs repeating their units, by tensor (``ops.slicing``)."""
        self.blocked: list[tuple[np.ndarray, Block]] = []
        self.node: onnx.NodeProto | None = None
        """The node being handled, which ``block`` names; None while graph outputs are blocked."""
        self.slices: list[Slice] = []
        self.filters: list[Slice] = []
        self.consumers: list[Consumer] = []
        self.edits: list[Edit] = []
        self.rules: list[Rule] = []

    def const(self, name: str) -> np.ndarray | None:
        """The value of initializer ``name``, or None for anything computed."""
        return self.arrays.get(name) if name else None

    def owned(self, name: str) -> bool:
        """An initializer only one node input reads, so slicing it changes nothing else."""
        return name in self.arrays and self.uses[name] == 1 and name not in self.shared

    def space(self, tensor: str) -> Space | None:
        """The space of ``tensor``, if it has one."""
        return self.spaces.get(tensor)

    def shape(self, tensor: str) -> tuple | None:
        """The inferred shape of ``tensor`` (None dimensions unknown), or None."""
        return self.shapes.get(tensor)

    def computed(self, what: str) -> str:
        """Why ``what`` blocks: it is computed at run time (``unfixed`` says what would fix it)."""
        return f"{what} computed at run time{self.unfixed()}"

    def unfixed(self) -> str:
        """`` (symbolic input dims batch: use --dim or --input-shape)``, or ``""`` when none.

        The symbolic input dimensions that no ``--dim`` or ``--input-shape`` fixed: with them
        fixed, what is computed from the inputs' sizes (a Reshape target, a ``Shape``) folds.
        """
        unfixed = set()
        for value in self.graph.input:
            shape = self.shape(value.name)
            for k, d in enumerate(value.type.tensor_type.shape.dim):
                if d.dim_param and (shape is None or k >= len(shape) or shape[k] is None):
                    unfixed.add(d.dim_param)
        if not unfixed:
            return ""
        return f" (symbolic input dims {', '.join(sorted(unfixed))}: use --dim or --input-shape)"

    def rank(self, tensor: str) -> int | None:
        """The inferred rank of ``tensor``, or None."""
        shape = self.shapes.get(tensor)
        return None if shape is None else len(shape)

    def new(
        self, tensor: str, axis: int, rank: int, size: int, inner: int = 0, period: int = 0
    ) -> Space:
        """A fresh space of ``size`` units for ``tensor``."""
        space = Space(tensor, axis, rank, self.next, size, inner, period)
        self.next += size
        self.spaces[tensor] = space
        return space

    def alias(
        self,
        tensor: str,
        like: Space,
        axis: int | None = None,
        rank: int | None = None,
        inner: int | None = None,
    ) -> Space:
        """``tensor`` holds the very units of ``like`` (an element-wise output)."""
        space = Space(
            tensor,
            like.axis if axis is None else axis,
            like.rank if rank is None else rank,
            like.base,
            like.size,
            like.inner if inner is None else inner,
            like.period,
        )
        self.spaces[tensor] = space
        return space

    def tie(self, a: Space, a_index: np.ndarray, b: Space, b_index: np.ndarray) -> None:
        """Unit ``a_index[i]`` of ``a`` and unit ``b_index[i]`` of ``b`` go together."""
        self.ties.append((a.base + np.asarray(a_index), b.base + np.asarray(b_index)))

    def nest(self, children: Space, parents: Space, index: np.ndarray) -> None:
        """Unit ``i`` of ``children`` lives in unit ``index[i]`` of ``parents`` (``nests``)."""
        self.nests.append((children.slots, parents.base + np.asarray(index)))

    def block(
        self, space: Space | None, index: np.ndarray | None = None, why: str | None = None
    ) -> None:
        """The units (all, or ``index``) of ``space`` must stay, because of the current node.

        ``why`` says what about the node blocks them (by default: it cannot follow them).
        """
        if space is not None:
            slots = space.slots if index is None else space.base + index
            self.blocked.append((slots, self._block(why or "its units cannot be followed here")))

    def _block(self, why: str) -> Block:
        node = self.node
        if node is None:
            return Block(why)
        default = node.domain in ("", "ai.onnx")
        op = node.op_type if default else f"{node.domain}::{node.op_type}"
        name = node.name or (node.output[0] if node.output else "")
        return Block(f"{op} node {name!r}: {why}", op, name)

    def why_not_owned(self, name: str, what: str = "weight") -> str | None:
        """Why this node cannot slice or rewrite ``name`` (its ``what``), or None if it can.

        ``name`` is computed at run time, or something else reads it too (slicing it would
        change that reader): it is not an initializer ``owned`` by this node.
        """
        if name in self.shared:
            return f"{what} {name!r} shared by {', '.join(self.shared[name])}"
        if name not in self.arrays:
            return f"{what} {name!r} computed at run time"
        if self.uses[name] == 1:
            return None
        readers = [n.name or n.output[0] for n in self.graph.node for i in n.input if i == name]
        if len(readers) < self.uses[name]:
            readers.append("a subgraph")
        return f"{what} {name!r} shared by {', '.join(readers)}"

    def finish(self) -> Groups:
        """The groups: connected components of the ties, and the nests they leave."""
        if self.ties:
            a = np.concatenate([t[0] for t in self.ties])
            b = np.concatenate([t[1] for t in self.ties])
        else:
            a = b = np.zeros(0, np.int64)
        count, labels = components(self.next, a, b)
        extra, nests, pairs = settle(labels, self.nests)
        while extra is not None:  # parents sharing a child tied, or a nest undone
            a, b = np.concatenate([a, extra[0]]), np.concatenate([b, extra[1]])
            count, labels = components(self.next, a, b)
            extra, nests, pairs = settle(labels, pairs)
        blocked = np.zeros(count, bool)
        reasons: dict[int, Block] = {}
        for slots, why in self.blocked:  # the first reason met in graph order
            for group in np.unique(labels[slots]).tolist():
                reasons.setdefault(group, why)
        blocked[list(reasons)] = True
        return Groups(
            self.spaces,
            labels,
            int(count),
            blocked,
            reasons,
            self.slices,
            self.filters,
            self.consumers,
            self.edits,
            self.rules,
            self.opset,
            nests,
        )


def build_groups(
    graph: onnx.GraphProto,
    arrays: Arrays,
    shapes: Mapping[str, tuple],
    opset: int,
    shared: Mapping[str, tuple[str, ...]] | None = None,
) -> Groups:
    """The dependency groups of ``graph``; ``arrays`` its initializers, ``opset`` its ai.onnx.

    ``shared`` names tensors never to slice, with their readers (``Builder.shared``).
    """
    b = Builder(graph, arrays, shapes, opset, shared)
    hidden = subgraph_reads(graph)
    for names in hidden.values():  # a weight a subgraph reads too is shared
        b.uses.update(names)
    for index, node in enumerate(graph.node):
        b.node = node
        spaced = [b.space(name) for name in node.input if b.space(name) is not None]
        for name in hidden.get(index, ()):
            b.block(b.space(name), why="read inside its subgraph")
        rule = rule_for(node)
        known = rule is not None and (rule.layer or bool(spaced))
        why = "no structured rule for this op"
        if any(s.inner for s in spaced) and node.op_type not in ("Reshape", "Transpose"):
            known = False  # units over two axes: only a channel shuffle's ops follow them
            why = "reads channels split into groups (only Reshape and Transpose follow them)"
        if known:
            rule.fn(b, node)
            continue
        for space in spaced:  # an op we cannot follow reads these units
            b.block(space, why=why)
    b.node = None
    for output in graph.output:
        b.block(b.space(output.name), why=f"graph output {output.name!r}")
    return b.finish()


def subgraph_reads(graph: onnx.GraphProto) -> dict[int, set[str]]:
    """Names the subgraphs of each node (If, Loop, Scan) read from the outer scope, by node index.

    Keyed by index, not ``id(node)``: protobuf may hand out a new wrapper object on each access.
    """
    found: dict[int, set[str]] = {}
    for index, node in enumerate(graph.node):
        for sub in subgraphs(node):
            names = found.setdefault(index, set())
            for inner in sub.node:
                names.update(inner.input)
            for nested in subgraph_reads(sub).values():
                names.update(nested)
    return found
