"""``python -m tests.corpus FOLDER``: write every corpus model into FOLDER (as ``NAME.onnx``) and
print how long each took to build and export, and the total."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from tests.corpus.store import CASES, Corpus


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.corpus FOLDER", file=sys.stderr)  # noqa: T201
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    corpus = Corpus(folder)
    for name in CASES:
        corpus.get(name)
        print(f"{name:28} {corpus.seconds[name]:6.1f} s")  # noqa: T201
    print(f"{'total':28} {time.perf_counter() - start:6.1f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
