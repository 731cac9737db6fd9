"""User metrics: a function of the user's, named ``module:function``, over a whole dataset.

The function is called once, after the last batch, as ``function(outputs, labels)``:

- ``outputs``: ``dict`` of output name -> array over the whole dataset (samples along axis 0,
  the batches concatenated; every tensor output with samples along axis 0);
- ``labels``: the dataset's ``labels`` array, or ``None`` when it has none.

It returns a float (reported under the function's name) or a mapping of names to floats (each
reported under its name). It is called on the model's outputs and, with a baseline, again on the
baseline's. ``module`` is imported as Python imports it (``sys.path``, ``PYTHONPATH``); a path
ending in ``.py`` is loaded from that file instead. Any failure (no such module or function, an
exception at import or in the call, a result that is not a number) is an ``InvalidOptionError``
of one line naming the metric.

The gates ``min_metric`` and ``max_metric`` hold every value the function returns to a bound.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.metrics import held

UserMetric = Callable[[dict[str, np.ndarray], "np.ndarray | None"], "float | Mapping[str, float]"]

USER_GATES = ("min_metric", "max_metric")
"""The gates on a user metric's values: each value at least ``min_metric``, at most ``max``."""


def load_metric(spec: str | UserMetric) -> tuple[str, UserMetric]:
    """The metric's name and function for ``module:function`` (or a callable, as it is).

    Args:
        spec: ``package.module:function``, ``path/to/file.py:function``, or a callable.

    Returns:
        ``(name, function)``; the name is the function's (``f1`` for ``mypkg.metrics:f1``).

    Raises:
        InvalidOptionError: a spec without ``:``, a module that cannot be imported (or raises
            while it is), a missing attribute, or one that is not callable.

    Example:
        >>> load_metric("statistics:fmean")[0]
        'fmean'
    """
    if callable(spec):
        return getattr(spec, "__name__", "metric"), spec
    module_name, sep, attribute = str(spec).rpartition(":")
    if not sep or not module_name or not attribute:
        raise InvalidOptionError(f"metric {spec!r} must look like module:function")
    try:
        module = _import(module_name)
    except InvalidOptionError:
        raise
    except Exception as e:  # the user's module may raise anything while it is imported
        raise InvalidOptionError(f"metric {spec!r}: cannot import {module_name}: {_line(e)}") from e
    function = getattr(module, attribute, None)
    if function is None:
        raise InvalidOptionError(f"metric {spec!r}: {module_name} has no {attribute!r}")
    if not callable(function):
        raise InvalidOptionError(f"metric {spec!r}: {attribute} is not a function")
    return attribute, function


def _import(name: str) -> object:
    """The module ``name``, or the file ``name`` when it ends in ``.py``."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name)
    if not path.is_file():
        raise InvalidOptionError(f"metric file not found: {path.name}")
    spec = importlib.util.spec_from_file_location(f"onnxprune_user_metric_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(error: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def call_metric(
    name: str,
    function: UserMetric,
    outputs: dict[str, np.ndarray],
    labels: np.ndarray | None,
) -> dict[str, float]:
    """Call ``function(outputs, labels)`` and check what it returns.

    Returns:
        Value name -> float (``{name: value}`` for a function that returns one number).

    Raises:
        InvalidOptionError: the function raised, or returned something else than a number or a
            mapping of names to numbers.
    """
    try:
        value = function(outputs, labels)
    except Exception as e:  # the user's code may raise anything
        raise InvalidOptionError(f"metric {name} raised {_line(e)}") from e
    values = dict(value) if isinstance(value, Mapping) else {name: value}
    for key, number in values.items():
        if not isinstance(key, str) or not _is_number(number):
            raise InvalidOptionError(
                f"metric {name} returned {type(value).__name__} {_short(value)}; it must return "
                "a float or a dict of names to floats"
            )
    return {key: float(number) for key, number in values.items()}


def _is_number(value: object) -> bool:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_))


def _short(value: object) -> str:
    text = repr(value).splitlines()[0] if repr(value) else ""
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(slots=True)
class Collector:
    """Every batch of one side's outputs, kept to be concatenated for the user metric."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Keep one batch of outputs."""
        for name, array in outputs.items():
            self.parts.setdefault(name, []).append(array)

    def outputs(self) -> dict[str, np.ndarray]:
        """Output name -> the whole dataset's array."""
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def judge_metric(
    values: Mapping[str, float], limits: Mapping[str, float]
) -> tuple[list[str], list[str]]:
    """Hold every value of the user metric to ``min_metric`` and ``max_metric``.

    Returns:
        ``(passed, failed)``: one phrase per value and gate.

    Raises:
        InvalidOptionError: a gate on a metric that was not given.
    """
    asked = [g for g in USER_GATES if limits.get(g) is not None]
    if asked and not values:
        raise InvalidOptionError(f"{asked[0]} needs a metric (--metric MODULE:FUNCTION)")
    passed, failed = [], []
    for key, value in values.items():
        for gate, minimum in (("min_metric", True), ("max_metric", False)):
            if limits.get(gate) is not None:
                text = f"metric {key} {value:.6g}"
                ok, phrase = held(text, value, limits[gate], minimum=minimum, show="{:.6g}".format)
                (passed if ok else failed).append(phrase)
    return passed, failed


def check_user_limits(limits: Mapping[str, float]) -> None:
    """Refuse a ``min_metric`` or ``max_metric`` that is not a finite number.

    Raises:
        InvalidOptionError: naming the gate and the value.
    """
    for name in USER_GATES:
        value = limits.get(name)
        if value is None:
            continue
        if not _is_number(value) or not math.isfinite(value):
            raise InvalidOptionError(f"{name}={value!r} must be a finite number")
