"""The wheel: the package alone (no top-level ``server``), its wire contract, ``py.typed``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_package_its_proto_and_py_typed(tmp_path):
    # The installed setuptools builds it when there is one (no download); else pip fetches it.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("onnxprune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"onnxprune"}
    assert "onnxprune/py.typed" in names
    assert "onnxprune/service/__main__.py" in names  # python -m onnxprune.service
    shipped = zipfile.ZipFile(wheel).read("onnxprune/service/_proto/pruning.proto")
    assert shipped == (ROOT / "proto" / "onnxprune" / "v1" / "pruning.proto").read_bytes()
