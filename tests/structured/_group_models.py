"""Models that both ``test_groups_*`` files build: a graph from nodes and arrays, and a small
DenseNet-like torch net with trained-looking batch norms."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str]],
    outputs: dict[str, list[int | str] | None],
    inits: dict[str, np.ndarray],
    opset: int = 17,
    domains: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    """Float inputs and outputs, initializers stored as given (float64 becomes float32)."""
    tensors = [
        numpy_helper.from_array(v.astype(np.float32) if v.dtype == np.float64 else v, k)
        for k, v in inits.items()
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in outputs.items()],
        tensors,
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    return helper.make_model(graph, ir_version=10, opset_imports=opsets)


def randomize_batchnorms(torch, net) -> None:
    """Trained-looking statistics (also keeps torch from sharing the default 0/1 tensors)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


def dense_like(torch):
    """DenseNet-like: every layer reads the concat of all features before it."""
    nn = torch.nn

    class DenseLike(nn.Module):
        """stem 3->8; three layers BN-ReLU-Conv1x1 (growth 4) over the concat of all earlier
        features (8, 12, 16 channels); transition BN-ReLU-Conv1x1 20->8, AvgPool; GAP, Linear."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(8 + 4 * i), nn.ReLU(), nn.Conv2d(8 + 4 * i, 4, 1))
                for i in range(3)
            )
            self.trans = nn.Sequential(
                nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 8, 1), nn.AvgPool2d(2)
            )
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            features = [self.stem(x)]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            h = self.trans(torch.cat(features, 1))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))

    return DenseLike()
