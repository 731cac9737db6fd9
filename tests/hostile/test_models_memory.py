"""Memory bombs: models of at most a kilobyte or two that declare or compute gigabytes.

Issue 19, item 6: a 157-byte ``ConstantOfShape`` model accepted under ``--max-bytes 1000``
peaked at 2.75 GB, and declared tensors of 8 GiB to 16 TiB were allocated before failing. Now
declared sizes are checked against ``onnxprune.model_checks.tensor_limit`` before anything is
allocated (one line, exit 2), and tensors too large to follow element by element fall back to
dense mixing. Each case runs the CLI in a subprocess that reports its peak resident memory.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.hostile.malformed import CASES, expand_huge, mlp, save
from tests.hostile.test_models_malformed import argv

pytestmark = pytest.mark.slow  # a fresh interpreter per case, to measure its peak memory

HEADROOM = 256 * 2**20
"""Bytes of resident memory a bomb may take beyond analyzing a valid MLP in the same way (the
CLI with its imports, near 160 MiB alone; the bombs asked for 2 GiB to 32 TiB)."""

MEASURED = """
import resource, sys
from onnxprune.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def run_measured(args: list[str]) -> tuple[int, str, str, int]:
    """``onnxprune ARGS`` in a fresh interpreter: exit code, stdout, stderr, peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, check=False
    )
    *lines, peak = done.stdout.splitlines()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return done.returncode, "\n".join(lines), done.stderr, int(peak) * scale


@pytest.fixture(scope="module")
def peak_bound(tmp_path_factory) -> int:
    """The peak of ``analyze`` on a valid MLP, measured here, plus ``HEADROOM``."""
    model = save(mlp(), tmp_path_factory.mktemp("baseline"))
    code, _, err, peak = run_measured(["analyze", str(model)])
    assert code == 0, err
    return peak + HEADROOM


BOMBS = [
    ("constant_of_shape_over_max_bytes", "analyze"),
    ("constant_of_shape_huge", "compact"),
    ("no_data_huge", "prune"),
    ("sparse_constant_huge", "analyze"),
    ("exact_huge_input", "exact"),
]


@pytest.mark.parametrize(("name", "command"), BOMBS, ids=[n for n, _ in BOMBS])
def test_a_memory_bomb_is_refused_before_it_allocates(name, command, tmp_path, peak_bound):
    case = CASES[name]
    model = case.build(tmp_path)
    assert model.stat().st_size < 2048  # a few hundred bytes, the CNN's weights included
    code, _, err, peak = run_measured([*argv(command, model, tmp_path), *case.options])
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("LimitExceededError: ") and "over the" in err
    assert peak < peak_bound


def test_a_tensor_too_large_to_follow_mixes_densely_instead(tmp_path, peak_bound):
    # Expand makes [2^40, 1, 8] of a [1, 8] hidden layer: a valid model, but an id per
    # element would take 64 TiB. The rule falls back (dense mixing, named) and the run ends.
    model = save(expand_huge(), tmp_path)
    code, out, err, peak = run_measured(["analyze", str(model)])
    assert (code, err) == (0, ""), err
    assert f"{2**43} elements" in out and "Expand" in out
    assert peak < peak_bound


def test_the_tensor_limit_follows_the_address_space_limit():
    # A worker under RLIMIT_AS (as the server runs them) may compute half of it, whatever
    # --max-bytes says; --max-bytes below that wins.
    code = (
        "import resource; from onnxprune.model_checks import tensor_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_AS)[1]\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2**32, hard))\n"
        "print(tensor_limit(2**40), tensor_limit(1000))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert done.stdout.split() == [str(min(2**31, physical // 2)), "1000"]
