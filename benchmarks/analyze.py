"""Benchmark ``onnxprune analyze`` against the floor and against the paper's own computation.

On ResNet-50 and VGG-19 (the light models shipped with the onnx package, weights replaced by
random initializers with a 90% random mask) and on an MLP of 2 GiB whose weights are in external
data, in the same run:

- the floor: parse the model and count the nonzeros of every tensor (``onnx.load`` +
  ``np.count_nonzero``; external tensors read one at a time with ``np.fromfile``);
- ``analyze`` at the channel level: wall time (best of ``--repeat``, each round running the floor
  and every level once, so a passing load weighs on all alike) and ratio to the floor
  (target <= 1.3), and the peak RSS growth during the call (measured in a fresh process, after
  imports) relative to the file size (target <= 2.0), for external data relative to its largest
  tensor (target <= 1.5);
- ``analyze`` at the exact level: VGG-19 against its floor (target <= 3.0); ResNet-50 against the
  authors' way (when torch is installed; best of 5 each, target <= 0.5): the float64
  linearized network of PAPERS.md (|w|*mask, no biases, BN and ReLU removed, max-pool as
  average-pool, all-ones input), backward of sum(output), active iff grad*|w| != 0. Its active
  count must equal ours.

Prints one RESULT line per target; exits 1 when a target is missed.

    .venv/bin/python benchmarks/analyze.py [--models resnet50,vgg19,external] [--repeat 3]
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
from _models import (  # benchmarks/ is on sys.path
    LIGHT,
    best_interleaved,
    best_time,
    external_mlp,
    random_weights,
)
from _results import print_result
from onnx import numpy_helper

import onnxprune

MODELS = {"resnet50": "light_resnet50.onnx", "vgg19": "light_vgg19.onnx", "external": None}
TIME_BAR, RSS_BAR, TENSOR_RSS_BAR = 1.3, 2.0, 1.5
EXACT_BAR, AUTHORS_BAR = 3.0, 0.5
EXTERNAL_LAYERS, EXTERNAL_WIDTH = 8, 8192  # 8 x 256 MiB of float32: 2 GiB


def floor(path: Path) -> int:
    """The least any analysis must do: parse the file and count nonzeros of every tensor.

    Tensors in external data are read one at a time, at their offsets.
    """
    model = onnx.load(path, load_external_data=False)
    count = 0
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = {e.key: e.value for e in tensor.external_data}
            n = int(np.prod(tensor.dims))
            offset = int(where.get("offset", 0))
            value = np.fromfile(path.parent / where["location"], np.float32, n, offset=offset)
        else:
            value = numpy_helper.to_array(tensor)
        count += int(np.count_nonzero(value))
    return count


def largest_tensor(path: Path) -> int:
    """Bytes of the model's largest initializer (float32)."""
    model = onnx.load(path, load_external_data=False)
    return max(int(np.prod(t.dims)) * 4 for t in model.graph.initializer)


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

    # after imports: the modules the call loads on first use (SciPy...) are not its memory
    import onnxprune.graph.exact
    import onnxprune.sparsity  # noqa: F401

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
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = Path(tmp) / f"{name}.onnx"
            if MODELS[name] is None:
                external_mlp(path, EXTERNAL_LAYERS, EXTERNAL_WIDTH)
                size = path.stat().st_size + path.with_name(path.name + ".data").stat().st_size
            else:
                random_weights(LIGHT / MODELS[name], path)
                size = path.stat().st_size
            calls = {"floor": lambda p=path: floor(p), "channel": lambda p=path: ours(p, "channel")}
            if name == "vgg19":
                calls["exact"] = lambda p=path: ours(p, "exact")
            times = best_interleaved(calls, args.repeat)
            base = times["floor"]
            print(f"{name}: {size / 2**20:.0f} MiB; floor {base:.3f} s (best of {args.repeat})")
            ok &= _channel(name, path, size, base, times["channel"])
            if name == "vgg19":
                t = times["exact"]
                print(f"{name} exact: analyze {t:.3f} s")
                figure = f"{name} exact analyze / floor"
                ok &= print_result(
                    figure, f"<= {EXACT_BAR}", f"{t / base:.2f}", t / base <= EXACT_BAR
                )
            if name == "resnet50":
                ok &= _compare_authors(path, max(args.repeat, 5))
    return 0 if ok else 1


def _channel(name: str, path: Path, size: int, base: float, t: float) -> bool:
    """Time ``t`` and peak RSS of the channel level against the floor; prints RESULT lines."""
    rss = peak_rss_growth("channel", path)
    print(f"{name} channel: analyze {t:.3f} s, peak RSS growth {rss / 2**20:.0f} MiB")
    figure = f"{name} channel analyze"
    ok = print_result(
        f"{figure} / floor", f"<= {TIME_BAR}", f"{t / base:.2f}", t / base <= TIME_BAR
    )
    if MODELS[name] is None:
        ratio = rss / largest_tensor(path)
        what, bar = "largest tensor", TENSOR_RSS_BAR
    else:
        ratio, what, bar = rss / size, "file", RSS_BAR
    return ok & print_result(
        f"{figure} peak RSS / {what}", f"<= {bar}", f"{ratio:.2f}", ratio <= bar
    )


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
    ok = same and ours_time <= AUTHORS_BAR * ref_time
    print(
        f"resnet50 exact vs authors' way (torch float64, best of {repeat}): ours "
        f"{ours_time:.3f} s, theirs {ref_time:.3f} s; active weights {active:,} vs "
        f"{ref_active:,} ({'equal' if same else 'DIFFERENT'})"
    )
    return print_result(
        "resnet50 exact / authors' torch float64 pass",
        f"<= {AUTHORS_BAR}, same active weights",
        f"{ours_time / ref_time:.2f}, {'same' if same else 'DIFFERENT'}",
        ok,
    )


if __name__ == "__main__":
    sys.exit(main())
