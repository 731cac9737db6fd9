"""ONNX Runtime's fused attention ops (``com.microsoft``): heads mix within themselves only.

``onnxruntime.transformers.optimizer`` fuses a transformer's self-attention into one node:
``Attention`` (the Q, K, V projections fused into one weight ``[C, Q + K + V]``, input 1, and
its bias), ``MultiHeadAttention`` (Q, K and V computed before it, one bias ``[Q + K + V]``) or
``GroupQueryAttention`` (``kv_num_heads`` K/V heads, each shared by ``num_heads / kv_num_heads``
query heads). Output channel ``o`` of head ``h`` is ``sum_t softmax(q_h . k_h)[t] * v_o[t]``:

- it carries signal only from its own value channel ``v_o``: where that is zero everywhere, so
  is ``o``, whatever the queries, keys, masks or attention bias (a softmax row sums to 1; a
  value bias then makes ``o`` that constant, a unit with a bias only, as for any layer);
- the queries and keys of head ``h`` (of its K/V group) and ``v_o`` can change it, nothing else.

Masks, attention biases and sequence lengths only weigh the values (``Read`` with nothing
carried); past key/value states mix densely (conservative). Packed or batch-major layouts,
unequal Q and K sizes and anything else this module does not follow mix densely, with the reason.

``RotaryEmbedding`` (Q and K rotated by position before ``MultiHeadAttention``) mixes channel
pairs within a head: a ``Heads`` transfer too, every channel of a head reaching the others.
"""

from __future__ import annotations

import numpy as np

from onnxprune.graph.contrib_shapes import CONTRIB
from onnxprune.graph.registry import NodeView, op_rule
from onnxprune.graph.transfers import Contract, Dense, Heads, Read, Transfer

GATES = {
    "Attention": (3, 5, 6),  # mask_index, attention_bias, past_sequence_length
    "MultiHeadAttention": (4, 5, 8, 9),  # key_padding_mask, attention_bias, lengths, cache
    "GroupQueryAttention": (5, 6, 7, 8, 9, 10),  # lengths, cos/sin caches, positions, bias
}
"""Per op, the inputs that only weigh the values (masks, biases, lengths, rotary angles)."""


def head_of(units: int, heads: int) -> np.ndarray:
    """The head of each of ``units`` channels split evenly into ``heads``."""
    return np.arange(units) // (units // heads)


def _gates(node: NodeView) -> list[Read]:
    return [Read(i) for i in GATES[node.op_type] if i in node.activations]


def _result(node: NodeView, heads: Heads | Dense) -> tuple[Transfer, ...]:
    """``heads`` for the first output; the present key/value states mix densely."""
    rest = [Dense(f"{node.op_type}'s present key/value states", fallback=False)]
    return (heads, *rest * (len(node.node.output) - 1))


def _last(node: NodeView, index: int) -> int | None:
    """The size of input ``index``'s last axis when it is a 3-D activation, else None."""
    shape = node.in_shapes[index] if index < len(node.in_shapes) else None
    if index not in node.activations or shape is None or len(shape) != 3:
        return None
    return shape[2]


@op_rule("Attention", domain=CONTRIB, family="fused_attention")
def fused_attention(node: NodeView) -> tuple[Transfer, ...]:
    """``Attention``: input 0 through the fused weight (input 1), then the heads."""
    heads = int(node.attr("num_heads", 0))
    name = node.node.input[1]
    source, shape = node.constants.source(name), node.constants.shape(name)
    if 0 not in node.activations or source is None or shape is None or len(shape) != 2:
        return _result(node, Dense("Attention with a weight computed at run time"))
    sizes = node.attr("qkv_hidden_sizes", None) or [shape[1] // 3] * 3
    if not isinstance(sizes, list) or len(sizes) != 3:
        return _result(node, Dense(f"Attention with qkv_hidden_sizes {sizes}"))
    q, k, v = (int(s) for s in sizes)
    declared = node.out_shapes[0] if node.out_shapes else None
    if q + k + v != shape[1] or q != k or heads <= 0 or q % heads or v % heads:
        return _result(node, Dense(f"Attention with sizes {sizes} for {heads} heads"))
    if declared is not None and declared[-1] not in (None, v):
        return _result(node, Dense(f"Attention output {list(declared)} for V of {v}"))
    head_q, head_v = head_of(q, heads), head_of(v, heads)
    same = head_q[:, None] == head_v[None, :]
    values = np.eye(v, dtype=bool)
    steers = np.concatenate([same, same, values])
    carries = np.concatenate([np.zeros((2 * q, v), bool), values])
    reads = (Read(1, carries, steers), *_gates(node))
    return _result(node, Heads(reads, v, Contract("matmul", 0, 1, source)))


@op_rule("MultiHeadAttention", "GroupQueryAttention", domain=CONTRIB, family="split_attention")
def split_attention(node: NodeView) -> tuple[Transfer, ...]:
    """Q, K and V as inputs 0, 1, 2, each ``[batch, sequence, channels]``, or packed.

    ``GroupQueryAttention`` without inputs 1 and 2 reads them side by side in input 0. With
    grouped-query attention, query head ``h`` reads K/V head ``h // (heads / kv_heads)``.
    """
    heads = int(node.attr("num_heads", 0))
    kv = int(node.attr("kv_num_heads", 0)) if node.op_type == "GroupQueryAttention" else heads
    packed = node.op_type == "GroupQueryAttention" and not _present(node, 1)
    if heads <= 0 or kv <= 0 or heads % kv:
        return _result(node, Dense(f"{node.op_type} with {heads} heads, {kv} K/V heads"))
    if packed:
        total = _last(node, 0)
        width = None if total is None or total % (heads + 2 * kv) else total // (heads + 2 * kv)
        sizes = (None,) * 3 if width is None else (heads * width, kv * width, kv * width)
    else:
        sizes = tuple(_last(node, i) for i in range(3))
    q, k, v = sizes
    if None in sizes or q % heads or v % kv:
        return _result(node, Dense(f"{node.op_type} with packed or batch-major Q, K, V"))
    if k * heads != q * kv:
        return _result(node, Dense(f"{node.op_type} with Q, K sizes {q}, {k}"))
    out = v * heads // kv
    declared = node.out_shapes[0] if node.out_shapes else None
    if declared is not None and declared[-1] not in (None, out):
        return _result(node, Dense(f"{node.op_type} output {list(declared)} for V of {v}"))
    steers_q, steers_k, carries_v = _maps(q, k, v, heads, kv)
    if packed:
        steers = np.concatenate([steers_q, steers_k, carries_v])
        carries = np.concatenate([np.zeros((q + k, out), bool), carries_v])
        return _result(node, Heads((Read(0, carries, steers), *_gates(node)), out))
    reads = (
        Read(0, None, steers_q),
        Read(1, None, steers_k),
        Read(2, carries_v, carries_v),
        *_gates(node),
    )
    return _result(node, Heads(reads, out))


def _present(node: NodeView, index: int) -> bool:
    return index < len(node.node.input) and bool(node.node.input[index])


def _maps(q: int, k: int, v: int, heads: int, kv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[q, out] queries and [k, out] keys steering each output, [v, out] values carried.

    Output channel ``o`` of query head ``h`` reads K/V head ``h // (heads / kv)``, and of its
    values the channel at the same offset in the head.
    """
    out = v * heads // kv
    rep = heads // kv
    head_out = head_of(out, heads)
    steers_q = head_of(q, heads)[:, None] == head_out[None, :]
    steers_k = head_of(k, kv)[:, None] == (head_out // rep)[None, :]
    width = v // kv
    carries_v = (head_of(v, kv)[:, None] == (head_out // rep)[None, :]) & (
        (np.arange(v) % width)[:, None] == (np.arange(out) % width)[None, :]
    )
    return steers_q, steers_k, carries_v


@op_rule("RotaryEmbedding", domain=CONTRIB, family="rotary")
def rotary(node: NodeView) -> Heads | Dense:
    """``RotaryEmbedding`` of ``[batch, sequence, channels]``: channels mix within a head only.

    Each head's channels are rotated in pairs by an angle of the position. The head size is
    ``channels / num_heads``, or (``num_heads`` 0) twice the cosine cache's last axis. The
    positions and the caches only weigh the channels.
    """
    n, heads = _last(node, 0), int(node.attr("num_heads", 0))
    cos = node.in_shapes[2] if len(node.in_shapes) > 2 else None
    width = None
    if n is not None and heads > 0:
        width = n // heads
    elif cos is not None and len(cos) == 2 and cos[1]:
        width = 2 * cos[1]
    if n is None or not width or n % width:
        return Dense("RotaryEmbedding of other than [batch, sequence, whole heads]")
    same = head_of(n, n // width)
    mixed = same[:, None] == same[None, :]
    gates = [Read(i) for i in (1, 2, 3) if i in node.activations]
    return Heads((Read(0, mixed, mixed), *gates), n)
