"""Sweep and batch JSON -> "which model ships": the recommended model, accuracy against costs.

``onnxprune sweep`` marks every run's place on two Pareto fronts (``front_macs``: accuracy vs
MACs by nonzero weights, ``front_speedup``: accuracy vs speedup over the dense model) and names
the recommended run (``onnxprune.choice``); this module only shows what the JSON says. Sweeps
written before these keys existed get no such section.
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxprune.render import _format as fmt
from onnxprune.render.document import Block, Line, LinePlot, Paragraph, Verdict


def has_choice(data: Mapping) -> bool:
    """Whether the sweep JSON carries the fronts and the recommendation."""
    return "recommended" in data


def front_marks(run: Mapping) -> str:
    """``MACs, speedup``: the fronts the run is on (empty for none; ``n/a`` before fronts)."""
    if "front_macs" not in run:
        return fmt.MISSING
    fronts = (("MACs", run["front_macs"]), ("speedup", run["front_speedup"]))
    return ", ".join(name for name, on in fronts if on)


def gate_mark(run: Mapping) -> str:
    """``passed``, ``FAILED`` or ``n/a`` (no gate)."""
    passed = run.get("passed")
    return fmt.MISSING if passed is None else ("passed" if passed else "FAILED")


def chance(data: Mapping) -> tuple[str, float] | None:
    """The chance line of accuracy plots: ``1 / classes``, when the model declares its classes."""
    classes = data.get("classes")
    if not classes:
        return None
    return (f"chance (1/{classes})", 1.0 / classes)


def choice_blocks(data: Mapping) -> tuple[Block, ...]:
    """The recommendation, then accuracy vs MACs and vs speedup with the fronts circled."""
    runs = [run for run in data["runs"] if run.get("error") is None]
    metric = "top1" if any(run["top1"] is not None for run in runs) else "agreement"
    ylabel = "top-1 accuracy" if metric == "top1" else "top-1 agreement with the dense model"
    line = chance(data) if metric == "top1" else None
    plots = tuple(
        _front_plot(runs, metric, ylabel, line, key, front)
        for key, front in (("nonzero_macs", "front_macs"), ("speedup", "front_speedup"))
    )
    return (_recommendation(data), *plots)


def lines_by_method(points: Mapping[str, list[tuple[float, float]]]) -> tuple[Line, ...]:
    """One line per method through its (x, y) points, in order of x."""
    return tuple(
        Line(method, tuple(x for x, _ in pts), tuple(y for _, y in pts))
        for method, pts in ((m, sorted(p)) for m, p in points.items())
    )


def batch_recommendation(data: Mapping) -> Block:
    """A batch's recommended model (the most compressed that passed its gate), or why none."""
    if not data.get("gated"):
        return Paragraph(
            "Recommended model: none, no gate was set (batch --max-accuracy-drop or "
            "--min-agreement)."
        )
    best = next((r for r in data["results"] if r["output"] == data["recommended"]), None)
    if best is None:
        return Verdict(False, ("Recommended model: none passes the gate.",))
    return Verdict(
        True,
        (
            f"Recommended model: {best['output']} (pruned from {best['model']}), the most "
            "compressed that passes the gate",
            f"MACs by nonzero weights: {fmt.macs(best.get('nonzero_macs'))}; file size: "
            f"{fmt.size(best.get('size_bytes'))}; top-1: {fmt.percent(best['accuracy'])}; "
            f"agreement: {fmt.percent(best['agreement'])}",
        ),
    )


def _recommendation(data: Mapping) -> Block:
    if not data.get("gated"):
        return Paragraph(
            "Recommended model: none, no gate was set (sweep --max-accuracy-drop or "
            "--min-agreement); the fronts below still show the trade-offs."
        )
    best = next((run for run in data["runs"] if run["model_path"] == data["recommended"]), None)
    if best is None:
        return Verdict(False, ("Recommended model: none passes the gate.",))
    return Verdict(
        True,
        (
            f"Recommended model: {best['method']} at {fmt.sparsity_target(best['sparsity'])} "
            f"({best['model_path']}), the most compressed run that passes the gate",
            f"MACs by nonzero weights: {fmt.macs(best['nonzero_macs'])}; file size: "
            f"{fmt.size(best.get('size_bytes'))}; top-1: {fmt.percent(best['top1'])}; "
            f"agreement: {fmt.percent(best['agreement'])}; speedup: {fmt.ratio(best['speedup'])}",
        ),
    )


def _front_plot(
    runs: list[Mapping],
    metric: str,
    ylabel: str,
    line: tuple[str, float] | None,
    key: str,
    front: str,
) -> LinePlot:
    points: dict[str, list[tuple[float, float]]] = {}
    marked = []
    for run in runs:
        x, y = run.get(key), run[metric]
        if x is None or y is None:
            continue
        points.setdefault(run["method"], []).append((float(x), float(y)))
        if run.get(front):
            marked.append((float(x), float(y)))
    lines = lines_by_method(points)
    macs = key == "nonzero_macs"
    what = "MACs by nonzero weights" if macs else "speedup over the dense model"
    better = "fewer MACs" if macs else "a higher speedup"
    caption = (
        "One line per method; circled: the Pareto front (no other run is at least as accurate "
        f"with {better})."
    )
    if line is not None:
        caption += f" The red dashed line is chance accuracy, {line[0]}: {fmt.percent(line[1])}."
    short = "Accuracy" if metric == "top1" else "Agreement"
    return LinePlot(
        f"{short} vs {what}",
        f"{what} (log scale)",
        ylabel,
        lines,
        caption=caption,
        chance=line,
        front=tuple(marked),
        x_macs=macs,
    )
