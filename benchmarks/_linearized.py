"""The paper's reference computation of active weights, in torch float64 (for benchmarks).

Vysogorets & Kempe: a linearized copy of the net (no BN, no activations, max-pool replaced by
average-pool), kernels |w| * mask, biases zero, all-ones input, backward of sum(output); a weight
is active iff grad * |w| != 0. Covers the ops of the CNNs in onnx's light model zoo.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from onnx import helper, numpy_helper

IDENTITY_OPS = {"BatchNormalization", "Relu", "Dropout", "Softmax", "Identity", "LRN"}


def linearized_active(model: onnx.ModelProto) -> int:
    """Number of prunable weights with grad * |w| != 0 in the linearized float64 network."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    leaves = {
        name: torch.tensor(np.abs(inits[name]), dtype=torch.float64, requires_grad=True)
        for name in prunable(model)
    }
    linearized_output(model, inits, leaves).sum().backward()
    return sum(int(((w.grad * w) != 0).sum()) for w in leaves.values() if w.grad is not None)


def prunable(model: onnx.ModelProto) -> list[str]:
    """The kernels of the Conv and Gemm nodes, in graph order."""
    return [n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm")]


def linearized_output(
    model: onnx.ModelProto, inits: dict[str, np.ndarray], leaves: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The first output of the linearized network with kernels ``leaves`` on all-ones input."""
    values: dict[str, torch.Tensor] = {}
    for inp in model.graph.input:
        if inp.name not in inits:
            dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
            values[inp.name] = torch.ones(dims, dtype=torch.float64)
    for node in model.graph.node:
        values[node.output[0]] = _run(node, values, inits, leaves)
    return values[model.graph.output[0].name]


def _run(node, values, inits, leaves) -> torch.Tensor:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = values.get(node.input[0])
    op = node.op_type
    if op in IDENTITY_OPS:
        return x
    if op == "Conv":
        pads = attrs.get("pads", [0, 0, 0, 0])
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        return F.conv2d(
            x,
            leaves[node.input[1]],
            stride=attrs.get("strides", 1),
            dilation=attrs.get("dilations", 1),
            groups=attrs.get("group", 1),
        )
    if op in ("MaxPool", "AveragePool"):
        pads = attrs.get("pads", [0, 0, 0, 0])
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        ceil = bool(attrs.get("ceil_mode"))
        return F.avg_pool2d(x, attrs["kernel_shape"], attrs.get("strides", 1), ceil_mode=ceil)
    if op == "GlobalAveragePool":
        return x.mean(dim=(2, 3), keepdim=True)
    if op in ("Sum", "Add"):
        return sum(values[i] for i in node.input if i in values)
    if op in ("Reshape", "Flatten"):
        return x.reshape(x.shape[0], -1)
    if op == "Concat":
        return torch.cat([values[i] for i in node.input], dim=attrs["axis"])
    if op == "Gemm":
        w = leaves[node.input[1]]
        return x @ (w.T if attrs.get("transB") else w)
    raise NotImplementedError(op)
