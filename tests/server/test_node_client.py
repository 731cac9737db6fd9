"""``examples/node``: a Node.js client (@grpc/grpc-js, proto-loader) prunes through the server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import onnxprune
from tests.server.conftest import MLP

pytestmark = pytest.mark.slow  # installs and runs the Node.js client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH")


@pytest.fixture(scope="module")
def node_example():
    """The example with its packages installed (``npm ci``; node_modules is git-ignored)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed")
    modules = EXAMPLE / "node_modules" / "@grpc"
    if not ((modules / "grpc-js").is_dir() and (modules / "proto-loader").is_dir()):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 and any(code in done.stderr for code in OFFLINE):
            pytest.skip("npm ci could not reach the registry")
        assert done.returncode == 0, done.stderr
    return node


def test_node_client_prunes_the_sample_model(node_example, address, tmp_path):
    output = tmp_path / "pruned.onnx"
    done = subprocess.run(
        [node_example, "prune.js", str(MLP), str(output), "--server", address,
         "--sparsity", "0.8", "--allocation", "erk"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    report = onnxprune.analyze(output)
    assert report.direct_sparsity == pytest.approx(0.8, abs=1e-4)
    assert summary["direct_sparsity"] == report.direct_sparsity
    assert summary["effective_sparsity"] == report.effective_sparsity
    local = onnxprune.prune(MLP, sparsity=0.8, allocation="erk")
    onnxprune.save_model(local.model, tmp_path / "local.onnx")
    assert output.read_bytes() == (tmp_path / "local.onnx").read_bytes()
    assert (tmp_path / "pruned.masks.npz").is_file()
    assert "upload 100%" in done.stderr


def test_node_client_reports_a_refused_model(node_example, address, tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model")
    done = subprocess.run(
        [node_example, "prune.js", str(notes), str(tmp_path / "out.onnx"), "--server", address],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "INVALID_ARGUMENT: not a valid ONNX model" in done.stderr
