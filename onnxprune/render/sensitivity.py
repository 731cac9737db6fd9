"""Sensitivity analysis JSON -> sections: what was measured, one table, one plot per layer.

``onnxprune sensitivity`` writes ``SensitivityResult.to_dict()``; every number shown is read from
it. Each curve is the metric against the sparsity its layer reached, the others dense, beside the
dense model's value.
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxprune.render import _format as fmt
from onnxprune.render.document import Block, Line, LinePlot, Paragraph, Section, Table


def sensitivity_sections(data: Mapping) -> tuple[Section, ...]:
    """The settings, one row per curve at each level, and a plot per curve."""
    percent = data["percent"]
    value = fmt.percent if percent else fmt.number
    summary = Table(
        ("quantity", "value"),
        (
            ("model", fmt.text(data["model"])),
            (
                "metric",
                data["metric"]
                + (" (higher is better)" if data["higher_is_better"] else " (lower is better)"),
            ),
            ("dense model", value(data["baseline"])),
            ("levels", ", ".join(fmt.sparsity_target(level) for level in data["levels"])),
            ("score", data["score"]),
            ("structured criterion", fmt.text(data["structured"])),
            ("provider", fmt.text(data["provider"])),
            ("samples", fmt.count(data["samples"])),
            *fmt.class_axis_rows(data.get("class_axis")),
        ),
        (False, True),
    )
    curves = [(c, "unstructured") for c in data["layers"]] + [
        (c, "structured") for c in data["groups"]
    ]
    header = ("layer", "kind", "params", *(fmt.sparsity_target(x) for x in data["levels"]))
    width = len(header)
    rows = []
    for curve, kind in curves:
        cells = (
            (curve["error"],) if curve["error"] is not None else tuple(map(value, curve["values"]))
        )
        row = (curve["name"], kind, fmt.count(curve["params"]), *cells)
        rows.append(row + ("",) * (width - len(row)))
    table = Table(
        header, tuple(row[:width] for row in rows), (False, False, *(True,) * (width - 2))
    )
    note = Paragraph(
        "Each layer pruned alone at each level (columns: the level asked; structured layers "
        "remove whole units, so the share reached, plotted below, can differ), the rest dense."
    )
    plots: tuple[Block, ...] = tuple(_plot(c, kind, data, percent) for c, kind in curves)
    if not plots:
        plots = (Paragraph("The model has no prunable layer to plot."),)
    return (
        Section("Settings", (summary,)),
        Section("Curves", (note, table)),
        Section("Per layer", plots),
    )


def _plot(curve: Mapping, kind: str, data: Mapping, percent: bool) -> LinePlot:
    points = [
        (x, y) for x, y in zip(curve["levels"], curve["values"], strict=True) if y is not None
    ]
    lines = ()
    if points:
        lines = (Line(data["metric"], tuple(x for x, _ in points), tuple(y for _, y in points)),)
    caption = f"{kind}; dashed: the dense model."
    if curve["error"] is not None:
        caption += f" Not measured: {curve['error']}"
    return LinePlot(
        f"{curve['name']} ({kind})",
        "sparsity of this layer (the others dense)",
        data["metric"],
        lines,
        ("dense", float(data["baseline"])),
        caption,
        log_x=False,
        percent=percent,
    )
