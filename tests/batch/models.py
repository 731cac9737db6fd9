"""Models for batch tests: small MLPs with evaluation data, broken files, external data.

``write_big_model`` and ``measure_streaming`` serve the peak-memory test and
``benchmarks/batch.py`` alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IN, HIDDEN, OUT = 8, 16, 4


def mlp(seed: int) -> onnx.ModelProto:
    """x[N, 8] -> MatMul w1[8, 16] -> Relu -> MatMul w2[16, 4] -> y; 192 prunable weights."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((IN, HIDDEN)).astype(np.float32)
    w2 = rng.standard_normal((HIDDEN, OUT)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", OUT])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def eval_data(model: onnx.ModelProto, path: Path, samples: int = 40, seed: int = 0) -> Path:
    """Inputs and the dense model's own top-1 as labels (so its accuracy is 100%)."""
    x = np.random.default_rng(seed).standard_normal((samples, IN)).astype(np.float32)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    logits = np.maximum(x @ weights["w1"], 0) @ weights["w2"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, labels=np.argmax(logits, axis=1))
    return path


def unknown_op() -> onnx.ModelProto:
    """A graph with an op no ONNX opset defines: the checker refuses it."""
    model = mlp(99)
    model.graph.node[1].op_type = "NoSuchOp"
    return model


def save(model: onnx.ModelProto, path: Path, external: bool = False) -> Path:
    """Write ``model``; with ``external``, every tensor goes to ``<name>.data`` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        path,
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=f"{path.stem}.data",
        size_threshold=0,
    )
    return path


def zoo(root: Path) -> dict[str, Path]:
    """A folder of two good models (one in a subfolder) and two broken ones."""
    models = {
        "a.onnx": save(mlp(1), root / "a.onnx"),
        "sub/b.onnx": save(mlp(2), root / "sub" / "b.onnx"),
        "corrupt.onnx": root / "corrupt.onnx",
        "sub/unknown_op.onnx": save(unknown_op(), root / "sub" / "unknown_op.onnx"),
    }
    models["corrupt.onnx"].write_bytes(b"\x08\x07this is not a protobuf\xff\xff")
    return models


MEASURE = """
import json, sys, time
from onnxprune.pruners.streaming import prune_streaming

def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak restarts from the current resident set
base = peak()
began = time.perf_counter()
result = prune_streaming(sys.argv[1], sys.argv[2], sparsity=0.9, allocation=sys.argv[3])
seconds = time.perf_counter() - began
direct = result.report.direct_sparsity
print(json.dumps({"growth": peak() - base, "seconds": seconds, "direct": direct}))
"""


def write_big_model(folder: Path, layers: int, a: int, b: int) -> Path:
    """An MLP of ``layers`` alternating [a, b] / [b, a] weights, written one tensor at a time."""
    rng = np.random.default_rng(0)
    initializers, nodes, x = [], [], "x"
    with (folder / "big.data").open("wb") as f:
        for i in range(layers):
            shape = (a, b) if i % 2 == 0 else (b, a)
            offset = f.tell()
            rng.standard_normal(shape, dtype=np.float32).tofile(f)
            tensor = TensorProto(
                name=f"w{i}",
                data_type=TensorProto.FLOAT,
                dims=shape,
                data_location=TensorProto.EXTERNAL,
            )
            for key, value in (("location", "big.data"), ("offset", offset), ("length", a * b * 4)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            initializers.append(tensor)
            nodes += [
                helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"]),
                helper.make_node("Relu", [f"h{i}"], [f"r{i}"]),
            ]
            x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", a])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", a if layers % 2 == 0 else b])],
        initializers,
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / "big.onnx")
    return folder / "big.onnx"


def measure_streaming(model: Path, output: Path, allocation: str) -> dict:
    """Peak RSS growth (bytes) and seconds of streaming pruning to 90%, in a fresh process."""
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model), str(output), allocation],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    return json.loads(run.stdout)
