"""Multiply-accumulates (MACs): what one run of a model costs, dense and over nonzero weights.

Counted ops, one formula each from static shapes (a symbolic batch dimension counts as 1, so
the count is per sample unless the model fixes its batch):

- ``Conv``: ``N * Cout * prod(output spatial) * (Cin / group) * prod(kernel)``, i.e. every
  output element times the weights of one filter; strides and dilations act through the
  output's size, taps over padding are counted (the usual convention, as fvcore and thop do);
- ``ConvTranspose``: every input element times the weights it scatters, ``N * Cin *
  prod(input spatial) * (Cout / group) * prod(kernel)``;
- ``Gemm``: ``M * N * K``; ``MatMul``: every output element times ``K`` (batched, broadcast and
  1-D operands alike), whichever side holds the weight;
- ``LSTM``, ``GRU``, ``RNN``: every weight of ``W`` and ``R`` once per time step and sequence,
  ``seq_length * batch * (W.size + R.size)`` (a symbolic sequence length is unknown);
- ONNX Runtime's fused attention (``com.microsoft`` ``Attention``, ``MultiHeadAttention``,
  ``GroupQueryAttention``, keyed as ``domain::op``): the scores and the values they weigh, as
  the two MatMuls of the unfused form count them, ``batch * queries * keys * (Q + V channels)``
  (past states left out); ``Attention``'s fused projection is counted as the MatMul it is.

Other ops (activations, normalization, pooling, elementwise arithmetic, Softmax) are not
counted: they cost a few operations per element, next to the ``K`` per element of the ops above,
and runtimes fuse most of them. Biases are not counted either.

*Nonzero MACs* are the MACs that remain when multiplies by zero weights are skipped: every weight
of a layer is used the same number of times (``macs / weight size``), so a layer's nonzero MACs
are that count times its nonzero weights. A structured prune or a compaction makes the shapes
smaller, which lowers the dense count itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onnxprune.registry import Registry

if TYPE_CHECKING:
    from onnxprune.graph.build import ConnectivityGraph
    from onnxprune.model import ModelSource

Dims = tuple[int, ...]
Counter = Callable[[Sequence[Dims | None], Dims | None], int | None]

COUNTERS: Registry[Counter] = Registry("MAC counter", ())
"""The dense MAC formula of every counted op type."""


def counts(*op_types: str) -> Callable[[Counter], Counter]:
    """Register ``fn`` as the MAC formula of ``op_types``.

    A formula takes the static shapes of the node's inputs (``None`` where unknown) and of its
    first output, and returns the MACs, or ``None`` when a shape it needs is unknown.
    """

    def register(fn: Counter) -> Counter:
        for op in op_types:
            COUNTERS.add(op, fn)
        return fn

    return register


@counts("Conv")
def _conv(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    w = inputs[1] if len(inputs) > 1 else None
    return None if y is None or w is None else math.prod(y) * math.prod(w[1:])


@counts("ConvTranspose")
def _conv_transpose(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    x, w = inputs[0], inputs[1] if len(inputs) > 1 else None
    return None if x is None or w is None else math.prod(x) * math.prod(w[1:])


@counts("MatMul")
def _matmul(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    a = inputs[0]
    return None if a is None or y is None or not a else math.prod(y) * a[-1]


@counts("Gemm")
def _gemm(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    a = inputs[0]  # [M, K] or, with transA, [K, M]: K = size / M either way
    if a is None or y is None or len(y) != 2 or not y[0]:
        return None
    return y[1] * math.prod(a)


@counts("LSTM", "GRU", "RNN")
def _recurrent(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    # every step of every sequence multiplies the input by W and the hidden state by R: each
    # weight once per (time step, sequence); the gate nonlinearities are not counted
    x = inputs[0]
    w, r = (inputs[i] if len(inputs) > i else None for i in (1, 2))
    if x is None or w is None or r is None:
        return None
    return math.prod(x[:2]) * (math.prod(w) + math.prod(r))


def dense_macs(op_type: str, inputs: Sequence[Dims | None], output: Dims | None) -> int | None:
    """MACs of one node of ``op_type`` from its static shapes (0 for an op that is not counted).

    Args:
        op_type: the ONNX op type (default domain).
        inputs: static shapes of the node's inputs, ``None`` where unknown.
        output: static shape of its first output.

    Returns:
        The MACs, or ``None`` when a shape the formula needs is unknown.

    Example:
        >>> dense_macs("Conv", [(1, 3, 8, 8), (16, 3, 3, 3)], (1, 16, 8, 8))  # 16*8*8 * 3*3*3
        27648
        >>> dense_macs("Relu", [(1, 16)], (1, 16))
        0
    """
    counter = COUNTERS.get(op_type)
    return 0 if counter is None else counter(inputs, output)


def nonzero_macs(macs: int | None, size: int, nonzero: int) -> int | None:
    """The MACs left of a layer with ``size`` weights, ``nonzero`` of them nonzero.

    Every weight is used ``macs / size`` times (see the module docstring).

    Example:
        >>> nonzero_macs(27648, 16 * 3 * 3 * 3, 100)  # 64 uses of each weight
        6400
    """
    if macs is None:
        return None
    return macs // size * nonzero if size else 0


@dataclass(frozen=True, slots=True)
class NodeMacs:
    """The MACs of one counted node.

    Attributes:
        node: the node's name (``<op_type>_<index>`` when it has none).
        op_type: ``Conv``, ``ConvTranspose``, ``Gemm`` or ``MatMul``.
        weight: the stored weight it multiplies by, ``None`` for a product of two activations
            (or a weight computed at run time): its MACs are all counted as nonzero.
        macs: dense MACs, ``None`` when a shape is unknown (give ``--input-shape``).
        nonzero_macs: MACs of the multiplies by nonzero weights.
    """

    node: str
    op_type: str
    weight: str | None
    macs: int | None
    nonzero_macs: int | None

    def to_dict(self) -> dict:
        """JSON form: ``node``, ``op_type``, ``weight``, ``macs``, ``nonzero_macs``."""
        return {
            "node": self.node,
            "op_type": self.op_type,
            "weight": self.weight,
            "macs": self.macs,
            "nonzero_macs": self.nonzero_macs,
        }


@dataclass(frozen=True, slots=True)
class MacCount:
    """The MACs of every counted node of a model, in graph order, and their totals.

    A total is ``None`` when some node's shapes are unknown (a symbolic dimension other than
    the batch): ``--input-shape`` fixes them; or when an ``If``/``Loop``/``Scan`` runs layers
    (``unknown_because`` says which).
    """

    nodes: tuple[NodeMacs, ...] = ()

    @property
    def macs(self) -> int | None:
        """Dense MACs of one run."""
        return total(node.macs for node in self.nodes)

    @property
    def nonzero_macs(self) -> int | None:
        """MACs of the multiplies by nonzero weights."""
        return total(node.nonzero_macs for node in self.nodes)

    @property
    def unknown_because(self) -> str:
        """Why the totals are ``None``: layers in control flow, else a symbolic dimension."""
        if any(node.macs is None and node.op_type in CONTROL_FLOW for node in self.nodes):
            return "layers inside If/Loop/Scan bodies run 0, 1 or many times"
        return "a symbolic input dimension; give --input-shape"

    def to_dict(self) -> dict:
        """JSON form: ``macs``, ``nonzero_macs`` (the totals)."""
        return {"macs": self.macs, "nonzero_macs": self.nonzero_macs}


def short(macs: int | None) -> str:
    """MACs with an SI suffix and three significant digits: ``27648`` -> ``27.6K``; ``n/a``.

    Example:
        >>> short(4_110_000_000), short(950), short(None)
        ('4.11G', '950', 'n/a')
    """
    if macs is None:
        return "n/a"
    for factor, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(macs) >= factor:
            return f"{macs / factor:.3g}{suffix}"
    return str(macs)


def total(values: Iterable[int | None]) -> int | None:
    """The sum of ``values``, ``None`` when one of them is (unknown stays unknown)."""
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


def graph_macs(
    graph: ConnectivityGraph, nonzero: Mapping[tuple[str, int], int] | None = None
) -> MacCount:
    """The MACs of every counted step of a built graph.

    Args:
        graph: the connectivity graph (its steps carry their dense MACs).
        nonzero: nonzero weights per layer, keyed by ``Layer.key``, when the caller counted
            them already; otherwise each layer's weight is read and counted.
    """
    import numpy as np

    nonzero = nonzero or {}
    nodes = []
    for step in graph.steps:
        if step.op_type not in COUNTERS:
            if _runs_layers(graph, step.node):
                nodes.append(NodeMacs(step.node, step.op_type, None, None, None))
            continue
        layers = step.recurrent or ((step.layer,) if step.layer is not None else ())
        if not layers:
            nodes.append(NodeMacs(step.node, step.op_type, None, step.macs, step.macs))
            continue
        sizes = [math.prod(layer.shape) for layer in layers]
        for layer, size in zip(layers, sizes, strict=True):
            # the step's MACs split by weight: each weight is used equally often (W and R too)
            macs = None if step.macs is None else step.macs // sum(sizes) * size
            nnz = nonzero.get(layer.key)
            if nnz is None:
                nnz = int(np.count_nonzero(graph.weight(layer)))
            left = nonzero_macs(macs, size, nnz)
            nodes.append(NodeMacs(step.node, step.op_type, layer.name, macs, left))
    return MacCount(tuple(nodes))


def _runs_layers(graph: ConnectivityGraph, node: str) -> bool:
    """Whether ``node`` is an ``If``/``Loop``/``Scan`` with prunable layers in its bodies.

    Their MACs depend on the branch taken or the trip count, so the model's total is unknown
    (Silero VAD runs its whole network inside an ``If`` on the sample rate): a total of the
    main graph's layers alone would count none of it.
    """
    return any(
        body.scope.startswith(f"{node}/") and any(True for _ in body.all_layers)
        for body in graph.bodies
    )


CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
"""Ops whose bodies' layers make a model's MACs unknown (``_runs_layers``)."""


def count_macs(
    model: ModelSource,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    max_bytes: int | None = None,
) -> MacCount:
    """Dense and nonzero MACs of ``model``, per counted node and in total.

    Args:
        model: a path, serialized bytes or an ``onnx.ModelProto``.
        input_shapes: fixed shapes for inputs with symbolic dimensions, e.g.
            ``{"x": (1, 3, 224, 224)}``.
        max_bytes: largest model accepted (default: ``onnxprune.model``'s).

    Raises:
        InvalidModelError: the model cannot be read safely.
        InvalidOptionError: bad ``input_shapes``.

    Example:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> import numpy as np
        >>> w = numpy_helper.from_array(np.array([[1.0, 0.0], [0.0, 0.0]], np.float32), "w")
        >>> g = helper.make_graph(
        ...     [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], [w])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> count_macs(m).to_dict()  # 3 rows x 2 x 2; one weight of 4 is nonzero
        {'macs': 12, 'nonzero_macs': 3}
    """
    from onnxprune.graph.build import build_graph
    from onnxprune.model import DEFAULT_MAX_BYTES, load_model

    proto = load_model(model, max_bytes=max_bytes or DEFAULT_MAX_BYTES)
    return graph_macs(build_graph(proto, input_shapes))


@counts("com.microsoft::Attention")
def _fused_attention(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    # x [B, S, C] through the weight [C, Q + K + V]; Q == K; self-attention: S keys
    x, w = inputs[0], inputs[1] if len(inputs) > 1 else None
    if x is None or w is None or y is None or len(x) != 3 or len(w) != 2:
        return None
    queries = (w[1] - y[-1]) // 2
    return x[0] * x[1] * x[1] * (queries + y[-1])


@counts("com.microsoft::MultiHeadAttention", "com.microsoft::GroupQueryAttention")
def _split_attention(inputs: Sequence[Dims | None], y: Dims | None) -> int | None:
    # query [B, S, Q], key [B, T, K]; packed (no key): Q, K, V side by side, self-attention
    q, k = inputs[0], inputs[1] if len(inputs) > 1 else None
    if q is None or y is None or len(q) != 3:
        return None
    packed = k is None or len(k) != 3
    keys, queries = (q[1], y[-1]) if packed else (k[1], q[-1])
    return q[0] * q[1] * keys * (queries + y[-1])
