"""Compaction: remove the dead output units of Conv/Gemm/MatMul layers from the ONNX graph.

A unit (output channel or neuron) is dead when it has no nonzero incoming weight or no nonzero
outgoing weight into the next layer; removing units can kill units upstream, so this repeats to a
fixed point. On chains it equals the dead output units of the channel-level effective-sparsity
analysis, less the constant units it must keep (below), which can also keep units downstream.
A unit with no incoming weight still emits a constant (its bias, through the activations and
BatchNormalization after it): it is removed with that constant folded into the next layer's bias,
so the outputs do not change. Where the constant would not reach the next layer as a constant
(zero padding in the next Conv, padded averaging), such a unit is kept unless its constant is
exactly zero. Units outside chains (residual Add, Concat, unknown ops) are left alone.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.structured._tensors import inferred_shapes, write_back
from onnxprune.structured.chains import Chain, find_chains
from onnxprune.structured.surgery import fold, in_major, out_major, shrink, unit_constants


@dataclass(frozen=True)
class CompactResult:
    """A compacted model and what was removed.

    Attributes:
        model: the smaller model (a new proto; the input is not changed).
        removed: units removed per producer layer, keyed by its weight name.
        folded: of those, units whose constant output was folded into the next layer's bias.
        params_before: number of initializer elements before.
        params_after: number of initializer elements after.
    """

    model: onnx.ModelProto
    removed: dict[str, int] = field(default_factory=dict)
    folded: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0


def compact(model: onnx.ModelProto) -> CompactResult:
    """Remove every dead unit of the chains of ``model`` (see the module docstring).

    Args:
        model: an ONNX model with its weights loaded (initializers).

    Returns:
        A ``CompactResult``; its model keeps the IR version and opsets of ``model``.

    Example:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> import numpy as np
        >>> w1 = numpy_helper.from_array(np.array([[1, 0], [0, 0]], np.float32), "w1")
        >>> w2 = numpy_helper.from_array(np.ones((2, 1), np.float32), "w2")
        >>> g = helper.make_graph(
        ...     [helper.make_node("MatMul", ["x", "w1"], ["h"]),
        ...      helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w1, w2])
        >>> m = helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
        >>> r = compact(m)
        >>> r.removed, r.params_before, r.params_after
        ({'w1': 1}, 6, 3)
    """
    work = copy.deepcopy(model)
    graph = work.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    before = sum(a.size for a in arrays.values())
    shapes = inferred_shapes(work)
    removed: Counter[str] = Counter()
    folded: Counter[str] = Counter()
    names = _Names(work)
    progress = True
    while progress:  # one chain at a time: a fold may insert a node and change later chains
        progress = False
        for chain in find_chains(graph, arrays, shapes):
            if _compact_chain(chain, arrays, graph, names, removed, folded):
                progress = True
                break
    write_back(graph, arrays)
    after = sum(a.size for a in arrays.values() if a is not None)
    return CompactResult(work, dict(removed), dict(folded), int(before), int(after))


def _compact_chain(
    chain: Chain,
    arrays: dict[str, np.ndarray],
    graph: onnx.GraphProto,
    names: _Names,
    removed: Counter[str],
    folded: Counter[str],
) -> bool:
    p, c = chain.producer, chain.consumer
    rows = out_major(p, arrays[p.input[1]])
    n = rows.shape[0]
    in_zero = ~(rows.reshape(n, -1) != 0).any(axis=1)
    cols = in_major(c, arrays[c.input[1]])
    if cols.shape[0] != n * chain.spread:  # the consumer does not read the units one to one
        return False
    out_zero = ~(cols.reshape(n, -1) != 0).any(axis=1)
    constants = unit_constants(chain, arrays, n)
    to_fold = in_zero & ~out_zero & np.isfinite(constants)
    if not chain.constant_ok:
        to_fold &= constants == 0
    to_fold &= constants != 0  # a zero constant needs no fold
    remove = out_zero | (in_zero & ~out_zero & np.isfinite(constants) & (constants == 0)) | to_fold
    if remove.all():  # never remove every unit of a layer
        remove[0] = to_fold[0] = False
    if not remove.any():
        return False
    if to_fold.any():
        uses = Counter(i for node in graph.node for i in node.input)
        values = np.where(to_fold, constants, 0.0)
        if not fold(chain, values, arrays, graph, lambda t: uses[t] == 1, names):
            remove &= ~to_fold
            to_fold[:] = False
            if not remove.any():
                return False
    shrink(chain, ~remove, arrays, graph)
    removed[p.input[1]] += int(remove.sum())
    if to_fold.any():
        folded[p.input[1]] += int(to_fold.sum())
    return True


class _Names:
    """Fresh tensor and node names."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.taken = {t.name for t in g.initializer} | {vi.name for vi in g.value_info}
        self.taken |= {vi.name for vi in g.input} | {vi.name for vi in g.output}
        for node in g.node:
            self.taken |= set(node.input) | set(node.output) | {node.name}

    def __call__(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name
