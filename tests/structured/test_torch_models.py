"""Compaction and structured pruning of torch-exported VGG-like, ResNet-like and MLP models."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from onnxprune.sparsity import analyze
from onnxprune.structured import compact, structured_prune
from tests.structured._common import close, export, run

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


class VGGLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x):
        return self.head(self.features(x))


class ResNetLike(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(x + y), 1), 1))


def _mlp():
    return nn.Sequential(
        nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 30), nn.Tanh(), nn.Linear(30, 4)
    )


MODELS = {
    "vgg": (VGGLike, (2, 3, 8, 8)),
    "resnet": (ResNetLike, (2, 3, 8, 8)),
    "mlp": (_mlp, (2, 12)),
}


def _export(name: str, amount: float) -> onnx.ModelProto:
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    net = factory().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(torch.rand_like(m.weight) >= amount)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return export(torch, net, shape)


def _outputs(model: onnx.ModelProto, name: str) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(4, *MODELS[name][1][1:])).astype(np.float32)
    return run(model, {"x": x})[0]


@pytest.mark.parametrize("amount", [0.8, 0.95])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compaction_keeps_outputs(name, amount):
    model = _export(name, amount)
    result = compact(model)
    onnx.checker.check_model(result.model, full_check=True)
    assert close(_outputs(model, name), _outputs(result.model, name))
    if amount == 0.95:
        assert result.params_after < result.params_before


@pytest.mark.parametrize("amount", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("name", ["vgg", "mlp"])
def test_compaction_removes_every_unit_the_analysis_finds_dead(name, amount):
    model = _export(name, amount)
    result = compact(model)
    *hidden, last = analyze(model).layers  # the last layer's units are the graph's outputs
    assert result.removed == {row.name: row.dead_outputs for row in hidden if row.dead_outputs}
    assert all(row.dead_outputs == 0 for row in analyze(result.model).layers[:-1])
    assert analyze(result.model).layers[-1].dead_outputs == last.dead_outputs


def test_vgg_parameter_count_after_structured_pruning():
    result = structured_prune(_export("vgg", 0.0), sparsity=0.5)
    (c1, n1), (c2, n2), (f1, n3) = result.units.values()  # BN is folded into the convs
    assert (n1, n2, n3) == (16, 16, 32) and (c1, c2, f1) == (8, 8, 16)
    spread = 2 * 2  # an 8x8 input pooled twice: each channel is 4 features of the Linear
    expected = (c1 * 3 * 9 + c1) + (c2 * c1 * 9 + c2) + (f1 * c2 * spread + f1) + (5 * f1 + 5)
    assert result.compaction.params_after == expected


@pytest.mark.parametrize("name", sorted(MODELS))
def test_structured_equals_masked(name):
    result = structured_prune(_export(name, 0.0), sparsity=0.5, criterion="l1")
    onnx.checker.check_model(result.model, full_check=True)
    assert result.units
    assert close(_outputs(result.masked, name), _outputs(result.model, name))


def test_residual_group_removed_together():
    model = _export("resnet", 0.0)
    result = structured_prune(model, sparsity=0.5)
    convs = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    stem, conv1, conv2 = convs
    assert result.units == {stem: (4, 8), conv1: (4, 8), conv2: (4, 8)}
    masked = {t.name: onnx.numpy_helper.to_array(t) for t in result.masked.graph.initializer}
    gone_stem = ~masked[stem].reshape(8, -1).any(axis=1)
    gone_conv2 = ~masked[conv2].reshape(8, -1).any(axis=1)
    assert gone_stem.sum() == 4 and np.array_equal(gone_stem, gone_conv2)


class EncoderBlock(nn.Module):
    """Self-attention, LayerNorm and a GELU feed-forward block with a residual, then a head."""

    def __init__(self, d: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self.norm(x + a)
        x = x + self.fc2(nn.functional.gelu(self.fc1(x)))
        return self.head(x.mean(1))


@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")  # attention trace
def test_transformer_feed_forward_neurons_are_pruned_and_the_rest_kept():
    torch.manual_seed(0)
    model = export(torch, EncoderBlock(), (2, 5, 16))
    result = structured_prune(model, sparsity=0.5)
    onnx.checker.check_model(result.model, full_check=True)
    fc1 = next(n.input[1] for n in model.graph.node if n.op_type == "MatMul" and "fc1" in n.name)
    # only the hidden neurons of the feed-forward block (GELU is Div/Erf/Add/Mul/Mul, per unit);
    # the model width meets LayerNorm, attention reshapes and the residual: left alone
    assert result.units == {fc1: (32, 64)}
    d = 16  # a removed neuron: its fc1 row and bias, its fc2 column
    before, after = (
        {t.name: t.dims for t in m.graph.initializer} for m in (model, result.model)
    )  # shape arithmetic of constants alone is folded (new names): weights kept their names
    lost = sum(math.prod(before[k]) - math.prod(after[k]) for k in before.keys() & after.keys())
    assert lost == 32 * (d + 1 + d)
    x = np.random.default_rng(0).normal(size=(3, 5, 16)).astype(np.float32)
    assert close(run(result.masked, {"x": x})[0], run(result.model, {"x": x})[0])


@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_compacted_model_compacts_to_itself_and_prunes_further(name):
    model = _export(name, 0.95)
    once = compact(model).model
    twice = compact(once)
    assert twice.removed == {} and twice.params_after == twice.params_before
    assert [n.op_type for n in twice.model.graph.node] == [n.op_type for n in once.graph.node]
    again = structured_prune(once, sparsity=0.3)
    convs = [
        n.input[1] for n in once.graph.node if n.op_type == "Conv" and "folded" not in n.input[1]
    ]
    assert set(convs) <= set(again.units)  # folded maps block nothing
    assert close(_outputs(model, name), _outputs(once, name))
    assert close(_outputs(again.masked, name), _outputs(again.model, name))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_depthwise_conv_transpose_upsampling_equals_the_smaller_torch_module():
    """Conv -> depthwise ConvTranspose (stride 2, learned upsampling) -> Conv: each upsampled
    channel comes from one channel, so the two go together and ``group`` follows them. The
    compacted model equals torch running the module built from the kept channels."""
    torch.manual_seed(0)

    def net(c):
        return nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, groups=c), nn.ReLU(),
            nn.Conv2d(c, 3, 1),
        )  # fmt: skip

    module = net(8).eval()
    model = export(torch, module, (1, 3, 6, 6))
    result = structured_prune(model, sparsity=0.5)
    conv1, up = [n.input[1] for n in model.graph.node if n.op_type.startswith("Conv")][:2]
    assert result.units[conv1] == result.units[up] == (4, 8)
    w = next(t for t in result.masked.graph.initializer if t.name == conv1)
    keep = torch.from_numpy(onnx.numpy_helper.to_array(w).reshape(8, -1).any(axis=1))
    small = net(4).eval()
    with torch.no_grad():
        for i in (0, 2):
            small[i].weight.copy_(module[i].weight[keep])
            small[i].bias.copy_(module[i].bias[keep])
        small[4].weight.copy_(module[4].weight[:, keep])
        small[4].bias.copy_(module[4].bias)
        x = torch.randn(2, 3, 6, 6)
        expected = small(x).numpy()
    assert close(expected, run(result.model, {"x": x.numpy()})[0])
