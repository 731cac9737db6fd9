"""Benchmark models: onnx's light model zoo with random, masked weights."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

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


def external_mlp(dst: Path, layers: int, width: int, sparsity: float = 0.9, seed: int = 0) -> None:
    """An MLP of ``layers`` float32 ``[width, width]`` MatMuls with weights in external data.

    Written one weight at a time into ``<dst>.data`` (random, masked), so building a model of
    several GiB never holds more than one of its tensors.
    """
    rng = np.random.default_rng(seed)
    data = dst.with_name(dst.name + ".data")
    nodes, inits = [], []
    with data.open("wb") as out:
        for i in range(layers):
            w = rng.random((width, width), dtype=np.float32)  # one draw: cheap at GiB sizes
            w = np.where(w >= sparsity, w - np.float32(0.5), np.float32(0))
            tensor = onnx.TensorProto(name=f"w{i}", data_type=onnx.TensorProto.FLOAT)
            tensor.dims.extend(w.shape)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data.name), ("offset", out.tell())):
                tensor.external_data.add(key=key, value=str(value))
            tensor.external_data.add(key="length", value=str(w.nbytes))
            w.tofile(out)
            inits.append(tensor)
            nodes.append(helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]))
    nodes[0].input[0], nodes[-1].output[0] = "x", "y"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, width])],
        inits,
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    dst.write_bytes(model.SerializeToString())


def best_time(fn, *args, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn(*args)``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def best_interleaved(calls: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each call over ``repeat`` rounds, every call once per round.

    Interleaved, so a load that comes and goes on a shared machine weighs on every call alike
    rather than on whichever ran while it lasted.
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
