"""Ops that act element by element.

Activations, normalizations with constant statistics, and arithmetic between activations (the
union of what feeds each element). They share one transfer rule, ``pointwise``, in families that
structured pruning follows differently:

- ``activation``: one input, one value per value; ``ACTIVATIONS`` gives its value on a constant;
- ``clip``: an activation with bounds read from constant inputs;
- ``arithmetic``: inputs combined element by element; ``ARITHMETIC`` combines constants;
- ``batch_norm``: per-channel parameters that are sliced with the channels;
- ``biased_activation``: ONNX Runtime's fused activations (``com.microsoft`` ``BiasGelu``,
  ``FastGelu``, ``Gelu``, ``QuickGelu``), an activation of the input plus a per-unit bias;
- ``pointwise``: the rest, which structured pruning does not follow.
"""

from __future__ import annotations

import math

import numpy as np

from onnxprune.graph.contrib_shapes import CONTRIB
from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Pointwise
from onnxprune.weights import attr


def _erf(c: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # deferred: only constant propagation needs scipy.special

    return erf(c)


ACTIVATIONS = {
    "Relu": lambda c, n: np.maximum(c, 0.0),
    "LeakyRelu": lambda c, n: np.where(c >= 0, c, attr(n, "alpha", 0.01) * c),
    "Elu": lambda c, n: np.where(c >= 0, c, attr(n, "alpha", 1.0) * np.expm1(c)),
    "Selu": lambda c, n: (
        attr(n, "gamma", 1.0507009873554805)
        * np.where(c > 0, c, attr(n, "alpha", 1.6732632423543772) * np.expm1(c))
    ),
    "Sigmoid": lambda c, n: 1.0 / (1.0 + np.exp(-c)),
    "HardSigmoid": lambda c, n: np.clip(attr(n, "alpha", 0.2) * c + attr(n, "beta", 0.5), 0, 1),
    "HardSwish": lambda c, n: c * np.clip(c / 6 + 0.5, 0, 1),
    "Tanh": lambda c, n: np.tanh(c),
    "Softplus": lambda c, n: np.logaddexp(0.0, c),
    "Gelu": lambda c, n: 0.5 * c * (1 + _erf(c / math.sqrt(2))),
    "Erf": lambda c, n: _erf(c),
    "Exp": lambda c, n: np.exp(c),
    "Neg": lambda c, n: -c,
    "Abs": lambda c, n: np.abs(c),
    "Sqrt": lambda c, n: np.sqrt(c),
    "Identity": lambda c, n: c,
    "Dropout": lambda c, n: c,
    "Cast": lambda c, n: c,
    "IsNaN": lambda c, n: np.where(np.isnan(c), np.nan, 0.0),  # unknown stays unknown
}
"""``fn(c, node)``: the activation ``node`` applied to ``c``, one constant per unit."""

ARITHMETIC = {
    "Add": lambda xs: np.sum(xs, axis=0),
    "Sum": lambda xs: np.sum(xs, axis=0),
    "Sub": lambda xs: xs[0] - xs[1],
    "Mul": lambda xs: np.prod(xs, axis=0),
    "Div": lambda xs: xs[0] / xs[1],
    "Pow": lambda xs: np.power(xs[0], xs[1]),
    "Max": lambda xs: np.max(xs, axis=0),
    "Min": lambda xs: np.min(xs, axis=0),
    "Mean": lambda xs: np.mean(xs, axis=0),
    "PRelu": lambda xs: np.where(xs[0] < 0, xs[1] * xs[0], xs[0]),
    "Where": lambda xs: np.where(
        np.isnan(xs[0]),
        np.where(xs[1] == xs[2], xs[1], np.nan),  # an unknown condition picks either
        np.where(xs[0] != 0, xs[1], xs[2]),
    ),
}
"""``fn(xs)``: the op applied to its inputs' per-unit constants, stacked along axis 0."""

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)

CONTRIB_ACTIVATIONS = {
    "Gelu": ACTIVATIONS["Gelu"],
    "BiasGelu": ACTIVATIONS["Gelu"],
    "FastGelu": lambda c, n: 0.5 * c * (1 + np.tanh(_SQRT_2_OVER_PI * (c + 0.044715 * c**3))),
    "QuickGelu": lambda c, n: c / (1.0 + np.exp(-attr(n, "alpha", 1.702) * c)),
}
"""ONNX Runtime's activations (``com.microsoft``): ``fn(c, node)`` is the op on ``c`` plus its
bias (input 1, ``BiasGelu`` and ``FastGelu``; none: 0)."""

OTHER = (
    "Celu", "Softsign", "Mish", "ThresholdedRelu", "Swish", "Log", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Sin", "Cos", "CastLike", "QuantizeLinear", "DequantizeLinear",
)  # fmt: skip


@op_rule(*ACTIVATIONS, family="activation", constants=ACTIVATIONS)
@op_rule("Clip", family="clip")
@op_rule(*ARITHMETIC, family="arithmetic", constants=ARITHMETIC)
@op_rule("BatchNormalization", family="batch_norm")
@op_rule(*OTHER, family="pointwise")
@op_rule(
    *CONTRIB_ACTIVATIONS,
    family="biased_activation",
    constants=CONTRIB_ACTIVATIONS,
    domain=CONTRIB,
)
def pointwise(node: NodeView) -> Pointwise:
    """Each output element depends on the same element of each activation input."""
    return Pointwise()
