"""Tiny ``transformers`` models (random init, no downloads) exported by both torch exporters.

Each model is wrapped so that its one input is ``ids`` (token ids, shape ``[1, SEQ]``: static
shapes, so every Reshape target is a constant) and its one output ``y`` is the first output of
the model (hidden states, or logits for a language-model head). The attention mask is all ones,
computed inside the graph: without it, ``transformers`` looks for packed sequences with
``torch.diff``, which the TorchScript exporter cannot export. Every parameter is drawn from a
normal distribution (biases and norms included), so no two tensors are equal and the TorchScript
exporter does not fold equal ones into one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

SEQ = 8
VOCAB = 50
EXPORTERS = ("torchscript", "dynamo")
MARKS = [
    pytest.mark.slow,  # torch exports
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]
"""The marks of a test module exporting these models (``pytestmark = MARKS``)."""


def wrap(torch, model, *, use_cache: bool = False, mask: bool = True):
    """``model`` as a module taking token ids and returning its first output.

    ``use_cache`` and ``mask`` (pass an attention mask of ones) as the model is called; with
    the cache on (``transformers``' default) and no mask, as ``model(ids)`` calls it, GPT-2's
    attention builds its causal mask from the sequence lengths in its keys' shape.
    """

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids):
            ones = torch.ones_like(ids) if mask else None
            return self.model(input_ids=ids, attention_mask=ones, use_cache=use_cache)[0]

    return Wrapped()


def randomize(torch, model, seed: int = 0):
    """Every parameter of ``model`` drawn from N(0, 0.2^2); returns ``model`` in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model.eval()


def export(torch, model, exporter: str, path: Path, **call) -> Path:
    """``wrap(model, **call)`` exported to ``path`` (one file, IR version at most 10) by
    ``exporter``."""
    net = wrap(torch, model, **call).eval()
    ids = torch.zeros(1, SEQ, dtype=torch.int64)
    names = {"input_names": ["ids"], "output_names": ["y"]}
    if exporter == "dynamo":
        program = torch.onnx.export(net, (ids,), dynamo=True, opset_version=18, **names)
        proto = program.model_proto
    else:
        scratch = path.with_suffix(".ts.onnx")
        torch.onnx.export(net, (ids,), str(scratch), dynamo=False, opset_version=17, **names)
        proto = onnx.load(str(scratch))
        scratch.unlink()
    proto.ir_version = min(proto.ir_version, 10)  # what ONNX Runtime loads
    onnx.save(proto, str(path))
    return path


def feed(seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids for the exported models."""
    return {"ids": np.random.default_rng(seed).integers(0, VOCAB, (1, SEQ)).astype(np.int64)}
