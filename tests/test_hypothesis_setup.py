"""The Hypothesis set-up of tests/conftest.py: profiles, and examples independent of imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.conftest import PROFILES

ROOT = Path(__file__).resolve().parent.parent

DRAW = """
import hashlib, importlib, sys
import tests.conftest  # the profiles, and no constants from local modules
from hypothesis import given, settings, strategies as st
from tests.structured._random_nets import SPARSITIES, nets

for name in sys.argv[1:]:
    importlib.import_module(name)
drawn = []

@settings(max_examples=150)
@given(nets(), SPARSITIES, st.integers(0, 2**16))
def collect(net, sparsity, seed):
    drawn.append(net.model.SerializeToString() + repr((sparsity, seed)).encode())

collect()
print(len(drawn), hashlib.sha256(b"".join(drawn)).hexdigest())
"""


def _examples(tmp_path: Path, *modules: str) -> str:
    """A digest of the examples a derandomized property draws after importing ``modules``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    env.pop("HYPOTHESIS_PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-c", DRAW, *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.slow
def test_examples_do_not_depend_on_what_is_imported(tmp_path):
    # Hypothesis mixes in constants from the source of the local modules imported so far, and
    # which those are depends on what pytest collected. A local module full of integers and
    # floats of the ranges the property draws from (seeds, sparsities) changes nothing.
    values = [*range(1000, 60000, 997), *(k / 97 for k in range(1, 87))]
    (tmp_path / "many_constants.py").write_text(f"VALUES = {values!r}\n")
    alone = _examples(tmp_path)
    assert alone.startswith("150 ")
    assert _examples(tmp_path, "many_constants") == alone


def test_profile_sets_the_example_count():
    # tests/conftest.py loaded HYPOTHESIS_PROFILE (``full`` when unset) before any test module.
    expected = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "full")]
    assert settings().max_examples == expected
    assert settings().derandomize and settings().deadline is None and settings().database is None
