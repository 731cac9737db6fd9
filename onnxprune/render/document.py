"""The rendered report as values: sections of tables, paragraphs, gate verdicts and plots.

``build.py`` turns a report JSON into a ``Document``; ``markdown.py`` and ``html.py`` write the
same document, so both outputs always say the same thing. Every string here is plain text; each
writer escapes it for its format.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of already formatted cells; ``numeric`` columns are right-aligned."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Paragraph:
    """One paragraph of text."""

    text: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A gate decision: passed or failed, with its reason and thresholds as detail lines."""

    passed: bool
    details: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Bars:
    """One series of a bar plot: a value per category."""

    name: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class BarPlot:
    """Grouped bars: one group per label, one bar per series; ``percent`` formats the y axis."""

    title: str
    ylabel: str
    labels: tuple[str, ...]
    series: tuple[Bars, ...]
    percent: bool = False
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a line plot, points in the order they are drawn."""

    name: str
    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class LinePlot:
    """Lines with an optional horizontal reference line.

    The x axis is logarithmic (compression ratios; MACs with ``x_macs``) or, with
    ``log_x=False``, a fraction shown in percent (sparsity); ``percent`` formats the y axis as
    a percentage (accuracy). ``chance`` is a second horizontal line (chance accuracy), and
    ``front`` the points of a Pareto front, circled and joined.
    """

    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Line, ...]
    reference: tuple[str, float] | None = None
    caption: str = ""
    log_x: bool = True
    percent: bool = True
    chance: tuple[str, float] | None = None
    front: tuple[tuple[float, float], ...] = ()
    x_macs: bool = False


Block = Table | Paragraph | Verdict | BarPlot | LinePlot
Plot = BarPlot | LinePlot


@dataclass(frozen=True, slots=True)
class Section:
    """A titled run of blocks."""

    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """A whole report: its title and its sections, in reading order."""

    title: str
    sections: tuple[Section, ...]
