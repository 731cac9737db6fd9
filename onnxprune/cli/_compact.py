"""``onnxprune compact`` (dead units out, outputs kept) and ``onnxprune prune --structured``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from onnxprune.cli._common import add_debug, add_max_bytes, check_outputs, out
from onnxprune.model import load_model, save_model
from onnxprune.structured import CRITERIA, SCOPES, compact, structured_prune
from onnxprune.structured.options import check_structured


def add(sub: argparse._SubParsersAction) -> None:
    """The ``compact`` subcommand."""
    p = sub.add_parser(
        "compact",
        help="remove dead channels and neurons, giving a smaller dense model",
        description=(
            "Remove every dead channel or neuron: units of Conv/Gemm/MatMul layers that no later "
            "layer reads, or that only carry a constant (their bias), whose constant is then "
            "folded into the next layers' biases so outputs do not change. Units are removed "
            "with everything tied to them (BatchNorm statistics, residual sums, Concat and "
            "Split sizes, flattened features, depthwise convolutions, Reshape targets); units "
            "that reach a graph output or an op onnxprune cannot follow are kept."
        ),
    )
    p.add_argument("model", help="path of the .onnx model (never overwritten)")
    p.add_argument("-o", "--output", required=True, help="path of the compacted .onnx model")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_max_bytes(p)
    add_debug(p)
    p.set_defaults(run=_compact)


def _compact(args: argparse.Namespace) -> int:
    check_outputs(args.model, args.output)
    result = compact(load_model(args.model, max_bytes=args.max_bytes))
    save_model(result.model, args.output)
    print_compact(result.removed, result.folded, (result.params_before, result.params_after), args)
    return 0


def print_compact(
    removed: Mapping[str, int],
    folded: Mapping[str, int],
    params: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    """What ``compact`` prints (also ``remote compact``): units removed per layer, parameters."""
    summary = {
        "removed": dict(removed),
        "folded": dict(folded),
        "params_before": params[0],
        "params_after": params[1],
    }
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    for name, count in removed.items():
        n_folded = folded.get(name, 0)
        units = "unit" if count == 1 else "units"
        out(f"{name}: removed {count} {units}" + (f" ({n_folded} folded)" if n_folded else ""))
    out(f"parameters {params[0]} -> {params[1]}; wrote {args.output}")


def add_structured_flags(p: argparse.ArgumentParser) -> None:
    """``--structured`` and ``--round-to`` of ``onnxprune prune``."""
    p.add_argument(
        "--structured",
        choices=sorted(CRITERIA),
        help="remove whole channels/neurons (--sparsity of the units, a residual sum's members "
        "together) ranked by this filter criterion, then compact the model",
    )
    p.add_argument(
        "--scope",
        choices=SCOPES,
        default="layer",
        help="with --structured: the sparsity applies to each layer (default) or to the whole "
        "network, scores normalized by their layer's mean",
    )
    p.add_argument(
        "--round-to",
        type=int,
        default=1,
        metavar="N",
        help="with --structured: keep a multiple of N units per layer (default 1)",
    )
    p.add_argument(
        "--masked-out",
        metavar="ONNX",
        help="with --structured: also write the same pruning as zeros in the original shapes "
        "(to fine-tune with masks kept, then `onnxprune compact`)",
    )


FLAGS = {"masks": "--masks-in"}
"""Option names whose flag is not ``--`` and the name with dashes."""


def flag(name: str) -> str:
    """The command-line spelling of a ``prune`` option: ``round_to`` -> ``--round-to``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def check_prune_flags(args: argparse.Namespace) -> None:
    """Refuse flags ``--structured`` cannot take, or needs (``check_structured``).

    Raises:
        InvalidOptionError: one line naming the flags.
    """
    names = ("structured", "sparsity", "score", "allocation", "effective", "min_threshold", "nm")
    options = {name: getattr(args, name) for name in names}
    options.update(
        masks=args.masks_in,
        scores=args.scores,
        calibration=args.calibration,
        scope=args.scope,
        round_to=args.round_to,
        masked_out=args.masked_out,
    )
    check_structured(options, flag)


def run_structured(args: argparse.Namespace) -> int:
    """``onnxprune prune --structured``: prune whole units, compact, write the smaller model.

    The caller has run ``check_prune_flags``.
    """
    check_outputs(args.model, args.output, args.masked_out)
    result = structured_prune(
        load_model(args.model, max_bytes=args.max_bytes),
        sparsity=args.sparsity,
        criterion=args.structured,
        scope=args.scope,
        round_to=args.round_to,
        seed=args.seed,
        layers=args.layers,
        exclude=args.exclude,
    )
    save_model(result.model, args.output)
    if args.masked_out:
        save_model(result.masked, args.masked_out)
    c = result.compaction
    print_structured(result.units, c.removed, (c.params_before, c.params_after), args)
    return 0


def print_structured(
    units: Mapping[str, tuple[int, int]],
    removed: Mapping[str, int],
    params: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    """What ``prune --structured`` prints (also ``remote prune``): units kept, parameters."""
    summary = {
        "units": {name: list(kept_total) for name, kept_total in units.items()},
        "removed": dict(removed),
        "params_before": params[0],
        "params_after": params[1],
    }
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    for name, (kept, total) in units.items():
        out(f"{name}: kept {kept} of {total} units")
    out(f"parameters {params[0]} -> {params[1]}; wrote {args.output}")
