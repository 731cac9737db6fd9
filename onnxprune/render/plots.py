"""Plots of a ``Document`` as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built with the object API (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``: no
global figure registry, no backend switch, safe to call from any thread. Text taken from a
report (layer names, methods) is drawn with ``parse_math=False`` so a ``$`` is just a dollar.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from onnxprune.macs import short
from onnxprune.render.document import BarPlot, LinePlot, Plot

DPI = 110
MAX_LABEL = 28  # longer layer names keep their end, where they differ most
MAX_NAMED_GROUPS = 40  # more layers than this are numbered as in the table's "#" column


def render_png(plot: Plot) -> bytes:
    """The plot as a PNG image.

    Example:
        >>> from onnxprune.render.document import BarPlot, Bars
        >>> png = render_png(BarPlot("t", "y", ("a", "b"), (Bars("s", (1.0, 2.0)),)))
        >>> png.startswith(bytes.fromhex("89504e47"))
        True
    """
    fig = _bar_figure(plot) if isinstance(plot, BarPlot) else _line_figure(plot)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _bar_figure(plot: BarPlot) -> Figure:
    groups, per_group = len(plot.labels), max(len(plot.series), 1)
    fig, ax = _new_figure(min(16.0, max(7.0, 1.5 + 0.35 * groups * per_group)), 4.2)
    x = np.arange(groups)
    width = 0.8 / per_group
    for i, series in enumerate(plot.series):
        ax.bar(x + (i - (per_group - 1) / 2) * width, series.values, width, label=series.name)
    if groups > MAX_NAMED_GROUPS:
        ax.set_xticks(x, [str(i) for i in range(1, groups + 1)], fontsize=7, rotation=90)
        ax.set_xlabel("layer # (as in the table)")
    else:
        labels = [_shorten(label) for label in plot.labels]
        tilt = groups > 6 or max(map(len, labels), default=0) > 12
        ax.set_xticks(
            x,
            labels,
            rotation=35 if tilt else 0,
            ha="right" if tilt else "center",
            rotation_mode="anchor",
            parse_math=False,
        )
    if plot.percent:
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _titles(ax, plot.title, "", plot.ylabel)
    return fig


def _line_figure(plot: LinePlot) -> Figure:
    fig, ax = _new_figure(8.0, 4.8)
    if plot.log_x:
        ax.set_xscale("log")
    for line in plot.lines:
        ax.plot(line.x, line.y, marker="o", label=line.name)
    if plot.reference is not None:
        label, y = plot.reference
        ax.axhline(y, color="0.35", linestyle="--", linewidth=1.2, label=label)
    if plot.chance is not None:
        label, y = plot.chance
        ax.axhline(y, color="tab:red", linestyle=(0, (2, 2)), linewidth=1.5, label=label)
        ax.set_ylim(min(ax.get_ylim()[0], y - 0.05), max(ax.get_ylim()[1], y + 0.05))
    if plot.front:
        xs, ys = zip(*sorted(plot.front), strict=True)
        ax.plot(xs, ys, color="0.2", linewidth=0.8, zorder=1)
        ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="0.1", linewidths=1.5,
                   label="Pareto front", zorder=3)  # fmt: skip
    if not plot.lines:
        ax.text(0.5, 0.5, "no run to plot", transform=ax.transAxes, ha="center", color="0.4")
    if plot.x_macs:
        ax.xaxis.set_major_formatter(FuncFormatter(_macs_label))
    elif plot.log_x:
        ax.xaxis.set_major_formatter(FuncFormatter(_ratio_label))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_ratio_label))
    else:
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if plot.percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(which="both", alpha=0.3)
    _titles(ax, plot.title, plot.xlabel, plot.ylabel)
    return fig


def _titles(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, parse_math=False)
    if xlabel:
        ax.set_xlabel(xlabel, parse_math=False)
    ax.set_ylabel(ylabel, parse_math=False)
    if ax.get_legend_handles_labels()[0]:
        for text in ax.legend().get_texts():
            text.set_parse_math(False)


def _shorten(label: str) -> str:
    label = " ".join(label.split())
    return label if len(label) <= MAX_LABEL else f"…{label[-(MAX_LABEL - 1) :]}"


def _macs_label(value: float, _pos: int | None = None) -> str:
    return short(round(value)) if value > 0 else ""


def _ratio_label(value: float, _pos: int | None = None) -> str:
    return f"{value:g}x"


def _minor_ratio_label(value: float, _pos: int | None = None) -> str:
    """Label the minor ticks at 2 and 5 times a power of ten, where a log axis needs them."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}x" if leading in (2, 5) else ""
