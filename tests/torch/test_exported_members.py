"""``onnxprune.torch``'s public names, and its import error when PyTorch is missing."""

import subprocess
import sys

import pytest

pytest.importorskip("torch")

import onnxprune.torch as opt


def test_all_is_sorted_and_complete():
    assert opt.__all__ == sorted(opt.__all__)
    public = {
        name
        for name, value in vars(opt).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("onnxprune")
    }
    assert public - {"export", "finetune", "mapping", "masking"} <= set(opt.__all__)
    for name in opt.__all__:
        assert hasattr(opt, name), name


@pytest.mark.slow
def test_without_torch_the_import_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import onnxprune\n"
        "try:\n"
        "    import onnxprune.torch\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('imported without torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pip install 'onnxprune[torch]'" in result.stdout
