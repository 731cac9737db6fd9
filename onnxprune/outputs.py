"""Output files: checked before any work, and the set a pruning run leaves side by side."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from onnxprune.errors import InvalidOptionError
from onnxprune.model import check_writable, remove_model, save_model, write_text_atomic
from onnxprune.pruners.masks import save_masks
from onnxprune.pruners.prune import PruneResult
from onnxprune.report import SparsityReport


@dataclass(frozen=True, slots=True)
class PrunedFiles:
    """``<stem>.onnx``, ``<stem>.masks.npz`` and ``<stem>.report.json`` in one folder."""

    model: Path
    masks: Path
    report: Path

    @staticmethod
    def beside(model: Path) -> PrunedFiles:
        """The files that go with the pruned model at ``model``."""
        return PrunedFiles(
            model, model.with_suffix(".masks.npz"), model.with_suffix(".report.json")
        )

    def remove(self) -> None:
        """Delete whichever of the files exist (the model with its external data files)."""
        remove_model(self.model)
        self.masks.unlink(missing_ok=True)
        self.report.unlink(missing_ok=True)


def save_pruned(result: PruneResult, model: Path) -> PrunedFiles:
    """Write the pruned model, its masks and its report, each atomically."""
    files = PrunedFiles.beside(model)
    save_model(result.model, files.model)
    save_masks(result.masks, files.masks)
    save_report(result.report, files.report)
    return files


def save_report(report: SparsityReport, path: Path) -> None:
    """The report's JSON, written atomically."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2))


def check_outputs(source: str | os.PathLike | None, *outputs: str | os.PathLike | None) -> None:
    """Refuse outputs that would overwrite the input model or one another, or cannot be written.

    Checked before any work, so a long prune does not fail at its last step (``None``: unused;
    ``source`` is ``None`` when the model came as bytes or a proto).

    Raises:
        InvalidOptionError: one line naming the path.
    """
    taken = {} if source is None else {Path(source).resolve(): "the input model"}
    for output in outputs:
        if output is None:
            continue
        check_writable(Path(output))
        path = Path(output).resolve()
        if path in taken:
            raise InvalidOptionError(f"{output} would overwrite {taken[path]}; choose another path")
        taken[path] = "another output"
