"""The corpus's models: tiny random-init networks as users export them, built without downloads.

Each transformer comes from the ``transformers`` library's classes with a tiny config (no weights
fetched) and is exported with both torch exporters (TorchScript ``dynamo=False`` at opset 17,
and ``dynamo=True``), at static shapes and with dynamic axes; the recurrent nets are
``torch.nn`` LSTM/GRU (2 layers, bidirectional) with a ``Linear`` head, by both exporters;
the control-flow model keeps its layers in the branches of an ``If`` (weights as Constant
nodes and as subgraph initializers, as voice-activity models ship them), built with
``onnx.helper``.

Every parameter (biases and norms included) is drawn at random under a fixed seed: a freshly
initialized model has identical zero biases, which the dynamo exporter stores once and shares.
Tied parameters stay tied (they are one tensor).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import onnx
import torch
import transformers as tf

VOCAB = 64
"""Vocabulary of the language models; token ids are drawn below it."""


@dataclass(frozen=True)
class Net:
    """A torch module to export and its example inputs (their shapes are the model's)."""

    module: object
    inputs: dict[str, object]


def _seeded(module):
    """``module`` in eval mode, every parameter redrawn from N(0, 0.3^2) (seed 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module.eval()


def _ids(batch: int, length: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


class _Output(torch.nn.Module):
    """A ``transformers`` model with one output, the ``field`` of its result; it takes its
    inputs in the order of ``names`` (the model's keyword arguments)."""

    def __init__(self, model: torch.nn.Module, field: str, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.field = field
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(**dict(zip(self.names, args, strict=True))), self.field)


def _net(model: torch.nn.Module, field: str, **inputs: torch.Tensor) -> Net:
    """``model`` (parameters redrawn) returning ``field``, with ``inputs`` by keyword."""
    return Net(_Output(_seeded(model), field, list(inputs)), inputs)


def _tokens(batch: int, length: int) -> dict[str, torch.Tensor]:
    """Token ids and an attention mask of ones (a decoder without a mask checks its position
    ids for packed sequences with ``aten::diff``, which TorchScript cannot export)."""
    mask = torch.ones(batch, length, dtype=torch.int64)
    return {"input_ids": _ids(batch, length), "attention_mask": mask}


def bert() -> Net:
    config = tf.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
    )  # fmt: skip
    return _net(tf.BertForSequenceClassification(config), "logits", input_ids=_ids(2, 8))


def bert_eager() -> Net:
    """``bert`` with eager attention and an attention mask: the form ONNX Runtime's optimizer
    fuses into its ``Attention`` op (it does not match the SDPA export). Not a corpus case."""
    config = tf.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        attn_implementation="eager",
    )  # fmt: skip
    return _net(tf.BertForSequenceClassification(config), "logits", **_tokens(2, 8))


def gpt2() -> Net:
    config = tf.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=16, use_cache=False,
        bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    return _net(tf.GPT2LMHeadModel(config), "logits", **_tokens(1, 8))


def llama() -> Net:
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    config = tf.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16, use_cache=False,
    )  # fmt: skip
    return _net(tf.LlamaForCausalLM(config), "logits", **_tokens(1, 8))


def vit() -> Net:
    config = tf.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=32, num_labels=5,
    )  # fmt: skip
    pixels = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return _net(tf.ViTForImageClassification(config), "logits", pixel_values=pixels)


def whisper() -> Net:
    """The encoder and a classification head (``WhisperForAudioClassification``)."""
    config = tf.WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=8, d_model=16, encoder_layers=2, encoder_attention_heads=4,
        encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=32,
        max_source_positions=8, max_target_positions=8, num_labels=4, pad_token_id=1,
        bos_token_id=2, eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    features = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))  # 2 x positions
    model = tf.WhisperForAudioClassification(config)
    return _net(model, "logits", input_features=features)


class _Recurrent(torch.nn.Module):
    """``kind`` (``LSTM``/``GRU``): 6 features, 8 hidden units, 2 layers, bidirectional, sequence
    first; a ``Linear`` head on every step."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(6, 8, num_layers=2, bidirectional=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def lstm() -> Net:
    return _recurrent("LSTM")


def gru() -> Net:
    return _recurrent("GRU")


def _recurrent(kind: str) -> Net:
    x = torch.randn(5, 2, 6, generator=torch.Generator().manual_seed(1))  # [T, B, F]
    return Net(_seeded(_Recurrent(kind)), {"x": x})


BUILDERS = {
    "bert": bert, "gpt2": gpt2, "llama": llama, "vit": vit, "whisper": whisper,
    "lstm": lstm, "gru": gru,
}  # fmt: skip
"""Every torch model of the corpus by name; the transformers are exported by both exporters."""


def dynamic_axes(net: Net) -> dict[str, dict[int, str]]:
    """Axis 0 of every input is ``batch``; axis 1 of token inputs (integer, 2-D) ``sequence``."""
    return {
        name: {0: "batch", 1: "sequence"} if not x.is_floating_point() else {0: "batch"}
        for name, x in net.inputs.items()
    }


def export(net: Net, exporter: str, *, dynamic: bool = False) -> onnx.ModelProto:
    """``net`` exported by ``exporter`` (``torchscript`` at opset 17, or ``dynamo``), inputs
    named as ``net.inputs``, IR version at most 10 (what ONNX Runtime loads); static shapes, or
    with ``dynamic`` the symbolic dimensions of ``dynamic_axes``."""
    net.module.eval()
    args = tuple(net.inputs.values())
    names = list(net.inputs)
    axes = dynamic_axes(net) if dynamic else None
    if exporter == "dynamo":
        shapes = _dynamic_shapes(net, axes) if dynamic else None
        program = torch.onnx.export(
            net.module, args, dynamo=True, input_names=names, dynamic_shapes=shapes, verbose=False
        )
        model = program.model_proto
    else:
        buffer = io.BytesIO()
        torch.onnx.export(
            net.module, args, buffer, dynamo=False, opset_version=17, input_names=names,
            dynamic_axes=axes,
        )  # fmt: skip
        model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    return model


def _dynamic_shapes(net: Net, axes: dict[str, dict[int, str]]) -> tuple:
    """``axes`` as ``torch.export`` takes them (the dynamo exporter of torch 2.13 cannot convert
    ``dynamic_axes`` of these models): one ``Dim`` per name, a spec per positional argument
    (packed in one tuple for ``_Output``'s ``*args``)."""
    dims: dict[str, object] = {}
    specs = tuple(
        {axis: dims.setdefault(name, torch.export.Dim(name, max=64)) for axis, name in a.items()}
        for a in axes.values()
    )
    return (specs,) if isinstance(net.module, _Output) else specs
