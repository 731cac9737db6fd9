"""Hostile batch manifests: an alias bomb, a recursive alias, nesting 100,000 deep. Each is one
line on stderr and exit 2, within a bounded address space; a manifest using aliases sparingly
still works."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onnxprune.batch.items import collect_items
from onnxprune.options import PruneOptions
from tests.server.conftest import MLP

ADDRESS_SPACE = 3 * 2**30
"""The CLI runs under this address-space limit: expanding a bomb fails it, reading one may not."""


def _bomb(levels: int) -> str:
    """A "billion laughs": each level names the one before 9 times (9**levels strings)."""
    lines = ["models:", "  - path: m.onnx", "    options:", "      sparsity:"]
    for level in range(levels):
        items = ['"lol"'] * 9 if level == 0 else [f"*l{level - 1}"] * 9
        lines.append(f"        - &l{level} [{', '.join(items)}]")
    return "\n".join(lines) + "\n"


LIMITED = (
    "import resource, runpy, sys\n"
    f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
    "sys.argv[0] = 'onnxprune'\n"
    "runpy.run_module('onnxprune.cli', run_name='__main__')\n"
)
"""``python -m onnxprune.cli`` under the address-space limit (set in the child itself)."""


def _batch(manifest, out) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", LIMITED, "batch", str(manifest), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="limits the address space with RLIMIT_AS")
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bomb.yaml", _bomb(10), "stands for over 1000000 values once its YAML aliases"),
        ("loop.yaml", "models: &a [*a]\n", "is nested more than 32 levels deep"),
        ("deep.yaml", "models: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 32"),
        ("deep.json", '{"models": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than 32"),
    ],
)
def test_a_hostile_manifest_is_one_line_and_exit_2(tmp_path, name, text, message):
    manifest = tmp_path / name
    manifest.write_text(text)
    done = _batch(manifest, tmp_path / "out")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"InvalidOptionError: manifest {name} ")
    assert message in done.stderr


def test_a_manifest_with_a_few_aliases_still_works(tmp_path):
    (tmp_path / "a.onnx").write_bytes(MLP.read_bytes())
    (tmp_path / "b.onnx").write_bytes(MLP.read_bytes())
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "models:\n"
        "  - {path: a.onnx, options: &half {sparsity: 0.5, allocation: erk}}\n"
        "  - {path: b.onnx, options: *half}\n"
    )
    items = collect_items(manifest, tmp_path / "out", PruneOptions())
    assert [item.options for item in items] == [PruneOptions(sparsity=0.5, allocation="erk")] * 2
