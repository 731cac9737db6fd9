"""Builders shared by tests: one-input one-output models, the CLI in a subprocess, and the
example counts of properties."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import onnx
from hypothesis import settings
from onnx import TensorProto, helper, numpy_helper


def single_io_model(
    nodes: list[onnx.NodeProto],
    x_shape: list[int | str] | None,
    y_shape: list[int | str] | None,
    inits: dict[str, np.ndarray],
    opset: int = 17,
) -> onnx.ModelProto:
    """Input ``x``, output ``y`` (shape ``None``: undeclared), float32 initializers, IR 10."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", opset)])


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m onnxprune.cli ARGS`` with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "onnxprune.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def examples(full: int) -> int:
    """``full``, at most the loaded Hypothesis profile's count (tests/conftest.py).

    A property that needs fewer examples than the profile's keeps its own count under ``full``
    (``make test``) and runs the few of ``dev`` (``make check``).
    """
    return min(full, settings().max_examples)


def until(condition: Callable[[], object], seconds: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``seconds`` (polled): a bound on a wait, not a time
    limit on the code under test."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def refused(capsys, *argv: str) -> str:
    """The one line ``onnxprune ARGV`` (in this process) prints on stderr as it exits 2."""
    from onnxprune.cli import main

    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    return captured.err.strip()


QUICK_TIMING = {"min_time": 0.0, "min_runs": 1}
"""``validate`` options that run each batch once: for tests of what it computes, not of timing."""


def zero_inactive(
    model: onnx.ModelProto, level: str = "channel", dims: dict[str, int] | None = None
) -> tuple[onnx.ModelProto, int]:
    """``model`` with every weight entry the analysis at ``level`` calls inactive set to zero,
    its symbolic dimensions fixed by ``dims`` (by name).

    A stored tensor several layers read (tied weights) keeps every entry active in any of them;
    tensors are rewritten wherever they are stored (initializers, Constant nodes, inside
    ``If``/``Loop``/``Scan`` bodies).

    Returns the new model and how many nonzero entries were zeroed.
    """
    from onnxprune.graph.build import build_graph
    from onnxprune.pruners.masks import apply_masks
    from onnxprune.sparsity import LEVELS

    graph = build_graph(model, dims=dims)
    names = frozenset(layer.name for layer in graph.all_layers)
    activity = {}
    for g in (graph, *graph.subgraphs()):  # each If/Loop/Scan body analysed as its own graph
        activity.update(LEVELS[level](g, masks_for=names))
    keep: dict[str, np.ndarray] = {}
    nonzero: dict[str, np.ndarray] = {}
    sources = {}
    for layer in graph.all_layers:
        source = sources[layer.name] = layer.contract.source
        active = source.to_stored(activity[layer.key].mask)
        keep[layer.name] = keep[layer.name] | active if layer.name in keep else active
        nonzero[layer.name] = source.to_stored(graph.weight(layer)) != 0
    zeroed = sum(int((nonzero[name] & ~keep[name]).sum()) for name in keep)
    return apply_masks(model, keep, sources), zeroed
