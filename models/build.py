"""Rebuild the sample models in this folder from scikit-learn's bundled digits set.

Trains, with fixed seeds, a LeNet-300-100-style MLP and a small CNN with BatchNorm and a residual
block in PyTorch, exports both to ONNX (IR 8, opset 17), writes the test split as
``digits_test.npz`` (arrays named after the models' inputs, plus ``labels``) and a copy of the
MLP with 95% of its weights removed by global magnitude pruning, to show the gap between direct
and effective sparsity. It also trains a scikit-learn ``MLPClassifier`` on the same split and
exports it with skl2onnx, probabilities first. Needs the ``torch`` and ``dev`` extras:

    .venv/bin/python models/build.py              # everything
    .venv/bin/python models/build.py --only skl   # only skl_mlp_digits.onnx (seconds)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from torch import nn
from torch.nn.utils import prune

HERE = Path(__file__).parent
SEED = 0
OPSET = 17
ML_OPSET = 3  # ai.onnx.ml; skl2onnx declares only the version its ops need (1 here)
SKL_HIDDEN = (128, 64)


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


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The stratified 75/25 split: images [N, 8, 8] in [0, 1] (float32) and labels."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target
    )
    return x_train, x_test, y_train, y_test


def build_skl(x_train: np.ndarray, y_train: np.ndarray) -> Path:
    """Train a scikit-learn MLP on flat 64-feature digits and export it with skl2onnx.

    ``zipmap`` is off, so the probabilities are a plain float tensor [N, 10]; skl2onnx lists the
    label first, so the outputs are reordered to ``probabilities`` then ``label``.
    """
    clf = MLPClassifier(
        hidden_layer_sizes=SKL_HIDDEN, solver="adam", max_iter=500, random_state=SEED
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # max_iter must be enough to converge
        clf.fit(x_train.reshape(-1, 64), y_train)
    proto = to_onnx(
        clf,
        initial_types=[("x", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    outputs = sorted(proto.graph.output, key=lambda o: o.name != "probabilities")
    if outputs[0].name != "probabilities":
        raise RuntimeError(f"skl2onnx gave no 'probabilities' output: {[o.name for o in outputs]}")
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    proto.ir_version = min(proto.ir_version, 8)
    proto.producer_name = "onnxprune models/build.py"
    onnx.checker.check_model(proto, full_check=True)
    path = HERE / "skl_mlp_digits.onnx"
    onnx.save(proto, path)
    return path


def main(argv: list[str] | None = None) -> None:
    """Train, export and describe the sample models."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=["skl"], help="rebuild only this model (the torch ones are left as is)"
    )
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = _split()
    flat_test = x_test.reshape(-1, 64)
    image_test = x_test.reshape(-1, 1, 8, 8)
    results = {"skl_mlp_digits": (build_skl(x_train, y_train), flat_test)}
    if args.only is None:
        results.update(_build_torch(x_train, y_train, flat_test, image_test, y_test))
    for name, (path, inputs) in results.items():
        print(f"{name}: test accuracy {_accuracy(path, inputs, y_test):.4f}")


def _build_torch(
    x_train: np.ndarray,
    y_train: np.ndarray,
    flat_test: np.ndarray,
    image_test: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, tuple[Path, np.ndarray]]:
    """The test split file and the PyTorch models, as {name: (path, test inputs)}."""
    torch.manual_seed(SEED)
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
    return results


if __name__ == "__main__":
    main()
