"""Exports whose Reshape targets are computed from ``Shape`` lose heads when their sizes are fixed.

The TorchScript exporter writes GPT-J's and Swin's head splits as ``Reshape(x, Concat(Shape(x)
[:-1], [H, D]))``: a target known only when the model runs, unless every input size is declared,
as it is in an export without ``dynamic_axes`` (``test_static_shapes.py`` has the rule by hand).
Both models, tiny and random, exported that way: heads go (at 0.3, ceil(0.7 * 4) = 3 of 4 a
layer), the compacted model passes the full checker and computes what the masked one does.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked
from tests.structured._transformers import MARKS, VOCAB, export, feed, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS


def _heads(result) -> dict[str, tuple[int, int]]:
    return {name: kept for name, kept in result.units.items() if result.kinds[name] == "head"}


def test_gptj_torchscript_heads_go(tmp_path) -> None:
    config = transformers.GPTJConfig(
        n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, rotary_dim=4,
        attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, transformers.GPTJModel(config))
    path = export(torch, model, "torchscript", tmp_path / "gptj.onnx")
    result = structured_prune(str(path), sparsity=0.3)

    heads = _heads(result)
    assert len(heads) == 6  # Q, K and V of each of the 2 layers
    assert set(heads.values()) == {(3, 4)}
    assert_pruned_like_masked(result, feed())


def test_swin_torchscript_heads_go() -> None:
    config = transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[4, 4],
        window_size=4, attn_implementation="eager",
    )  # fmt: skip
    model = randomize(torch, transformers.SwinModel(config))

    class Images(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(pixel_values=x)[0]

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    buffer = io.BytesIO()
    torch.onnx.export(
        Images().eval(), (torch.from_numpy(x),), buffer, dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"],
    )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = min(proto.ir_version, 10)
    result = structured_prune(proto, sparsity=0.3)

    heads = _heads(result)
    assert len(heads) == 6
    assert set(heads.values()) == {(3, 4)}
    assert_pruned_like_masked(result, {"x": x})
