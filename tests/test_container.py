"""The container image of ``onnxprune serve``: built with podman, run, checked, stopped.

The base is Debian bookworm from ``debootstrap`` (no image registry is reachable where the tests
run), imported into podman and passed as the ``BASE`` build argument; pip in the build trusts
the machine's CA bundle through the build secret ``ca``. podman runs with ``runc`` and the
shell's own file limits (it cannot raise them here). ``.ci/run`` installs podman, runc and
debootstrap when it runs as root.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.errors import CallRefusedError
from onnxprune.service.client import Client
from tests.helpers import until

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "models" / "mlp_digits.onnx"
BASE = "localhost/onnxprune-test-base:bookworm"
IMAGE = "localhost/onnxprune-test:latest"
CA = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_IMAGE_BYTES = 700 * 10**6
PODMAN = shutil.which("podman")
SLIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale", "usr/share/man")
"""Folders of the debootstrapped base removed before import, as slim base images do."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PODMAN is None or shutil.which("debootstrap") is None,
        reason="podman and debootstrap are not installed (.ci/run installs them as root)",
    ),
]


def _podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PODMAN, "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _retried(*args: str, attempts: int = 3) -> subprocess.CompletedProcess:
    """A podman command that reaches the network, tried again when it fails."""
    for attempt in range(attempts):
        done = _podman(*args, check=False)
        if done.returncode == 0:
            return done
        time.sleep(5 * (attempt + 1))
    raise AssertionError(f"podman {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")


def _mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    for path in [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]:
        if path.exists():
            found = re.search(r"(?:URIs:|^deb)\s+(\S*debian/?)\s", path.read_text(), re.MULTILINE)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    if _podman("image", "exists", BASE, check=False).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        for attempt in range(3):
            done = subprocess.run(
                [
                    shutil.which("debootstrap"), "--variant=minbase",
                    "--include=python3,python3-venv",
                    "bookworm", str(rootfs), _mirror(),
                ],
                capture_output=True, text=True, timeout=1800, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                break
            time.sleep(5 * (attempt + 1))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        for cache in SLIM:  # what slim base images leave out too
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        archive = tmp_path_factory.mktemp("base") / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        _podman("import", str(archive), BASE)
        shutil.rmtree(rootfs, ignore_errors=True)
    secret = ["--secret", f"id=ca,src={CA}"] if CA.exists() else []
    _retried(
        "build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={BASE}",
        *secret, "-t", IMAGE, "-f", str(ROOT / "Containerfile"), str(ROOT),
    )  # fmt: skip
    return IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_image_is_small_runs_as_a_user_and_keeps_no_ca_secret(image):
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"
    inspected = json.loads(_podman("image", "inspect", image).stdout)[0]
    assert inspected["Config"]["User"] == "onnxprune"
    assert inspected["Healthcheck"]["Test"] == ["CMD", "onnxprune-healthcheck"]
    listing = _podman("run", "--rm", "--entrypoint", "ls", image, "-A", "/run/secrets", check=False)
    assert "ca" not in listing.stdout.split()  # the build secret did not stay


def test_the_server_in_the_container_serves_checks_health_prunes_and_stops(image, tmp_path):
    port, token = _free_port(), "s3cret-token"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "token").chmod(0o644)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    name = f"onnxprune-test-{port}"
    _podman(
        "run", "-d", "--name", name, "--network", "host",
        "--ulimit", f"nofile={hard}:{hard}", "--ulimit", "nproc=32768:32768",
        "-e", f"ONNXPRUNE_PORT={port}", "-e", "ONNXPRUNE_TOKEN_FILE=/run/onnxprune/token",
        "-v", f"{tmp_path / 'token'}:/run/onnxprune/token:ro",
        image, "--jobs", "1", "--memory-limit", "2G",
    )  # fmt: skip
    try:
        # The image's own health check (onnxprune-healthcheck) passes once the server is up.
        assert until(lambda: _podman("healthcheck", "run", name, check=False).returncode == 0, 120)
        assert _podman("exec", name, "id", "-u").stdout.strip() == "10001"
        address = f"127.0.0.1:{port}"
        with Client(address, token=token, timeout=120) as client:
            assert client.health("readiness") == "SERVING"
            result = client.prune(MLP, tmp_path / "p.onnx", sparsity=0.5)
        pruned = onnx.load(tmp_path / "p.onnx")
        weights = [numpy_helper.to_array(t) for t in pruned.graph.initializer if len(t.dims) == 2]
        zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
        assert zeros == pytest.approx(0.5, abs=0.01)
        assert result.report.direct_sparsity == pytest.approx(zeros, abs=1e-6)
        masks = np.load(tmp_path / "p.masks.npz")
        assert set(masks.files) == {t.name for t in pruned.graph.initializer if len(t.dims) == 2}
        with Client(address, timeout=30) as anonymous, pytest.raises(CallRefusedError):
            anonymous.analyze(MLP)  # the token from the mounted file is required
        _podman("stop", "-t", "60", name)  # SIGTERM: graceful shutdown
        state = json.loads(_podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0
        assert "stopped" in _podman("logs", name).stderr
    finally:
        _podman("rm", "-f", name, check=False)
