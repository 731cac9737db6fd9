"""Sensitivity analysis: prune each layer alone at several levels, measure a metric in ORT.

One curve per prunable layer (unstructured: the lowest-scored weights of that layer only) and,
with ``structured``, per structured layer (the dependency groups sharing the same filters, a
residual sum's members together: ``structured.prune.layer_groups``), each measured with
``onnxprune.validate`` on the evaluation data (NNI's and SparseML's sensitivity analysis,
PAPERS.md). The curves say where pruning hurts; ``--allocation sensitivity``
(``pruners.allocations.sensitivity``) turns them into per-layer targets. Layers are
independent, so each is one task for the worker processes (``processes.run_in_processes``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnxprune.errors import InvalidOptionError, OnnxpruneError
from onnxprune.metrics import COMPARISONS, check_class_axis, worst
from onnxprune.model import (
    DEFAULT_MAX_BYTES,
    load_model,
    make_folder,
    write_text_atomic,
)
from onnxprune.outputs import check_outputs
from onnxprune.processes import run_in_processes
from onnxprune.pruners.allocations.sensitivity import KIND
from onnxprune.pruners.prune import PruneResult, name_filter
from onnxprune.report import text_table
from onnxprune.validation import ValidationResult, load_dataset, validate

DEFAULT_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Sparsities each layer is pruned to, alone."""

UNTIMED = {"warmup": 0, "min_time": 0.0, "min_runs": 1}
"""``validate``'s timing options when only a metric matters: each batch runs once."""

JSON_NAME = "sensitivity.json"
HTML_NAME = "index.html"


ACCURACIES = ("top1", "top5")
"""Metrics of ``validate`` read against the labels; every other metric is a comparison with the
dense model (``onnxprune.metrics.COMPARISONS``: cosine, agreement, errors...)."""


def metric_names() -> tuple[str, ...]:
    """What a curve can measure: the accuracies, then every registered comparison."""
    return (*ACCURACIES, *COMPARISONS)


def higher_is_better(metric: str) -> bool:
    """Whether ``metric`` is accuracy-like (``True``) or error-like."""
    return metric in ACCURACIES or COMPARISONS[metric].higher_is_better


def in_percent(metric: str) -> bool:
    """Whether ``metric`` is a fraction shown in percent."""
    return metric in ACCURACIES or COMPARISONS[metric].percent


@dataclass(frozen=True, slots=True)
class LayerCurve:
    """One layer (or structured layer) pruned alone at each level, and what was measured.

    Attributes:
        name: the weight's name; for a structured layer its filters' names joined by ``+``.
        kind: ``"unstructured"`` or ``"structured"``.
        layers: the weights whose units go (structured; ``(name,)`` for unstructured).
        params: the layer's weights (unstructured) or units (structured: dependency groups).
        levels: the sparsity each level reached (weights, or units, removed / ``params``).
        values: the metric at each level; ``None`` where it was not finite.
        op_type: the layer's op (unstructured), else ``None``.
        shape: the weight's shape (unstructured), else ``()``.
        error: one line when the layer could not be measured (the rest are then empty).
    """

    name: str
    kind: str
    layers: tuple[str, ...]
    params: int
    levels: tuple[float, ...] = ()
    values: tuple[float | None, ...] = ()
    op_type: str | None = None
    shape: tuple[int, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON form."""
        data = {
            "name": self.name,
            "params": self.params,
            "levels": list(self.levels),
            "values": list(self.values),
            "error": self.error,
        }
        if self.kind == "structured":
            return {**data, "layers": list(self.layers)}
        return {**data, "op_type": self.op_type, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class SensitivityResult:
    """Every curve of a sensitivity analysis, with what it was measured against.

    Attributes:
        model: the model's file name (``None`` for bytes or a proto).
        metric: what was measured (``metric_names``).
        baseline: the metric of the dense model (agreement 1, output error 0).
        levels: the levels asked for.
        score: the unstructured score.
        criterion: the structured criterion (``None``: no structured curves).
        provider: the ONNX Runtime provider that ran.
        samples: evaluation samples.
        layers: one curve per prunable layer, in graph order.
        groups: one curve per structured layer that has units free to go.
        class_axis: the class axis accuracy and agreement were per position on (``validate``).
    """

    model: str | None
    metric: str
    baseline: float
    levels: tuple[float, ...]
    score: str
    criterion: str | None
    provider: str
    samples: int
    layers: tuple[LayerCurve, ...]
    groups: tuple[LayerCurve, ...] = ()
    class_axis: int | None = None

    @property
    def failed(self) -> tuple[LayerCurve, ...]:
        """Curves that could not be measured."""
        return tuple(c for c in (*self.layers, *self.groups) if c.error is not None)

    def to_dict(self) -> dict:
        """The document ``sensitivity.json`` holds (``"kind": "sensitivity"``)."""
        return {
            "kind": KIND,
            "model": self.model,
            "metric": self.metric,
            "higher_is_better": higher_is_better(self.metric),
            "percent": in_percent(self.metric),
            "baseline": self.baseline,
            "levels": list(self.levels),
            "score": self.score,
            "structured": self.criterion,
            "provider": self.provider,
            "samples": self.samples,
            "layers": [c.to_dict() for c in self.layers],
            "groups": [c.to_dict() for c in self.groups],
            "class_axis": self.class_axis,
        }


def analyze_sensitivity(
    model: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    score: str = "magnitude",
    structured: str | None = None,
    metric: str = "top1",
    layers: str | None = None,
    exclude: str | None = None,
    jobs: int = 1,
    provider: str = "auto",
    batch_size: int = 64,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    class_axis: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[LayerCurve], None] | None = None,
) -> SensitivityResult:
    """Prune each layer of ``model`` alone at every level and measure ``metric`` on ``data``.

    Args:
        model: path of the dense model.
        data: evaluation ``.npz`` (arrays named after the inputs, plus ``labels`` for accuracy).
        out: a folder for ``sensitivity.json`` and ``index.html`` (written atomically once
            every curve is measured); ``None`` writes nothing.
        levels: sparsities in ``(0, 1)``, each layer pruned to each alone.
        score: a registered score that needs no data beside the model (``magnitude``, ``lamp``,
            ``random``, ``synflow``...).
        structured: a structured criterion (``l1``, ``l2``, ``random``): also one curve per
            structured layer, its units removed at each level.
        metric: ``top1``, ``top5`` (both need labels) or a comparison with the dense model
            (``onnxprune.metrics``: ``cosine``, ``agreement``, ``mean_abs_error``...), the worst
            over the outputs.
        layers: regular expression: only the weights whose name matches get a curve.
        exclude: regular expression: the weights whose name matches get none.
        jobs: worker processes, one layer each at a time; 1 runs everything here.
        provider: ONNX Runtime provider (``auto``, ``cpu``, ``cuda``).
        batch_size: evaluation batch size.
        seed: seed of random scores and of the ``random`` criterion.
        max_bytes: largest model accepted.
        input_shapes: fixed shapes for inputs with symbolic dimensions, as in ``analyze``:
            the shapes each prune finds its layers and dependency groups with (a transformer
            exported with dynamic axes needs them for its attention heads).
        dims: sizes of symbolic dimensions by name, e.g. ``{"batch": 1, "sequence": 128}``.
        class_axis: the axis of the classes: top-1, top-5 and the agreements per position
            (token, pixel), as ``validate`` measures them with it.
        on_start: called with the number of curves before the first is measured.
        on_done: called with each measured curve (progress bars).

    Returns:
        A ``SensitivityResult``; ``sensitivity.json`` holds its ``to_dict()``.

    Raises:
        InvalidOptionError: a bad level, metric, score, criterion, expression, ``out``,
            ``input_shapes`` or ``dims``.
        InvalidModelError, DatasetError: bad input, found before any layer is pruned.
    """
    from onnxprune.verbs import prune

    grid = _check(levels, metric, jobs, score, structured)
    check_class_axis(class_axis)
    source = Path(model)
    folder = None if out is None else Path(out)
    if folder is not None and folder.exists() and not folder.is_dir():
        raise InvalidOptionError(f"--out {folder} is a file, not a folder")
    proto = load_model(source, max_bytes=max_bytes)
    dataset = load_dataset(data, proto, class_axis=class_axis)
    if metric in ACCURACIES and dataset.labels is None:
        raise InvalidOptionError(f"metric {metric} needs labels; the dataset has no 'labels'")
    if folder is not None:
        make_folder(folder)
        check_outputs(source, folder / JSON_NAME, folder / HTML_NAME, reads={"data": data})
    # A prune that removes nothing: checks the score and the expressions, lists the layers.
    shapes = {"input_shapes": input_shapes, "dims": dims}
    dense = prune(
        proto, sparsity=0.0, score=score, layers=layers, exclude=exclude, seed=seed, **shapes
    )
    checked = validate(
        source, dataset, baseline=source, provider=provider, batch_size=batch_size,
        class_axis=class_axis, **UNTIMED,
    )  # fmt: skip
    baseline = _value(checked, metric)
    if baseline is None:
        raise InvalidOptionError(
            f"metric {metric} has no finite value on the dense model (none of its outputs is "
            "one the metric applies to, or they hold NaN)"
        )
    common = _Common(
        str(source), str(data), grid, metric, _ran_on(checked), batch_size, seed, **shapes,
        class_axis=class_axis,
    )  # fmt: skip
    tasks = [_LayerTask(common, layer, score) for layer in _selected(dense)]
    if structured is not None:
        tasks += _structured_tasks(common, proto, structured, name_filter(layers, exclude))
    if on_start is not None:
        on_start(len(tasks))
    curves = _run(tasks, jobs, on_done)
    result = SensitivityResult(
        source.name,
        metric,
        baseline,
        grid,
        score,
        structured,
        checked.provider,
        dataset.samples,
        tuple(c for c in curves if c.kind == "unstructured"),
        tuple(c for c in curves if c.kind == "structured"),
        class_axis,
    )
    if folder is not None:
        write_sensitivity(result, folder)
    return result


def write_sensitivity(result: SensitivityResult, folder: Path) -> None:
    """``sensitivity.json`` and its HTML rendering ``index.html`` in ``folder``, atomically."""
    from onnxprune.render import render_html

    data = result.to_dict()
    page = render_html(data)  # rendered before anything is written
    write_text_atomic(folder / JSON_NAME, json.dumps(data, indent=2))
    write_text_atomic(folder / HTML_NAME, page)


def _check(
    levels: Sequence[float], metric: str, jobs: int, score: str, criterion: str | None
) -> tuple[float, ...]:
    """The levels, sorted, once the options are checked."""
    from onnxprune.pruners.registry import CRITERIA, get_score

    if get_score(score).calibrated:
        raise InvalidOptionError(
            f"score {score} reads calibration data; a sensitivity analysis takes a score that "
            "needs none (magnitude, lamp, random, synflow...)"
        )
    if criterion is not None and criterion not in CRITERIA:
        raise InvalidOptionError(f"criterion {criterion!r} must be one of {sorted(CRITERIA)}")
    if metric not in metric_names():
        raise InvalidOptionError(f"metric {metric!r} must be one of {', '.join(metric_names())}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidOptionError(f"jobs={jobs!r} must be at least 1")
    grid = []
    for level in levels:
        value = float(level) if isinstance(level, int | float) else math.nan
        if not 0.0 < value < 1.0:  # also NaN
            raise InvalidOptionError(f"level {level!r} must be a number in (0, 1)")
        grid.append(value)
    if not grid:
        raise InvalidOptionError("give at least one level")
    return tuple(sorted(set(grid)))


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0.1,0.5"`` -> ``(0.1, 0.5)``.

    Raises:
        InvalidOptionError: an item that is not a number.
    """
    items = [item.strip() for item in text.split(",")]
    try:
        return tuple(float(item) for item in items)
    except ValueError:
        raise InvalidOptionError(f"--levels {text!r} must be numbers, e.g. 0.1,0.5,0.9") from None


def _value(result: ValidationResult, metric: str) -> float | None:
    """``metric`` of a validation: an accuracy, or a comparison's worst value over the outputs."""
    value = getattr(result, metric) if metric in ACCURACIES else worst(result.outputs)[metric]
    return float(value) if value is not None and math.isfinite(value) else None


def _ran_on(result: ValidationResult) -> str:
    """The provider the dense run used, as ``validate`` takes it, so no task tries another."""
    return "cuda" if "CUDA" in result.provider else "cpu"


@dataclass(frozen=True, slots=True)
class _Layer:
    """A prunable weight to measure, and what its target needs of the rest of the model."""

    name: str
    op_type: str
    shape: tuple[int, ...]
    params: int
    total: int  # prunable weights of the whole model
    zeros_elsewhere: int  # zeros of the other prunable weights


def _selected(dense: PruneResult) -> list[_Layer]:
    """Each layer the dense prune could touch (the score and the expressions chose)."""
    layers = dense.report.layers
    zeros = sum(la.zeros for la in layers)
    total = dense.report.total_params
    return [
        _Layer(la.name, la.op_type, tuple(la.shape), la.params, total, zeros - la.zeros)
        for la in layers
        if la.name in dense.masks
    ]


@dataclass(frozen=True, slots=True)
class _Common:
    """What every task of one analysis shares (picklable)."""

    model: str
    data: str
    levels: tuple[float, ...]
    metric: str
    provider: str
    batch_size: int
    seed: int
    input_shapes: Mapping[str, Sequence[int]] | None = None
    dims: Mapping[str, int] | None = None
    class_axis: int | None = None

    @property
    def shapes(self) -> dict[str, Mapping | None]:
        """The keywords of ``prune`` and ``structured_prune`` fixing the shapes asked for."""
        return {"input_shapes": self.input_shapes, "dims": self.dims}

    def measure(self, pruned: onnx.ModelProto) -> float | None:
        """The metric of a pruned model (a proto) on the data."""
        baseline = None if self.metric in ACCURACIES else self.model
        checked = validate(
            pruned,
            self.data,
            baseline=baseline,
            provider=self.provider,
            batch_size=self.batch_size,
            class_axis=self.class_axis,
            **UNTIMED,
        )
        return _value(checked, self.metric)


@dataclass(frozen=True, slots=True)
class _LayerTask:
    """One weight pruned alone at every level: its lowest-scored weights (zeros first)."""

    common: _Common
    layer: _Layer
    score: str

    def run(self) -> LayerCurve:
        from onnxprune.verbs import prune

        la, c = self.layer, self.common
        reached, values = [], []
        try:
            model = load_model(c.model)
            for level in c.levels:
                # The overall target at which this layer alone loses round(level * params).
                target = (la.zeros_elsewhere + round(level * la.params)) / la.total
                done = prune(
                    model,
                    sparsity=target,
                    score=self.score,
                    layers=_exactly([la.name]),
                    seed=c.seed,
                    **c.shapes,
                )
                pruned = next(x for x in done.report.layers if x.name == la.name)
                reached.append(pruned.direct_sparsity)
                values.append(c.measure(done.model))
        except OnnxpruneError as e:
            return self.failed(f"{type(e).__name__}: {e}")
        return dataclasses.replace(self.failed(None), levels=tuple(reached), values=tuple(values))

    def failed(self, error: str | None) -> LayerCurve:
        """The curve as asked, with ``error`` (``None``: not failed)."""
        la = self.layer
        return LayerCurve(
            la.name,
            "unstructured",
            (la.name,),
            la.params,
            op_type=la.op_type,
            shape=la.shape,
            error=error,
        )


@dataclass(frozen=True, slots=True)
class _GroupTask:
    """One structured layer's units removed at every level, nothing else."""

    common: _Common
    filters: tuple[str, ...]
    units: int
    criterion: str

    def run(self) -> LayerCurve:
        from onnxprune.structured.prune import structured_prune

        c = self.common
        levels, values = [], []
        try:
            model = load_model(c.model)
            for level in c.levels:
                done = structured_prune(
                    model,
                    sparsity=level,
                    criterion=self.criterion,
                    seed=c.seed,
                    layers=_exactly(self.filters),
                    **c.shapes,
                )
                levels.append(done.groups_removed / done.groups_prunable)
                values.append(c.measure(done.model))
        except OnnxpruneError as e:
            return self.failed(f"{type(e).__name__}: {e}")
        return dataclasses.replace(self.failed(None), levels=tuple(levels), values=tuple(values))

    def failed(self, error: str | None) -> LayerCurve:
        """The curve as asked, with ``error`` (``None``: not failed)."""
        name = " + ".join(self.filters)
        return LayerCurve(name, "structured", self.filters, self.units, error=error)


def _structured_tasks(
    common: _Common, model: onnx.ModelProto, criterion: str, chosen: Callable[[str], bool]
) -> list[_GroupTask]:
    """One task per structured layer with a unit free to go, whose filters are all chosen."""
    from onnxprune.structured.compact import Shapes, Workspace
    from onnxprune.structured.prune import layer_groups

    groups = Workspace.of(model, Shapes(common.input_shapes, common.dims)).groups
    owned = [(s.name, set(groups.of(s.tensor).tolist())) for s in groups.filters]
    tasks = []
    for members in layer_groups(groups):
        filters = tuple(name for name, labels in owned if int(members[0]) in labels)
        if groups.blocked[members].all() or not all(map(chosen, filters)):
            continue
        tasks.append(_GroupTask(common, filters, int(members.size), criterion))
    return tasks


def _exactly(names: Sequence[str]) -> str:
    """A ``layers`` expression that matches exactly these weight names."""
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def _run_task(task: _LayerTask | _GroupTask) -> LayerCurve:
    return task.run()


def _crashed(task: _LayerTask | _GroupTask, error: str) -> LayerCurve:
    return task.failed(error)


def _run(
    tasks: Sequence[_LayerTask | _GroupTask],
    jobs: int,
    on_done: Callable[[LayerCurve], None] | None,
) -> list[LayerCurve]:
    if jobs > 1:
        return run_in_processes(_run_task, tasks, jobs=jobs, crashed=_crashed, on_done=on_done)
    curves = []
    for task in tasks:
        curves.append(task.run())
        if on_done is not None:
            on_done(curves[-1])
    return curves


def format_sensitivity(result: SensitivityResult) -> str:
    """The curves as a text table: one row per layer, one column per level asked.

    Structured rows show the share of units that each level actually removed in the JSON,
    not here; a failed layer shows its error.
    """
    header = ("layer", "kind", "params", *(f"{level:g}" for level in result.levels))
    pct = in_percent(result.metric)
    rows = []
    for curve in (*result.layers, *result.groups):
        if curve.error is not None:
            rows.append((curve.name, curve.kind, str(curve.params), curve.error))
            continue
        cells = ("n/a" if v is None else f"{v:.2%}" if pct else f"{v:.4g}" for v in curve.values)
        rows.append((curve.name, curve.kind, str(curve.params), *cells))
    width = len(header)
    rows = [row + ("",) * (width - len(row)) if len(row) < width else row for row in rows]
    lines = text_table(header, rows)
    dense = f"{result.baseline:.2%}" if pct else f"{result.baseline:.4g}"
    axis = "" if result.class_axis is None else f"   class axis: {result.class_axis} (per position)"
    lines.append(
        f"metric: {result.metric}   dense: {dense}   provider: {result.provider}   "
        f"samples: {result.samples}{axis}"
    )
    return "\n".join(lines)
