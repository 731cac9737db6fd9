"""Builders for hostile inputs, and the checks every hostile test makes.

A hostile case is a small model or file made in the test (a few nodes, names chosen to hurt),
run through the CLI in this process. Every test asserts the exit code, that an error is exactly
one line on stderr, and that the input files are byte for byte what they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.cli import main

HOSTILE_NAME = "w\x1b]52;c;aGk=\x07\x1b[2J\r\nforged line\u202e"
"""A weight name with an OSC clipboard write, a screen clear, a carriage return, a newline and a
right-to-left override: printed raw, it rewrites the terminal and forges a line."""


def mlp(
    path: Path, names: tuple[str, str] = ("w1", "w2"), sizes: tuple[int, ...] = (4, 3, 2)
) -> Path:
    """``x[1,4] -> MatMul(w1[4,3]) -> Relu -> MatMul(w2[3,2]) -> y``, weights 1..12 and 1..6.

    ``sizes`` changes the widths (weights ``1..a*b`` again). Written to ``path`` with its
    weights inline; returns ``path``.
    """
    a, b, c = sizes
    w1 = np.arange(1, a * b + 1, dtype=np.float32).reshape(a, b)
    w2 = np.arange(1, b * c + 1, dtype=np.float32).reshape(b, c)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", names[0]], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", names[1]], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, a])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c])],
        [numpy_helper.from_array(w1, names[0]), numpy_helper.from_array(w2, names[1])],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def with_external_data(path: Path, location: str) -> Path:
    """The model at ``path`` rewritten with every weight in the file ``location`` beside it."""
    model = onnx.load(path)
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def snapshot(*paths: Path) -> dict[Path, bytes]:
    """The bytes of every file, to compare after a command ran."""
    return {p: p.read_bytes() for p in paths}


def unchanged(before: dict[Path, bytes]) -> bool:
    """Whether every file still holds the bytes ``snapshot`` read."""
    return all(p.is_file() and p.read_bytes() == data for p, data in before.items())


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``onnxprune ARGS`` in this process: exit code, stdout, stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse exits itself
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(text: str) -> str:
    """The single line of ``text`` (an error on stderr); fails if there are more or none."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert text.endswith("\n")
    return lines[0]
