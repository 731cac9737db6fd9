"""Pipeline recipes: prune, compact, validate against the baseline with gates, report, in one run.

A recipe is a YAML (or JSON) file that a CI job or a deployment pipeline runs as one stage
(``onnxprune run recipe.yaml``)::

    model: model.onnx              # paths are relative to the recipe's folder
    out: pruned/                   # every output goes here (default: <recipe name>-out)
    prune:                         # onnxprune.prune's options (as in a batch manifest)
      structured: l1
      sparsity: 0.3
      calibration: calib.npz       # data a prune takes beside its options, as paths
    compact: true                  # unstructured: take dead units out after pruning (default)
    validate:                      # optional: onnxprune.validate's keywords, baseline = model
      data: eval.npz
      max_accuracy_drop: 0.01
    report: true                   # HTML and Markdown report of the final model (default)

It writes ``pruned.onnx`` (with ``pruned.masks.npz`` when unstructured) and ``prune.json``,
``compact.onnx`` and ``compact.json`` when compacted, ``validation.json``, ``report.html`` and
``report.md``, then ``summary.json`` last: the final model, parameters before and after, the
gate's verdict and the sha256 of every output, so a later stage can check what it ships.
A failed gate is a verdict, not an error: every output is still written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from onnxprune import progress
from onnxprune.documents import read_document
from onnxprune.errors import InvalidOptionError
from onnxprune.model import write_text_atomic
from onnxprune.options import INPUTS, PruneOptions, merge_options

RECIPE_KEYS = ("model", "out", "prune", "compact", "validate", "report")
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Recipe:
    """A checked recipe, its paths resolved against the recipe's folder.

    Attributes:
        model: the model to prune (also the validation baseline).
        out: the folder every output goes to.
        options: the prune options.
        inputs: data the prune takes beside its options (masks, scores, calibration,
            sensitivity), as paths.
        compact: compact an unstructured prune's output (a structured prune is compact).
        data: the evaluation data, ``None`` to skip validation.
        validate: ``onnxprune.validate`` keywords (gates, batch size, provider...).
        report: write ``report.html`` and ``report.md``.
    """

    model: Path
    out: Path
    options: PruneOptions
    inputs: dict[str, Path]
    compact: bool = True
    data: Path | None = None
    validate: dict[str, object] = dataclasses.field(default_factory=dict)
    report: bool = True


def load_recipe(path: str | Path, out: str | Path | None = None) -> Recipe:
    """The recipe in ``path`` (YAML, or JSON for ``.json``), checked before anything runs.

    Args:
        path: the recipe file.
        out: the output folder (relative to the working directory), instead of the recipe's
            ``out`` (relative to the recipe's folder).

    Raises:
        InvalidOptionError: the file is missing, does not parse, has unknown keys, options or
            validation keywords, or a value of the wrong type; the model or a data file the
            recipe names does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidOptionError(f"recipe {path} not found")
    document = read_document(path, "recipe")
    where = f"recipe {path.name}"
    if not isinstance(document, Mapping):
        raise InvalidOptionError(f"{where}: expected a mapping with keys {', '.join(RECIPE_KEYS)}")
    unknown = sorted(map(str, set(document) - set(RECIPE_KEYS)))
    if unknown:
        raise InvalidOptionError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(RECIPE_KEYS)}"
        )
    base = path.parent

    def file(value: object, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise InvalidOptionError(f"{where}: {key} must be a path (a string)")
        found = base / value
        if not found.is_file():
            raise InvalidOptionError(f"{where}: {key} {value!r} not found")
        return found

    prune = dict(_mapping(document.get("prune"), f"{where}: prune"))
    inputs = {name: file(prune.pop(name), f"prune.{name}") for name in INPUTS if name in prune}
    options = merge_options(PruneOptions(), prune, f"{where} prune")
    checks = dict(_mapping(document.get("validate"), f"{where}: validate"))
    data = file(checks.pop("data"), "validate.data") if "data" in checks else None
    if checks and data is None:
        raise InvalidOptionError(f"{where}: validate needs data (an .npz of evaluation inputs)")
    _check_keywords(checks, f"{where}: validate")
    metric = checks.get("metric")
    if isinstance(metric, str) and ".py:" in metric:  # a file beside the recipe, not the cwd
        file_name, _, function = metric.rpartition(":")
        checks["metric"] = f"{file(file_name, 'validate.metric')}:{function}"
    if out is None:
        out = document.get("out", f"{path.stem}-out")
        if not isinstance(out, str) or not out:
            raise InvalidOptionError(f"{where}: out must be a folder path (a string)")
        out = base / out
    return Recipe(
        model=file(document.get("model"), "model"),
        out=Path(out),
        options=options,
        inputs=inputs,
        compact=_flag(document.get("compact", True), f"{where}: compact"),
        data=data,
        validate=checks,
        report=_flag(document.get("report", True), f"{where}: report"),
    )


@dataclass(frozen=True)
class RecipeResult:
    """What a recipe run did: ``summary`` is ``summary.json``'s content.

    Attributes:
        summary: the final model, parameters, validation, gate, outputs with their sha256.
        passed: ``False`` when a gate failed, else ``True`` (no gate counts as passed).
        reason: the gate's one-line reason, ``None`` without a gate.
    """

    summary: dict
    passed: bool
    reason: str | None


def run_recipe(recipe: Recipe) -> RecipeResult:
    """Prune, compact, validate and report as ``recipe`` says, then write ``summary.json``.

    Raises:
        InvalidOptionError: ``out`` is a file, or an output would replace an input.
        OnnxpruneError: whatever a step refuses (bad model, data, options).
    """
    import onnxprune

    out = recipe.out
    if out.exists() and not out.is_dir():
        raise InvalidOptionError(f"out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    structured = recipe.options.structured is not None
    steps: list[tuple[str, Callable[[], object]]] = []
    written: list[Path] = []
    state: dict[str, object] = {}

    def prune() -> None:
        output = out / "pruned.onnx"
        masks = None if structured else out / "pruned.masks.npz"
        result = onnxprune.prune(
            recipe.model,
            recipe.options,
            **recipe.inputs,
            output=output,
            masks_out=masks,
            report_out=out / "prune.json",
        )
        written.extend(p for p in (output, masks, out / "prune.json") if p is not None)
        state.update(final=output, warnings=list(result.warnings))

    def compact() -> None:
        output, report = out / "compact.onnx", out / "compact.json"
        onnxprune.compact(out / "pruned.onnx", output=output, report_out=report)
        written.extend((output, report))
        state["final"] = output

    def validate() -> None:
        result = onnxprune.validate(
            state["final"], recipe.data, baseline=recipe.model, **recipe.validate
        )
        write_text_atomic(out / "validation.json", json.dumps(result.to_dict(), indent=2))
        written.append(out / "validation.json")
        state["validation"] = result

    def report() -> None:
        from onnxprune.render import render_html, render_markdown

        validation = state.get("validation")
        data = {
            "report": onnxprune.analyze(state["final"]).to_dict(),
            "validation": None if validation is None else validation.to_dict(),
        }
        for name, render in (("report.html", render_html), ("report.md", render_markdown)):
            write_text_atomic(out / name, render(data))
            written.append(out / name)

    steps.append(("prune", prune))
    if recipe.compact and not structured:
        steps.append(("compact", compact))
    if recipe.data is not None:
        steps.append(("validate", validate))
    if recipe.report:
        steps.append(("report", report))
    timings = []
    for i, (name, step) in enumerate(steps):
        progress.report("recipe", i, len(steps), name)
        start = time.monotonic()
        step()
        timings.append({"step": name, "seconds": round(time.monotonic() - start, 3)})
    progress.report("recipe", len(steps), len(steps))
    summary = _summary(recipe, state, timings, written)
    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2))
    gate = summary["gate"]
    return RecipeResult(summary, gate is None or gate["passed"], gate and gate["reason"])


def _summary(recipe: Recipe, state: dict, timings: list[dict], written: list[Path]) -> dict:
    import onnxprune

    final = state["final"]
    before = onnxprune.analyze(recipe.model, units=False)  # totals only
    after = onnxprune.analyze(final, units=False)
    validation = state.get("validation")
    gate = None if validation is None or validation.gate is None else validation.gate.to_dict()
    return {
        "kind": "recipe",
        "version": onnxprune.__version__,
        "model": str(recipe.model),
        "out": str(recipe.out),
        "final_model": final.name,
        "steps": timings,
        "params_before": before.total_params,
        "params_after": after.total_params,
        "direct_sparsity": after.direct_sparsity,
        "effective_sparsity": after.effective_sparsity,
        "warnings": state["warnings"],
        "validation": None if validation is None else validation.to_dict(),
        "gate": gate,
        "passed": gate is None or gate["passed"],
        "outputs": {path.name: _sha256(path) for path in written},
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mapping(value: object, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidOptionError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{where} must be true or false, got {value!r}")
    return value


def _check_keywords(given: Mapping, where: str) -> None:
    """Refuse a validation keyword ``onnxprune.validate`` does not take."""
    from onnxprune.validation import validate

    known = set(inspect.signature(validate).parameters) - {"model", "data", "baseline"}
    unknown = sorted(map(str, set(given) - known))
    if unknown:
        raise InvalidOptionError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: data, {', '.join(sorted(known))}"
        )
