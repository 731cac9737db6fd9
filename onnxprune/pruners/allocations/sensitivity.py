"""Sensitivity allocation: per-layer targets from measured loss curves, least predicted loss.

``onnxprune sensitivity`` (``onnxprune.sensitivity``) prunes each layer alone at several levels
and records the metric; this module reads that JSON (``read_curves``), turns each layer's
values into a *loss* curve (how much worse than the dense model, so higher is worse whatever
the metric) and allocates an overall target where the curves are flattest (PAPERS.md, section
on sensitivity analysis, as in NNI and SparseML).

The predicted loss of a layer at sparsity ``s`` is a piecewise-linear curve through
``(0, 0)`` and the measured points, made monotone (a running maximum: pruning more never
predicts less loss, so noise that makes accuracy rise does not attract pruning) and then
replaced by its lower convex envelope. On convex curves, removing weights in order of the
predicted loss per weight (the slope of a segment divided by the layer's size) is optimal:
the greedy order is the Lagrangian solution with one common slope for every layer. Segments of
equal cost are shared in proportion to their length, so tied layers are treated alike. Above a
layer's highest measured level the loss is unknown: those weights are taken only after every
measured segment of every layer, in proportion to what each layer has left. Counts are rounded
by largest remainder (``_quota.apportion``), so the overall budget ``round(t * total)`` is hit
exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.allocations._quota import (
    apportion,
    as_dict,
    check_target,
    layer_sizes,
    removal_budget,
)
from onnxprune.pruners.registry import allocation

KIND = "sensitivity"
"""The ``kind`` of the JSON ``onnxprune sensitivity`` writes."""

MAX_FILE_BYTES = 64 * 1024 * 1024
"""The largest sensitivity file read (thousands of layers take a few MB)."""

_TIE = 1e-12  # relative difference under which two costs per weight are the same


@dataclass(frozen=True, slots=True)
class Curve:
    """One layer's predicted loss: convex, non-decreasing, through ``(0, 0)``.

    Attributes:
        params: the layer's number of weights (checked against the model).
        levels: sparsities of the envelope's vertices, increasing, the first 0.
        losses: predicted loss at each vertex, non-decreasing, the first 0.
    """

    params: int
    levels: tuple[float, ...]
    losses: tuple[float, ...]

    def predict(self, sparsity: float) -> float:
        """Predicted loss at ``sparsity`` (linear between vertices; inf above the last)."""
        if sparsity > self.levels[-1] + 1e-12:
            return math.inf
        return float(np.interp(sparsity, self.levels, self.losses))


def loss_curve(params: int, levels: list[float], losses: list[float | None]) -> Curve:
    """The predicted-loss ``Curve`` of measured ``(level, loss)`` points.

    Points are sorted by level; the curve ends before the first loss that is ``None`` (the
    metric was not finite there). A running maximum makes it non-decreasing from ``(0, 0)``,
    then its lower convex envelope (monotone chain) is kept.

    Example:
        >>> c = loss_curve(100, [0.25, 0.5, 0.75], [0.0, 0.02, 0.01])
        >>> c.levels, c.losses
        ((0.0, 0.25, 0.75), (0.0, 0.0, 0.02))
    """
    points = [(0.0, 0.0)]
    for level, loss in sorted(zip(levels, losses, strict=True), key=lambda p: p[0]):
        if loss is None:
            break
        if level > points[-1][0]:
            points.append((float(level), max(float(loss), points[-1][1])))
    hull: list[tuple[float, float]] = []
    for p in points:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
            hull.pop()
        hull.append(p)
    return Curve(int(params), tuple(x for x, _ in hull), tuple(y for _, y in hull))


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Positive when ``o -> a -> b`` turns left (``a`` lies below the chord ``o -> b``)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def read_curves(source: str | os.PathLike | Mapping) -> dict[str, Curve]:
    """The loss curves of a sensitivity JSON (a path or the parsed document), by layer name.

    The loss is ``baseline - value`` for a metric where higher is better (accuracy), else
    ``value - baseline`` (output error).

    Raises:
        InvalidOptionError: an unreadable file, not JSON, not a sensitivity document, or a key
            missing or of the wrong type (one line naming it).
    """
    data = _load(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(data, Mapping) or data.get("kind") != KIND:
        raise InvalidOptionError(
            'the sensitivity file is not the JSON of `onnxprune sensitivity` ("kind": '
            f'"{KIND}" missing)'
        )
    higher = _field(data, "higher_is_better", bool)
    baseline = _field(data, "baseline", float)
    curves = {}
    for i, layer in enumerate(_field(data, "layers", list)):
        where = f"layers[{i}]"
        name = _field(layer, "name", str, where)
        params = _field(layer, "params", int, where)
        levels = _field(layer, "levels", list, where)
        values = _field(layer, "values", list, where)
        if len(levels) != len(values) or not all(_is_number(x) for x in levels):
            raise InvalidOptionError(
                f"sensitivity file: {where}: levels must be numbers, as many as values"
            )
        if not all(v is None or _is_number(v) for v in values):
            raise InvalidOptionError(f"sensitivity file: {where}: values must be numbers or null")
        losses = [None if v is None else (baseline - v if higher else v - baseline) for v in values]
        curves[name] = loss_curve(params, levels, losses)
    return curves


def _load(path: str | os.PathLike) -> object:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidOptionError(f"sensitivity file {path.name} is over {MAX_FILE_BYTES} bytes")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InvalidOptionError(f"sensitivity file not found: {path.name}") from None
    except OSError as e:
        raise InvalidOptionError(
            f"cannot read the sensitivity file {path.name}: {e.strerror}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidOptionError(f"sensitivity file {path.name} is not valid JSON") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _field(data: object, key: str, kind: type, where: str = "") -> object:
    if not isinstance(data, Mapping) or key not in data:
        raise InvalidOptionError(f"sensitivity file: {where or 'the document'} lacks {key!r}")
    value = data[key]
    ok = _is_number(value) if kind is float else isinstance(value, kind)
    if kind is int:
        ok = ok and not isinstance(value, bool) and value >= 0
    if not ok:
        raise InvalidOptionError(
            f"sensitivity file: {(where + '.') if where else ''}{key} must be a {kind.__name__}, "
            f"got {value!r:.40}"
        )
    return value


def check_curves(curves: Mapping[str, Curve], layers: Mapping[str, int]) -> None:
    """Refuse curves that were not measured on a model with these prunable ``layers``.

    Args:
        curves: from ``read_curves``.
        layers: the model's prunable layers, name -> number of weights.

    Raises:
        InvalidOptionError: a curve for a layer the model lacks, or one of another size.
    """
    unknown = [name for name in curves if name not in layers]
    if unknown:
        raise InvalidOptionError(
            f"the sensitivity file does not match the model: it has {len(unknown)} layer(s) the "
            f"model lacks ({', '.join(map(repr, unknown[:3]))}); run `onnxprune sensitivity` on "
            "this model"
        )
    for name, curve in curves.items():
        if curve.params != layers[name]:
            raise InvalidOptionError(
                f"the sensitivity file does not match the model: layer {name!r} has "
                f"{layers[name]} weights, the file says {curve.params}"
            )


@allocation(
    "sensitivity",
    "least predicted loss from `onnxprune sensitivity` curves (--sensitivity FILE)",
)
def sensitivity(
    shapes: Mapping[str, tuple[int, ...]],
    target: float,
    scores: Mapping[str, np.ndarray],
    *,
    curves: Mapping[str, Curve] | None = None,
) -> dict[str, int]:
    """Per-layer counts that reach ``target`` with the least predicted loss (see the module).

    Args:
        shapes: weight shape of each prunable layer, in graph order.
        target: overall direct sparsity ``t`` in ``[0, 1)``.
        scores: unused (the counts depend on the curves and sizes only).
        curves: loss curves by layer name (``read_curves``); every layer of ``shapes`` needs one.

    Returns:
        Number of weights to remove from each layer; they add up to ``round(t * total)``.

    Raises:
        InvalidOptionError: no curves, a layer without a curve or of another size, or a bad
            target.

    Example:
        >>> flat = loss_curve(100, [0.5, 0.9], [0.0, 0.01])
        >>> steep = loss_curve(100, [0.5, 0.9], [0.2, 0.5])
        >>> sensitivity({"a": (10, 10), "b": (10, 10)}, 0.5, {}, curves={"a": flat, "b": steep})
        {'a': 90, 'b': 10}
    """
    t = check_target(target)
    if curves is None:
        raise InvalidOptionError(
            "allocation sensitivity needs the curves of `onnxprune sensitivity` (--sensitivity)"
        )
    missing = [name for name in shapes if name not in curves]
    if missing:
        raise InvalidOptionError(
            f"the sensitivity file has no curve for {len(missing)} layer(s) pruned here "
            f"({', '.join(map(repr, missing[:3]))}); run `onnxprune sensitivity` on this model"
        )
    sizes = layer_sizes(shapes)
    check_curves(
        {name: curves[name] for name in shapes}, dict(zip(shapes, map(int, sizes), strict=True))
    )
    budget = removal_budget(t, int(sizes.sum()))
    ideal = _greedy([curves[name] for name in shapes], sizes, float(budget))
    return as_dict(shapes, apportion(ideal, sizes, budget))


def _greedy(curves: list[Curve], sizes: np.ndarray, budget: float) -> np.ndarray:
    """Real-valued weights to remove per layer, cheapest predicted loss per weight first."""
    segments = []  # (cost per weight, layer, weights in the segment)
    for layer, (curve, n) in enumerate(zip(curves, sizes, strict=True)):
        if n == 0:
            continue
        for i in range(1, len(curve.levels)):
            ds = curve.levels[i] - curve.levels[i - 1]
            cost = (curve.losses[i] - curve.losses[i - 1]) / ds / n
            segments.append((cost, layer, ds * n))
        segments.append((math.inf, layer, (1.0 - curve.levels[-1]) * n))  # unmeasured
    segments.sort(key=lambda s: s[0])  # stable: ties keep layer order
    removed = np.zeros(len(curves))
    left, start = budget, 0
    while left > 0 and start < len(segments):
        cost = segments[start][0]
        stop = start
        while stop < len(segments) and _same(segments[stop][0], cost):
            stop += 1
        tied = segments[start:stop]
        room = sum(w for _, _, w in tied)
        share = min(1.0, left / room) if room > 0 else 0.0
        for _, layer, weights in tied:
            removed[layer] += weights * share
        left -= room * share
        start = stop
    return removed


def _same(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= _TIE * max(abs(a), abs(b), 1e-300)
