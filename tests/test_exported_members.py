"""The public API: ``onnxprune.__all__`` is sorted and names exactly what the package exports."""

import onnxprune
import onnxprune.graph


def test_all_is_sorted_and_complete():
    for module in (onnxprune, onnxprune.graph):
        assert module.__all__ == sorted(module.__all__)
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", "").startswith("onnxprune")
        }
        assert public - {"errors", "model", "report", "sparsity", "graph"} <= set(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name


def test_core_imports_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import onnxprune\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
