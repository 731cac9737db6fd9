"""Small modules, their TorchScript exports and ONNX Runtime runs, for the torch hook tests.

Every export is in eval mode with the TorchScript exporter (``dynamo=False``), so BatchNorm folds
into the preceding convolution under a new name (``onnx::Conv_15``) and nodes are named after the
module that made them (``/block/block.0/Conv``).
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

LEGACY_EXPORTER_WARNINGS = [
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning",
    "ignore:The feature will be removed:DeprecationWarning",
]


def export(
    module: nn.Module,
    shape: tuple[int, ...],
    *,
    opset: int = 17,
    input_name: str = "x",
    output_name: str = "y",
) -> onnx.ModelProto:
    """``module`` exported in eval mode with a symbolic batch dimension, IR capped at 10."""
    module.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.randn(*shape),),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
    )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    return model


def without_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose nodes have no names (as optimizers such as onnxsim leave them)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        node.name = ""
    return copy


def renamed(model: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
    """A copy with initializers (and their uses) renamed, node names removed."""
    copy = without_node_names(model)
    for t in copy.graph.initializer:
        t.name = names.get(t.name, t.name)
    for node in copy.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    return copy


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The first output of ``model`` on ``x`` (its only input), with ONNX Runtime on the CPU."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """``module(x)`` in eval mode, as NumPy."""
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


class ConvBnNet(nn.Module):
    """Conv-BN-ReLU twice (same shapes, defined in reverse call order), then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        # ``second`` is defined first on purpose: definition order != execution order.
        self.second = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.first = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of [N, 3, H, W] images."""
        x = torch.relu(self.stem(x))
        x = self.second(self.first(x))
        return self.head(x.mean(dim=(2, 3)))


class GroupedNet(nn.Module):
    """A grouped and a plain convolution with the same weight shape, and a depthwise one."""

    def __init__(self) -> None:
        super().__init__()
        self.plain = nn.Conv2d(2, 8, 3, padding=1)  # weight [8, 2, 3, 3], groups 1
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # weight [8, 2, 3, 3], groups 4
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # weight [8, 1, 3, 3]
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 2, H, W] -> [N, 8, H, W]."""
        return self.bn(self.depthwise(torch.relu(self.grouped(torch.relu(self.plain(x))))))


class ResidualNet(nn.Module):
    """Two residual blocks of identical shapes, Conv+BN inside, summed with their input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(4, 4, 3, padding=1, bias=False),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Conv2d(4, 4, 3, padding=1, bias=False),
                nn.BatchNorm2d(4),
            )
            for _ in range(2)
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of [N, 1, H, W] images."""
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean(dim=(2, 3)))


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (folding then matters)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
