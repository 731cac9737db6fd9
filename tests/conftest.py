"""Hypothesis profiles, and property examples that do not depend on what pytest collected.

``HYPOTHESIS_PROFILE`` picks the profile (``full`` when unset):

- ``full``: every property at its full example count; ``make test`` runs it.
- ``dev``: a few examples each, for the edit-test loop; ``make check`` runs it.

Both derandomize (the examples come from each test's source, not a clock) with no example
database and no deadline (the first ONNX Runtime session of a process is slow). Properties take
their example count from the profile (``@settings(deadline=None, derandomize=True)``, no count),
or at most it (``max_examples=examples(n)``, tests/helpers.py).

Hypothesis (6.131 on) also draws, now and then, constants it harvests from the source of every
*local* module imported so far (our package, benchmarks, examples; not tests). Which modules
those are depends on which tests were collected and ran before, so the same derandomized test
drew other numbers (random seeds, sparsities) in a full run than alone. Only its own fixed
constants are drawn here: ``tests/test_hypothesis_setup.py`` checks the examples stay the same
whatever is imported.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

PROFILES = {"full": 1500, "dev": 100}
"""Examples per property test in each profile."""

for _name, _count in PROFILES.items():
    settings.register_profile(
        _name, max_examples=_count, derandomize=True, database=None, deadline=None
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "full"))

try:
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants
except ImportError:  # a Hypothesis older than the local constants: nothing to pin
    pass
else:
    # read at each draw of a constant; Hypothesis's own constants are still drawn
    providers._get_local_constants = Constants


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    """The corpus of foreign graphs (tests/corpus/store.py): each model exported on first use and
    kept for the session. Tests taking it need torch, transformers and onnxscript."""
    from tests.corpus.store import Corpus

    return Corpus(tmp_path_factory.mktemp("corpus"))
