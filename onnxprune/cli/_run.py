"""``onnxprune run recipe.yaml``: a pipeline stage (prune, compact, validate, report) in one run."""

from __future__ import annotations

import argparse
import json

from onnxprune.cli._common import EXIT_GATE_FAILED, add_debug, err, out


def add(sub: argparse._SubParsersAction) -> None:
    """The ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run a pipeline recipe: prune, compact, validate with gates, report",
        description=(
            "Run the recipe (YAML or JSON): prune the model with its options, compact it, "
            "validate it against the original with the recipe's gates, and write an HTML and "
            "Markdown report, then summary.json (final model, parameters, gate, sha256 of every "
            "output). Exit codes: 0 done and every gate passed, 3 a gate failed (all outputs "
            "written, FAILED and the reason on stderr), 2 a bad recipe, model or data, 1 a bug."
        ),
    )
    p.add_argument("recipe", help="the recipe file (paths in it are relative to its folder)")
    p.add_argument("--out", metavar="DIR", help="output folder instead of the recipe's `out`")
    p.add_argument("--json", action="store_true", help="print summary.json instead of a summary")
    add_debug(p)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from onnxprune.recipe import SUMMARY, load_recipe, run_recipe

    recipe = load_recipe(args.recipe, out=args.out)
    result = run_recipe(recipe)
    summary = result.summary
    if args.json:
        out(json.dumps(summary, indent=2))
    else:
        out(
            f"{summary['final_model']}: parameters {summary['params_before']} -> "
            f"{summary['params_after']}, direct sparsity {summary['direct_sparsity']:.2%}, "
            f"effective {summary['effective_sparsity']:.2%}"
        )
        for step in summary["steps"]:
            out(f"  {step['step']:<9} {step['seconds']:.2f} s")
        if result.reason is not None:
            out(f"gate {'passed' if result.passed else 'FAILED'}: {result.reason}")
        out(f"wrote {recipe.out / SUMMARY}")
    if not result.passed:
        err(f"gate FAILED: {result.reason}")
        return EXIT_GATE_FAILED
    return 0
