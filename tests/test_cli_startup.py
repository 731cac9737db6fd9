"""What a command imports: ``--help`` and ``methods`` nothing heavy, ``analyze`` no ONNX Runtime.

Each case runs the CLI in a fresh interpreter and reads back ``sys.modules`` (no timing here:
``benchmarks/startup.py`` measures the start-up times). A module import moved back to the top of
a command module, or a package ``__init__`` importing its exports eagerly, fails these tests.
"""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.attention_models import fused

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "cnn_digits.onnx"

SERVICE_AND_RENDERING = {"onnxruntime", "grpc", "matplotlib", "torch", "tqdm", "yaml"}
MODEL_READING = {"onnx", "google.protobuf", "scipy", "ml_dtypes"}


def modules_after(argv: list[str]) -> tuple[set[str], str]:
    """The top-level modules loaded by ``onnxprune ARGV`` (the stdout it printed too)."""
    code = (
        "import json, sys\n"
        "from onnxprune.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as e:\n"  # --help exits
        "    code = e.code\n"
        "assert code == 0, code\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.splitlines()[-1])), result.stdout


def test_help_imports_no_library_dependency() -> None:
    modules, stdout = modules_after(["--help"])
    assert "analyze" in stdout
    assert "batch" in stdout
    assert modules & (SERVICE_AND_RENDERING | MODEL_READING | {"numpy"}) == set()


def test_methods_imports_numpy_only() -> None:
    modules, stdout = modules_after(["methods"])
    assert "synflow" in stdout
    assert "igq" in stdout
    assert "numpy" in modules
    assert modules & (SERVICE_AND_RENDERING | MODEL_READING) == set()


def test_analyze_reads_the_model_without_runtime_or_service() -> None:
    modules, stdout = modules_after(["analyze", str(SAMPLE)])
    assert "effective" in stdout
    assert {"onnx", "numpy", "scipy.sparse"} <= modules
    assert modules & SERVICE_AND_RENDERING == set()
    heavy_scipy = {"scipy.optimize", "scipy.linalg", "scipy.special", "scipy.sparse.linalg"}
    assert modules & heavy_scipy == set()
    # a CNN: no attention or recurrent layer, so no units table and nothing loaded to find units
    assert "\nunits " not in stdout  # the units table's header
    assert [m for m in modules if m.startswith("onnxprune.structured")] == []


def test_analyze_of_attention_finds_its_heads_without_the_pruners(tmp_path) -> None:
    path = tmp_path / "attention.onnx"
    onnx.save(fused(heads=2), path)
    modules, stdout = modules_after(["analyze", str(path)])
    assert "  head 1 " in stdout  # the units table, by default for attention
    assert "onnxprune.structured.units" in modules
    # the pruning entry and the re-fit load on first use (structured/__init__.py)
    assert [m for m in modules if m.startswith("onnxprune.pruners")] == []
    assert "onnxprune.structured.reconstruct" not in modules


@pytest.mark.parametrize("package", ["onnxprune", "onnxprune.batch", "onnxprune.graph"])
def test_importing_a_package_loads_none_of_its_exports(package: str) -> None:
    code = f"import json, sys, {package}\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {"numpy", "onnx", "scipy"} & set(json.loads(result.stdout)) == set()


def test_python_m_onnxprune_runs_the_command_line() -> None:
    # as the installed ``onnxprune`` script does: the same exit code and output
    result = subprocess.run(
        [sys.executable, "-m", "onnxprune", "analyze", str(SAMPLE), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total_params"] > 0
    refused = subprocess.run(
        [sys.executable, "-m", "onnxprune", "analyze", str(SAMPLE), "--dim", "batsh=1"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
