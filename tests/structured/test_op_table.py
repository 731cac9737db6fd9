"""Structured handlers are keyed by the op families of the graph's op table, never by op type."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onnxprune.graph.registry import FAMILIES, OPS
from onnxprune.structured.handlers import HANDLERS, handler

FOLLOWED = {
    # The op types structured pruning followed before the op table was one: each is now in a
    # family with a handler, and no other op type is.
    "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Gelu", "Erf", "Exp", "Neg", "Abs", "Sqrt", "Identity", "Dropout", "Cast", "Clip",
    "Add", "Sum", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "PRelu",
    "BatchNormalization", "InstanceNormalization", "Conv", "ConvTranspose", "ConstantOfShape",
    "Gemm", "MatMul", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
    "GlobalLpPool", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2",
    "Transpose", "Squeeze", "Unsqueeze", "Resize", "Upsample", "Pad", "Flatten", "Reshape",
    "Concat", "Split",
    # since: recurrent layers, and shape arithmetic (Shape read at other axes than the units')
    "LSTM", "GRU", "RNN",
    "Shape", "Size", "Range", "EyeLike", "RandomNormalLike", "RandomUniformLike",
    # since: attention heads (Softmax over the keys, rotary Slice, grouped-query Expand)
    "Softmax", "LogSoftmax", "Hardmax", "LpNormalization", "Slice", "Expand", "Tile",
    # since: units picked by index (Falcon's multi-query K/V head), positions along other axes
    "Gather", "GatherND",
    # since: the SDPA decomposition's guard against fully masked rows (Where(IsNaN(p), 0, p))
    "IsNaN", "Where",
    # since: ONNX Runtime's fused attention and activations (onnxruntime.transformers.optimizer)
    "com.microsoft::Attention", "com.microsoft::MultiHeadAttention",
    "com.microsoft::GroupQueryAttention", "com.microsoft::BiasGelu", "com.microsoft::FastGelu",
    "com.microsoft::Gelu", "com.microsoft::QuickGelu", "com.microsoft::RotaryEmbedding",
    # since: the layer norms, handled to say why they block (they normalize over the units)
    "LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization",
    # since: channels regrouped in blocks (PixelShuffle and its inverse)
    "DepthToSpace", "SpaceToDepth",
}  # fmt: skip
LAYERS = {
    "Conv", "ConvTranspose", "ConstantOfShape", "Gemm", "MatMul", "LSTM", "GRU", "RNN",
    "com.microsoft::Attention", "Gather",
}  # fmt: skip


def _never(b, node):
    raise AssertionError("a refused registration must not be used")


def test_handlers_are_for_registered_families_only():
    assert set(HANDLERS) <= set(FAMILIES)


def test_structured_op_types_are_the_op_types_of_handled_families():
    followed = {op for op, family in OPS.items() if family.name in HANDLERS}
    assert followed == FOLLOWED
    assert {op for op in followed if HANDLERS[OPS[op].name].layer} == LAYERS


def test_a_family_handled_twice_is_refused():
    with pytest.raises(ValueError, match="structured handler 'conv' registered twice"):
        handler("skip_norm", "conv")(_never)
    assert "skip_norm" not in HANDLERS


def test_a_handler_for_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="no op family 'Conv'"):
        handler("Conv")(_never)


def test_handlers_are_complete_on_first_read():
    code = (
        "from onnxprune.structured.handlers import HANDLERS\n"
        "assert HANDLERS['conv'].layer and 'arithmetic' in HANDLERS\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
