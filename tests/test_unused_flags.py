"""A flag the chosen path would not use is refused (exit 2, one line), never silently ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.options import PruneOptions, check_prune
from tests.helpers import refused

MODELS = Path(__file__).resolve().parents[1] / "models"
MLP = str(MODELS / "mlp_digits.onnx")
DATA = str(MODELS / "digits_test.npz")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--nm", "2:4", "--allocation", "erk", "--min-threshold", "0.01"],
            "--nm takes no --allocation, --min-threshold (the N:M pattern fixes how many "
            "weights each layer keeps)",
        ),
        (["--nm", "2:4", "--effective"], "--nm takes no --effective"),
        (["--sparsity", "0.5", "--skip-indivisible"], "--skip-indivisible needs --nm"),
        (["--sparsity", "0.5", "--rounds", "5"], "--rounds is read by --score synflow only"),
        (
            ["--sparsity", "0.5", "--score", "lamp", "--calibration", DATA],
            "--calibration is read by --score activation or sparsegpt only",
        ),
        (
            ["--masks-in", "MASKS", "--score", "lamp", "--effective"],
            "--score, --effective need --sparsity or --nm (--masks-in alone only applies the "
            "masks)",
        ),
        (
            ["--sparsity", "0.5", "--scores", "MASKS", "--score", "lamp"],
            "give either --scores or --score, not both (the file's scores replace the score)",
        ),
    ],
)
def test_prune_refuses_what_its_path_ignores(tmp_path, capsys, flags, message):
    masks = tmp_path / "m.npz"
    np.savez(masks, **{"fc1.weight": np.ones((300, 64), bool)})
    flags = [str(masks) if f == "MASKS" else f for f in flags]
    out = tmp_path / "p.onnx"
    err = refused(capsys, "prune", MLP, "-o", str(out), *flags)
    assert err.startswith(f"InvalidOptionError: {message}")
    assert not out.exists()


def test_the_same_options_are_fine_where_they_are_read(tmp_path, capsys):
    out = str(tmp_path / "p.onnx")
    for flags in (
        ["--nm", "2:4", "--skip-indivisible"],
        ["--sparsity", "0.5", "--score", "synflow", "--rounds", "5"],
        ["--sparsity", "0.5", "--allocation", "erk", "--min-threshold", "0.001"],
    ):
        assert main(["prune", MLP, "-o", out, *flags]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_library_and_server_spelling():
    # The gRPC worker checks with the option names as they are (spell=str).
    with pytest.raises(InvalidOptionError, match=r"^nm takes no effective "):
        check_prune(PruneOptions(nm="2:4", effective=True))
    only = r"^calibration is read by score activation or sparsegpt only$"
    with pytest.raises(InvalidOptionError, match=only):
        check_prune(PruneOptions(sparsity=0.5), inputs=["calibration"])
    check_prune(PruneOptions(sparsity=0.5, score="activation"), inputs=["calibration"])


def test_batch_address_needs_ray(tmp_path, capsys):
    err = refused(capsys, "batch", str(MODELS), "--out", str(tmp_path / "out"), "--sparsity",
                   "0.5", "--address", "auto")  # fmt: skip
    assert err == (
        "InvalidOptionError: --address is the Ray cluster to join; it needs --executor ray"
    )
    assert not (tmp_path / "out").exists()  # refused before any model or folder
