"""Build the op-level connectivity graph: every node as a transfer, every prunable layer found.

The graph is level-independent: ``graph/channel.py`` reads it over channels and neurons with
scipy.sparse, ``graph/exact.py`` over every element.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxprune.bodies import subgraphs
from onnxprune.errors import InvalidModelError
from onnxprune.graph._shared import across_bodies
from onnxprune.graph.registry import NodeView, lookup, static
from onnxprune.graph.rules.recurrent import GATES
from onnxprune.graph.shapes import BodyPath, Shape, infer_all
from onnxprune.graph.transfers import (
    Contract,
    Dense,
    Heads,
    Move,
    NoSignal,
    Pointwise,
    Recurrent,
    Transfer,
)
from onnxprune.macs import dense_macs
from onnxprune.op_checks import check_shapes
from onnxprune.weights import ConstantResolver, TensorReader, weight_readers


@dataclass(frozen=True, slots=True)
class Fallback:
    """A node whose effect on units we could not follow, so it mixes densely (conservative)."""

    node: str
    op_type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """Plain-data form for JSON."""
        return {"node": self.node, "op_type": self.op_type, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Layer:
    """A prunable weight as one layer uses it.

    Attributes:
        name: the stored tensor a pruner rewrites (the key of masks and report rows).
        node: name of the consuming node.
        op_type: ``Conv``, ``ConvTranspose``, ``Gemm``, ``MatMul``, or ``LSTM``, ``GRU`` and
            ``RNN`` (their ``W`` and ``R``).
        x: the activation tensor the layer reads (for ``R``, the hidden states ``Y``).
        y: the tensor the layer writes.
        weight: the tensor the node consumes (after any Transpose/Cast/Dequantize chain).
        shape: the consumed weight's shape.
        contract: how the layer maps input units to output units.
        label: a readable name for reports: the module the exporter recorded for the node
            (``pkg.torch.onnx.name_scopes``), else the node's name, else the weight's; in a
            body, after the body's scope.
        scope: the ``If``/``Loop``/``Scan`` body the node is in (``If_3/then_branch``), ``""``
            in the main graph. ``name`` is the stored tensor's ``WeightSource.key``: its own
            scope and name, unique in the model.
    """

    name: str
    node: str
    op_type: str
    x: str
    y: str
    weight: str
    shape: tuple[int, ...]
    contract: Contract
    label: str
    scope: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """Which use of the weight: the node and its input index (a node may have two layers)."""
        return (self.node, self.contract.weight)


@dataclass(frozen=True, slots=True)
class Step:
    """One node: the activation tensors it reads, the tensors it writes, one transfer per output.

    ``macs`` are the node's dense multiply-accumulates (``onnxprune.macs``): 0 for an op that is
    not counted, ``None`` when a shape it needs is unknown.
    ``layer`` is the prunable layer of a Conv/Gemm/MatMul; ``recurrent`` the ``W`` and ``R``
    layers of an LSTM/GRU/RNN.
    """

    node: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    transfers: tuple[Transfer, ...]
    layer: Layer | None = None
    macs: int | None = 0
    recurrent: tuple[Layer, ...] = ()


@dataclass(frozen=True)
class ConnectivityGraph:
    """The model as steps in topological order, its prunable layers, and tensor shapes.

    ``dataclasses.replace(graph, overrides={name: stored_array})`` gives the same graph with other
    weight values, without rebuilding it.

    ``If``/``Loop``/``Scan`` bodies are graphs of their own (``bodies``, in node order, nested
    ones inside theirs): their inputs are the body's inputs and the outer tensors it reads (all
    taken as carrying signal), their outputs the body's outputs (all taken as needed), and the
    node that holds them mixes its outer inputs densely. Each body is analysed on its own, which
    can only under-report what is dead. ``layers`` are this graph's own, ``all_layers`` add the
    bodies'.
    """

    steps: tuple[Step, ...]
    layers: tuple[Layer, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shapes: Mapping[str, Shape]
    fallbacks: tuple[Fallback, ...]
    constants: ConstantResolver = field(repr=False)
    overrides: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    shared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Stored weights that more than one node reads (``weights.weight_readers``): their readers."""
    bodies: tuple[ConnectivityGraph, ...] = ()
    scope: str = ""

    @property
    def all_layers(self) -> tuple[Layer, ...]:
        """Every prunable layer: this graph's, then those of its bodies (nested included)."""
        return self.layers + tuple(layer for body in self.subgraphs() for layer in body.layers)

    def subgraphs(self) -> Iterator[ConnectivityGraph]:
        """Every body under this graph (nested included), with this graph's ``overrides``."""
        for body in self.bodies:
            body = dataclasses.replace(body, overrides=self.overrides)
            yield body
            yield from body.subgraphs()

    def weight(self, layer: Layer) -> np.ndarray:
        """The weight as the layer consumes it (materialized on demand, never cached).

        ``overrides`` (stored tensors keyed by ``Layer.name``, e.g. masked weights while a
        pruner searches) take the place of the model's own values.
        """
        if layer.scope != self.scope and layer.name not in self.overrides:
            return next(b for b in self.subgraphs() if b.scope == layer.scope).weight(layer)
        if layer.name in self.overrides:
            return layer.contract.source.to_consumed(self.overrides[layer.name], layer.shape)
        value = self.constants.value(layer.weight)
        if value is None:  # pragma: no cover - layers are only made for resolvable weights
            raise RuntimeError(f"weight {layer.weight!r} is no longer a constant")
        return value

    def static_shape(self, tensor: str) -> tuple[int, ...] | None:
        """Shape of ``tensor`` with a symbolic batch set to 1, or ``None`` if not static."""
        return static(self.shapes.get(tensor))


def build_graph(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    external: TensorReader | None = None,
    dims: Mapping[str, int] | None = None,
) -> ConnectivityGraph:
    """Turn ``model`` into a ``ConnectivityGraph``.

    Args:
        model: the model (not modified).
        input_shapes: fixed shapes for graph inputs with symbolic dimensions.
        dims: sizes of symbolic dimensions by name (``graph.shapes.infer_shapes``).
        external: reads initializers whose data is still in external files (a model from
            ``onnxprune.external_data.load_model_lazy``); weights are then read one at a time.

    Raises:
        InvalidModelError: a layer's input does not fit its weight, or operands do not
            broadcast (``onnxprune.op_checks.check_shapes``).
    """
    graph = model.graph
    inferred = infer_all(model, input_shapes, dims)
    shapes, body_shapes = inferred.shapes, inferred.bodies
    # the shape arithmetic the sizes make constant (Slice bounds, Gather indices, targets)
    known = {name: v for name, v in inferred.values.items() if v.dtype.kind in "iu"}
    constants = ConstantResolver(graph, external, known=known)
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    outputs = tuple(o.name for o in graph.output)
    where = _Where("", (), body_shapes, _default_opset(model))
    built = _build(graph, inputs, outputs, shapes, constants, where)
    _check_keys(built.all_layers)
    return across_bodies(graph, constants, built)


@dataclass(frozen=True, slots=True)
class _Where:
    """Which graph ``_build`` builds: its scope and path, and what every body shares."""

    scope: str
    path: BodyPath
    body_shapes: Mapping[BodyPath, Mapping[str, Shape]]
    opset: int

    def named(self, name: str) -> str:
        """``name`` inside this scope (a node's, a body's)."""
        return f"{self.scope}/{name}" if self.scope else name


def _build(
    graph: onnx.GraphProto,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    shapes: dict[str, Shape],
    constants: ConstantResolver,
    where: _Where,
) -> ConnectivityGraph:
    """The connectivity graph of ``graph`` (the main graph or a body), its bodies built too."""
    check_shapes(graph, shapes)
    initializers = {t.name for t in graph.initializer}
    signal = set(inputs)
    steps: list[Step] = []
    layers: list[Layer] = []
    fallbacks: list[Fallback] = []
    bodies: list[ConnectivityGraph] = []
    stacked = stacked_layers(graph)
    for index, node in enumerate(graph.node):
        node_name = where.named(node.name or f"{node.op_type}_{index}")
        bodies += _bodies(node, node_name, index, shapes, constants, where)
        names = [*node.input, *_implicit_inputs(node)]
        acts = tuple(
            i
            for i, n in enumerate(names)
            if n and n not in initializers and not constants.is_constant(n)
        )
        view = NodeView(
            node,
            tuple(shapes.get(n) for n in names),
            tuple(shapes.get(n) for n in node.output),
            acts,
            constants,
            where.opset,
        )
        transfers = _transfers(view)
        for out, t in zip(node.output, transfers, strict=False):
            if isinstance(t, Move) and static(shapes.get(out)) is None:
                shapes[out] = t.ids.shape  # a rule solved what shape inference left open
        has_signal = any(names[i] in signal for i in acts)
        first = transfers[0]
        is_layer = isinstance(first, (Contract, Recurrent)) or (
            isinstance(first, Heads) and first.fused is not None
        )
        if isinstance(transfers[0], NoSignal) or not (has_signal or is_layer):
            continue
        fallbacks += [
            Fallback(node_name, node.op_type, t.reason)
            for t in transfers[:1]
            if isinstance(t, Dense) and t.fallback
        ]
        node_outputs = tuple(node.output)
        if has_signal:
            signal.update(o for o in node_outputs if o)
        macs = _macs(view) if node.domain in ("", "ai.onnx") else 0
        if isinstance(first, Heads):
            built, layer = _heads_steps(node_name, view, names, transfers, shapes, where.scope)
            steps += built
            layers += [layer] if layer is not None else []
            continue
        layer = (
            _layer(node_name, node, first, shapes, constants, where.scope)
            if isinstance(first, Contract)
            else None
        )
        rec = (
            _recurrent(node_name, node, first, constants, where.scope, stacked)
            if isinstance(first, Recurrent)
            else ()
        )
        ins = tuple(names[i] for i in acts)
        steps.append(Step(node_name, node.op_type, ins, node_outputs, transfers, layer, macs, rec))
        layers += [layer] if layer is not None else rec
    readers = weight_readers(graph, constants)
    shared = {
        w.name: readers[w.contract.source.name]
        for w in layers
        if len(readers.get(w.contract.source.name, ())) > 1
    }
    return ConnectivityGraph(
        tuple(steps),
        tuple(layers),
        inputs,
        outputs,
        shapes,
        tuple(fallbacks),
        constants,
        shared=shared,
        bodies=tuple(bodies),
        scope=where.scope,
    )


def _heads_steps(
    name: str,
    view: NodeView,
    names: Sequence[str],
    transfers: tuple[Transfer, ...],
    shapes: dict[str, Shape],
    scope: str,
) -> tuple[list[Step], Layer | None]:
    """An attention node's steps: its fused projection (a ``MatMul`` step), if any, then its heads.

    The heads step has the op type ``domain::op`` (``registry.op_key``), whose MACs ``macs``
    counts. The fused projection is a layer of its own that writes the Q, K, V columns into a tensor
    only the graph knows (``<output>#qkv``), which the heads step reads in place of the weight.
    The heads step reads its inputs in the order of ``Heads.reads``, the others after them.
    """
    node, heads = view.node, transfers[0]
    inputs = {i: names[i] for i in view.activations}
    steps, layer = [], None
    if heads.fused is not None:
        fused = heads.fused
        x, qkv = names[fused.activation], f"{node.output[0]}#qkv"
        width = view.constants.shape(names[fused.weight])[1]
        if shapes.get(x) is not None:
            shapes[qkv] = (*shapes[x][:-1], width)
        layer = _layer(name, node, fused, shapes, view.constants, scope)
        layer = dataclasses.replace(layer, y=qkv)
        dims = [static(shapes.get(x)), layer.shape]
        macs = dense_macs("MatMul", dims, static(shapes.get(qkv)))  # counted as the MatMul it is
        steps.append(Step(name, "MatMul", (x,), (qkv,), (fused,), layer, macs))
        del inputs[fused.activation]
        inputs[fused.weight] = qkv
    order = [read.index for read in heads.reads]
    ins = [inputs[i] for i in order] + [n for i, n in inputs.items() if i not in order]
    dims = [view.static_in(i) if names[i] else None for i in range(len(node.input))]
    macs = dense_macs(view.key, dims, view.static_out())  # the scores and weighed values
    steps.append(Step(name, view.key, tuple(ins), tuple(node.output), transfers, macs=macs))
    return steps, layer


def _bodies(
    node: onnx.NodeProto,
    node_name: str,
    index: int,
    shapes: Mapping[str, Shape],
    constants: ConstantResolver,
    where: _Where,
) -> list[ConnectivityGraph]:
    """The graphs of the bodies of ``node`` (``If`` branches, ``Loop``/``Scan`` bodies).

    A body's inputs are its own inputs and the outer tensors it reads that are not constants;
    its shapes are those inference gave it, over the outer ones.
    """
    built = []
    for a in node.attribute:
        if a.type != onnx.AttributeProto.GRAPH:
            continue
        scope = f"{node_name}/{a.name}"
        path = (*where.path, (index, a.name))
        resolver = constants.body(a.g, scope, index, a.name)
        own = {t.name for t in a.g.initializer}
        outer = [n for n in dict.fromkeys(_outer_names(a.g)) if not resolver.is_constant(n)]
        inputs = (*(i.name for i in a.g.input if i.name not in own), *outer)
        inner = {**shapes, **where.body_shapes.get(path, {})}
        body = _Where(scope, path, where.body_shapes, where.opset)
        built.append(_build(a.g, inputs, tuple(o.name for o in a.g.output), inner, resolver, body))
    return built


def _check_keys(layers: Sequence[Layer]) -> None:
    """Refuse a model where two stored weights would share a key (``WeightSource.key``).

    Raises:
        InvalidModelError: a body's scoped weight name is also another tensor's name.
    """
    stored: dict[str, tuple[BodyPath, str]] = {}
    for layer in layers:
        source = layer.contract.source
        if stored.setdefault(layer.name, (source.path, source.name)) != (source.path, source.name):
            raise InvalidModelError(
                f"weight name {layer.name!r} names two tensors (one in a body); rename one"
            )


def _transfers(view: NodeView) -> tuple[Transfer, ...]:
    node = view.node
    rule = lookup(node.op_type, node.domain)
    if rule is None:
        where = view.key
        why = f"no transfer rule for {where}"
        if any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            why = f"{where}: its bodies (each analysed on its own) make the outputs from any input"
        result: Transfer | tuple[Transfer, ...] = Dense(why)
    else:
        result = rule(view)
    transfers = result if isinstance(result, tuple) else (result,) * max(1, len(node.output))
    return tuple(_fitting(view, t, view.static_out(i)) for i, t in enumerate(transfers))


def _macs(view: NodeView) -> int | None:
    """The node's dense MACs from its static shapes (``onnxprune.macs``).

    A symbolic first dimension counts as 1 (the batch), except the sequence length of a
    recurrent layer with ``layout=0`` (``[seq_length, batch, input]``): that stays unknown.
    """
    x = view.in_shapes[0] if view.in_shapes else None
    if view.op_type in RECURRENT and not view.attr("layout", 0) and x and x[0] is None:
        return None
    inputs = [view.static_in(i) for i in range(len(view.node.input))]
    return dense_macs(view.op_type, inputs, view.static_out())


RECURRENT = ("LSTM", "GRU", "RNN")


def _fitting(view: NodeView, transfer: Transfer, out: tuple[int, ...] | None) -> Transfer:
    """``transfer``, or dense mixing when the output's shape contradicts it.

    A move into another shape than the output's, or a pointwise op whose inputs do not
    broadcast to its output: the model's shapes contradict its op, and following either could
    be wrong.
    """
    if out is None:
        return transfer
    if isinstance(transfer, Move) and transfer.ids.shape != out:
        return Dense(f"the op makes {list(transfer.ids.shape)}, the model says {list(out)}")
    if isinstance(transfer, Pointwise):
        for shape in (view.static_in(i) for i in view.activations):
            if shape is not None and not _broadcasts_to(shape, out):
                return Dense(f"an input of shape {list(shape)} for an output of {list(out)}")
    return transfer


def _broadcasts_to(shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``out`` (numpy's rules, one way)."""
    if len(shape) > len(out):
        return False
    return all(d in (1, o) for d, o in zip(shape, out[len(out) - len(shape) :], strict=True))


def _layer(
    name: str,
    node: onnx.NodeProto,
    contract: Contract,
    shapes: Mapping[str, Shape],
    constants: ConstantResolver,
    scope: str,
) -> Layer:
    weight = node.input[contract.weight]
    shape = shapes.get(weight)
    if shape is None or None in shape:
        shape = constants.shape(weight)
    return Layer(
        contract.source.key,
        name,
        node.op_type,
        node.input[contract.activation],
        node.output[0],
        weight,
        tuple(int(d) for d in shape),
        contract,
        _scoped(scope, layer_label(node, contract.source.name)),
        scope,
    )


def _scoped(scope: str, label: str) -> str:
    return f"{scope}/{label}" if scope else label


def _recurrent(
    name: str,
    node: onnx.NodeProto,
    t: Recurrent,
    constants: ConstantResolver,
    scope: str,
    stacked: Mapping[str, str],
) -> tuple[Layer, Layer]:
    """The ``W`` and ``R`` layers of an LSTM/GRU/RNN; ``R`` reads the hidden states it writes."""
    y = next(o for o in node.output if o)
    states = node.output[0] or y
    layers = []
    for index, source, x in ((1, t.w, t.x), (2, t.r, states)):
        weight = node.input[index]
        contract = Contract("recurrent", 0, index, source)
        shape = tuple(int(d) for d in constants.shape(weight))
        label = _scoped(scope, layer_label(node, source.name, stacked))
        layers.append(
            Layer(source.key, name, node.op_type, x, y, weight, shape, contract, label, scope)
        )
    return layers[0], layers[1]


NAME_SCOPES = "pkg.torch.onnx.name_scopes"
"""Node metadata of PyTorch's exporter: the module path, e.g. ``['', 'layer1.0', 'conv2d']``."""
_MAX_SCOPES_CHARS = 4096


def layer_label(node: onnx.NodeProto, weight: str, stacked: Mapping[str, str] | None = None) -> str:
    """A readable name of a layer: its module, its node's name, or its weight's name.

    ``stacked`` (``stacked_layers``) names recurrent nodes sharing one module by their layer.

    PyTorch's exporter records the module stack of a node in ``pkg.torch.onnx.name_scopes``
    (the last entry is the traced op, the one before it the module that ran it); TorchScript
    exports name nodes after modules (``/layer1/layer1.0/conv1/Conv``). Weight names such as
    ``onnx::Conv_39`` are the last resort.

    Example:
        >>> node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="/stem/Conv")
        >>> layer_label(node, "onnx::Conv_39")
        '/stem/Conv'
        >>> _ = node.metadata_props.add(key=NAME_SCOPES, value="['', 'features.0', 'conv2d']")
        >>> layer_label(node, "onnx::Conv_39")
        'features.0'
    """
    if stacked and node.op_type in GATES:
        label = stacked.get(next((o for o in node.output if o), ""))
        if label is not None:
            return label
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES and len(prop.value) <= _MAX_SCOPES_CHARS:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                break
            module = scopes[-2] if isinstance(scopes, list) and len(scopes) >= 2 else None
            if module and isinstance(module, str):
                return module
            break
    return node.name or weight


def stacked_layers(graph: onnx.GraphProto) -> dict[str, str]:
    """Labels of the recurrent nodes that share their module with another, by first output.

    The dynamo exporter writes a stacked ``nn.LSTM`` (``num_layers=2``) as one LSTM node per layer,
    all under the module's name (``rnn``); they are told apart as torch names their parameters
    (``weight_ih_l0``, ``weight_ih_l1``): ``rnn.l0``, ``rnn.l1``, in graph order. TorchScript
    names each node (``/rnn/LSTM``, ``/rnn/LSTM_1``): nothing to tell apart.
    """
    by_label: dict[str, list[str]] = {}
    for node in graph.node:
        output = next((o for o in node.output if o), "")
        if node.op_type in GATES and output:
            by_label.setdefault(layer_label(node, ""), []).append(output)
    return {
        output: f"{label}.l{k}"
        for label, outputs in by_label.items()
        if label and len(outputs) > 1
        for k, output in enumerate(outputs)
    }


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return 1


def _implicit_inputs(node: onnx.NodeProto) -> Iterator[str]:
    """Outer-scope tensors that subgraphs of ``node`` (If/Loop/Scan bodies) read."""
    seen: set[str] = set()
    for sub in subgraphs(node):
        for name in _outer_names(sub):
            if name not in seen:
                seen.add(name)
                yield name


def _outer_names(graph: onnx.GraphProto) -> Iterator[str]:
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        for name in (*node.input, *_implicit_inputs(node)):
            if name and name not in defined:
                yield name
        defined.update(node.output)
