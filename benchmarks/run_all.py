"""Run every benchmark and print one summary table; exit 1 if any target was missed.

Each script runs alone in its own process (its output shown as it comes) and prints one
``RESULT figure | target | measured | ok`` line per target (``_results.py``). The table lists
them all; a script that exits non-zero without a missed target of its own (a crash), or that
reports nothing, counts as a missed target too.

    .venv/bin/python benchmarks/run_all.py [--only prune,analyze]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _results import Result  # benchmarks/ is on sys.path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "startup",
    "analyze",
    "prune",
    "synflow",
    "structured",
    "transformer",
    "recovery",
    "batch",
    "grpc",
)


def run(script: str, folder: Path = HERE) -> list[Result]:
    """Run ``<folder>/<script>.py``, echo its output, and return the results it printed."""
    command = [sys.executable, str(folder / f"{script}.py")]
    results = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            result = Result.parse(line.rstrip("\n"))
            if result is not None:
                results.append(result)
    return results + check_exit(script, process.returncode, results)


def check_exit(script: str, code: int, results: list[Result]) -> list[Result]:
    """A missed result for a script that crashed or reported nothing; none otherwise."""
    if code != 0 and all(r.ok for r in results):
        return [Result(f"{script}.py runs", "exit status 0 or 1", f"exit status {code}", False)]
    if not results:
        return [Result(f"{script}.py reports", "at least one RESULT line", "none", False)]
    return []


def table(results: list[Result]) -> str:
    """The summary table: figure, target, measured, ok, one row per result."""
    rows = [("figure", "target", "measured", "ok")]
    rows += [(r.figure, r.target, r.measured, "ok" if r.ok else "MISSED") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 when any target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scripts to run (default: all)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = sorted(set(chosen) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    results = []
    for script in chosen:
        print(f"== {script}.py ==", flush=True)
        results += run(script)
    print()
    print(table(results))
    missed = sum(not r.ok for r in results)
    print(f"{missed} of {len(results)} targets missed" if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
