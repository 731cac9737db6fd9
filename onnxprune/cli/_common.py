"""Pieces every subcommand shares: exit codes, common flags, output."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from onnxprune.errors import InvalidOptionError
from onnxprune.latency import MIN_RUNS, MIN_TIME, THREADS
from onnxprune.options import (
    DEFAULT_RIDGE,
    SCOPES,
    STREAM_MODES,
    PruneOptions,
    check_prune,
    dims_of,
    merge_options,
)
from onnxprune.sizes import DEFAULT_MAX_BYTES
from onnxprune.text import printable

T = TypeVar("T")

EXIT_BUG = 1
EXIT_GATE_FAILED = 3
"""``onnxprune validate`` ran and its gate (``GateResult.passed``) said no."""
EXIT_SOME_FAILED = 4
"""A batch of runs (``onnxprune sweep``) finished, and some of them failed."""


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (the main parser has the visible one)."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def add_max_bytes(p: argparse.ArgumentParser) -> None:
    """``--max-bytes``: the largest model (file plus external data) a command accepts."""
    p.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"refuse models larger than this many bytes (default {DEFAULT_MAX_BYTES})",
    )


def add_metric(p: argparse.ArgumentParser) -> None:
    """``--metric MODULE:FUNCTION``: a user metric over the outputs and labels."""
    p.add_argument(
        "--metric",
        metavar="MODULE:FUNCTION",
        help="a metric of yours: MODULE:FUNCTION (or FILE.py:FUNCTION) called as f(outputs, "
        "labels) with outputs a dict name -> array over the whole dataset, returning a float or "
        "a dict of floats; reported for the model and the baseline",
    )


def add_class_axis(p: argparse.ArgumentParser) -> None:
    """``--class-axis N``: accuracy and agreement per position (token, pixel) of that axis."""
    p.add_argument(
        "--class-axis",
        type=int,
        metavar="N",
        help="the axis of the classes in outputs of scores (negative counts from the end): "
        "accuracy and top-1/top-5 agreement are then per position, the mean over every sample "
        "and position: -1 for a language model's logits [N, T, V] (labels [N, T]), 1 for "
        "segmentation [N, C, H, W] (labels [N, H, W]); default: each sample's trailing axes "
        "are its scores",
    )


def add_choice_gate(p: argparse.ArgumentParser, item: str) -> None:
    """``--max-accuracy-drop``, ``--min-agreement``: the gate of a sweep or a batch.

    Every ``item`` is judged; the most compressed that passes is recommended
    (``onnxprune.choice``).
    """
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="X",
        help=f"gate of every {item}: top-1 before pruning minus after at most X (a fraction: "
        f"0.01 is one point); the most compressed {item} that passes is recommended, exit 3 "
        "when none passes",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        metavar="X",
        help=f"gate of every {item}: top-1 agreement with the model before pruning at least X",
    )


def add_input_shape(p: argparse.ArgumentParser, *, given_only: bool = False) -> None:
    """The repeatable ``--input-shape NAME=D0,D1,...`` and ``--dim NAME=SIZE`` flags.

    With ``given_only`` they have no default (``batch`` merges only the flags given).
    """
    p.add_argument(
        "--input-shape",
        action="append",
        default=argparse.SUPPRESS if given_only else [],
        metavar="NAME=D0,D1,...",
        help="fix the shape of a graph input with symbolic dimensions (repeatable)",
    )
    p.add_argument(
        "--dim",
        action="append",
        default=argparse.SUPPRESS if given_only else [],
        metavar="NAME=SIZE",
        help="fix a symbolic dimension by name in every graph input, e.g. --dim batch=1 "
        "--dim sequence=128 (repeatable)",
    )


def parse_dims(specs: Sequence[str]) -> dict[str, int]:
    """Parse ``NAME=SIZE`` strings (``--dim``) into a name -> size mapping.

    Raises:
        InvalidOptionError: a spec without ``=``, or a size that is not a positive integer.
    """
    return dict(dims_of(list(specs), "--dim"))


def add_timing_flags(p: argparse.ArgumentParser) -> None:
    """``--min-time``, ``--min-runs``, ``--threads``: how ``validate`` and ``sweep`` time models.

    Defaults are the library's (``onnxprune.latency``); values are checked there, in one line.
    """
    p.add_argument(
        "--min-time",
        type=float,
        default=MIN_TIME,
        metavar="SECONDS",
        help="time model and baseline, interleaved, until the slower has run this long "
        f"(default {MIN_TIME:g})",
    )
    p.add_argument(
        "--min-runs",
        type=int,
        default=MIN_RUNS,
        metavar="N",
        help=f"and at least N timed batches per side (default {MIN_RUNS})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        metavar="N",
        help=f"ONNX Runtime intra-op threads, the same for model and baseline (default {THREADS}; "
        "0: ONNX Runtime's choice, one per physical core)",
    )


def add_prune_flags(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The flags that choose a pruner and its target, shared by ``prune`` and ``batch``.

    With ``defaults=False`` a flag that is not given leaves no attribute (``batch`` merges only
    the flags given over a manifest's options).
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument(
        "--sparsity",
        type=float,
        default=default(None),
        help="target direct sparsity in [0, 1) (effective sparsity with --effective)",
    )
    p.add_argument("--score", default=default("magnitude"), help="score (see `onnxprune methods`)")
    p.add_argument(
        "--allocation",
        default=default("global"),
        help="layerwise allocation (see `onnxprune methods`)",
    )
    p.add_argument(
        "--effective",
        action="store_true",
        default=default(False),
        help="--sparsity is the target effective sparsity, reached by bisection",
    )
    p.add_argument(
        "--min-threshold",
        type=float,
        default=default(None),
        metavar="SIGMA",
        help="every layer keeps at least SIGMA (a fraction of all prunable weights) of its "
        "largest-scored weights (Gupta et al.); prevents layer collapse",
    )
    p.add_argument(
        "--nm",
        default=default(None),
        metavar="N:M",
        help="N:M sparsity along the input dimension, e.g. 2:4",
    )
    p.add_argument(
        "--skip-indivisible",
        action="store_true",
        default=default(False),
        help="with --nm, leave layers whose input size is not a multiple of M dense",
    )
    p.add_argument(
        "--layers",
        default=default(None),
        metavar="REGEX",
        help="prune only weights whose name matches",
    )
    p.add_argument(
        "--exclude",
        default=default(None),
        metavar="REGEX",
        help="do not prune weights whose name matches",
    )
    p.add_argument(
        "--prune-shared",
        action="store_true",
        default=default(False),
        help="also prune weights several nodes read (a head tied to the embedding table, "
        "layers deduplicated through Identity), for all of them; by default they are left "
        "alone with a warning naming their readers",
    )
    p.add_argument("--seed", type=int, default=default(0), help="seed of random scores (default 0)")
    p.add_argument("--rounds", type=int, default=default(100), help="SynFlow rounds (default 100)")
    p.add_argument(
        "--exact",
        action="store_true",
        default=default(False),
        help="report (and target) the exact level",
    )
    add_input_shape(p, given_only=not defaults)
    p.add_argument(
        "--compact",
        action="store_true",
        default=default(False),
        help="then remove the units the pruning left dead (as `onnxprune compact`)",
    )
    p.add_argument(
        "--stream",
        choices=STREAM_MODES,
        default=default("auto"),
        help="prune tensor by tensor: auto (models with external data, when the options allow "
        "it; default), always, never",
    )
    p.add_argument(
        "--structured",
        default=default(None),
        metavar="CRITERION",
        help="l1, l2 or random (see `onnxprune methods`): remove whole channels/neurons "
        "(--sparsity of the units, a residual sum's members together) ranked by this filter "
        "criterion, then compact the model",
    )
    p.add_argument(
        "--scope",
        choices=SCOPES,
        default=default("layer"),
        help="with --structured: the sparsity applies to each layer (default) or to the whole "
        "network, scores normalized by their layer's mean",
    )
    p.add_argument(
        "--round-to",
        type=int,
        default=default(1),
        metavar="N",
        help="with --structured: keep a multiple of N channels or neurons per layer; heads keep "
        "a multiple of N columns, any number when the head size is one (default 1)",
    )
    p.add_argument(
        "--reconstruct",
        action="store_true",
        default=default(False),
        help="with --structured and --calibration: re-fit each layer that lost input channels "
        "by least squares so its outputs on the calibration data match the dense model's, "
        "correct its bias, and re-estimate BatchNormalization statistics after it",
    )
    p.add_argument(
        "--ridge",
        type=float,
        default=default(DEFAULT_RIDGE),
        metavar="LAMBDA",
        help="with --reconstruct: damping of the least squares, relative to the mean variance of "
        f"a layer's inputs (default {DEFAULT_RIDGE})",
    )


def out(text: str) -> None:
    """Print a result on stdout, its control characters escaped but line breaks.

    JSON comes out unchanged: ``json.dumps`` has escaped them already.
    """
    print(printable(text, keep="\n"))  # noqa: T201 - the CLI is where printing belongs


def err(text: str) -> None:
    """Print one line on stderr, every control character escaped (newlines included)."""
    print(printable(text), file=sys.stderr)  # noqa: T201


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1,3,224,224`` strings into a name -> shape mapping.

    Raises:
        InvalidOptionError: a spec without ``=``, or with a dimension that is not a positive int.
    """
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise InvalidOptionError(
                f"--input-shape {spec!r} must look like NAME=1,3,224,224 (positive integers)"
            )
        shapes[name] = shape
    return shapes


FLAGS = {
    "masks": "--masks-in",
    "level": "--exact",
    "input_shapes": "--input-shape",
    "dims": "--dim",
    "compact": "--compact",
}
"""``prune`` options and inputs whose flag is not ``--`` and the name with dashes."""


def flag(name: str) -> str:
    """The command-line spelling of a ``prune`` option: ``round_to`` -> ``--round-to``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


FLAG_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(PruneOptions)
    if f.name not in ("level", "input_shapes", "dims")
)
"""``PruneOptions`` fields whose flag has their name (``--exact``, ``--input-shape``, ``--dim``
do not)."""


def flag_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``PruneOptions`` fields that ``add_prune_flags`` flags set, by field name.

    With ``add_prune_flags(defaults=False)`` (batch) only the flags given are there.
    """
    given = {name: getattr(args, name) for name in FLAG_FIELDS if hasattr(args, name)}
    if getattr(args, "exact", False):
        given["level"] = "exact"
    if hasattr(args, "input_shape"):
        given["input_shapes"] = parse_input_shapes(args.input_shape)
    if hasattr(args, "dim"):
        given["dims"] = parse_dims(args.dim)
    return given


def prune_options(args: argparse.Namespace) -> PruneOptions:
    """The ``PruneOptions`` of ``onnxprune prune`` (local or remote) flags, checked.

    Raises:
        InvalidOptionError: options ``prune`` cannot honour, in the flags' words.
    """
    options = merge_options(PruneOptions(), flag_options(args))
    given = {
        "masks": args.masks_in,
        "scores": args.scores,
        "calibration": args.calibration,
        "sensitivity": getattr(args, "sensitivity", None),  # not a flag of `remote prune`
    }
    written = {"masks_out": args.masks_out, "masked_out": args.masked_out}
    check_prune(
        options,
        inputs=[name for name, value in given.items() if value is not None],
        outputs=[name for name, value in written.items() if value is not None],
        spell=flag,
    )
    return options


def print_failures(failed: Sequence[tuple[str, str]], total: int, what: str) -> int:
    """List what failed of a batch or sweep on stderr; ``EXIT_SOME_FAILED`` if any did, else 0.

    Args:
        failed: (name, error) of each failed run.
        total: the number of runs.
        what: what a run is called (``models``, ``runs``).
    """
    if not failed:
        return 0
    err(f"{len(failed)} of {total} {what} failed:")
    for name, error in failed:
        err(f"  {name}: {error}")
    return EXIT_SOME_FAILED


class ItemsBar:
    """A bar of finished items (sweep runs, batch models, sensitivity layers) on stderr.

    Drawn only when stderr is a terminal; ``start`` sets the total once it is known, ``counted``
    wraps a per-item callback so each finished item also moves the bar, ``note`` shows what the
    work waits for.
    """

    def __init__(self, desc: str, unit: str, total: int | None = None) -> None:
        from tqdm import tqdm  # only for the commands that draw it

        self._bar = tqdm(
            desc=desc, unit=unit, total=total, file=sys.stderr, disable=not sys.stderr.isatty()
        )

    def __enter__(self) -> ItemsBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def start(self, total: int) -> None:
        """The number of items, once the work knows it."""
        self._bar.total = total
        self._bar.refresh()

    def counted(self, on_done: Callable[[T], None]) -> Callable[[T], None]:
        """``on_done``, then one step of the bar."""

        def done(item: T) -> None:
            on_done(item)
            self._bar.update(1)

        return done

    def note(self, text: str) -> None:
        """Show ``text`` after the bar (what the work is waiting for)."""
        if text:
            self._bar.set_postfix_str(text)
