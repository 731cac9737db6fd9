"""What an op does to units, as plain values that both reachability levels interpret.

A transfer rule (``graph/rules``) turns an ONNX node into one of these. The channel level reads
them over channels/neurons, the exact level over every element; neither needs to know the op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxprune.weights import WeightSource


@dataclass(frozen=True, slots=True)
class Pointwise:
    """Each output element depends on the same element of every activation input (broadcasting).

    Activations, BatchNormalization, Dropout, Identity, Add/Sum/Mul/Max/Min of activations.
    """


@dataclass(frozen=True, slots=True)
class Move:
    """Pure data movement: output element ``i`` copies element ``ids[i]`` of the inputs.

    ``ids`` has the output's shape (batch dimension 1) and indexes the concatenation of the
    flattened activation inputs; ``-1`` marks an element with no source (padding, constants).
    Concat, Split, Slice, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Pad, Expand, Tile...
    """

    ids: np.ndarray = field(repr=False)


@dataclass(frozen=True, slots=True)
class Window:
    """Mixing over a sliding window along ``axes`` (pooling over spatial axes, LRN over channels).

    ``pads`` are begin values followed by end values, as in ONNX.
    """

    axes: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Reduce:
    """Each output element depends on every input element that differs from it only along ``axes``.

    Reductions and global pooling, and ops that mix whole axes while keeping them: Softmax,
    LayerNormalization, Resize (within each channel). With ``keepdims`` the output keeps ``axes``
    (at any size); without, they are removed.
    """

    axes: tuple[int, ...]
    keepdims: bool


@dataclass(frozen=True, slots=True)
class Dense:
    """Every output unit depends on every input unit.

    ``fallback`` is true when this is the conservative default for an op we cannot follow (no
    rule, data-dependent, shapes unknown), false when the op really mixes everything (Softmax over
    the unit axis, LayerNormalization).
    """

    reason: str
    fallback: bool = True


@dataclass(frozen=True, slots=True)
class NoSignal:
    """The outputs carry no signal from the inputs: Shape, Size and other shape arithmetic."""


@dataclass(frozen=True, slots=True)
class Contract:
    """A prunable layer: Conv, ConvTranspose, Gemm or MatMul with a constant weight.

    The ``W`` and ``R`` weights of a ``Recurrent`` node are layers of kind ``"recurrent"``:
    their input units lie along the weight's last axis.

    Attributes:
        kind: ``"conv"``, ``"conv_transpose"``, ``"matmul"`` or ``"recurrent"``.
        activation: index of the node input carrying the activation.
        weight: index of the node input carrying the weight.
        source: the stored tensor a pruner rewrites.
        x_axis: for ``"matmul"``, the activation axis that is contracted (negative: from the end).
        y_axis: for ``"matmul"``, the output axis that holds the layer's output units (negative).
        w_transposed: for ``"matmul"``, whether the weight is stored as [N, K] rather than [K, N].
        group: number of groups of a convolution.
        strides, dilations, pads: convolution geometry over the spatial axes (pads: begins, ends).
    """

    kind: str
    activation: int
    weight: int
    source: WeightSource
    x_axis: int = -1
    y_axis: int = -1
    w_transposed: bool = False
    group: int = 1
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Recurrent:
    """An LSTM, GRU or RNN node with constant weights: hidden units carried through time.

    Every output (``Y``, ``Y_h``, ``Y_c``) holds the ``directions * hidden`` hidden units; the
    input weight ``W`` [D, G*H, I] maps the input's features (its last axis) to them, the
    recurrence weight ``R`` [D, G*H, H] maps them to themselves, one block of ``H`` rows per gate
    in ONNX order (``gates``). ``graph/recurrent.py`` says which units carry signal.

    Attributes:
        op_type: ``"LSTM"``, ``"GRU"`` or ``"RNN"``.
        gates: the gate names in the order of the weight's row blocks.
        hidden: ``hidden_size``.
        directions: 1, or 2 when bidirectional.
        batch_first: the ``layout`` attribute is 1 (X [B, T, I], Y [B, T, D, H]).
        w, r: where ``W`` and ``R`` are stored.
        candidate: the index in ``gates`` of the gate whose zero keeps a unit at zero: LSTM
            ``c`` (c = f*c' + i*g stays 0, h = o*tanh(c) = 0), GRU ``h`` (h = (1-z)*n + z*h'
            stays 0), RNN ``i``; this holds with the default activations from a zero state.
        nonzero_seed: [D, H] bool, units that may be nonzero whatever ``W`` and ``R`` hold:
            a nonzero (or run-time) candidate bias or initial cell (GRU: initial hidden)
            state, or activations that do not map 0 to 0 (then every unit).
        nonzero_state: [D, H] bool, units of the initial hidden state that may be nonzero
            (read through ``R``).
        x: the input sequence ``X``.
        initial_h, initial_c: the initial states when computed at run time (they carry
            signal), else ``""``.
    """

    op_type: str
    gates: tuple[str, ...]
    hidden: int
    directions: int
    batch_first: bool
    w: WeightSource
    r: WeightSource
    candidate: int
    nonzero_seed: np.ndarray = field(repr=False)
    nonzero_state: np.ndarray = field(repr=False)
    x: str = ""
    initial_h: str = ""
    initial_c: str = ""


@dataclass(frozen=True, slots=True)
class Read:
    """How the outputs of a ``Heads`` node read one of its activation inputs.

    Units lie along the last axis of the input and of the output, and every position of the
    input may reach every position of the output (attention mixes the sequence).

    Attributes:
        index: the node input.
        carries: bool [input units, output units]: output unit ``o`` is a weighted sum of input
            unit ``i`` (a value channel), so it is nonzero only where such an ``i`` is; what
            forward reachability follows. ``None``: no unit carries signal into the outputs
            (a mask or an attention bias only weighs the values).
        steers: bool [input units, output units]: input unit ``i`` can change output ``o``
            (a head's queries, keys and values all change its outputs); what backward
            reachability follows. ``None``: every input unit can change every output.
    """

    index: int
    carries: np.ndarray | None = field(default=None, repr=False)
    steers: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Heads:
    """Multi-head attention in one node: each output channel mixes within its head only.

    ONNX Runtime's ``Attention``, ``MultiHeadAttention``, ``GroupQueryAttention``: each output
    channel is a sum of its own value channel over the positions, weighted by a softmax of its
    head's queries and keys only. Its ``RotaryEmbedding`` too: each channel a rotation of its
    pair in the same head.

    Attributes:
        reads: how the outputs read each activation input the node names (``Read``); an
            activation input not listed mixes densely both ways (a past key/value state).
        units: the output units (channels along the output's last axis).
        fused: the fused Q, K, V projection (``Attention``'s weight, input 1), read by the node
            before the heads: its output units (columns) are read as input ``fused.weight``'s
            ``Read``; ``None`` when the node takes Q, K and V computed already.
    """

    reads: tuple[Read, ...]
    units: int
    fused: Contract | None = None


Transfer = Pointwise | Move | Window | Reduce | Dense | NoSignal | Contract | Recurrent | Heads
