"""The ONNX side of the mapping: prunable weights as a PyTorch layer would hold them.

Pure ONNX and NumPy (no torch): each prunable weight of a model, in graph order, with the kind of
``torch.nn`` layer that would own it (``conv``, ``conv_transpose`` or ``linear``), the shape of
that layer's ``weight`` parameter, and how to turn an array in the weight's stored layout (the
layout masks are saved in) into the parameter's layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnxprune.graph.build import ConnectivityGraph, build_graph
from onnxprune.weights import WeightSource

_KINDS = {"conv": "conv", "conv_transpose": "conv_transpose", "matmul": "linear"}


@dataclass(frozen=True, slots=True)
class OnnxWeight:
    """A prunable weight of an ONNX model, described for a ``torch.nn`` layer.

    Attributes:
        name: the stored tensor (the key of masks).
        node: the first node that consumes it.
        op_type: ``Conv``, ``ConvTranspose``, ``Gemm`` or ``MatMul``.
        kind: ``"conv"``, ``"conv_transpose"`` or ``"linear"``.
        stored_shape: shape of the stored tensor (and of its mask).
        torch_shape: shape of the matching parameter: ``[out, in/groups, *kernel]`` for a
            convolution, ``[in, out/groups, *kernel]`` for a transposed one, ``[out, in]`` for a
            Gemm/MatMul weight (whatever ``transB`` says).
        group: the convolution's ``group`` (1 for Gemm/MatMul).
        source: where the tensor is stored and the layout changes on the way to the node.
        consumed_shape: the shape the node reads.
        out_major: for ``linear``, whether the node reads the weight as ``[out, in]``.
    """

    name: str
    node: str
    op_type: str
    kind: str
    stored_shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    group: int
    source: WeightSource
    consumed_shape: tuple[int, ...]
    out_major: bool

    @property
    def scope(self) -> str | None:
        """The module path the TorchScript exporter wrote into the node name, if any.

        ``/block/block.0/Conv`` was made by module ``block.0``; ``/Gemm`` by the root module.
        """
        if not self.node.startswith("/"):
            return None
        parts = self.node.split("/")
        return parts[-2] if len(parts) >= 2 else None

    @property
    def transposed(self) -> bool:
        """Whether the stored layout differs from the parameter's (e.g. a MatMul's [in, out])."""
        relayout = bool(self.source.steps) or self.stored_shape != self.torch_shape
        return relayout or (self.kind == "linear" and not self.out_major)

    def to_torch(self, stored: np.ndarray) -> np.ndarray:
        """An array in the stored layout, in the parameter's layout."""
        consumed = self.source.to_consumed(np.asarray(stored), self.consumed_shape)
        if self.kind == "linear" and not self.out_major:
            consumed = consumed.T
        return np.ascontiguousarray(consumed)


def onnx_weights(model: onnx.ModelProto | ConnectivityGraph) -> list[OnnxWeight]:
    """Every prunable weight of ``model`` (or of its built graph) at its first use, in order.

    Recurrent weights (LSTM/GRU/RNN ``W``, ``R``) are left out: not mapped to torch yet. So
    are weights stored inside ``If``/``Loop``/``Scan`` bodies (no parameter holds them); main-graph
    weights a body reads (a scripted ``if``: TorchScript keeps the parameters outside) are in.
    """
    graph = model if isinstance(model, ConnectivityGraph) else build_graph(model)
    seen: dict[str, OnnxWeight] = {}
    for layer in graph.all_layers:
        if layer.contract.source.scope:
            continue
        # LSTM/GRU/RNN weights stack gates and directions in another order than torch's
        # ``weight_ih_l{k}``; they are not mapped.
        if layer.name in seen or layer.contract.kind not in _KINDS:
            continue
        contract = layer.contract
        kind = _KINDS[contract.kind]
        consumed = tuple(layer.shape)
        out_major = kind != "linear" or contract.w_transposed
        torch_shape = consumed if out_major else consumed[::-1]
        stored = contract.source.to_stored(np.empty(consumed, dtype=bool)).shape
        seen[layer.name] = OnnxWeight(
            layer.name,
            layer.node,
            layer.op_type,
            kind,
            tuple(stored),
            tuple(torch_shape),
            contract.group,
            contract.source,
            consumed,
            out_major,
        )
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A graph input or output: its name, dimensions (``None`` or a name when symbolic), dtype."""

    name: str
    dims: tuple[int | str | None, ...] | None
    dtype: np.dtype | None

    def example_shape(self) -> tuple[int, ...] | None:
        """The shape with every symbolic dimension set to 1, or ``None`` without a shape."""
        if self.dims is None:
            return None
        return tuple(d if isinstance(d, int) else 1 for d in self.dims)

    def dynamic_axes(self) -> dict[int, str]:
        """The symbolic dimensions by axis, named as in the model."""
        if self.dims is None:
            return {}
        return {
            i: d if isinstance(d, str) else f"{self.name}_dim{i}"
            for i, d in enumerate(self.dims)
            if not isinstance(d, int)
        }


def graph_inputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The inputs a caller feeds (initializers listed as inputs, before IR 4, left out)."""
    initializers = {t.name for t in model.graph.initializer}
    return [_spec(i) for i in model.graph.input if i.name not in initializers]


def graph_outputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The outputs of ``model``."""
    return [_spec(o) for o in model.graph.output]


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ONNX domain the model imports."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return 1


def example_arrays(specs: list[TensorSpec]) -> list[np.ndarray] | str:
    """Zero arrays for ``specs`` (symbolic dimensions set to 1), or why there are none."""
    arrays = []
    for spec in specs:
        shape = spec.example_shape()
        if shape is None or spec.dtype is None:
            return f"input {spec.name!r} has no static rank or no tensor type"
        arrays.append(np.zeros(shape, dtype=spec.dtype))
    return arrays


def _spec(info: onnx.ValueInfoProto) -> TensorSpec:
    tensor = info.type.tensor_type if info.type.HasField("tensor_type") else None
    if tensor is None:
        return TensorSpec(info.name, None, None)
    dtype = (
        np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)) if tensor.elem_type else None
    )
    if not tensor.HasField("shape"):
        return TensorSpec(info.name, None, dtype)
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return TensorSpec(info.name, tuple(dims), dtype)
