"""Which ``prune`` options go with structured pruning; the CLI and the server refuse alike.

Structured pruning (``onnxprune prune --structured``, ``PruneOptions.structured`` over gRPC)
removes whole units ranked by a filter criterion: the options that choose single weights mean
nothing there, and the ones that shape it (``scope``, ``round_to``) mean nothing without it.
Each shell spells option names its own way (``--masks-in`` on the command line, the header's
``masks`` file over gRPC) and passes that spelling; the rules and the words are these, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from onnxprune.errors import InvalidOptionError

UNSTRUCTURED_ONLY: dict[str, object] = {
    "score": "magnitude",
    "allocation": "global",
    "effective": False,
    "min_threshold": None,
    "nm": None,
    "masks": None,
    "scores": None,
    "calibration": None,
}
"""Options that choose single weights, with the value that means 'not given'."""

STRUCTURED_ONLY: dict[str, object] = {"scope": "layer", "round_to": 1, "masked_out": None}
"""Options that only shape a structured prune, with the value that means 'not given'."""


def check_structured(options: Mapping[str, object], spell: Callable[[str], str] = str) -> None:
    """Refuse the option combinations a (structured or not) prune cannot honour.

    Args:
        options: option name -> value, names as ``prune``/``structured_prune`` and the proto
            call them (``structured`` is the criterion); ``None``, ``""`` and ``False`` mean
            not given, like a missing name.
        spell: how the caller's users write an option name (the CLI: ``masks`` -> ``--masks-in``).

    Raises:
        InvalidOptionError: ``structured`` without ``sparsity`` or with an unstructured-only
            option, or a structured-only option without ``structured``; one message names them.

    Example:
        >>> check_structured({"structured": "l1", "sparsity": 0.5, "score": "magnitude"})
        >>> check_structured({"round_to": 8}, lambda name: "--" + name.replace("_", "-"))
        Traceback (most recent call last):
        ...
        onnxprune.errors.InvalidOptionError: --round-to needs --structured
    """
    if not _given(options, "structured", None):
        stray = [name for name, value in STRUCTURED_ONLY.items() if _given(options, name, value)]
        if stray:
            verb = "needs" if len(stray) == 1 else "need"
            raise InvalidOptionError(f"{', '.join(map(spell, stray))} {verb} {spell('structured')}")
        return
    if not _given(options, "sparsity", None):
        raise InvalidOptionError(f"{spell('structured')} needs {spell('sparsity')}")
    given = [name for name, default in UNSTRUCTURED_ONLY.items() if _given(options, name, default)]
    if given:
        raise InvalidOptionError(
            f"{spell('structured')} takes no {', '.join(map(spell, given))} (they choose single "
            f"weights); see {spell('scope')} and {spell('round_to')}"
        )


def _given(options: Mapping[str, object], name: str, default: object) -> bool:
    value = options.get(name)
    return not (value is None or value is False or value == "" or value == default)
