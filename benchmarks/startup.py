"""Benchmark how fast the command line starts, against the interpreter and ``import onnx``.

Each case runs in a fresh process, best of ``--repeat`` wall times, the cases taken in turn so
that a busy moment of the machine does not fall on one case only. In the same run:

- the baselines: ``python -c pass`` (the interpreter alone) and ``python -c "import onnx"``
  (what any command that reads a model must pay: ONNX, NumPy, protobuf, ml_dtypes);
- ``onnxprune --help`` and ``onnxprune methods``: nothing heavy may be imported (targets
  < 0.4 s);
- ``onnxprune analyze models/cnn_digits.onnx``: ONNX, NumPy and scipy.sparse, no ONNX Runtime,
  gRPC or matplotlib (target < 1.0 s).

Prints one line per case with its time and its ratios to both baselines; exits 1 when a target
is missed. ``python -X importtime -m onnxprune.cli --help`` shows what a command imports.

    .venv/bin/python benchmarks/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _results import print_result  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "cnn_digits.onnx"
BASELINES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import onnx"': [sys.executable, "-c", "import onnx"],
}
TARGETS = {"--help": 0.4, "methods": 0.4, f"analyze {SAMPLE.relative_to(ROOT)}": 1.0}
"""Seconds each command may take, arguments as typed after ``onnxprune``."""


def onnxprune_command() -> list[str]:
    """The ``onnxprune`` script next to this interpreter, else ``python -m onnxprune.cli``."""
    script = Path(sys.executable).with_name("onnxprune")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "onnxprune.cli"]


def wall_time(command: list[str]) -> float:
    """Wall time of one run of ``command`` in a fresh process (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def best_times(commands: dict[str, list[str]], repeat: int) -> dict[str, float]:
    """Best wall time of each command over ``repeat`` rounds, every command once per round."""
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeat):
        for name, command in commands.items():
            best[name] = min(best[name], wall_time(command))
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    onnxprune = onnxprune_command()
    commands = dict(BASELINES)
    commands.update({f"onnxprune {c}": [*onnxprune, *c.split()] for c in TARGETS})
    times = best_times(commands, args.repeat)
    bare, onnx = (times[name] for name in BASELINES)
    print(f'python -c pass: {bare:.3f} s; python -c "import onnx": {onnx:.3f} s')
    failed = False
    for case, target in TARGETS.items():
        took = times[f"onnxprune {case}"]
        ok = took < target
        failed |= not ok
        print(
            f"onnxprune {case}: {took:.3f} s, {took / bare:.1f}x python, {took / onnx:.2f}x "
            f"import onnx (target < {target} s){'' if ok else '  MISSED'}"
        )
        print_result(f"onnxprune {case} start-up", f"< {target} s", f"{took:.3f} s", ok)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
