"""Benchmark ``onnxprune analyze`` against the floor and against the paper's own computation.

On ResNet-50 and VGG-19 (the light models shipped with the onnx package, weights replaced by
random initializers with a 90% random mask), in the same run:

- the floor: ``onnx.load`` + ``np.count_nonzero`` over every initializer;
- ``analyze`` at the channel and the exact level: wall time (best of 3) and ratio to the floor,
  and the peak RSS growth during the call relative to the file size (measured in a fresh
  process, after imports);
- the authors' way (``--exact`` only, when torch is installed): the float64 linearized network
  of PAPERS.md (|w|*mask, no biases, BN and ReLU removed, max-pool as average-pool, all-ones
  input), backward of sum(output), active iff grad*|w| != 0. Its active count must equal ours.

Targets: channel level time ratio <= 2.0 and peak RSS <= 3x file size; exact level on ResNet-50
no slower than the authors' way. Prints one line per case; exits 1 when a target is missed.

    .venv/bin/python benchmarks/analyze.py [--models resnet50,vgg19] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from _models import LIGHT, best_time, random_weights  # benchmarks/ is on sys.path
from _results import print_result
from onnx import numpy_helper

import onnxprune

MODELS = {"resnet50": "light_resnet50.onnx", "vgg19": "light_vgg19.onnx"}
TIME_BAR, RSS_BAR = 2.0, 3.0


def floor(path: Path) -> int:
    """The least any analysis must do: parse the file and count nonzeros of every tensor."""
    model = onnx.load(path)
    return sum(int(np.count_nonzero(numpy_helper.to_array(t))) for t in model.graph.initializer)


def ours(path: Path, level: str) -> float:
    """``onnxprune analyze`` of the file at ``level``; returns effective sparsity."""
    return onnxprune.analyze(path, level=level).effective_sparsity


def peak_rss_growth(kind: str, path: Path) -> int:
    """Peak RSS growth in bytes of one call, in a fresh process, after its imports."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure-rss", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _measure_rss(kind: str, path: Path) -> None:
    def status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = status("VmRSS:")
    if kind == "floor":
        floor(path)
    else:
        ours(path, kind)
    print(status("VmHWM:") - base)


def authors_way(path: Path) -> tuple[float, int]:
    """Time and active-weight count of the paper's float64 linearized backprop, in torch."""
    from _linearized import linearized_active  # needs torch; benchmarks/ is on sys.path

    model = onnx.load(path)
    start = time.perf_counter()
    active = linearized_active(model)
    return time.perf_counter() - start, active


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure-rss", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_rss:
        _measure_rss(args.measure_rss[0], Path(args.measure_rss[1]))
        return 0
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = Path(tmp) / f"{name}.onnx"
            random_weights(LIGHT / MODELS[name], path)
            size = path.stat().st_size
            base = best_time(floor, path, repeat=args.repeat)
            floor_rss = peak_rss_growth("floor", path) / size
            print(f"{name}: file {size / 2**20:.0f} MiB; floor {base:.3f} s, RSS {floor_rss:.2f}x")
            for level in ("channel", "exact"):
                t = best_time(ours, path, level, repeat=args.repeat)
                rss = peak_rss_growth(level, path) / size
                ok = level != "channel" or (t / base <= TIME_BAR and rss <= RSS_BAR)
                failed |= not ok
                bars = f" (targets <= {TIME_BAR}, <= {RSS_BAR}x)" if level == "channel" else ""
                print(
                    f"{name} {level:7s}: analyze {t:.3f} s, ratio to floor {t / base:.2f}; "
                    f"peak RSS {rss:.2f}x file{bars}{'' if ok else '  MISSED'}"
                )
                if level == "channel":
                    figure = f"{name} channel analyze"
                    print_result(
                        f"{figure} / floor",
                        f"<= {TIME_BAR}",
                        f"{t / base:.2f}",
                        t / base <= TIME_BAR,
                    )
                    print_result(
                        f"{figure} peak RSS / file", f"<= {RSS_BAR}", f"{rss:.2f}", rss <= RSS_BAR
                    )
            if name == "resnet50":
                failed |= not _compare_authors(path, args.repeat)
    return 1 if failed else 0


def _compare_authors(path: Path, repeat: int) -> bool:
    try:
        import torch  # noqa: F401 - only checks that the optional extra is there
    except ImportError:
        print("resnet50 exact vs authors' way: skipped (torch not installed)")
        return True
    ref_time, ref_active = min(authors_way(path) for _ in range(repeat))
    ours_time = best_time(ours, path, "exact", repeat=repeat)
    report = onnxprune.analyze(path, level="exact")
    active = sum(layer.active for layer in report.layers)
    same = active == ref_active
    ok = same and ours_time <= ref_time
    print(
        f"resnet50 exact vs authors' way (torch float64): ours {ours_time:.3f} s, theirs "
        f"{ref_time:.3f} s, ratio {ours_time / ref_time:.2f} (target <= 1.0); active weights "
        f"{active:,} vs {ref_active:,} ({'equal' if same else 'DIFFERENT'})"
        f"{'' if ok else '  MISSED'}"
    )
    print_result(
        "resnet50 exact / authors' torch float64 pass",
        "<= 1.0, same active weights",
        f"{ours_time / ref_time:.2f}, {'same' if same else 'DIFFERENT'}",
        ok,
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
