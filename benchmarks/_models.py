"""Benchmark models: onnx's light model zoo with random, masked weights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def random_weights(src: Path, dst: Path, sparsity: float = 0.9, seed: int = 0) -> None:
    """Copy of a light model whose ConstantOfShape weights are random masked initializers."""
    model = onnx.load(src)
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in model.graph.initializer}
    variances = {n.input[4] for n in model.graph.node if n.op_type == "BatchNormalization"}
    keep = []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        if node.output[0] in variances:  # BatchNorm variances are positive: finite outputs
            values = 1 + np.abs(values)
        if len(shape) > 1:  # kernels are masked; biases and BN parameters stay dense
            values *= rng.random(shape, dtype=np.float32) >= sparsity
        model.graph.initializer.append(numpy_helper.from_array(values, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(keep)
    model.ir_version = 8  # initializers no longer need to be graph inputs (IR >= 4)
    onnx.save(model, dst)


def best_time(fn, *args, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn(*args)``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)
