"""Benchmark the gRPC service against the library, and soak it with mixed concurrent requests.

On ResNet-50-sized random weights (the light ResNet-50 of the onnx package with random masked
initializers, about 100 MB), with a server started by this script (``python -m onnxprune.service``
on 127.0.0.1, its own process so its memory can be watched), in the same run:

- upload and download throughput on loopback (MB/s), from the progress events of a Prune call;
- a Prune RPC (upload, prune in a worker, pruned model and masks back, written here) against the
  same work done locally: ``onnxprune.prune`` + ``save_model`` + ``save_masks``, which is what
  ``onnxprune prune`` does (target: RPC <= 1.3x); the ratio to the bare ``prune()`` call, which
  writes nothing, is printed too;
- a bounded soak: ``--soak`` mixed requests (analyze, prune, validate, methods on the bundled
  digits models) from ``--clients`` concurrent clients; prints the peak growth of the server's
  RSS after warm-up (target < 100 MB) and the number of failed requests (target 0).

    .venv/bin/python benchmarks/grpc.py [--repeat 3] [--soak 200] [--clients 4]
"""

from __future__ import annotations

import sys

# Python puts this script's folder first on sys.path, where this file (grpc.py) would shadow the
# grpc package: the folder goes last, so `import grpc` finds the package and `_models` still loads.
if sys.path and sys.path[0] and __name__ == "__main__":
    sys.path.append(sys.path.pop(0))

import argparse
import itertools
import re
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _models import LIGHT, best_time, random_weights  # benchmarks/ is on sys.path
from _results import print_result

import onnxprune
from onnxprune.pruners.masks import save_masks
from onnxprune.service.client import Client

MODELS = Path(__file__).resolve().parents[1] / "models"
RATIO_BAR, RSS_BAR, SPARSITY = 1.3, 100 * 2**20, 0.9


class Server:
    """``python -m onnxprune.service`` on a free port of 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, jobs: int) -> None:
        command = [
            sys.executable,
            "-m",
            "onnxprune.service",
            "--port",
            "0",
            "--jobs",
            str(jobs),
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            found = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if found:
                self.address = found.group(1)
                break
        else:
            raise RuntimeError("the server did not start")
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # drain the log

    def rss(self) -> int:
        """Resident memory of the server process in bytes (its workers are not its children)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def bare_prune(model: Path) -> None:
    """The library call alone: the pruned model and masks stay in memory."""
    onnxprune.prune(model, sparsity=SPARSITY)


def local_prune(model: Path, out: Path) -> None:
    """What ``onnxprune prune`` does: prune, write the model and the masks."""
    result = onnxprune.prune(model, sparsity=SPARSITY)
    onnxprune.save_model(result.model, out / "local.onnx")
    save_masks(result.masks, out / "local.masks.npz")


class Transfer:
    """Progress events of one Prune call, timed: upload and model download throughput."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, float]] = []

    def __call__(self, stage: str, fraction: float) -> None:
        self.events.append((time.perf_counter(), stage, fraction))

    def rate(self, stage: str, size: int) -> float:
        """MB/s of the first file of ``stage``, from its first progress event to its last."""
        times = []
        for when, name, fraction in self.events:
            if name == stage:
                times.append((when, fraction))
                if fraction >= 1.0:
                    break
        (t0, f0), (t1, f1) = times[0], times[-1]
        return (f1 - f0) * size / max(t1 - t0, 1e-9) / 1e6


def remote_prune(address: str, model: Path, out: Path, on_progress=None) -> None:
    with Client(address, on_progress=on_progress) as client:
        client.prune(model, out / "remote.onnx", sparsity=SPARSITY)


def soak(server: Server, requests: int, clients: int, work: Path) -> tuple[int, int, float]:
    """Mixed requests from concurrent clients; returns (peak RSS growth, errors, seconds)."""
    mlp, cnn = MODELS / "mlp_digits.onnx", MODELS / "cnn_digits.onnx"
    data = MODELS / "digits_test.npz"
    calls = itertools.cycle(
        [
            lambda c, i: c.analyze(cnn, level="exact"),
            lambda c, i: c.prune(mlp, work / f"s{i}.onnx", sparsity=0.9, allocation="erk"),
            lambda c, i: c.validate(mlp, data, provider="cpu"),
            lambda c, i: c.prune(cnn, work / f"s{i}.onnx", sparsity=0.8, score="lamp"),
            lambda c, i: c.list_methods(),
        ]
    )
    jobs = [next(calls) for _ in range(requests)]
    with Client(server.address) as client:  # warm-up: every kind once, then the baseline
        for i, job in enumerate(jobs[:5]):
            job(client, f"w{i}")
    base, peak, stop = server.rss(), [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], server.rss())

    def run(index: int) -> int:
        failed = 0
        with Client(server.address, timeout=120) as client:
            for i in range(index, requests, clients):
                try:
                    jobs[i](client, i)
                except Exception:  # noqa: PERF203 - counted: the soak reports failures
                    failed += 1
        return failed

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        errors = sum(pool.map(run, range(clients)))
    took = time.perf_counter() - start
    stop.set()
    watcher.join()
    return max(peak[0], server.rss()) - base, errors, took


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--soak", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="the server's --jobs")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "resnet50.onnx"
        random_weights(LIGHT / "light_resnet50.onnx", model)
        size = model.stat().st_size
        server = Server(args.jobs)
        try:
            remote_prune(server.address, model, work)  # warm-up: worker imports, page cache
            transfer = Transfer()
            remote_prune(server.address, model, work, transfer)
            pruned = (work / "remote.onnx").stat().st_size
            up, down = transfer.rate("upload", size), transfer.rate("download", pruned)
            print(f"model: light ResNet-50, random weights, {size / 1e6:.1f} MB")
            print(
                f"upload: {up:.1f} MB/s   download: {down:.1f} MB/s   (loopback; the model "
                "comes back while the server compresses the masks)"
            )
            bare = best_time(bare_prune, model, repeat=args.repeat)
            local = best_time(local_prune, model, work, repeat=args.repeat)
            rpc = best_time(remote_prune, server.address, model, work, repeat=args.repeat)
            print(f"prune():                        {bare:7.3f} s")
            print(f"prune + save model + masks:     {local:7.3f} s   (what `onnxprune prune` does)")
            print(f"Prune RPC, files written here:  {rpc:7.3f} s")
            ratio = rpc / local
            ok &= ratio <= RATIO_BAR
            print(f"ratio RPC / local: {ratio:.2f} (target <= {RATIO_BAR})   "
                  f"RPC / prune(): {rpc / bare:.2f}")  # fmt: skip
            print_result(
                "Prune RPC / local prune + save",
                f"<= {RATIO_BAR}",
                f"{ratio:.2f}",
                ratio <= RATIO_BAR,
            )
            growth, errors, took = soak(server, args.soak, args.clients, work)
            ok &= growth < RSS_BAR and errors == 0
            print(
                f"soak: {args.soak} mixed requests, {args.clients} clients, {took:.1f} s: "
                f"server RSS growth {growth / 2**20:.1f} MB (target < {RSS_BAR // 2**20}), "
                f"errors {errors} (target 0)"
            )
            mb = f"{growth / 2**20:.1f} MB, {errors} errors"
            limit = f"< {RSS_BAR // 2**20} MB, 0 errors"
            print_result("gRPC soak server RSS growth", limit, mb, growth < RSS_BAR and errors == 0)
        finally:
            server.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
