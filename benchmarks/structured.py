"""Benchmark structured L1 filter pruning: smaller dense models that really run faster.

On ResNet-50 with random weights (the light ResNet-50 of the onnx package, weights replaced by
dense random initializers), pruned with ``structured_prune(..., criterion="l1")`` (what
``onnxprune prune --structured l1`` runs) at 30% and 50% channel sparsity, in the same run:

- parameter count (initializer elements) and FLOPs (multiply-accumulates of Conv and Gemm, from
  the weight shapes and the output sizes given by onnx shape inference) of the dense and the
  compacted model;
- ONNX Runtime CPU latency (CPUExecutionProvider, ONNX Runtime's default intra-op threads unless
  ``--threads``, batch 1, 224x224), timed as ``onnxprune validate`` times (``onnxprune.latency``):
  dense and compacted interleaved run by run after ``--warmup`` rounds, until ``--repeat`` runs
  each and ``--min-time`` seconds; prints the medians and the speedup (dense median over
  compacted median) with its 95% bootstrap interval (target >= 1.6x at 50%);
- on a machine where ONNX Runtime's CUDA provider starts, the same latencies on the GPU at
  batch 1 and batch 32 (otherwise a line says the GPU timings were skipped);
- correctness: the compacted model's outputs equal the masked model's (the same pruning as
  zeros in the original graph) on one random input, within 1e-4 relative (max abs difference
  over max abs output, outputs and logits).

Every dependency group is pruned, the members of a residual sum together (one score per group:
the mean |w| over all its filters), so the sparsity applies to every channel of the network but
the classifier's outputs. Exits 1 when the 50% speedup target is missed (or an agreement check
fails).

    .venv/bin/python benchmarks/structured.py [--repeat 20] [--warmup 5] [--min-time 1]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from _models import LIGHT, random_weights  # benchmarks/ is on sys.path
from _results import print_result

from onnxprune.latency import Latency, Speedup, latency, speedup, time_rounds
from onnxprune.macs import count_macs
from onnxprune.runtime import create_session
from onnxprune.structured import structured_prune

SPARSITIES = (0.3, 0.5)
BAR, BAR_AT = 1.6, 0.5
AGREE = 1e-4


def deployable(model: onnx.ModelProto) -> onnx.ModelProto:
    """The light model as a modern export would write it, so both sides get the same treatment.

    Unused initializers (the shapes of the replaced ConstantOfShape nodes) are removed and
    initializers are dropped from the graph inputs (IR >= 4: ONNX Runtime can then fold
    BatchNormalization into Conv, which it does not do for overridable inputs).
    """
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    inits = {t.name for t in model.graph.initializer}
    data = [i for i in model.graph.input if i.name in used and i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(data)
    return model


def params(model: onnx.ModelProto) -> int:
    """Number of initializer elements."""
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def session(model: onnx.ModelProto, provider: str = "cpu", threads: int = 0):
    """An ONNX Runtime session (``threads`` 0: ONNX Runtime's default), CPU or CUDA."""
    return create_session(model.SerializeToString(), provider, threads=threads)[0]


def feed(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """``x`` as the one graph input that is not an initializer."""
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise RuntimeError(f"expected one data input, got {names}")
    return {names[0]: x}


def timed(
    dense: onnx.ModelProto, small: onnx.ModelProto, x: np.ndarray, args, provider: str = "cpu"
) -> tuple[Latency, Latency, Speedup]:
    """Dense and compacted latencies and the speedup, interleaved as ``validate`` times them."""
    sides = [partial(_run, session(m, provider, args.threads), feed(m, x)) for m in (small, dense)]
    small_s, dense_s = time_rounds(
        sides, 1, warmup=args.warmup, min_time=args.min_time, min_runs=args.repeat
    )
    return latency(dense_s), latency(small_s), speedup(dense_s, small_s)


def _run(sess, inputs: dict[str, np.ndarray], batch: int) -> list:
    """One run of ``sess`` on ``inputs`` (one batch: ``batch`` is always 0)."""
    del batch
    return sess.run(None, inputs)


def _speedup_text(ratio: Speedup) -> str:
    return f"{ratio.value:.2f}x (95% CI {ratio.low:.2f}-{ratio.high:.2f})"


def gpu_timings(dense: onnx.ModelProto, smalls: dict[float, onnx.ModelProto], args) -> None:
    """Dense vs compacted latency on CUDA at batch 1 and 32, when the CUDA provider starts."""
    provider = create_session(dense.SerializeToString(), "auto")[1]
    if provider != "CUDAExecutionProvider":
        print(f"GPU: ONNX Runtime runs on {provider} here; GPU timings skipped")
        return
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        for sparsity, small in smalls.items():
            t0, t1, ratio = timed(dense, small, x, args, "cuda")
            print(
                f"CUDA batch {batch}, {sparsity:.0%}: dense {t0.p50:.2f} ms, compacted "
                f"{t1.p50:.2f} ms (medians of {t1.runs}), speedup {_speedup_text(ratio)}"
            )


def agreement(
    a: onnx.ModelProto, b: onnx.ModelProto, x: np.ndarray, *, logits: bool = True
) -> float:
    """Max abs difference of all outputs over the max abs output of ``a``.

    With ``logits``, the inputs of Softmax nodes are compared too: with random weights the
    probabilities are close to one-hot and would hide differences. (Not for attention: its
    masks put -3.4e38 into them, which would make any difference look negligible.)
    """
    logits = [n.input[0] for n in a.graph.node if n.op_type == "Softmax"] if logits else []
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for m in (a, b):
        m.graph.output.extend(onnx.ValueInfoProto(name=name) for name in logits)
    ya, yb = session(a).run(None, feed(a, x)), session(b).run(None, feed(b, x))
    scale = max(float(np.abs(o).max()) for o in ya) or 1.0
    diff = max(float(np.abs(p - q).max()) for p, q in zip(ya, yb, strict=True))
    return diff / scale


def timing_arguments(
    description: str, *, threads: int = 0, min_time: float = 1.0
) -> argparse.ArgumentParser:
    """The timing flags (``--repeat``, ``--warmup``, ``--min-time``, ``--threads``) of ``timed``.

    ``threads`` and ``min_time`` are the defaults of ``--threads`` and ``--min-time``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per model at least")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per model first")
    parser.add_argument(
        "--min-time",
        type=float,
        default=min_time,
        help=f"seconds of timed runs of the slower model (default {min_time:g})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=threads,
        help=f"intra-op threads (0: ONNX Runtime's default; default {threads})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the 50% speedup target or an agreement check fails."""
    args = timing_arguments(__doc__.splitlines()[0]).parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        random_weights(LIGHT / "light_resnet50.onnx", path, sparsity=0.0)
        dense = deployable(onnx.load(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    p0, f0 = params(dense), count_macs(dense).macs
    print(f"ResNet-50 dense: {p0:,} parameters, {f0 / 1e9:.2f} GMACs")
    print("structured L1 filter pruning, per layer; residual groups pruned as one")
    ok, smalls = True, {}
    for sparsity in SPARSITIES:
        start = time.perf_counter()
        result = structured_prune(dense, sparsity=sparsity, criterion="l1")
        took = time.perf_counter() - start
        small = smalls[sparsity] = result.model
        kept = sum(k for k, _ in result.units.values())
        total = sum(n for _, n in result.units.values())
        p1, f1 = params(small), result.compaction.macs_after.macs
        t0, t1, ratio = timed(dense, small, x, args)
        rel = agreement(result.masked, small, x)
        speedup = ratio.value
        target = f" (target >= {BAR})" if sparsity == BAR_AT else ""
        missed = sparsity == BAR_AT and speedup < BAR
        ok = ok and not missed and rel <= AGREE
        print(
            f"{sparsity:.0%}: {len(result.units)} layers pruned, {kept}/{total} of their channels "
            f"kept, prune+compact {took:.2f} s; {p1:,} parameters ({p0 / p1:.2f}x fewer), "
            f"{f1 / 1e9:.2f} GMACs ({f0 / f1:.2f}x fewer); ORT CPU dense {t0.p50:.1f} ms, "
            f"compacted {t1.p50:.1f} ms (medians of {t1.runs} interleaved runs), speedup "
            f"{_speedup_text(ratio)}{target}{'  MISSED' if missed else ''}"
        )
        print(
            f"{sparsity:.0%}: compacted vs masked outputs, max rel difference {rel:.2e} "
            f"(<= {AGREE:g}): {'ok' if rel <= AGREE else 'FAILED'}"
        )
        if sparsity == BAR_AT:
            figure = f"structured {sparsity:.0%} ResNet-50 ORT CPU speedup"
            print_result(figure, f">= {BAR}x", f"{speedup:.2f}x", not missed)
        figure = f"structured {sparsity:.0%} compacted vs masked, max rel difference"
        print_result(figure, f"<= {AGREE:g}", f"{rel:.2e}", rel <= AGREE)
    gpu_timings(dense, smalls, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
