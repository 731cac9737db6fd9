"""Output files: checked before any work, and the set a pruning run leaves side by side."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from onnxprune.errors import InvalidOptionError
from onnxprune.model import (
    DEFAULT_MAX_BYTES,
    check_writable,
    data_files,
    external_span,
    parse_checked,
    remove_model,
    save_model,
    write_text_atomic,
)
from onnxprune.pruners.masks import MaskWriter
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
    """Write the pruned model with its masks (``save_with_masks``), then its report."""
    files = PrunedFiles.beside(model)
    save_with_masks(result.model, files.model, result.masks, files.masks)
    save_report(result.report, files.report)
    return files


def save_with_masks(
    model: onnx.ModelProto, path: Path, masks: Mapping[str, np.ndarray], masks_path: Path
) -> None:
    """The model and its masks, the masks renamed into place just before the model.

    Both are written under temporary names first: a write that fails (a full disk, a weight
    name an ``.npz`` cannot hold) replaces neither file, and a reader who sees the new model
    sees its masks.
    """
    with MaskWriter(masks_path) as writer:
        writer.add_all(masks)
        save_model(model, path, before_rename=writer.commit)


def save_report(report: SparsityReport, path: Path) -> None:
    """The report's JSON, written atomically."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2))


def check_outputs(
    source: str | os.PathLike | None,
    *outputs: str | os.PathLike | None,
    reads: Mapping[str, object] | None = None,
    baseline: str | os.PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Refuse outputs that would replace an input or one another, or cannot be written.

    Checked before any work, so a long prune does not fail at its last step, and an input is
    never replaced: the model, each of its external data files (found by parsing the model,
    not loading it), and every other file read (masks, scores, calibration, evaluation data).

    Args:
        source: the model read; ``None`` when it came as bytes or a proto (nothing on disk).
        *outputs: the files to write; ``None``: unused.
        reads: the other inputs by what they are (``{"masks": "m.npz"}``); values that are not
            paths (arrays, ``None``) are skipped.
        baseline: a second model read (``validate --baseline``), its external data too.
        max_bytes: the largest model accepted, for the parse that finds external data.

    Raises:
        InvalidOptionError: one line naming the output and the input it would replace.
        InvalidModelError: the model's external data is unsafe (as ``load_model`` says).
    """
    wanted = [Path(output) for output in outputs if output is not None]
    for output in wanted:
        check_writable(output)
    inputs: dict[Path, str] = {}
    for what, model in (("the input model", source), ("the baseline model", baseline)):
        if model is not None:
            inputs.update(model_files(Path(model), what, wanted, max_bytes))
    for what, path in (reads or {}).items():
        if isinstance(path, str | os.PathLike):
            inputs.update(dict.fromkeys(names(Path(path)), f"the {what} file {path}"))
    refuse_clashes(wanted, inputs)


def model_files(
    model: Path, what: str, outputs: Sequence[Path], max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[Path, str]:
    """The files of ``model`` an output must not replace, each with what it is.

    The model's own names, and its external data files when an output that exists, or whose
    save removes files that exist, lies in the model's folder (the loader confines external
    data to it; an output that is not there yet replaces no input). The model is parsed for
    them, its external data not read.
    """
    files = dict.fromkeys(names(model), what)
    folder = model.parent.resolve()
    if any(_replaces(o) and o.resolve().is_relative_to(folder) for o in outputs):
        _, external, base = parse_checked(model, max_bytes=max_bytes)
        for tensor in external:
            target = external_span(tensor, base)[0]
            files[target] = f"{target.name}, external data of {what}"
    return files


def _replaces(output: Path) -> bool:
    """Whether writing ``output`` replaces or removes a file that exists."""
    return output.exists() or output.is_symlink() or bool(data_files(output))


def names(path: Path) -> set[Path]:
    """The directory entry ``path`` names (its folder resolved) and the file it reaches."""
    return {path.parent.resolve() / path.name, path.resolve()}


def refuse_clashes(outputs: Sequence[Path], inputs: Mapping[Path, str]) -> None:
    """Refuse an output that names an input or another output, or whose write removes an input.

    A name is a directory entry or the file it reaches; a model's save removes the
    ``<name>.<12 hex>.data`` files of earlier saves to its path.

    Raises:
        InvalidOptionError: ``out.onnx would overwrite the input model; choose another path``.
    """
    taken = dict(inputs)
    for output in outputs:
        hit = next((taken[n] for n in sorted(names(output)) if n in taken), None)
        if hit is not None:
            raise InvalidOptionError(f"{output} would overwrite {hit}; choose another path")
        removed = next(
            (inputs[f] for f in map(Path.resolve, data_files(output)) if f in inputs), None
        )
        if removed is not None:
            raise InvalidOptionError(
                f"writing {output} would remove {removed} (data files of earlier saves to "
                "that path are removed); choose another path"
            )
        taken.update(dict.fromkeys(names(output), "another output"))
