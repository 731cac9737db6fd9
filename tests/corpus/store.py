"""The corpus on disk: each model built on first use, saved once per test session.

``CASES`` names every model: ``<transformer>-<exporter>`` for the five ``transformers`` models
under both torch exporters at static shapes, ``<transformer>-<exporter>-dynamic`` with a
symbolic ``batch`` (and ``sequence`` for token inputs; where the dynamo exporter finds an axis
constant it keeps it static), ``lstm`` and ``gru`` (TorchScript), ``lstm-dynamo`` and
``gru-dynamo``, and ``branches`` (layers inside ``If`` branches). ``Corpus(folder).get(name)``
exports the model into ``folder`` the first time and returns it with its example inputs; tests
take the session's ``Corpus`` from the ``corpus`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

TRANSFORMERS = ("bert", "gpt2", "llama", "vit", "whisper")
EXPORTERS = ("torchscript", "dynamo")
CASES = (
    *(f"{model}-{exporter}" for model in TRANSFORMERS for exporter in EXPORTERS),
    *(f"{model}-{exporter}-dynamic" for model in TRANSFORMERS for exporter in EXPORTERS),
    "lstm",
    "gru",
    "lstm-dynamo",
    "gru-dynamo",
    "branches",
)
"""Every model of the corpus, by name."""


@dataclass(frozen=True)
class Entry:
    """One corpus model: where it is saved, the model itself, and the inputs to check it on (one
    set per path through it: each branch of an ``If``)."""

    name: str
    path: Path
    model: onnx.ModelProto
    feeds: tuple[dict[str, np.ndarray], ...]
    dims: dict[str, int] = field(default_factory=dict)
    """The sizes of the model's symbolic dimensions in ``feeds`` (none: static shapes)."""


@dataclass
class Corpus:
    """The corpus models saved under ``folder``, built on first request.

    ``seconds`` holds how long each model took to build and export.
    """

    folder: Path
    seconds: dict[str, float] = field(default_factory=dict)
    _entries: dict[str, Entry] = field(default_factory=dict)

    def get(self, name: str) -> Entry:
        """The model ``name`` (one of ``CASES``), built and saved on first use."""
        if name not in CASES:
            raise KeyError(f"{name!r} is not a corpus model; there are {list(CASES)}")
        if name not in self._entries:
            start = time.perf_counter()
            model, feeds, dims = build(name)
            self.seconds[name] = time.perf_counter() - start
            path = self.folder / f"{name}.onnx"
            onnx.save(model, path)
            self._entries[name] = Entry(name, path, model, feeds, dims)
        return self._entries[name]


def build(
    name: str,
) -> tuple[onnx.ModelProto, tuple[dict[str, np.ndarray], ...], dict[str, int]]:
    """The model ``name``, the inputs to check it on (a torch model's: its example inputs) and
    the sizes of its symbolic dimensions in them."""
    if name == "branches":
        from tests.corpus.control_flow import branches, branches_feeds

        return branches(), branches_feeds(), {}
    from tests.corpus import models

    kind, *rest = name.split("-")
    exporter, dynamic = (rest[0] if rest else "torchscript"), rest[1:] == ["dynamic"]
    net = models.BUILDERS[kind]()
    model = models.export(net, exporter, dynamic=dynamic)
    feeds = {k: v.numpy() for k, v in net.inputs.items()}
    dims = {  # as the export declares them (dynamo keeps an axis it finds constant static)
        d.dim_param: feeds[value.name].shape[axis]
        for value in model.graph.input
        for axis, d in enumerate(value.type.tensor_type.shape.dim)
        if d.dim_param
    }
    return model, (feeds,), dims
