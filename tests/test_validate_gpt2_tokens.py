"""A GPT-2 language model (``transformers``, random init) pruned, then validated per token.

The model's logits are ``[1, T, V]`` per sample; ``class_axis=-1`` must give the agreement of
every sample and token, which the reference computes from the two models' ONNX Runtime outputs
with loops over samples and tokens.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnxprune
from onnxprune.validation import Dataset
from tests.helpers import QUICK_TIMING
from tests.structured._transformers import MARKS, SEQ, VOCAB, export, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = MARKS

SAMPLES = 6


def _logits(path, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"ids": row[None]})[0] for row in ids])


def test_pruned_gpt2_agrees_per_token_as_the_loops_count(tmp_path) -> None:
    config = transformers.GPT2Config(
        n_embd=64, n_layer=2, n_head=4, n_positions=SEQ, vocab_size=VOCAB, use_cache=False
    )
    dense = export(
        torch, randomize(torch, transformers.GPT2LMHeadModel(config)), "torchscript",
        tmp_path / "gpt2.onnx",
    )  # fmt: skip
    pruned = tmp_path / "pruned.onnx"
    onnxprune.save_model(onnxprune.prune(dense, sparsity=0.5).model, pruned)
    ids = np.random.default_rng(3).integers(0, VOCAB, (SAMPLES, SEQ)).astype(np.int64)
    a, b = _logits(pruned, ids), _logits(dense, ids)
    assert a.shape == (SAMPLES, SEQ, VOCAB)
    labels = np.roll(ids, -1, axis=1)  # the next token (wrapping at the end): [N, T]
    agree = agree5 = correct = 0
    for n in range(SAMPLES):
        for t in range(SEQ):
            order = np.argsort(-a[n, t], kind="stable").tolist()
            best = int(np.argmax(b[n, t]))
            agree += order[0] == best
            agree5 += best in order[:5]
            correct += order[0] == labels[n, t]
    result = onnxprune.validate(
        pruned, Dataset({"ids": ids}, labels, SAMPLES), baseline=dense, provider="cpu",
        class_axis=-1, **QUICK_TIMING,
    )  # fmt: skip
    positions = SAMPLES * SEQ
    assert result.agreement == pytest.approx(agree / positions)
    assert result.outputs["y"]["top5_agreement"] == pytest.approx(agree5 / positions)
    assert result.top1 == pytest.approx(correct / positions)
    assert 0 < result.agreement < 1  # half the weights gone changes some tokens, not all
