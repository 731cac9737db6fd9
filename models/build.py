"""Rebuild the sample models in this folder from scikit-learn's bundled digits set.

Trains, with fixed seeds, a LeNet-300-100-style MLP and a small CNN with BatchNorm and a residual
block in PyTorch, exports both to ONNX (IR 8, opset 17), writes the test split as
``digits_test.npz`` (arrays named after the models' inputs, plus ``labels``) and a copy of the
MLP with 95% of its weights removed by global magnitude pruning, to show the gap between direct
and effective sparsity. Needs the ``torch`` and ``dev`` extras:

    .venv/bin/python models/build.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.utils import prune

HERE = Path(__file__).parent
SEED = 0
OPSET = 17


class Mlp(nn.Module):
    """LeNet-300-100 on 8x8 digits: 64 -> 300 -> 100 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of flattened 8x8 images."""
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Cnn(nn.Module):
    """Conv-BN-ReLU stem, one residual block, global average pool, linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of [N, 1, 8, 8] images."""
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = torch.relu(self.down(x))
        return self.head(x.mean(dim=(2, 3)))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()


def _export(model: nn.Module, example: torch.Tensor, name: str, input_name: str) -> Path:
    path = HERE / f"{name}.onnx"
    torch.onnx.export(
        model,
        example,
        path,
        dynamo=False,
        opset_version=OPSET,
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(path)
    proto.ir_version = min(proto.ir_version, 8)
    proto.producer_name = "onnxprune models/build.py"
    onnx.save(proto, path)
    return path


def _accuracy(path: Path, inputs: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def main() -> None:
    """Train, export and describe the sample models."""
    torch.manual_seed(SEED)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target
    )
    flat_test = x_test.reshape(-1, 64)
    image_test = x_test.reshape(-1, 1, 8, 8)
    np.savez_compressed(
        HERE / "digits_test.npz", x=flat_test, image=image_test, labels=y_test.astype(np.int64)
    )
    yt = torch.as_tensor(y_train)
    mlp, cnn = Mlp(), Cnn()
    _train(mlp, torch.as_tensor(x_train.reshape(-1, 64)), yt, epochs=40)
    _train(cnn, torch.as_tensor(x_train.reshape(-1, 1, 8, 8)), yt, epochs=40)
    results = {
        "mlp_digits": (_export(mlp, torch.zeros(1, 64), "mlp_digits", "x"), flat_test),
        "cnn_digits": (_export(cnn, torch.zeros(1, 1, 8, 8), "cnn_digits", "image"), image_test),
    }
    weights = [(mlp.fc1, "weight"), (mlp.fc2, "weight"), (mlp.fc3, "weight")]
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=0.95)
    for module, name in weights:
        prune.remove(module, name)
    pruned = _export(mlp, torch.zeros(1, 64), "mlp_digits_pruned95", "x")
    results["mlp_digits_pruned95"] = (pruned, flat_test)
    for name, (path, inputs) in results.items():
        print(f"{name}: test accuracy {_accuracy(path, inputs, y_test):.4f}")


if __name__ == "__main__":
    main()
