"""The public API: each package's ``__all__`` is sorted and names exactly what the package exports.

As httpx's tests/test_exported_members.py checks httpx: every public name a package's
``__init__`` binds is in ``__all__``, and every name in ``__all__`` can be imported. Submodules
and names imported from outside onnxprune (``annotations``, typing helpers) are not exports.
Helpers one package shares with another are public modules: no module imports a private module
(or a private name) of another package.
"""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import onnxprune

PACKAGES = (
    "onnxprune",
    "onnxprune.batch",
    "onnxprune.cli",
    "onnxprune.graph",
    "onnxprune.pruners",
    "onnxprune.render",
    "onnxprune.service",
    "onnxprune.structured",
    "onnxprune.torch",
)
SOURCE = Path(onnxprune.__file__).parent


def _isort_order(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, as ruff's RUF022 (isort-style) sorts ``__all__``."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _bound_public_names(package: ModuleType) -> set[str]:
    """Public names the package binds, less submodules and objects from outside onnxprune."""
    names = set()
    for name in dir(package):
        value = getattr(package, name)
        origin = getattr(value, "__module__", None) or "onnxprune"
        from_us = origin == "onnxprune" or origin.startswith("onnxprune.")
        if not name.startswith("_") and not isinstance(value, ModuleType) and from_us:
            names.add(name)
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_exact(name: str) -> None:
    if name == "onnxprune.torch":
        pytest.importorskip("torch")  # the optional extra
    package = importlib.import_module(name)
    assert package.__all__ == sorted(set(package.__all__), key=_isort_order)
    assert _bound_public_names(package) == set(package.__all__)
    star: dict = {}
    exec(f"from {name} import *", star)  # noqa: S102 - a fixed import statement
    assert set(star) - {"__builtins__"} == set(package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_a_lazy_export_is_not_named_like_a_submodule(name: str) -> None:
    """Importing ``package.x`` sets the attribute ``x`` to the submodule, hiding an export ``x``.

    An export named like a submodule must therefore be bound when the package loads (checked
    in a fresh interpreter: here earlier tests may have loaded the lazy ones already).
    """
    if name == "onnxprune.torch":
        pytest.importorskip("torch")
    package = importlib.import_module(name)
    if "__getattr__" in vars(package):  # exports load on first use (onnxprune.lazy)
        submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
        assert len(submodules) > 3
        clashes = sorted(submodules & set(package.__all__))
        code = (  # a name missing from vars(p) is lazy: it counts as hidden (a module)
            f"import types, {name} as p\n"
            f"print([n for n in {clashes!r} "
            "if isinstance(vars(p).get(n, types), types.ModuleType)])"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"  # each bound to its export, not lazy


def test_the_check_sees_a_public_name_missing_from_all() -> None:
    package = ModuleType("onnxprune.example")
    package.__all__ = ["kept"]
    package.kept = lambda: None
    package.kept.__module__ = "onnxprune.example"
    package.forgotten = 3  # a constant bound in the package: public, so it must be listed
    package.annotations = __import__("__future__").annotations  # imported, not ours
    package.graph = onnxprune.graph  # a submodule
    assert _bound_public_names(package) == {"kept", "forgotten"}


def _package_of(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.endswith("__")  # __version__ is public


def _same_package(importer: str, owner: str) -> bool:
    """``importer`` is ``owner`` or inside it (``onnxprune`` itself counts as no package)."""
    return importer == owner or (owner != "onnxprune" and importer.startswith(owner + "."))


def _private_imports(path: Path) -> list[str]:
    """Dotted names of private modules or names that ``path`` imports from other packages."""
    importer = _package_of(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            dotted = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in dotted:
            parts = name.split(".")
            if parts[0] != "onnxprune":
                continue
            private = next((i for i, p in enumerate(parts) if _is_private(p)), None)
            if private is None:
                continue
            owner = ".".join(parts[:private])  # the package the private part belongs to
            if not _same_package(importer, owner):
                found.append(f"{path.relative_to(SOURCE.parent)}: {name}")
    return found


def test_no_private_module_is_imported_from_another_package() -> None:
    sources = sorted(p for p in SOURCE.rglob("*.py") if "_proto" not in p.parts)
    assert len(sources) > 50
    assert [hit for path in sources for hit in _private_imports(path)] == []


def test_the_private_import_check_sees_one(tmp_path: Path) -> None:
    offender = SOURCE / "cli" / "_example_offender.py"
    assert not offender.exists()
    try:
        offender.write_text("from onnxprune.graph._private import helper\n")
        assert _private_imports(offender) == [
            "onnxprune/cli/_example_offender.py: onnxprune.graph._private.helper"
        ]
    finally:
        offender.unlink()


@pytest.mark.slow
def test_core_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import onnxprune\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
