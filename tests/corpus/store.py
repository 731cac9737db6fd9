"""The corpus on disk: each model built on first use, saved once per test session.

``CASES`` names every model: ``<transformer>-<exporter>`` for the five ``transformers`` models
under both torch exporters, ``lstm`` and ``gru`` (TorchScript), and ``branches`` (layers inside
``If`` branches). ``Corpus(folder).get(name)`` exports the model into ``folder`` the first time
and returns it with its example inputs; tests take the session's ``Corpus`` from the ``corpus``
fixture (tests/conftest.py).
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
    "lstm",
    "gru",
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
            model, feeds = build(name)
            self.seconds[name] = time.perf_counter() - start
            path = self.folder / f"{name}.onnx"
            onnx.save(model, path)
            self._entries[name] = Entry(name, path, model, feeds)
        return self._entries[name]


def build(name: str) -> tuple[onnx.ModelProto, tuple[dict[str, np.ndarray], ...]]:
    """The model ``name`` and the inputs to check it on (a torch model's: its example inputs)."""
    if name == "branches":
        from tests.corpus.control_flow import branches, branches_feeds

        return branches(), branches_feeds()
    from tests.corpus import models

    kind, _, exporter = name.partition("-")
    net = models.BUILDERS[kind]()
    model = models.export(net, exporter or "torchscript")
    return model, ({k: v.numpy() for k, v in net.inputs.items()},)
