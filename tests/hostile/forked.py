"""CLI commands run in forked children of one warm process, each with its peak memory measured.

A fresh interpreter per example of a property costs a second (ONNX Runtime's import alone); a
fork of a process that has imported everything costs milliseconds. ``Forked`` starts that
process (``python -m tests.hostile.forked``) once; for each command it forks a child that runs
``onnxprune.cli.main`` with stdout and stderr in files, and reports the child's exit code and
peak resident memory (``wait4``'s ``ru_maxrss``, the child's alone: pages it shares with the
parent count as they are touched, so the peak starts near the parent's size).

The warm process imports no gRPC and starts no thread, so a child may open its own channels
(``remote``) and sessions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    """What a command did: exit code (``-N``: killed by signal N), output, peak memory."""

    code: int
    out: str
    err: str
    peak_bytes: int


class Forked:
    """The warm process; ``run`` a command line in a child of it. Close it when done."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.forked"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], folder: Path) -> Ran:
        """``onnxprune ARGV`` in a fresh child; its output goes through files in ``folder``."""
        out, err = folder / ".stdout", folder / ".stderr"
        request = {"argv": [str(a) for a in argv], "out": str(out), "err": str(err)}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        reply = json.loads(self._process.stdout.readline())
        ran = Ran(reply["code"], out.read_text(), err.read_text(), reply["peak_bytes"])
        out.unlink()
        err.unlink()
        return ran

    def close(self) -> None:
        """End the warm process."""
        self._process.stdin.close()
        self._process.wait()


def _serve() -> None:
    """Answer each request line on stdin with the reply line of its forked run."""
    import onnxruntime  # noqa: F401 - warm: every child has it imported
    import tqdm  # noqa: F401

    import onnxprune.sweep
    import onnxprune.validation
    import onnxprune.verbs  # noqa: F401
    from onnxprune.cli import main

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(main, request)
        _, status, usage = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes there, KiB
        sys.stdout.write(json.dumps({"code": code, "peak_bytes": peak}) + "\n")
        sys.stdout.flush()


def _child(main, request: dict) -> None:
    """Run the command with fds 1 and 2 on the request's files; never returns."""
    for fd, path in ((1, request["out"]), (2, request["err"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    try:
        code = main(request["argv"])
    except SystemExit as e:  # argparse exits itself
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # what escapes main: shown as Python would show it
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _serve()
