"""How values print in rendered reports; JSON null shows as ``n/a``, infinite compression as ∞."""

from __future__ import annotations

import math

MISSING = "n/a"
INFINITY = "∞"


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals: ``0.95`` -> ``95.00%``."""
    return MISSING if value is None else f"{value:.2%}"


def compression(value: float | None, sparsity: float | None = 0.0) -> str:
    """A compression ratio: ``20.0`` -> ``20.00x``; null or infinite -> ∞.

    A null compression means infinite only where its sparsity is known (JSON has no infinity); a
    failed sweep run has both null and shows ``n/a``.
    """
    if sparsity is None:
        return MISSING
    if value is None or math.isinf(value):
        return INFINITY
    return f"{value:,.2f}x"


def points(value: float | None) -> str:
    """A difference of accuracies in percentage points: ``0.01`` -> ``1.00 points``."""
    from onnxprune.text import points as in_points

    return MISSING if value is None else in_points(value)


def ratio(value: float | None) -> str:
    """A ratio of two measurements, e.g. a speedup: ``2.654`` -> ``2.65x``; null -> ``n/a``."""
    return MISSING if value is None else f"{value:,.2f}x"


def interval(
    value: float | None, low: float | None, high: float | None, level: float | None = None
) -> str:
    """A speedup and its interval: ``2.65x (95% CI 2.50-2.80)``.

    Without a level ``2.65x (2.50-2.80)``, without an interval (results from before it)
    ``2.65x``, without a value ``n/a``.
    """
    if value is None or low is None or high is None:
        return ratio(value)
    named = "" if level is None else f"{level:.0%} CI "
    return f"{value:,.2f}x ({named}{low:,.2f}-{high:,.2f})"


def count(value: float | None) -> str:
    """An integer count with thousands separators: ``50200`` -> ``50,200``."""
    if value is None:
        return MISSING
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def number(value: float | None, unit: str = "", spec: str = ".4g") -> str:
    """A measured number with an optional unit: ``(0.1234, "ms", ".3f")`` -> ``0.123 ms``."""
    if value is None:
        return MISSING
    return f"{value:{spec}} {unit}".rstrip()


def macs(value: float | None) -> str:
    """Multiply-accumulates with an SI suffix: ``27648`` -> ``27.6K``; null -> ``n/a``."""
    from onnxprune.macs import short

    return MISSING if value is None else short(int(value))


def size(value: float | None) -> str:
    """A file size in bytes, as ``onnxprune.sizes.format_size`` writes it: ``38.2K``."""
    from onnxprune.sizes import format_size

    return format_size(None if value is None else int(value))


def text(value: str | None) -> str:
    """A string, or ``n/a`` for null."""
    return MISSING if value is None else value


def sparsity_target(value: float) -> str:
    """A sweep's target sparsity, as short as it was asked for: ``0.9`` -> ``90%``."""
    return f"{value * 100:g}%"


def class_axis_rows(axis: int | None) -> tuple[tuple[str, str], ...]:
    """The row saying accuracy and agreement were per position, when they were."""
    if axis is None:
        return ()
    return (("class axis (accuracy, agreement per position)", str(axis)),)
