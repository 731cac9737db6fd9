"""How ``prune --structured`` and ``compact`` results print, locally and from ``remote``.

Both print from the result's JSON (``StructuredResult.to_dict``, ``CompactResult.to_dict``, or the
same dict rebuilt from a server's reply), so a remote run prints exactly what a local one does:
warnings on stderr, then one line per layer, the sparsity reached, the groups left alone and why
(most groups first, ``BLOCKED_LINES`` reasons at most), and the parameters before and after.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence

from onnxprune.cli._common import err, out
from onnxprune.text import display_name, printable

BLOCKED_LINES = 5
"""Reasons listed under "left alone"; the rest are counted in one line (``--json`` has all)."""

BLOCKED_LAYERS = 3
"""Layers named per reason; the rest are counted."""


def print_structured(summary: Mapping[str, object], args: argparse.Namespace) -> None:
    """A structured prune's JSON: warnings, units kept, sparsity reached, blocked, parameters."""
    _warn(summary)
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    shares, kinds, labels = summary["layer_sparsity"], summary["kinds"], summary["labels"]
    for name, (kept, total) in summary["units"].items():
        units = _units(kinds.get(name), total)
        named = printable(display_name(name, labels.get(name)))
        out(f"{named}: kept {kept} of {total} {units} ({shares[name]:.2%} removed)")
    if summary["reconstruction"] is not None:
        _print_reconstruction(summary["reconstruction"])
    target = f"target {summary['sparsity']:.2%}"
    if summary["group_sparsity"] is None:
        out(f"no group could be removed ({target})")
    else:
        removed, prunable = summary["groups_removed"], summary["groups_prunable"]
        out(f"removed {removed} of {prunable} prunable groups: {summary['group_sparsity']:.2%} "
            f"({target})")  # fmt: skip
    _totals(summary["totals"])
    _left_alone(summary["blocked"], labels)
    out(_macs(summary))
    out(f"parameters {summary['params_before']} -> {summary['params_after']}; wrote {args.output}")


def _totals(totals: Mapping[str, Sequence[int]]) -> None:
    """``units: heads 8 -> 6, neurons 64 -> 40``: per kind, the total and the units kept."""
    if totals:
        shown = (f"{_units(k, t)} {t} -> {kept}" for k, (kept, t) in totals.items())
        out(f"units: {', '.join(shown)}")


def _units(kind: str | None, count: int) -> str:
    """``heads``, ``neuron``...: the noun for ``count`` units of ``kind`` (``units`` unknown)."""
    noun = kind or "unit"
    return noun if count == 1 else f"{noun}s"


def _print_reconstruction(refit: Mapping[str, object]) -> None:
    """Each re-fit layer's output error before and after, what was re-estimated or skipped."""
    out(
        f"reconstructed on {refit['samples']} calibration samples (ridge {refit['ridge']:g}); "
        "layer output error (relative MSE against the dense model) before -> after:"
    )
    for layer in refit["layers"]:
        before, after = layer["error_before"], layer["error_after"]
        kept = f"{layer['inputs_kept']} of {layer['inputs']} inputs"
        out(f"  {printable(layer['name'])} ({kept}): {before:.4g} -> {after:.4g}")
    if refit["batchnorms"]:
        names = ", ".join(map(printable, refit["batchnorms"]))
        out(f"BatchNormalization statistics re-estimated: {names}")
    for name, reason in refit["skipped"].items():
        out(f"not re-fit: {printable(name)} ({printable(reason)})")


def print_compact(summary: Mapping[str, object], args: argparse.Namespace) -> None:
    """A compaction's JSON: units removed per layer, blocked groups, parameters."""
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    folded, kinds, labels = summary["folded"], summary["kinds"], summary["labels"]
    for name, count in summary["removed"].items():
        kept, total = summary["units"][name]
        gone = total - kept  # in the layer's units (heads); ``count`` is along the weight's axis
        n_folded = folded.get(name, 0) * gone // count  # whole units fold: same ratio
        named = printable(display_name(name, labels.get(name)))
        out(
            f"{named}: removed {gone} of {total} {_units(kinds.get(name), total)}"
            + (f" ({n_folded} folded)" if n_folded else "")
        )
    if summary["removed"]:
        _totals(summary["totals"])
    _left_alone(summary["blocked"], labels)
    out(_macs(summary))
    unchanged = "" if summary["removed"] else " unchanged (nothing removed)"
    out(
        f"parameters {summary['params_before']} -> {summary['params_after']}; "
        f"wrote {args.output}{unchanged}"
    )


def print_compaction(summary: Mapping[str, object]) -> None:
    """After ``prune --compact`` (a ``CompactResult.to_dict``): parameters, blocked groups."""
    out(f"compacted: parameters {summary['params_before']} -> {summary['params_after']}")
    out(f"compacted: {_macs(summary)}")
    _left_alone(summary["blocked"], summary["labels"])


def _macs(summary: Mapping[str, object]) -> str:
    """``MACs 50.2K -> 22K (by nonzero weights 2.51K -> 1.92K)``, from a compaction's JSON."""
    from onnxprune.macs import short

    dense = f"{short(summary['macs_before'])} -> {short(summary['macs_after'])}"
    nonzero = f"{short(summary['nonzero_macs_before'])} -> {short(summary['nonzero_macs_after'])}"
    return f"MACs {dense} (by nonzero weights {nonzero})"


def _warn(summary: Mapping[str, object]) -> None:
    for line in summary["warnings"]:
        err(f"warning: {line}")


def _left_alone(
    blocked: Sequence[Mapping[str, object]], labels: Mapping[str, str] | None = None
) -> None:
    """``left alone: N groups: <reason> (layers ...)``, one line per reason, most groups first.

    Layers are named by ``labels`` where they have one.
    """
    from onnxprune.structured.blocked import BlockedGroup, by_reason, plural

    labels = labels or {}
    reasons = by_reason(BlockedGroup.from_dict(group) for group in blocked)
    for group in reasons[:BLOCKED_LINES]:
        shown = ", ".join(printable(labels.get(n, n)) for n in group.layers[:BLOCKED_LAYERS])
        more = len(group.layers) - BLOCKED_LAYERS
        layers = f"{shown} and {more} more" if more > 0 else shown
        word = "layer" if len(group.layers) == 1 else "layers"
        reason = printable(group.reason)
        out(f"left alone: {plural(group.groups, 'group')}: {reason} ({word} {layers})")
    rest = reasons[BLOCKED_LINES:]
    if rest:
        groups = plural(sum(group.groups for group in rest), "group")
        reasons = plural(len(rest), "other reason")
        out(f"left alone: {groups} more for {reasons} (--json lists them)")
