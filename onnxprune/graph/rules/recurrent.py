"""Recurrent layers: LSTM, GRU and RNN with constant ``W`` and ``R``.

Their hidden units are followed through time by ``graph/recurrent.py``; this rule reads what the
node says about them: the gates, the directions, the layout, and which units may be nonzero
whatever the weights hold (a bias, an initial state, activations that do not keep 0 at 0).
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Dense, Recurrent
from onnxprune.weights import attr

GATES = {"LSTM": ("i", "o", "f", "c"), "GRU": ("z", "r", "h"), "RNN": ("i",)}
"""The gates of each op, in the order of the row blocks of ``W``, ``R`` and ``B`` (ONNX)."""

_CANDIDATE = {"LSTM": 3, "GRU": 2, "RNN": 0}
_ACTIVATIONS = {"LSTM": 3, "GRU": 2, "RNN": 1}  # activation functions per direction
_KEEP_ZERO = {"LSTM": (1, 2), "GRU": (1,), "RNN": (0,)}  # those that must map 0 to 0
_ZERO_TO_ZERO = frozenset(
    {"tanh", "relu", "leakyrelu", "thresholdedrelu", "scaledtanh", "elu", "softsign"}
)


@op_rule("LSTM", "GRU", "RNN")
def recurrent(node: NodeView) -> Recurrent | Dense:
    """Hidden units through time; inputs 1 (``W``) and 2 (``R``) must be constants."""
    op = node.op_type
    w_src = node.constants.source(node.node.input[1])
    r_src = node.constants.source(node.node.input[2])
    w_shape = node.constants.shape(node.node.input[1])
    r_shape = node.constants.shape(node.node.input[2])
    if 0 not in node.activations or w_src is None or r_src is None or None in (w_shape, r_shape):
        return Dense(f"{op} with weights computed at run time")
    gates = GATES[op]
    hidden = int(node.attr("hidden_size", 0)) or r_shape[-1]
    directions = w_shape[0]
    g = len(gates) * hidden
    if len(w_shape) != 3 or tuple(r_shape) != (directions, g, hidden) or w_shape[1] != g:
        return Dense(f"{op} weights {list(w_shape)}, {list(r_shape)} do not fit its hidden_size")
    batch_first = int(node.attr("layout", 0)) == 1
    seed, state = _nonzero(node, directions, hidden, batch_first)
    return Recurrent(
        op,
        gates,
        hidden,
        directions,
        batch_first,
        w_src,
        r_src,
        _CANDIDATE[op],
        seed,
        state,
        x=node.node.input[0],
        initial_h=_activation(node, 5),
        initial_c=_activation(node, 6) if op == "LSTM" else "",
    )


def _activation(node: NodeView, index: int) -> str:
    """The name of input ``index`` when it is computed at run time, else ``""``."""
    return node.node.input[index] if index in node.activations else ""


def _nonzero(
    node: NodeView, directions: int, hidden: int, batch_first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Units nonzero whatever the weights (``nonzero_seed``), and nonzero initial hidden units.

    A unit whose candidate pre-activation is zero at every step outputs zero only from a zero
    state and with activations that keep 0 at 0; anything we cannot show counts as nonzero.
    """
    op = node.op_type
    everything = np.ones((directions, hidden), bool)
    if not keeps_zero(node.node, directions):
        return everything, everything
    state = _state(node, 5, directions, hidden, batch_first)
    seed = _candidate_bias(node, directions, hidden)
    if op == "LSTM":
        seed = seed | _state(node, 6, directions, hidden, batch_first)
    if op == "GRU":  # h = (1 - z) * n + z * h': a nonzero start stays
        seed = seed | state
    return seed, state


def keeps_zero(node: onnx.NodeProto, directions: int) -> bool:
    """Whether the activations that hold a unit at zero map 0 to 0 (the defaults do).

    The candidate's and (LSTM) the output's: ``Tanh``, ``Relu``, ... but not ``Sigmoid``.
    """
    names = attr(node, "activations", None)
    if not names:
        return True
    per = _ACTIVATIONS[node.op_type]
    if len(names) != per * directions:
        return False
    chosen = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return all(
        chosen[d * per + i].lower() in _ZERO_TO_ZERO
        for d in range(directions)
        for i in _KEEP_ZERO[node.op_type]
    )


def _candidate_bias(node: NodeView, directions: int, hidden: int) -> np.ndarray:
    """[D, H]: the candidate gate's input or recurrence bias (``Wb``, ``Rb``) is nonzero."""
    if len(node.node.input) <= 3 or not node.node.input[3]:
        return np.zeros((directions, hidden), bool)
    bias = node.const(3)
    gates = len(GATES[node.op_type])
    if bias is None or bias.size != directions * 2 * gates * hidden:
        return np.ones((directions, hidden), bool)
    blocks = bias.reshape(directions, 2, gates, hidden)[:, :, _CANDIDATE[node.op_type]]
    return (blocks != 0).any(axis=1)


def _state(
    node: NodeView, index: int, directions: int, hidden: int, batch_first: bool
) -> np.ndarray:
    """[D, H]: the initial state at input ``index`` may be nonzero there."""
    name = node.node.input[index] if len(node.node.input) > index else ""
    if not name or node.constants.is_zero(name):
        return np.zeros((directions, hidden), bool)
    value = node.const(index)
    if value is None or value.ndim != 3:
        return np.ones((directions, hidden), bool)
    nonzero = (value != 0).any(axis=0 if batch_first else 1)
    if nonzero.shape != (directions, hidden):
        return np.ones((directions, hidden), bool)
    return nonzero
