"""Result dataclasses, their JSON form and the text table; nothing here computes anything new."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onnxprune.macs import MacCount, short
from onnxprune.metrics import COMPARISONS
from onnxprune.text import printable

if TYPE_CHECKING:
    from onnxprune.graph.build import Fallback
    from onnxprune.unit_report import BlockSparsity


class Sparsities:
    """Direct and effective sparsity of a count of weights (``params``, ``zeros``, ``active``).

    A mixin of the report dataclasses (layers, gates, units) that have those three counts.
    """

    __slots__ = ()
    params: int
    zeros: int
    active: int

    @property
    def direct_sparsity(self) -> float:
        """Fraction of weights that are zero."""
        return self.zeros / self.params if self.params else 0.0

    @property
    def effective_sparsity(self) -> float:
        """Fraction of weights that are zero or lie on no input-to-output path."""
        return (self.params - self.active) / self.params if self.params else 0.0


@dataclass(frozen=True, slots=True)
class GateSparsity(Sparsities):
    """Sparsity of one gate's rows of a recurrent weight (LSTM ``iofc``, GRU ``zrh``, RNN ``i``).

    Attributes:
        gate: the gate's ONNX name.
        params: its weights (all directions).
        zeros: those exactly zero.
        active: nonzero ones on some input-to-output path.
    """

    gate: str
    params: int
    zeros: int
    active: int

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "gate": self.gate,
            "params": self.params,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
        }


@dataclass(frozen=True, slots=True)
class LayerSparsity(Sparsities):
    """Sparsity of one prunable weight tensor.

    Attributes:
        name: the stored tensor (initializer or constant) a pruner rewrites; inside an
            ``If``/``Loop``/``Scan`` body, after the body's scope (``If_3/then_branch/w``).
        op_type: the consuming op (Conv, ConvTranspose, Gemm, MatMul).
        shape: the weight's shape as the layer consumes it.
        params: number of weights.
        zeros: weights that are exactly zero.
        active: nonzero weights on some input-to-output path.
        dead_inputs: input units of the layer through which no active weight passes.
        dead_outputs: output units of the layer that no active weight reaches.
        macs: dense multiply-accumulates of the layer's uses (``onnxprune.macs``), ``None``
            when a shape is unknown or the layer is inside a body (run 0, 1 or many times).
        nonzero_macs: those by nonzero weights: what is left when zeros are skipped.
        gates: per gate, for the ``W`` and ``R`` of an LSTM, GRU or RNN (else empty).
        label: a readable name for reports (the module or node, see ``graph.build.layer_label``);
            ``None`` where it is the weight's name.
        shared_by: the nodes reading the stored weight when more than one does (a language-model
            head tied to the embedding's ``Gather``, layers deduplicated through ``Identity``);
            empty when one node reads it. Pruning leaves a shared weight alone by default.
    """

    name: str
    op_type: str
    shape: tuple[int, ...]
    params: int
    zeros: int
    active: int
    dead_inputs: int
    dead_outputs: int
    macs: int | None = None
    nonzero_macs: int | None = None
    gates: tuple[GateSparsity, ...] = ()
    label: str | None = None
    shared_by: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON form with the documented keys; ``gates`` only for a recurrent weight."""
        data = {
            "name": self.name,
            "op_type": self.op_type,
            "shape": list(self.shape),
            "params": self.params,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
            "dead_inputs": self.dead_inputs,
            "dead_outputs": self.dead_outputs,
            "macs": self.macs,
            "nonzero_macs": self.nonzero_macs,
            "label": self.label,
            "shared_by": list(self.shared_by),
        }
        if self.gates:
            data["gates"] = [gate.to_dict() for gate in self.gates]
        return data


@dataclass(frozen=True, slots=True)
class SparsityReport:
    """Direct and effective sparsity of a model, per layer and overall.

    Attributes:
        layers: one entry per prunable weight, in graph order.
        level: ``"channel"`` or ``"exact"``, the reachability level that ran.
        fallbacks: nodes that mixed densely because we could not follow them.
        cost: the MACs of every counted node, products of two activations included.
        blocks: per structured layer (an attention block's heads, an FFN's neurons), the
            sparsity of its units (``unit_report``); empty unless ``analyze`` was asked for them.
    """

    layers: tuple[LayerSparsity, ...]
    level: str
    fallbacks: tuple[Fallback, ...]
    cost: MacCount = field(default_factory=MacCount)
    blocks: tuple[BlockSparsity, ...] = ()

    @property
    def macs(self) -> int | None:
        """Dense multiply-accumulates of one run (``None`` when a shape is unknown)."""
        return self.cost.macs

    @property
    def nonzero_macs(self) -> int | None:
        """Multiply-accumulates by nonzero weights (and of products of two activations)."""
        return self.cost.nonzero_macs

    @property
    def total_params(self) -> int:
        """Number of prunable weights."""
        return sum(layer.params for layer in self.layers)

    @property
    def direct_sparsity(self) -> float:
        """Weight-count-weighted mean of the layers' direct sparsity."""
        total = self.total_params
        return sum(layer.zeros for layer in self.layers) / total if total else 0.0

    @property
    def effective_sparsity(self) -> float:
        """Weight-count-weighted mean of the layers' effective sparsity."""
        total = self.total_params
        inactive = sum(layer.params - layer.active for layer in self.layers)
        return inactive / total if total else 0.0

    @property
    def direct_compression(self) -> float:
        """``1 / (1 - direct_sparsity)``; infinite when every weight is zero."""
        return compression(self.direct_sparsity)

    @property
    def effective_compression(self) -> float:
        """``1 / (1 - effective_sparsity)``; infinite when no weight is active."""
        return compression(self.effective_sparsity)

    @property
    def dead_inputs(self) -> int:
        """Dead input units, summed over the layers."""
        return sum(layer.dead_inputs for layer in self.layers)

    @property
    def dead_outputs(self) -> int:
        """Dead output units, summed over the layers."""
        return sum(layer.dead_outputs for layer in self.layers)

    @property
    def fallback_ops(self) -> tuple[str, ...]:
        """Op types that fell back to dense mixing, sorted and without repeats."""
        return tuple(sorted({f.op_type for f in self.fallbacks}))

    def to_dict(self) -> dict:
        """JSON form with exactly the documented top-level keys; infinite compression is None."""
        return {
            "total_params": self.total_params,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
            "direct_compression": _finite(self.direct_compression),
            "effective_compression": _finite(self.effective_compression),
            "level": self.level,
            "macs": self.macs,
            "nonzero_macs": self.nonzero_macs,
            "dead_inputs": self.dead_inputs,
            "dead_outputs": self.dead_outputs,
            "layers": [layer.to_dict() for layer in self.layers],
            "fallback_ops": list(self.fallback_ops),
            "blocks": [block.to_dict() for block in self.blocks],
        }


def compression(sparsity: float) -> float:
    """Compression ratio ``1 / (1 - sparsity)`` of a sparsity in [0, 1]."""
    return math.inf if sparsity >= 1.0 else 1.0 / (1.0 - sparsity)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


LAYER_COLUMNS = (
    "layer",
    "op",
    "shape",
    "params",
    "direct",
    "effective",
    "dead in",
    "dead out",
    "MACs",
    "nonzero MACs",
)
"""The columns of a sparsity report's layer table, here and in rendered reports."""


def format_table(report: SparsityReport) -> str:
    """The report as a fixed-width text table with totals and the fallback list.

    When some layer has a readable name (``LayerSparsity.label``: the exporter's module, or
    the node's name), a last column gives it beside the weight's name.
    """
    labelled = any(layer.label for layer in report.layers)
    rows = []
    for layer in report.layers:
        rows.append(
            (
                layer.name,
                layer.op_type,
                "x".join(map(str, layer.shape)),
                f"{layer.params:,}",
                f"{layer.direct_sparsity:.2%}",
                f"{layer.effective_sparsity:.2%}",
                str(layer.dead_inputs),
                str(layer.dead_outputs),
                short(layer.macs),
                short(layer.nonzero_macs),
                *([layer.label or ""] if labelled else []),
            )
        )
        rows += [
            (
                f"  gate {gate.gate}",
                "",
                "",
                f"{gate.params:,}",
                f"{gate.direct_sparsity:.2%}",
                f"{gate.effective_sparsity:.2%}",
                "",
                "",
                "",
                "",
                *([""] if labelled else []),
            )
            for gate in layer.gates
        ]
    header = (*LAYER_COLUMNS, "label") if labelled else LAYER_COLUMNS
    out = text_table(header, rows, "<<<>>>>>>>" + ("<" if labelled else ""))
    out = [line.rstrip() for line in out] if labelled else out  # no padding after the label
    out += [
        "",
        f"level: {report.level}   prunable weights: {report.total_params:,}   layers: "
        f"{len(report.layers)}",
        f"direct sparsity:    {report.direct_sparsity:.4%}   compression "
        f"{_ratio(report.direct_compression)}",
        f"effective sparsity: {report.effective_sparsity:.4%}   compression "
        f"{_ratio(report.effective_compression)}",
        f"dead units: {report.dead_inputs:,} inputs, {report.dead_outputs:,} outputs",
        mac_line(report.macs, report.nonzero_macs, report.cost.unknown_because),
    ]
    shared = [layer for layer in report.layers if layer.shared_by]
    if shared:
        out.append("shared weights (left alone by pruning unless --prune-shared):")
        out += [printable(f"  {x.name}: read by {', '.join(x.shared_by)}") for x in shared]
    if report.fallbacks:
        out.append(f"fell back to dense mixing ({len(report.fallbacks)} nodes): ")
        out += [printable(f"  {f.op_type:<16} {f.node}: {f.reason}") for f in report.fallbacks]
    else:
        out.append("fell back to dense mixing: none")
    if report.blocks:
        from onnxprune.unit_report import format_blocks  # it builds on this module

        out += ["", *format_blocks(report.blocks)]
    return "\n".join(out)


def mac_line(
    macs: int | None,
    nonzero: int | None,
    why: str = "a symbolic input dimension; give --input-shape",
) -> str:
    """``MACs: 4.11G dense   1.20G by nonzero weights (29.20%)``; unknown ones say ``why``.

    Example:
        >>> mac_line(2000, 500)
        'MACs: 2K dense   500 by nonzero weights (25.00%)'
    """
    if macs is None:
        return f"MACs: unknown ({why})"
    share = f" ({nonzero / macs:.2%})" if macs and nonzero is not None else ""
    return f"MACs: {short(macs)} dense   {short(nonzero)} by nonzero weights{share}"


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> list[str]:
    """Lines of a fixed-width table: the header, a rule, the rows.

    Args:
        header: column titles.
        rows: already formatted cells; names in them are shown with control characters
            escaped (``printable``), so a row is one line whatever the model calls a layer.
        align: one ``<`` (left) or ``>`` (right) per column; default all left.

    Example:
        >>> text_table(("a", "bb"), [("1", "2")], "<>")
        ['a  bb', '-  --', '1   2']
    """
    align = align or "<" * len(header)
    rows = [tuple(map(printable, row)) for row in rows]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True))

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


def _ratio(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:,.2f}x"


@dataclass(frozen=True, slots=True)
class GateResult:
    """The pipeline gate's decision: a value, never an exception (the CLI maps it to exit 3).

    Attributes:
        passed: whether every requested check held.
        reason: one readable line: what failed with the numbers, or ``"passed: ..."``.
        max_accuracy_drop: the allowed top-1 drop against the baseline, if checked.
        min_agreement: the required top-1 agreement with the baseline, if checked.
        limits: every other gate checked, by name (``min_cosine``, ``max_abs_error``,
            ``min_metric``, ...; ``min_agreement`` too), with its limit.
    """

    passed: bool
    reason: str
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    limits: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form: ``passed``, ``reason``, the two named limits and the ``limits`` dict."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "max_accuracy_drop": self.max_accuracy_drop,
            "min_agreement": self.min_agreement,
            "limits": dict(self.limits),
        }


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Accuracy, agreement with a baseline, output error and latency of a model on ONNX Runtime.

    Fractions are in [0, 1]; a metric that does not apply (no labels, no baseline, fewer than 5
    classes for top-5) is ``None``.

    Attributes:
        model: display name of the model (its file name), ``None`` when given in memory.
        baseline: display name of the baseline, ``None`` when in memory or not given.
        provider: the execution provider the model ran on, e.g. ``"CPUExecutionProvider"``.
        baseline_provider: the execution provider the baseline ran on (not in ``to_dict``).
        samples: number of samples evaluated.
        batch_size: samples per run (the model's fixed batch size when it has one).
        top1: fraction of samples whose label is the model's highest-scored class.
        top5: fraction whose label is among the 5 highest-scored classes.
        baseline_top1: ``top1`` of the baseline.
        baseline_top5: ``top5`` of the baseline.
        agreement: fraction of samples where the model's and the baseline's top-1 classes agree
            (on the first output; ``outputs`` has it for each).
        max_abs_diff: largest absolute difference of the first output against the baseline's.
        mean_abs_diff: mean absolute difference of the first output over all its elements.
        latency_ms_p50: median time of one batch of the model, in milliseconds, over its timed
            runs (warm-up excluded; see ``onnxprune.latency``).
        latency_ms_p95: 95th percentile of the same times.
        throughput: samples per second over the timed runs.
        gate: the gate's decision, ``None`` when no gate was asked for.
        baseline_latency_ms_p50: median time of one batch of the baseline, in milliseconds,
            timed on the same batches as the model, interleaved with it.
        baseline_latency_ms_p95: 95th percentile of the baseline's times.
        speedup: ``baseline_latency_ms_p50 / latency_ms_p50``; above 1 the model is faster
            (``None`` without a baseline, or when the model's median time is 0).
        outputs: output name -> comparison metric (``onnxprune.metrics``) -> value against the
            baseline (``None`` where it does not apply); empty without a baseline.
        user_metrics: the user metric's values on the model (``--metric``), by name.
        baseline_user_metrics: the same on the baseline.
        latency_ms_p90: 90th percentile of the model's times (``None`` in results from before).
        baseline_latency_ms_p90: 90th percentile of the baseline's times.
        speedup_low: lower end of the speedup's confidence interval (a paired bootstrap).
        speedup_high: upper end of that interval.
        speedup_confidence: the interval's level, e.g. 0.95.
        timed_runs: timed runs (batches) of each side.
        threads: ONNX Runtime intra-op threads of the sessions (0: ONNX Runtime's choice).
        warnings: what makes the timings less trustworthy (too few batches, a wide interval),
            and outputs whose agreement read many positions as one vector of scores.
        class_axis: the axis of the classes when accuracy and agreement were per position
            (token, pixel; ``onnxprune.metrics``), ``None`` when each sample was one prediction.
    """

    model: str | None
    baseline: str | None
    provider: str
    baseline_provider: str | None
    samples: int
    batch_size: int
    top1: float | None
    top5: float | None
    baseline_top1: float | None
    baseline_top5: float | None
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    latency_ms_p50: float
    latency_ms_p95: float
    throughput: float
    gate: GateResult | None
    baseline_latency_ms_p50: float | None = None
    baseline_latency_ms_p95: float | None = None
    speedup: float | None = None
    outputs: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    user_metrics: Mapping[str, float] = field(default_factory=dict)
    baseline_user_metrics: Mapping[str, float] = field(default_factory=dict)
    latency_ms_p90: float | None = None
    baseline_latency_ms_p90: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    speedup_confidence: float | None = None
    timed_runs: int | None = None
    threads: int | None = None
    warnings: tuple[str, ...] = ()
    class_axis: int | None = None

    def to_dict(self) -> dict:
        """JSON form with exactly the documented keys; missing metrics are ``None``."""
        return {
            "model": self.model,
            "baseline": self.baseline,
            "provider": self.provider,
            "samples": self.samples,
            "batch_size": self.batch_size,
            "top1": self.top1,
            "top5": self.top5,
            "baseline_top1": self.baseline_top1,
            "baseline_top5": self.baseline_top5,
            "agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p95": self.latency_ms_p95,
            "throughput": self.throughput,
            "baseline_latency_ms_p50": self.baseline_latency_ms_p50,
            "baseline_latency_ms_p95": self.baseline_latency_ms_p95,
            "speedup": self.speedup,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "outputs": {name: dict(values) for name, values in self.outputs.items()},
            "user_metrics": dict(self.user_metrics),
            "baseline_user_metrics": dict(self.baseline_user_metrics),
            "latency_ms_p90": self.latency_ms_p90,
            "baseline_latency_ms_p90": self.baseline_latency_ms_p90,
            "speedup_low": self.speedup_low,
            "speedup_high": self.speedup_high,
            "speedup_confidence": self.speedup_confidence,
            "timed_runs": self.timed_runs,
            "threads": self.threads,
            "warnings": list(self.warnings),
            "class_axis": self.class_axis,
        }


def format_validation(result: ValidationResult) -> str:
    """The validation result as readable lines, ending with the gate line."""
    model = printable(result.model or "(in memory)")
    out = [f"model:       {model} on {result.provider}"]
    if result.baseline_provider is not None:
        baseline = printable(result.baseline or "(in memory)")
        out.append(f"baseline:    {baseline} on {result.baseline_provider}")
    out.append(f"samples:     {result.samples:,} in batches of {result.batch_size}")
    if result.class_axis is not None:
        out.append(
            f"class axis:  {result.class_axis}: accuracy and agreement are per position "
            "(every sample and position is one prediction)"
        )
    for label, value, reference in (
        ("top-1:", result.top1, result.baseline_top1),
        ("top-5:", result.top5, result.baseline_top5),
    ):
        if value is not None:
            extra = "" if reference is None else f"   baseline {reference:.2%}"
            out.append(f"{label:<12} {value:.2%}{extra}")
    if result.agreement is not None:
        out.append(f"agreement:   {result.agreement:.2%} of top-1 classes match the baseline")
    for name, value in result.user_metrics.items():
        reference = result.baseline_user_metrics.get(name)
        extra = "" if reference is None else f"   baseline {reference:.6g}"
        out.append(printable(f"metric:      {name} {value:.6g}{extra}"))
    if result.outputs:
        out += [
            "outputs against the baseline:",
            *("  " + line for line in comparison_table(result)),
        ]
    own = _percentiles(result.latency_ms_p50, result.latency_ms_p90, result.latency_ms_p95)
    out.append(f"latency:     {own} per batch   throughput {result.throughput:,.0f} samples/s")
    if result.timed_runs is not None:
        out.append(
            f"timing:      {result.timed_runs:,} runs per side after warm-up, {_threads(result)}"
        )
    if result.baseline_latency_ms_p50 is not None:
        other = _percentiles(
            result.baseline_latency_ms_p50,
            result.baseline_latency_ms_p90,
            result.baseline_latency_ms_p95,
        )
        out.append(f"vs baseline: {other} per batch   {_speedup(result)}")
    out.append(f"gate:        {gate_line(result.gate)}")
    return "\n".join(out)


def comparison_table(result: ValidationResult) -> list[str]:
    """Lines of a table of the comparisons with the baseline: one row per output."""
    metrics = list(COMPARISONS.values())
    header = ("output", *(c.header for c in metrics))
    rows = [
        (name, *("n/a" if v.get(c.name) is None else c.format(v[c.name]) for c in metrics))
        for name, v in result.outputs.items()
    ]
    return text_table(header, rows, "<" + ">" * len(metrics))


def gate_line(gate: GateResult | None) -> str:
    """``none``, ``passed: ...`` or ``FAILED: ...``: what the gate decided and why."""
    if gate is None:
        return "none"
    return gate.reason if gate.passed else f"FAILED: {gate.reason}"


def _threads(result: ValidationResult) -> str:
    """``1 intra-op thread``, ``4 intra-op threads``, or ONNX Runtime's choice (0)."""
    if not result.threads:
        return "ONNX Runtime's default intra-op threads"
    return f"{result.threads} intra-op thread{'s' if result.threads > 1 else ''}"


def _percentiles(p50: float, p90: float | None, p95: float) -> str:
    """``p50 0.230 ms   p90 0.270 ms   p95 0.285 ms`` (no p90 in results from before it)."""
    parts = [("p50", p50), ("p90", p90), ("p95", p95)]
    return "   ".join(f"{name} {value:.3f} ms" for name, value in parts if value is not None)


def _speedup(result: ValidationResult) -> str:
    """``2.65x faster (95% CI 2.50-2.80x)``; below 1 ``0.80x as fast (slower)``."""
    value = result.speedup
    if value is None:
        return "speedup n/a"
    text = f"{value:.2f}x faster" if value >= 1 else f"{value:.2f}x as fast (slower)"
    if result.speedup_low is None or result.speedup_high is None:
        return text
    level = result.speedup_confidence or 0.95
    return f"{text} ({level:.0%} CI {result.speedup_low:.2f}-{result.speedup_high:.2f}x)"
