"""Our dependency groups against Torch-Pruning's DepGraph, an independent implementation.

The same torch network is pruned twice at 50% of the channels per layer (L1 magnitude, the
classifier left alone): by Torch-Pruning on the module, and by ``structured_prune`` on its ONNX
export. Both must remove the same number of channels from the same layers, so the pruned
convolution and linear weights have the same shapes. Channel choices may differ (Torch-Pruning
also scores the consumers' input weights), counts and coupling may not: a residual sum, a dense
Concat, a depthwise or a grouped conv coupled differently would change the shapes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from onnxprune.structured import structured_prune
from tests.structured._common import assert_pruned_like_masked, export

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")
nn = torch.nn

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, mid), nn.ReLU(), _conv_bn(mid, mid, 3, stride), nn.ReLU(),
            _conv_bn(mid, cout),
        )  # fmt: skip
        same = cin == cout and stride == 1
        self.down = nn.Identity() if same else _conv_bn(cin, cout, 1, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.down(x))


class ResNet(nn.Module):
    """Bottlenecks with projection and identity shortcuts, as in ResNet-50."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 16, 3), nn.ReLU())
        self.blocks = nn.Sequential(
            Bottleneck(16, 8, 32, 1), Bottleneck(32, 8, 32, 1),
            Bottleneck(32, 16, 64, 2), Bottleneck(64, 16, 64, 1),
        )  # fmt: skip
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(
            torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)
        )


class DenseNet(nn.Module):
    """A dense block (each layer reads the Concat of all before it), a transition, a head."""

    def __init__(self, growth: int = 8) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16, 3)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.ReLU(), _conv_bn(16 + i * growth, growth, 3)) for i in range(3)
        )
        self.transition = nn.Sequential(nn.ReLU(), _conv_bn(16 + 3 * growth, 24), nn.AvgPool2d(2))
        self.fc = nn.Linear(24 * 8 * 8, 10)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return self.fc(torch.flatten(self.transition(torch.cat(features, 1)), 1))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        hidden = c * expand
        self.body = nn.Sequential(
            _conv_bn(c, hidden), nn.ReLU6(), _conv_bn(hidden, hidden, 3, groups=hidden),
            nn.ReLU6(), _conv_bn(hidden, c),
        )  # fmt: skip

    def forward(self, x):
        return x + self.body(x)


class MobileNet(nn.Module):
    """MobileNetV2-like: depthwise convs inside inverted residuals."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 16, 3, 2), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(16, 4), InvertedResidual(16, 6))
        self.head = nn.Sequential(_conv_bn(16, 32), nn.ReLU6())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class ResNeXt(nn.Module):
    """Bottlenecks whose 3x3 is a grouped conv (4 groups), with identity shortcuts."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 16, 3), nn.ReLU())
        self.blocks = nn.Sequential(*(self._block() for _ in range(2)))
        self.fc = nn.Linear(16, 10)

    @staticmethod
    def _block() -> nn.Module:
        block = Bottleneck(16, 16, 16, 1)
        block.body[2] = _conv_bn(16, 16, 3, groups=4)
        return block

    def forward(self, x):
        y = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


NETS = {"resnet": ResNet, "densenet": DenseNet, "mobilenet": MobileNet, "resnext": ResNeXt}


def _shapes_by_torch_pruning(net, x) -> list[tuple[int, ...]]:
    net = copy.deepcopy(net)
    pruner = tp.pruner.MetaPruner(
        net,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        global_pruning=False,
        ignored_layers=[net.fc],
    )
    pruner.step()
    layers = (nn.Conv2d, nn.Linear)
    return sorted(tuple(m.weight.shape) for m in net.modules() if isinstance(m, layers))


@pytest.mark.parametrize("name", sorted(NETS))
def test_pruned_layer_shapes_equal_torch_pruning(name):
    torch.manual_seed(0)
    net = NETS[name]().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    shape = (1, 3, 16, 16)
    model = export(torch, net, shape)
    result = structured_prune(model, sparsity=0.5, criterion="l1")
    layers = {n.input[1] for n in result.model.graph.node if n.op_type in ("Conv", "Gemm")}
    ours = sorted(
        tuple(t.dims) for t in result.model.graph.initializer if t.name in layers
    )  # BatchNorm is folded into the convs by the export; the kernels keep their shapes
    assert ours == _shapes_by_torch_pruning(net, torch.randn(*shape))
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert_pruned_like_masked(result, {"x": x})
