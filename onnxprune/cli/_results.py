"""How ``prune --structured`` and ``compact`` results print, locally and from ``remote``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from onnxprune.cli._common import out
from onnxprune.text import printable


def print_structured(summary: Mapping[str, object], args: argparse.Namespace) -> None:
    """A structured prune's JSON (``StructuredResult.to_dict``): units kept, parameters."""
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    for name, (kept, total) in summary["units"].items():
        out(f"{printable(name)}: kept {kept} of {total} units")
    out(f"parameters {summary['params_before']} -> {summary['params_after']}; wrote {args.output}")


def print_compact(summary: Mapping[str, object], args: argparse.Namespace) -> None:
    """A compaction's JSON (``CompactResult.to_dict``): units removed per layer, parameters."""
    if args.json:
        out(json.dumps(summary, indent=2))
        return
    folded = summary["folded"]
    for name, count in summary["removed"].items():
        n_folded = folded.get(name, 0)
        units = "unit" if count == 1 else "units"
        out(
            f"{printable(name)}: removed {count} {units}"
            + (f" ({n_folded} folded)" if n_folded else "")
        )
    out(f"parameters {summary['params_before']} -> {summary['params_after']}; wrote {args.output}")
