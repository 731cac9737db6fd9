"""The pruner registries refuse duplicate names and are complete whoever reads them first."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onnxprune.pruners.criteria import l1
from onnxprune.pruners.registry import (
    ALLOCATIONS,
    CRITERIA,
    SCORES,
    allocation,
    criterion,
    get_score,
    score,
)
from onnxprune.pruners.scores.magnitude import lamp


def _never(*args):
    raise AssertionError("a refused registration must not be used")


@pytest.mark.parametrize(
    ("register", "table", "name", "kind"),
    [
        (score, SCORES, "lamp", "score"),
        (allocation, ALLOCATIONS, "igq", "allocation"),
        (criterion, CRITERIA, "l1", "criterion"),
    ],
)
def test_a_name_registered_twice_is_refused(register, table, name, kind):
    before = table[name]
    with pytest.raises(ValueError, match=f"{kind} '{name}' registered twice"):
        register(name, "another")(_never)
    assert table[name] is before


def test_entries_keep_their_functions():
    assert get_score("lamp").fn is lamp
    assert CRITERIA["l1"].fn is l1


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_registries_are_complete_when_read_first():
    # Nothing but the registry module is imported: no structured pruning, no score module.
    result = _fresh(
        "from onnxprune.pruners.registry import ALLOCATIONS, CRITERIA, SCORES\n"
        "assert sorted(CRITERIA) == ['l1', 'l2', 'random'], sorted(CRITERIA)\n"
        "assert {'magnitude', 'lamp', 'synflow', 'activation', 'random'} <= set(SCORES)\n"
        "assert {'global', 'uniform', 'uniform_plus', 'erk', 'igq'} <= set(ALLOCATIONS)\n"
    )
    assert result.returncode == 0, result.stderr


def test_a_lookup_loads_the_registry_too():
    result = _fresh(
        "from onnxprune.pruners.registry import get_score\n"
        "assert get_score('synflow').name == 'synflow'\n"
    )
    assert result.returncode == 0, result.stderr


def test_importing_onnxprune_loads_no_score_module():
    result = _fresh(
        "import sys\n"
        "import onnxprune\n"
        "loaded = [m for m in sys.modules if m.startswith('onnxprune.pruners.scores')]\n"
        "assert not loaded, loaded\n"
    )
    assert result.returncode == 0, result.stderr
