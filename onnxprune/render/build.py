"""Report JSON -> ``Document``: what each kind of report shows, in which order.

The JSON is the source of truth: every number shown is read from it and only formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from onnxprune.latency import named_warnings
from onnxprune.metrics import COMPARISONS
from onnxprune.render import _format as fmt
from onnxprune.render.document import (
    BarPlot,
    Bars,
    Block,
    Document,
    LinePlot,
    Paragraph,
    Section,
    Table,
    Verdict,
)
from onnxprune.render.kinds import OPTIONAL_RUN_FIELDS, OPTIONAL_VALIDATION_FIELDS, detect_kind
from onnxprune.render.sensitivity import sensitivity_sections
from onnxprune.render.ship import (
    batch_recommendation,
    chance,
    choice_blocks,
    front_marks,
    gate_mark,
    has_choice,
    lines_by_method,
)
from onnxprune.render.structured import compact_sections, structured_sections
from onnxprune.report import LAYER_COLUMNS
from onnxprune.unit_report import UNIT_COLUMNS, head_name

LAYER_HEADER = ("#", "layer", "weight", *LAYER_COLUMNS[1:])
ITEM_HEADER = (
    "model",
    "status",
    "target",
    "direct",
    "effective",
    "nonzero MACs",
    "size",
    "top-1",
    "dense top-1",
    "agreement",
    "cosine",
    "gate",
    "front",
    "time",
)
RUN_HEADER = (
    "method",
    "target",
    "direct",
    "effective",
    "direct compression",
    "effective compression",
    "nonzero MACs",
    "size",
    "top-1",
    "agreement",
    "cosine",
    "speedup (95% CI)",
    "gate",
    "front",
)


def build_document(data: Mapping) -> Document:
    """The document for any known report JSON (see ``kinds.py``).

    Raises:
        InvalidOptionError: the JSON is not a known report (from ``detect_kind``).
    """
    kind = detect_kind(data)
    if kind == "sparsity":
        return Document("Sparsity report", sparsity_sections(data))
    if kind == "structured":
        return Document("Structured pruning", structured_sections(data))
    if kind == "compact":
        return Document("Compaction report", compact_sections(data))
    if kind == "validation":
        title = f"Validation: {fmt.text(data['model'])}"
        return Document(title, (validation_section(data, "Validation"),))
    if kind == "sweep":
        return Document(f"Sparsity sweep: {fmt.text(data['model'])}", sweep_sections(data))
    if kind == "batch":
        return Document("Batch pruning", batch_sections(data))
    if kind == "sensitivity":
        title = f"Sensitivity analysis: {fmt.text(data['model'])}"
        return Document(title, sensitivity_sections(data))
    sections = sparsity_sections(data["report"])
    if data.get("validation") is not None:
        sections += (validation_section(data["validation"], "Validation"),)
    return Document("Pruning report", sections)


def sparsity_sections(data: Mapping) -> tuple[Section, ...]:
    """Totals, layers with two plots, fallback ops, and compaction after ``prune --compact``."""
    layers = data["layers"]
    totals = Table(
        ("quantity", "value"),
        (
            ("level", data["level"]),
            ("prunable weights", fmt.count(data["total_params"])),
            ("layers", fmt.count(len(layers))),
            ("direct sparsity", fmt.percent(data["direct_sparsity"])),
            ("effective sparsity", fmt.percent(data["effective_sparsity"])),
            ("direct compression", fmt.compression(data["direct_compression"])),
            ("effective compression", fmt.compression(data["effective_compression"])),
            ("dead input units", fmt.count(data.get("dead_inputs"))),
            ("dead output units", fmt.count(data.get("dead_outputs"))),
            ("MACs (dense)", fmt.macs(data.get("macs"))),
            ("MACs by nonzero weights", fmt.macs(data.get("nonzero_macs"))),
        ),
        (False, True),
    )
    sections = (
        Section("Totals", (totals,)),
        Section("Layers", _layer_blocks(layers)),
    )
    if data.get("blocks"):
        sections += (Section("Units", (_units_table(data["blocks"]),)),)
    shared = [layer for layer in layers if layer.get("shared_by")]
    if shared:
        sections += (Section("Shared weights", (_shared_table(shared),)),)
    sections += (Section("Fallback ops", (_fallback_paragraph(data["fallback_ops"]),)),)
    if "compaction" in data:
        sections += compact_sections(data["compaction"])
    return sections


def _layer_blocks(layers: list[Mapping]) -> tuple[Block, ...]:
    if not layers:
        return (Paragraph("The model has no prunable layers."),)
    rows = tuple(
        (
            str(i),
            _label(layer),
            layer["name"],
            layer["op_type"],
            "x".join(fmt.count(d) for d in layer["shape"]).replace(",", ""),
            fmt.count(layer["params"]),
            fmt.percent(layer["direct_sparsity"]),
            fmt.percent(layer["effective_sparsity"]),
            fmt.count(layer["dead_inputs"]),
            fmt.count(layer["dead_outputs"]),
            fmt.macs(layer.get("macs")),
            fmt.macs(layer.get("nonzero_macs")),
        )
        for i, layer in enumerate(layers, 1)
    )
    table = Table(LAYER_HEADER, rows, (True, False, False, False, False, *(True,) * 7))
    names = tuple(_label(layer) for layer in layers)

    def series(name: str, key: str) -> Bars:
        return Bars(name, tuple(float(layer[key]) for layer in layers))

    sparsity = BarPlot(
        "Direct vs effective sparsity per layer",
        "sparsity",
        names,
        (series("direct", "direct_sparsity"), series("effective", "effective_sparsity")),
        percent=True,
        caption="Effective sparsity also counts nonzero weights on no input-to-output path.",
    )
    dead = BarPlot(
        "Dead units per layer",
        "units",
        names,
        (series("dead inputs", "dead_inputs"), series("dead outputs", "dead_outputs")),
        caption="Input and output units of each layer that no active weight passes through.",
    )
    return (table, sparsity, dead)


def _units_table(blocks: list[Mapping]) -> Table:
    """One row per block of units (an attention block's heads, an FFN's neurons), one per head."""
    rows = []
    for block in blocks:
        rows.append(
            (
                block["module"],
                f"{block['kind']}s",
                fmt.count(block["units"]),
                fmt.count(block["dead"]),
                fmt.count(block["blocked"]),
                fmt.count(block["params"]),
                fmt.percent(block["direct_sparsity"]),
                fmt.percent(block["effective_sparsity"]),
            )
        )
        for head in block["heads"]:
            name = head_name(int(head["index"]), int(head["heads"]))
            rows.append(
                (
                    f"{block['module']} {name}",
                    "",
                    "",
                    "",
                    "",
                    fmt.count(head["params"]),
                    fmt.percent(head["direct_sparsity"]),
                    fmt.percent(head["effective_sparsity"]),
                )
            )
    return Table(UNIT_COLUMNS, tuple(rows), (False, False, *(True,) * 6))


def _shared_table(layers: list[Mapping]) -> Table:
    """The weights more than one node reads, and those nodes (pruning leaves them alone)."""
    rows = tuple((_label(x), x["name"], ", ".join(x["shared_by"])) for x in layers)
    return Table(("layer", "weight", "read by"), rows, (False, False, False))


def _label(layer: Mapping) -> str:
    """The layer's readable name (module or node) where the report has one, else its weight's."""
    return layer.get("label") or layer["name"]


def _fallback_paragraph(ops: list[str]) -> Paragraph:
    if not ops:
        return Paragraph("None: every op was followed by a transfer rule.")
    return Paragraph(
        "These op types fell back to dense mixing, so effective sparsity may be under-reported: "
        f"{', '.join(ops)}."
    )


def validation_section(data: Mapping, title: str) -> Section:
    """The metrics table and the gate's verdict of one validation result.

    Results written before the baseline was timed, or before timing was repeated, lack those
    latencies; they show as ``n/a``. Warnings (timing, outputs compared) follow the table.
    """
    data = {**dict.fromkeys(OPTIONAL_VALIDATION_FIELDS), "warnings": [], **data}
    rows = (
        ("model", fmt.text(data["model"])),
        ("baseline", fmt.text(data["baseline"])),
        ("provider", fmt.text(data["provider"])),
        ("samples", fmt.count(data["samples"])),
        ("batch size", fmt.count(data["batch_size"])),
        *fmt.class_axis_rows(data["class_axis"]),
        ("top-1 accuracy", fmt.percent(data["top1"])),
        ("baseline top-1 accuracy", fmt.percent(data["baseline_top1"])),
        ("top-5 accuracy", fmt.percent(data["top5"])),
        ("baseline top-5 accuracy", fmt.percent(data["baseline_top5"])),
        ("top-1 agreement with baseline", fmt.percent(data["agreement"])),
        ("max abs output difference", fmt.number(data["max_abs_diff"])),
        ("mean abs output difference", fmt.number(data["mean_abs_diff"])),
        ("latency p50 per batch", fmt.number(data["latency_ms_p50"], "ms", ".3f")),
        ("latency p90 per batch", fmt.number(data["latency_ms_p90"], "ms", ".3f")),
        ("latency p95 per batch", fmt.number(data["latency_ms_p95"], "ms", ".3f")),
        ("throughput", fmt.number(data["throughput"], "samples/s", ",.1f")),
        (
            "baseline latency p50 per batch",
            fmt.number(data["baseline_latency_ms_p50"], "ms", ".3f"),
        ),
        (
            "baseline latency p90 per batch",
            fmt.number(data["baseline_latency_ms_p90"], "ms", ".3f"),
        ),
        (
            "baseline latency p95 per batch",
            fmt.number(data["baseline_latency_ms_p95"], "ms", ".3f"),
        ),
        (
            "speedup (baseline p50 / model p50)",
            fmt.interval(
                data["speedup"],
                data["speedup_low"],
                data["speedup_high"],
                data["speedup_confidence"],
            ),
        ),
        ("timed runs per side", fmt.count(data["timed_runs"])),
        ("intra-op threads", _threads(data["threads"])),
        *_user_rows(data["user_metrics"] or {}, data["baseline_user_metrics"] or {}),
    )
    table = Table(("metric", "value"), rows, (False, True))
    blocks: tuple[Block, ...] = (_gate(data["gate"]), table)
    if data["warnings"]:
        blocks += (Paragraph("Warnings: " + "; ".join(data["warnings"])),)
    if data["outputs"]:
        blocks += (
            Paragraph("Each output compared with the baseline's (the gates read the worst):"),
            _comparison_table(data["outputs"]),
        )
    return Section(title, blocks)


def _threads(value: float | None) -> str:
    """The intra-op threads of a result; 0 was ONNX Runtime's choice."""
    return "ONNX Runtime's default" if value == 0 else fmt.count(value)


def _user_rows(values: Mapping, baseline: Mapping) -> list[tuple[str, str]]:
    """Rows of a user metric's values (``validate --metric``), the baseline's after each."""
    rows = []
    for name, value in values.items():
        rows.append((f"metric {name}", fmt.number(value, "", ".6g")))
        if name in baseline:
            rows.append((f"baseline metric {name}", fmt.number(baseline[name], "", ".6g")))
    return rows


def _comparison_table(outputs: Mapping) -> Table:
    """One row per output, one column per comparison metric (``onnxprune.metrics``)."""
    names = list(dict.fromkeys(name for values in outputs.values() for name in values))
    header = ("output", *(COMPARISONS[n].header if n in COMPARISONS else n for n in names))
    rows = tuple(
        (output, *(_comparison_cell(n, values.get(n)) for n in names))
        for output, values in outputs.items()
    )
    return Table(header, rows, (False, *(True,) * len(names)))


def _comparison_cell(name: str, value: float | None) -> str:
    if name in COMPARISONS and COMPARISONS[name].percent:
        return fmt.percent(value)
    return fmt.number(value, "", ".6g")


def _gate(gate: Mapping | None) -> Block:
    if gate is None:
        return Paragraph("No gate was set.")
    details = [] if gate["reason"] is None else [gate["reason"]]
    if gate["max_accuracy_drop"] is not None:
        details.append(f"max top-1 drop allowed: {fmt.points(gate['max_accuracy_drop'])}")
    if gate["min_agreement"] is not None:
        details.append(f"min agreement required: {fmt.percent(gate['min_agreement'])}")
    for name, limit in (gate.get("limits") or {}).items():
        if name != "min_agreement":
            details.append(f"{name}: {limit:g}")
    return Verdict(gate["passed"], tuple(details))


def sweep_sections(data: Mapping) -> tuple[Section, ...]:
    """The runs table (dense first), the two accuracy-vs-compression plots, the dense metrics.

    The table has a column per value of a user metric (``sweep --metric``) after the cosine.
    """
    runs, dense = data["runs"], data["dense"]
    sides = [*runs, *([] if dense is None else [dense])]
    names = list(dict.fromkeys(k for side in sides for k in side.get("user_metrics") or {}))
    rows = [_run_row(run, names) for run in runs]
    if dense is not None:
        na = fmt.MISSING
        dense_macs = next((run["macs"] for run in runs if run.get("macs") is not None), None)
        top1 = fmt.percent(dense["top1"])
        user = _user_cells(dense, names)
        cells = (fmt.macs(dense_macs), na, top1, na, na, na, na, na, *user)
        rows.insert(0, ("dense", na, na, na, na, na, *cells))
    header = (*RUN_HEADER, *names)
    numeric = (False, *(True,) * 11, False, False, *(True,) * len(names))
    blocks: list[Block] = [Table(header, tuple(rows), numeric)]
    if data.get("class_axis") is not None:
        axis = fmt.class_axis_rows(data["class_axis"])
        blocks.insert(0, Table(("setting", "value"), axis, (False, True)))
    failed = [run for run in runs if run.get("error") is not None]
    if failed:
        lines = "; ".join(
            f"{r['method']} at {fmt.sparsity_target(r['sparsity'])}: {r['error']}" for r in failed
        )
        blocks.append(Paragraph(f"Failed runs: {lines}"))
    warnings = _run_warnings(runs, dense)
    if warnings:
        blocks.append(Paragraph("Warnings: " + "; ".join(warnings)))
    sections = [Section("Runs", tuple(blocks))]
    if runs and has_choice(data):
        sections.append(Section("Which model ships", choice_blocks(data)))
    if runs:
        plots = _sweep_plots(runs, dense, chance(data))
        sections.append(Section("Accuracy vs compression", plots))
    if dense is not None:
        sections.append(validation_section(dense, "Dense model"))
    return tuple(sections)


def _run_warnings(runs: list[Mapping], dense: Mapping | None) -> list[str]:
    """Each warning of the sweep once, named by the run (or the dense model) it is from."""
    named = [("dense model", dense.get("warnings", []))] if dense is not None else []
    named += [
        (f"{r['method']} at {fmt.sparsity_target(r['sparsity'])}", r.get("warnings", []))
        for r in runs
    ]
    return named_warnings(named)


def _run_row(run: Mapping, names: list[str]) -> tuple[str, ...]:
    run = {**dict.fromkeys(OPTIONAL_RUN_FIELDS), **run}
    return (
        run["method"],
        fmt.sparsity_target(run["sparsity"]),
        fmt.percent(run["direct_sparsity"]),
        fmt.percent(run["effective_sparsity"]),
        fmt.compression(run["direct_compression"], run["direct_sparsity"]),
        fmt.compression(run["effective_compression"], run["effective_sparsity"]),
        fmt.macs(run.get("nonzero_macs")),
        fmt.size(run.get("size_bytes")),
        fmt.percent(run["top1"]),
        fmt.percent(run["agreement"]),
        _cosine(run),
        fmt.interval(run["speedup"], run["speedup_low"], run["speedup_high"]),
        gate_mark(run),
        front_marks(run),
        *_user_cells(run, names),
    )


def _cosine(result: Mapping) -> str:
    """The mean cosine similarity with the dense model of the worst output of a run or model.

    Read from JSON ``comparison``; results written before it existed show ``n/a``.
    """
    return fmt.number((result.get("comparison") or {}).get("cosine"), "", ".4f")


def _user_cells(result: Mapping, names: list[str]) -> list[str]:
    values = result.get("user_metrics") or {}
    return [fmt.number(values.get(name), "", ".6g") for name in names]


def _sweep_plots(
    runs: list[Mapping], dense: Mapping | None, chance_line: tuple[str, float] | None
) -> tuple[Block, ...]:
    """Accuracy (agreement where no run has labels) vs direct and effective compression."""
    metric = "top1" if any(run["top1"] is not None for run in runs) else "agreement"
    if metric == "top1":
        ylabel = "top-1 accuracy"
        dense_value = None if dense is None else dense["top1"]
        reference = None if dense_value is None else ("dense", float(dense_value))
    else:
        ylabel = "top-1 agreement with the dense model (no labels)"
        reference = ("dense (agrees with itself)", 1.0)
    line = chance_line if metric == "top1" else None
    plots = tuple(
        _sweep_plot(runs, metric, which, ylabel, reference, line)
        for which in ("direct", "effective")
    )
    if metric == "top1":
        return plots
    note = Paragraph("The sweep had no labels: the plots show agreement with the dense model.")
    return (note, *plots)


def _sweep_plot(
    runs: list[Mapping],
    metric: str,
    which: str,
    ylabel: str,
    reference: tuple[str, float] | None,
    chance_line: tuple[str, float] | None,
) -> LinePlot:
    points: dict[str, list[tuple[float, float]]] = {}
    infinite = 0
    for run in runs:
        x, y = run[f"{which}_compression"], run[metric]
        if (x is None or math.isinf(x)) and run[f"{which}_sparsity"] is not None:
            infinite += 1
        elif x is not None and y is not None and run.get("error") is None:
            points.setdefault(run["method"], []).append((float(x), float(y)))
    lines = lines_by_method(points)
    caption = "One line per method; log x axis."
    if reference is not None:
        caption += " The dense model is the dashed horizontal line."
    if chance_line is not None:
        caption += f" The red dashed line is chance accuracy, {chance_line[0]}."
    if infinite:
        caption += f" {infinite} run(s) with infinite {which} compression are not plotted."
    short = "Accuracy" if metric == "top1" else "Agreement"
    return LinePlot(
        f"{short} vs {which} compression",
        f"{which} compression (x, log scale)",
        ylabel,
        lines,
        reference,
        caption,
        chance=chance_line,
    )


def batch_sections(data: Mapping) -> tuple[Section, ...]:
    """Totals, one row per model with a sparsity plot, and the failed models with their errors."""
    results = data["results"]
    totals = Table(
        ("quantity", "value"),
        (
            ("models", fmt.count(data["models"])),
            ("pruned", fmt.count(data["ok"])),
            ("already done (skipped)", fmt.count(data["skipped"])),
            ("failed", fmt.count(data["failed"])),
            ("time of the models run", fmt.number(data["seconds"], "s", ".1f")),
        ),
        (False, True),
    )
    rows = tuple(
        (
            r["model"],
            r["status"] + (" (streamed)" if r["streamed"] else ""),
            fmt.MISSING if r["target"] is None else fmt.sparsity_target(r["target"]),
            fmt.percent(r["direct_sparsity"]),
            fmt.percent(r["effective_sparsity"]),
            fmt.macs(r.get("nonzero_macs")),
            fmt.size(r.get("size_bytes")),
            fmt.percent(r["accuracy"]),
            fmt.percent(r["baseline_accuracy"]),
            fmt.percent(r["agreement"]),
            _cosine(r),
            gate_mark(r),
            "MACs" if r.get("front_macs") else "",
            fmt.number(r["seconds"], "s", ".1f"),
        )
        for r in results
    )
    numeric = (False, False, *(True,) * 9, False, False, True)
    blocks: list[Block] = [Table(ITEM_HEADER, rows, numeric)]
    if "recommended" in data:
        blocks.insert(0, batch_recommendation(data))
    pruned = [r for r in results if r["direct_sparsity"] is not None]
    if pruned:
        blocks.append(
            BarPlot(
                "Direct vs effective sparsity per model",
                "sparsity",
                tuple(r["model"] for r in pruned),
                tuple(
                    Bars(name, tuple(float(r[f"{name}_sparsity"]) for r in pruned))
                    for name in ("direct", "effective")
                ),
                percent=True,
            )
        )
    sections = [Section("Totals", (totals,)), Section("Models", tuple(blocks))]
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        failures = Table(
            ("model", "error"),
            tuple((r["model"], fmt.text(r["error"])) for r in failed),
            (False, False),
        )
        sections.append(Section("Failed models", (failures,)))
    return tuple(sections)
