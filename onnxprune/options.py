"""What a prune is asked for, as one value every shell builds and the library checks once.

``PruneOptions`` holds every setting of ``onnxprune.prune``: the pruner (score, allocation,
target, N:M), which weights, the reachability level, structured pruning (criterion, scope,
rounding), compaction and streaming. The CLI builds it from flags, the gRPC service from the
request, batch from a manifest (``merge_options``), sweep from its grid; ``check_prune`` refuses
what cannot be honoured, each message naming the option in the caller's spelling.

Data that goes with a prune (masks, external scores, calibration arrays) is not an option: the
entry takes it beside the options, and ``check_prune`` is told which of it was given.

Example:
    >>> options = PruneOptions(sparsity=0.5, structured="l1", round_to=8)
    >>> check_prune(options)
    >>> check_prune(PruneOptions(round_to=8), spell=lambda name: "--" + name.replace("_", "-"))
    Traceback (most recent call last):
    ...
    onnxprune.errors.InvalidOptionError: --round-to needs --structured
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from onnxprune.errors import InvalidOptionError

LEVELS = ("channel", "exact")
"""Reachability levels: per unit (fast), or per unit and spatial position (static shapes)."""

SCOPES = ("layer", "global")
"""Where a structured sparsity applies: to each layer, or to the whole network."""

STREAM_MODES = ("auto", "always", "never")
"""``auto``: models with external data are pruned tensor by tensor when the options allow it."""

INPUTS = ("masks", "scores", "calibration", "sensitivity")
"""Data a prune may take beside its options (names as ``onnxprune.prune`` keywords)."""

DEFAULT_RIDGE = 1e-2
"""A reconstruction's least-squares damping, relative to the mean variance of a layer's inputs."""


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """Everything ``onnxprune.prune`` is asked for, with its defaults.

    Attributes:
        sparsity: target in [0, 1): direct sparsity of all prunable weights, effective sparsity
            with ``effective``, or the fraction of units with ``structured``.
        score: a registered score (``onnxprune methods``).
        allocation: a registered allocation (``global``, ``uniform``, ``uniform+``, ``erk``,
            ``igq``, ``sensitivity`` with the curves of ``onnxprune sensitivity`` given beside).
        effective: ``sparsity`` is the effective sparsity, reached by bisection.
        min_threshold: Gupta et al.'s minimum threshold (a fraction of all prunable weights).
        nm: N:M semi-structured sparsity along the input dimension, e.g. ``"2:4"``.
        skip_indivisible: with ``nm``, leave layers whose input size is not a multiple of M.
        layers: regular expression; only weights whose name matches are pruned.
        exclude: regular expression; weights whose name matches are not pruned.
        prune_shared: prune weights several nodes read (tied embeddings and heads, layers
            deduplicated through ``Identity``); by default they are left alone, with a warning
            naming their readers. Structured pruning never slices them.
        seed: seed of random scores and of the ``random`` criterion.
        rounds: SynFlow's number of rounds.
        level: reachability level of the report and of effective targets (``LEVELS``).
        input_shapes: fixed shapes for inputs with symbolic dimensions, ``(name, dims)`` pairs.
        dims: sizes of symbolic dimensions by name, ``(name, size)`` pairs, in every input
            ``input_shapes`` does not give (``--dim batch=1 --dim sequence=128``).
        structured: a structured criterion (``l1``, ``l2``, ``random``): remove whole units.
        scope: with ``structured``: the sparsity of each layer, or of the whole network.
        round_to: with ``structured``: keep a multiple of this many channels or neurons per
            layer; heads a multiple of this many columns (``structured.rounding``).
        compact: after an unstructured prune, remove the units left dead (``onnxprune compact``).
        reconstruct: with ``structured`` and calibration data: re-fit the layers that lost inputs
            to the dense model's outputs by least squares (``onnxprune.structured.reconstruct``).
        ridge: with ``reconstruct``: the damping of the least squares (``DEFAULT_RIDGE``).
        stream: prune models with external data tensor by tensor (``STREAM_MODES``).
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
    prune_shared: bool = False
    seed: int = 0
    rounds: int = 100
    level: str = "channel"
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())
    dims: tuple[tuple[str, int], ...] = field(default=())
    structured: str | None = None
    scope: str = "layer"
    round_to: int = 1
    compact: bool = False
    stream: str = "auto"
    reconstruct: bool = False
    ridge: float = DEFAULT_RIDGE

    def to_dict(self) -> dict:
        """JSON form (input shapes as ``{name: [dims]}``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["input_shapes"] = {name: list(dims) for name, dims in self.input_shapes}
        data["dims"] = dict(self.dims)
        return data

    @property
    def shapes(self) -> dict[str, tuple[int, ...]] | None:
        """``input_shapes`` as a mapping (``None`` when none is given)."""
        return dict(self.input_shapes) or None

    @property
    def dim_sizes(self) -> dict[str, int] | None:
        """``dims`` as a mapping (``None`` when none is given)."""
        return dict(self.dims) or None


UNSTRUCTURED_ONLY = (
    "score",
    "allocation",
    "effective",
    "min_threshold",
    "nm",
    "skip_indivisible",
    "prune_shared",
)
"""Options that choose single weights: meaningless with ``structured``."""

STRUCTURED_ONLY = ("scope", "round_to", "reconstruct")
"""Options that shape a structured prune: meaningless without ``structured``."""

REPORT_ONLY = ("level", "rounds", "compact", "stream")
"""Options of the unstructured path that a structured prune has no use for."""

_DEFAULTS = PruneOptions()

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
    "prune_shared": "bool",
    "seed": "int",
    "rounds": "int",
    "level": "str",
    "input_shapes": "shapes",
    "dims": "dims",
    "structured": "str?",
    "scope": "str",
    "round_to": "int",
    "compact": "bool",
    "stream": "str",
    "reconstruct": "bool",
    "ridge": "number",
}


def check_prune(
    options: PruneOptions,
    *,
    inputs: Collection[str] = (),
    outputs: Collection[str] = (),
    spell: Callable[[str], str] = str,
) -> None:
    """Refuse options ``onnxprune.prune`` cannot honour, before any work.

    Args:
        options: the options asked for.
        inputs: which data is given beside them (``INPUTS``: masks, scores, calibration).
        outputs: which optional outputs are asked for (``masks_out``, ``masked_out``).
        spell: how the caller's users write an option name (the CLI: ``round_to`` ->
            ``--round-to``); values are always shown as ``name=value``.

    Raises:
        InvalidOptionError: one line naming the option(s) and what is allowed.
    """
    _check_values(options)
    if _given(options, "ridge") and not options.reconstruct:
        raise InvalidOptionError(f"{spell('ridge')} needs {spell('reconstruct')}")
    if options.structured is None:
        stray = [name for name in STRUCTURED_ONLY if _given(options, name)]
        stray += [name for name in ("masked_out",) if name in outputs]
        _refuse_without(stray, spell("structured"), spell)
        if options.nm is not None and options.sparsity is not None:
            raise InvalidOptionError(f"give either {spell('sparsity')} or {spell('nm')}, not both")
        if options.sparsity is None and options.nm is None and "masks" not in inputs:
            raise InvalidOptionError(
                f"nothing to do: give {spell('sparsity')}, {spell('nm')} or {spell('masks')}"
            )
        _check_unused(options, inputs, spell)
        return
    if options.sparsity is None:
        raise InvalidOptionError(f"{spell('structured')} needs {spell('sparsity')}")
    if options.reconstruct and "calibration" not in inputs:
        raise InvalidOptionError(f"{spell('reconstruct')} needs {spell('calibration')}")
    taken = ("calibration",) if options.reconstruct else ()
    given = [n for n in UNSTRUCTURED_ONLY if _given(options, n)] + [
        n for n in INPUTS if n in inputs and n not in taken
    ]
    if given:
        raise InvalidOptionError(
            f"{spell('structured')} takes no {', '.join(map(spell, given))} (they choose single "
            f"weights); see {spell('scope')} and {spell('round_to')}"
        )
    unused = [name for name in REPORT_ONLY if _given(options, name)]
    unused += [name for name in ("masks_out",) if name in outputs]
    if unused:
        raise InvalidOptionError(
            f"{spell('structured')} takes no {', '.join(map(spell, unused))} (they belong to the "
            "unstructured path; structured pruning compacts, in memory, and writes no masks)"
        )


INTEGER_BOUNDS = {"rounds": (1, 10_000), "round_to": (1, 65_536), "seed": (0, 2**63 - 1)}
"""Inclusive ranges of the integer options. Each SynFlow round rescores the whole network (the
paper uses 100); no layer has more units than 65,536 to round to; seeds are what numpy takes."""


NM_IGNORES = ("allocation", "effective", "min_threshold")
"""Options an N:M prune has no use for: the pattern fixes how many weights each layer keeps."""

SCORE_ONLY = {"rounds": "synflow"}
"""Options that only one score reads (calibration data: the scores registered ``calibrated``)."""

ALLOCATION_NEEDS = {"sensitivity": "sensitivity"}
"""Data that one allocation needs and only it reads (allocation -> input)."""


def _check_unused(options: PruneOptions, inputs: Collection[str], spell: Callable) -> None:
    """Refuse what an unstructured prune would silently ignore on the path it takes."""
    from onnxprune.pruners.registry import SCORES, get_score

    if options.nm is not None:
        stray = [name for name in NM_IGNORES if _given(options, name)]
        if stray:
            raise InvalidOptionError(
                f"{spell('nm')} takes no {', '.join(map(spell, stray))} (the N:M pattern fixes "
                "how many weights each layer keeps)"
            )
    elif options.sparsity is None:  # masks alone: nothing is scored or allocated
        stray = [n for n in (*UNSTRUCTURED_ONLY, "rounds") if _given(options, n)]
        stray += [name for name in ("scores", "calibration", "sensitivity") if name in inputs]
        needed = f"{spell('sparsity')} or {spell('nm')}"
        _refuse_without(stray, needed, spell, f" ({spell('masks')} alone only applies the masks)")
    if options.skip_indivisible and options.nm is None:
        raise InvalidOptionError(f"{spell('skip_indivisible')} needs {spell('nm')}")
    if "scores" in inputs and _given(options, "score"):
        raise InvalidOptionError(
            f"give either {spell('scores')} or {spell('score')}, not both (the file's scores "
            "replace the score)"
        )
    for name, score in SCORE_ONLY.items():
        if _given(options, name) and options.score != score:
            raise InvalidOptionError(f"{spell(name)} is read by {spell('score')} {score} only")
    for method, data in ALLOCATION_NEEDS.items():
        chosen = options.allocation == method and options.nm is None
        if data in inputs and not chosen:
            raise InvalidOptionError(
                f"{spell(data)} is read by {spell('allocation')} {method} only"
            )
        if chosen and options.sparsity is not None and data not in inputs:
            raise InvalidOptionError(f"{spell('allocation')} {method} needs {spell(data)}")
    if "calibration" in inputs and not get_score(options.score).calibrated:
        readers = " or ".join(sorted(name for name, m in SCORES.items() if m.calibrated))
        raise InvalidOptionError(
            f"{spell('calibration')} is read by {spell('score')} {readers} only"
        )


def _refuse_without(
    stray: Sequence[str], needed: str, spell: Callable[[str], str], why: str = ""
) -> None:
    """Refuse ``stray`` options, which mean something only with ``needed``."""
    if stray:
        verb = "needs" if len(stray) == 1 else "need"
        raise InvalidOptionError(f"{', '.join(map(spell, stray))} {verb} {needed}{why}")


def _check_values(options: PruneOptions) -> None:
    """Each option on its own: ranges, registered names, formats."""
    from onnxprune.pruners.nm import parse_nm
    from onnxprune.pruners.registry import CRITERIA, get_allocation, get_score

    if options.sparsity is not None:
        check_fraction("sparsity", options.sparsity)
    if options.min_threshold is not None:
        check_fraction("min_threshold", options.min_threshold)
    check_ridge(options.ridge)
    get_score(options.score)
    get_allocation(options.allocation)
    if options.nm is not None:
        parse_nm(options.nm)
    _check_choice("level", options.level, LEVELS)
    _check_choice("scope", options.scope, SCOPES)
    _check_choice("stream", options.stream, STREAM_MODES)
    if options.structured is not None:
        _check_choice("structured", options.structured, sorted(CRITERIA))
    for name, (low, high) in INTEGER_BOUNDS.items():
        value = getattr(options, name)
        if value < low:
            raise InvalidOptionError(f"{name}={value} must be at least {low}")
        if value > high:
            raise InvalidOptionError(f"{name}={value} must be at most {high}")
    input_shapes_of(dict(options.input_shapes), "input_shapes")
    dims_of(dict(options.dims), "dims")


def reads_calibration(options: PruneOptions) -> bool:
    """Whether the prune reads calibration data (a ``calibrated`` score, or ``reconstruct``)."""
    from onnxprune.pruners.registry import get_score

    if options.structured is None:
        return get_score(options.score).calibrated
    return options.reconstruct


def check_fraction(name: str, value: float) -> None:
    """Refuse ``value`` unless it is a finite number in [0, 1).

    Raises:
        InvalidOptionError: naming ``name`` and the value given.
    """
    if not 0.0 <= value < 1.0 or not math.isfinite(value):
        raise InvalidOptionError(f"{name}={value} must be in [0, 1)")


def check_ridge(value: float) -> None:
    """Refuse a least-squares damping ``value`` unless it is a finite number >= 0.

    Raises:
        InvalidOptionError: naming ``ridge`` and the value given.
    """
    if not (math.isfinite(value) and value >= 0):
        raise InvalidOptionError(f"ridge={value} must be a finite number >= 0")


def _check_choice(name: str, value: str, allowed: Collection[str]) -> None:
    if value not in allowed:
        raise InvalidOptionError(f"{name} {value!r} must be one of {', '.join(allowed)}")


def _given(options: PruneOptions, name: str) -> bool:
    return getattr(options, name) != getattr(_DEFAULTS, name)


def merge_options(
    base: PruneOptions, given: Mapping[str, object], where: str | None = None
) -> PruneOptions:
    """``base`` with the options in ``given`` (keys as ``PruneOptions`` fields, ``-`` or ``_``).

    For options that arrive as loose data (a manifest, a request): types are checked and
    numbers made floats; ``check_prune`` then checks the values.

    Raises:
        InvalidOptionError: an unknown key, a value of the wrong type, an unknown score,
            allocation, level or stream mode; the message starts with ``where`` (if given).
    """
    if where is None:
        try:
            return merge_options(base, given, "")
        except InvalidOptionError as e:
            raise InvalidOptionError(str(e).removeprefix(": ")) from None
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
    try:
        _check_values(options)
    except InvalidOptionError as e:
        raise InvalidOptionError(f"{where}: {e}") from None
    return options


def _coerce(name: str, value: object, where: str) -> object:
    kind = _KINDS[name]
    if value is None and kind.endswith("?"):
        return None
    kind = kind.rstrip("?")
    if kind == "shapes":
        return input_shapes_of(value, f"{where}: input_shapes")
    if kind == "dims":
        return dims_of(value, f"{where}: dims")
    ok = {
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise InvalidOptionError(f"{where}: option {name} must be a {kind}, got {value!r}")
    return float(value) if kind == "number" else value


def dims_of(value: object, what: str) -> tuple[tuple[str, int], ...]:
    """``{"batch": 1}``, ``["batch=1"]`` or ``[("batch", 1)]`` as sorted ``(name, size)`` pairs.

    Raises:
        InvalidOptionError: anything else (a size that is not a positive integer), the message
            starting with ``what``.

    Example:
        >>> dims_of(["sequence=128", "batch=1"], "--dim")
        (('batch', 1), ('sequence', 128))
        >>> dims_of((("batch", 1),), "dims")  # ``PruneOptions.dims`` as it holds them
        (('batch', 1),)
    """
    pairs = _named(value, lambda spec: spec.rpartition("=")[::2])
    try:
        dims = tuple(sorted((str(n), int(d)) for n, d in pairs))
    except (TypeError, ValueError):
        dims = None
    if (not dims and value) or any(not n or d < 1 for n, d in dims or ()):
        raise InvalidOptionError(
            f"{what} must map dimension names to positive sizes, got {value!r}"
        )
    return dims


def input_shapes_of(value: object, what: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``{"x": [1, 3]}``, ``["x=1,3"]`` or ``[("x", (1, 3))]`` as sorted ``(name, dims)`` pairs.

    Raises:
        InvalidOptionError: anything else, the message starting with ``what``.
    """

    def split(spec: str) -> tuple[str, list[str]]:
        name, _, dims = spec.rpartition("=")
        return name, dims.split(",")

    pairs = _named(value, split)
    try:
        shapes = tuple(sorted((str(n), tuple(int(d) for d in dims)) for n, dims in pairs))
    except (TypeError, ValueError):
        shapes = None
    if (not shapes and value) or any(not n or not d or min(d) < 1 for n, d in shapes or ()):
        raise InvalidOptionError(f"{what} must map input names to positive dims, got {value!r}")
    return shapes


def _named(value: object, split: Callable[[str], tuple]) -> list[tuple] | None:
    """``(name, value)`` pairs of a mapping, or of a list or tuple of pairs or strings.

    A string entry is ``split`` (``"name=value"``); anything but these gives None.
    """
    if isinstance(value, Mapping):
        return list(value.items())
    if not isinstance(value, list | tuple):
        return None
    return [
        tuple(spec) if isinstance(spec, list | tuple) and len(spec) == 2 else split(str(spec))
        for spec in value
    ]
