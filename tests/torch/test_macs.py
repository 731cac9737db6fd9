"""MACs of a model exported from PyTorch against a sum over its modules' own shapes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from onnxprune.macs import count_macs  # noqa: E402
from tests.torch.helpers import LEGACY_EXPORTER_WARNINGS, export  # noqa: E402

nn = torch.nn
pytestmark = [pytest.mark.filterwarnings(w) for w in LEGACY_EXPORTER_WARNINGS]


class Net(nn.Module):
    """Strided, grouped, dilated and transposed convolutions, then linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, groups=4, dilation=2, padding=2),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 8, 2, stride=2, groups=2),
            nn.ReLU(),
            nn.Conv2d(8, 8, 1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 12 * 12, 20), nn.ReLU(),
                                  nn.Linear(20, 10))  # fmt: skip

    def forward(self, x):
        return self.head(self.features(x))


def _module_macs(net: nn.Module, x: torch.Tensor) -> int:
    """The sum, over the conv and linear modules, of MACs from the shapes PyTorch saw."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        w = module.weight
        if isinstance(module, nn.ConvTranspose2d):  # every input element scatters its weights
            total += inputs[0].numel() * math.prod(w.shape[1:])
        elif isinstance(module, nn.Conv2d):  # every output element gathers one filter
            total += output.numel() * math.prod(w.shape[1:])
        else:  # Linear: every output element sums in_features products
            total += output.numel() * module.in_features

    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, layers)]
    with torch.no_grad():
        net.eval()(x)
    for handle in handles:
        handle.remove()
    return total


def test_exported_net_counts_what_its_modules_compute():
    net = Net()
    shape = (1, 3, 12, 12)
    expected = _module_macs(net, torch.randn(*shape))
    model = export(net, shape)
    assert count_macs(model).macs == expected  # the batch is symbolic: one sample
    assert count_macs(model, {"x": (4, 3, 12, 12)}).macs == 4 * expected
