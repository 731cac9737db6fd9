"""Vision models of the ``transformers`` library that the corpus does not cover, as exported.

EfficientNet (TorchScript, dynamic batch): ``F.pad`` amounts computed from constants at run
time; SegFormer (TorchScript): a Mix-FFN that reshapes ``[B, C, H*W]`` to ``[B, C, H, W]`` for
its depthwise Conv, and a decode head resizing every stage to one size; ResNet: a 3-channel stem
and bottlenecks of 2 channels that 2:4 cannot take; ConvNeXt: channels-last LayerNorms that keep
the residual stream whole. Each is built with a tiny config, random weights (no download) and
exported once per module by ``tests.corpus.models.export``. Known answers: layer sizes from
the configs, counts by hand, and ONNX Runtime running the masked and the compacted models.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from tests.structured._common import params, run

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
from tests.corpus.models import _net, export  # noqa: E402  (needs torch)

pytestmark = [
    pytest.mark.slow,  # torch exports
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _pixels(size: int = 32) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _efficientnet():
    config = tf.EfficientNetConfig(
        num_channels=3, image_size=32, width_coefficient=0.1, depth_coefficient=0.1,
        hidden_dim=128, num_labels=5,
    )  # fmt: skip
    return _net(tf.EfficientNetForImageClassification(config), "logits", pixel_values=_pixels())


def _segformer():
    config = tf.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
        hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
        mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=4,
    )  # fmt: skip
    return _net(tf.SegformerForSemanticSegmentation(config), "logits", pixel_values=_pixels())


def _resnet():
    config = tf.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
        layer_type="bottleneck", num_labels=5,
    )  # fmt: skip
    return _net(tf.ResNetForImageClassification(config), "logits", pixel_values=_pixels())


def _convnext():
    config = tf.ConvNextConfig(
        num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5,
        image_size=32,
    )  # fmt: skip
    return _net(tf.ConvNextForImageClassification(config), "logits", pixel_values=_pixels())


def _mobilenet_v2():
    config = tf.MobileNetV2Config(
        num_channels=3, image_size=32, depth_multiplier=0.25, num_labels=5
    )
    return _net(tf.MobileNetV2ForImageClassification(config), "logits", pixel_values=_pixels())


BUILDERS = {
    "efficientnet": _efficientnet, "segformer": _segformer, "resnet": _resnet,
    "convnext": _convnext, "mobilenet_v2": _mobilenet_v2,
}  # fmt: skip


@functools.cache
def _model(name: str, exporter: str = "torchscript", dynamic: bool = False) -> onnx.ModelProto:
    """``name`` exported once per test session (the proto is copied by every entry)."""
    return export(BUILDERS[name](), exporter, dynamic=dynamic)


def _feed(batch: int = 1) -> dict[str, np.ndarray]:
    pixels = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32))
    return {"pixel_values": pixels.astype(np.float32)}


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(y).max())))


def _units(result, part: str) -> list[tuple[int, int]]:
    """The (kept, total) units of the layers whose label contains ``part`` (dotted, as the
    dynamo exporter's modules; TorchScript's node names have slashes)."""
    labels = {k: v.replace("/", ".") for k, v in result.labels.items()}
    return [units for name, units in result.units.items() if part in labels.get(name, "")]


def test_efficientnet_with_a_dynamic_batch_prunes_through_its_computed_pads():
    """The TorchScript export with a symbolic batch computes each ``F.pad``'s amounts from
    constants (ConstantOfShape, Concat, a reversing Slice...): they hold for every batch, so
    they fold, and each MBConv's expanded channels go through the Pad (half of 48, 96, 144);
    unfolded, the Pad blocked them. The result keeps the symbolic batch."""
    model = _model("efficientnet", dynamic=True)
    result = onnxprune.structured_prune(model, sparsity=0.5)

    assert not [b for b in result.blocked if b.op_type == "Pad"]
    expanded = _units(result, "expansion.expand_conv")
    assert expanded == [(24, 48)] * 4 + [(48, 96), (72, 144)]
    assert params(result.model) < params(model)
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for batch in (1, 3):
        _assert_same(run(result.model, _feed(batch)), run(result.masked, _feed(batch)))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_segformer_prunes_its_mix_ffn_and_decode_head(exporter):
    """The Mix-FFN's hidden channels (2 x the width: 16 and 32) pass the Reshape that splits
    ``H*W`` into ``H, W`` after them, and the decode head's projections (16 each) the Resize
    to one size, whose channel entry is rewritten (the dynamo export shares those sizes with
    Reshapes: the Resizes get a copy): each keeps half."""
    model = _model("segformer", exporter)
    result = onnxprune.structured_prune(model, sparsity=0.5)

    assert _units(result, "mlp.fc1") == [(8, 16), (16, 32)]
    assert _units(result, "linear_projections") == [(8, 16), (8, 16)]
    assert not [b for b in result.blocked if b.op_type in ("Reshape", "Resize")]
    sizes = [
        numpy_helper.to_array(t).tolist()
        for t in result.model.graph.initializer
        for n in result.model.graph.node
        if n.op_type == "Resize" and n.input[3] == t.name
    ]
    assert sizes and all(s[1] == 8 for s in sizes)  # [1, 16, 8, 8] -> 8 channels kept
    assert params(result.model) < params(model)
    _assert_same(run(result.model, _feed()), run(result.masked, _feed()))


def test_resnet_2_4_names_the_layers_it_leaves_dense():
    """The stem reads 3 RGB channels and the bottleneck's 3x3 and last 1x1 Convs read 8 / 4 = 2
    channels: 2:4 leaves those three dense and says so; every other layer loses half."""
    model = _model("resnet")
    result = onnxprune.prune(model, nm="2:4", skip_indivisible=True)

    (warning,) = [w for w in result.warnings if "left" in w]
    assert warning.startswith("2:4 left 3 layers dense, input size not a multiple of 4:")
    assert warning.count(" reads 3") == 1 and warning.count(" reads 2") == 2
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    total = halved = 0
    for name, mask in result.masks.items():
        reads = weights[name].shape[1]  # Conv [O, C, k, k] and Gemm [N, K] (transB) alike
        total += mask.size
        halved += mask.size // 2 if reads % 4 == 0 else 0
        assert (mask.mean() == 0.5) == (reads % 4 == 0), name
    assert math.isclose(result.report.direct_sparsity, halved / total)


def test_convnext_says_why_its_residual_stream_stays_whole():
    """A channels-last LayerNorm normalizes the channels together: it blocks them, and the
    residual Add reading its output says which input it cannot follow. The inverted
    bottleneck's 4x neurons (32 and 64) still lose half."""
    model = _model("convnext")
    result = onnxprune.structured_prune(model, sparsity=0.5)

    reasons = {b.op_type: b.reason for b in result.blocked}
    assert reasons["LayerNormalization"].endswith("it normalizes over the units' axis")
    norm_out = "/model/convnext/embeddings/layernorm/Transpose_1_output_0"  # back to NCHW
    assert (
        f"input {norm_out!r} varies along the units' axis without carrying them" in (reasons["Add"])
    )
    assert _units(result, "pwconv1") == [(16, 32), (32, 64)]
    assert params(result.model) < params(model)
    _assert_same(run(result.model, _feed()), run(result.masked, _feed()))


def _linearized_active(module, shape: tuple[int, ...]) -> dict[str, object]:
    """Vysogorets & Kempe's reference (arXiv 2107.02306): active entries of each Conv/Linear
    weight of a float64 copy with weights ``|w|``, biases 0, BatchNorm and ReLU(6) removed and
    max-pooling read as averaging (any input of a window may be the max), by backprop of the
    output's sum from an input of ones."""
    nn = torch.nn
    lin = copy.deepcopy(module).double().eval()
    for parent in list(lin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Dropout)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    with torch.no_grad():
        for name, p in lin.named_parameters():
            p.copy_(p.abs() * (not name.endswith("bias")))
    lin(torch.ones(shape, dtype=torch.float64)).sum().backward()
    return {
        f"{name}.weight": m.weight.grad * m.weight != 0
        for name, m in lin.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


@pytest.mark.parametrize("name", ["resnet", "mobilenet_v2"])
def test_exact_effective_sparsity_equals_the_torch_reference(name):
    """60% global magnitude on the dynamo export (weights keep their module names), the masks
    put back on the module: the exact level's active weights are the reference's, weight by
    weight (the bottleneck's 2 channels, MobileNetV2's depthwise Convs and TF-style padding)."""
    net = BUILDERS[name]()
    result = onnxprune.prune(_model(name, "dynamo"), sparsity=0.6, level="exact")
    params = dict(net.module.named_parameters())
    with torch.no_grad():
        for key, mask in result.masks.items():
            params[key].mul_(torch.from_numpy(mask).reshape(params[key].shape))
    active = _linearized_active(net.module, tuple(net.inputs["pixel_values"].shape))
    reference = {key: int(active[key].sum()) for key in result.masks}
    total = sum(mask.size for mask in result.masks.values())
    assert 1 - sum(reference.values()) / total == pytest.approx(
        result.report.effective_sparsity, abs=1e-12
    )
    assert {layer.name: layer.active for layer in result.report.layers} == reference
