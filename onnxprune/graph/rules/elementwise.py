"""Ops that act element by element.

Activations, normalizations with constant statistics, and arithmetic between activations (the
union of what feeds each element).
"""

from __future__ import annotations

from onnxprune.graph.registry import NodeView, transfer_rule
from onnxprune.graph.transfers import Pointwise

UNARY = (
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Swish",
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
    "Sin", "Cos", "Identity", "Cast", "CastLike", "Dropout", "Clip", "BatchNormalization",
    "QuantizeLinear", "DequantizeLinear",
)  # fmt: skip
BINARY = ("Add", "Sum", "Sub", "Mul", "Div", "Max", "Min", "Mean", "Pow", "Where")


@transfer_rule(*UNARY, *BINARY)
def pointwise(node: NodeView) -> Pointwise:
    """Each output element depends on the same element of each activation input."""
    return Pointwise()
