"""The prune options of one batch item, read from the command line or a manifest, and checked.

Options merge from the least to the most specific: the defaults of ``prune``, the command line's
flags, a manifest's ``defaults``, then the model's own ``options``. Their fingerprint (a hash of
the merged options, the evaluation data and the onnxprune version) is stored next to the outputs,
so a rerun redoes a model whose options changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from onnxprune.errors import InvalidOptionError
from onnxprune.pruners.registry import get_allocation, get_score
from onnxprune.sparsity import LEVELS

STREAM_MODES = ("auto", "always", "never")
"""``auto``: models with external data are pruned tensor by tensor, others in memory."""


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """What ``prune`` is asked for one model; fields named and typed as its keywords.

    ``stream`` chooses between ``prune`` (the model in memory) and ``prune_streaming`` (tensor
    by tensor; magnitude score, direct targets): see ``STREAM_MODES``.
    """

    sparsity: float | None = None
    score: str = "magnitude"
    allocation: str = "global"
    effective: bool = False
    min_threshold: float | None = None
    nm: str | None = None
    skip_indivisible: bool = False
    layers: str | None = None
    exclude: str | None = None
    seed: int = 0
    rounds: int = 100
    level: str = "channel"
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())
    stream: str = "auto"

    def prune_kwargs(self) -> dict:
        """Keywords for ``prune`` (everything but ``stream``)."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del kwargs["stream"]
        kwargs["input_shapes"] = dict(self.input_shapes) or None
        return kwargs

    def to_dict(self) -> dict:
        """JSON form (input shapes as ``{name: [dims]}``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["input_shapes"] = {name: list(dims) for name, dims in self.input_shapes}
        return data


_KINDS = {
    "sparsity": "number?",
    "score": "str",
    "allocation": "str",
    "effective": "bool",
    "min_threshold": "number?",
    "nm": "str?",
    "skip_indivisible": "bool",
    "layers": "str?",
    "exclude": "str?",
    "seed": "int",
    "rounds": "int",
    "level": "str",
    "input_shapes": "shapes",
    "stream": "str",
}


def merge_options(base: PruneOptions, given: Mapping[str, object], where: str) -> PruneOptions:
    """``base`` with the options in ``given`` (keys as ``PruneOptions`` fields, ``-`` or ``_``).

    Raises:
        InvalidOptionError: an unknown key, a value of the wrong type, an unknown score,
            allocation, level or stream mode; the message starts with ``where``.
    """
    if not isinstance(given, Mapping):
        raise InvalidOptionError(f"{where}: options must be a mapping, got {type(given).__name__}")
    changes = {}
    for key, value in given.items():
        name = str(key).replace("-", "_")
        if name not in _KINDS:
            raise InvalidOptionError(
                f"{where}: unknown option {key!r}; known: {', '.join(sorted(_KINDS))}"
            )
        changes[name] = _coerce(name, value, where)
    options = dataclasses.replace(base, **changes)
    _check_names(options, where)
    return options


def _coerce(name: str, value: object, where: str) -> object:
    kind = _KINDS[name]
    if value is None and kind.endswith("?"):
        return None
    kind = kind.rstrip("?")
    if kind == "shapes":
        return _shapes(value, where)
    ok = {
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise InvalidOptionError(f"{where}: option {name} must be a {kind}, got {value!r}")
    return float(value) if kind == "number" else value


def _shapes(value: object, where: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``{"x": [1, 3, 32, 32]}`` or ``["x=1,3,32,32"]`` as sorted ``(name, dims)`` pairs."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = [str(spec).rpartition("=")[::2] for spec in value]
        pairs = [(name, dims.split(",")) for name, dims in pairs]
    else:
        pairs = None
    try:
        shapes = tuple(sorted((str(n), tuple(int(d) for d in dims)) for n, dims in pairs))
    except (TypeError, ValueError):
        shapes = None
    if (not shapes and value) or any(not n or not d or min(d) < 1 for n, d in shapes or ()):
        raise InvalidOptionError(
            f"{where}: input_shapes must map input names to positive dims, got {value!r}"
        )
    return shapes


def _check_names(options: PruneOptions, where: str) -> None:
    try:
        get_score(options.score)
        get_allocation(options.allocation)
    except InvalidOptionError as e:
        raise InvalidOptionError(f"{where}: {e}") from None
    if options.level not in LEVELS:
        raise InvalidOptionError(
            f"{where}: level {options.level!r} must be one of {', '.join(sorted(LEVELS))}"
        )
    if options.stream not in STREAM_MODES:
        raise InvalidOptionError(
            f"{where}: stream {options.stream!r} must be one of {', '.join(STREAM_MODES)}"
        )


def fingerprint(options: PruneOptions, data: str | os.PathLike | None, version: str) -> str:
    """A hash of what determines a model's outputs: options, evaluation data, onnxprune version."""
    document = {
        "options": options.to_dict(),
        "data": None if data is None else os.path.abspath(data),
        "onnxprune": version,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int | None) -> int | None:
    """``"512M"``, ``"4G"``, ``"1.5GiB"`` or a number of bytes; ``0``, ``"none"``: no limit.

    Raises:
        InvalidOptionError: anything else.
    """
    if text is None or (isinstance(text, int) and not isinstance(text, bool)):
        return text or None
    if str(text).strip().lower() in ("none", "0"):
        return None
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise InvalidOptionError(f"memory limit {text!r} must look like 512M, 4G or a byte count")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()]) or None
