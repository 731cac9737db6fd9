"""Package exports that load on first use, so importing a package costs only what is used.

``import onnxprune`` and ``onnxprune --help`` must not pay for ONNX, ONNX Runtime, SciPy or gRPC:
a package's ``__init__`` names its exports and the module each comes from, and
``attach`` returns the module-level ``__getattr__`` (PEP 562) that imports a module the first
time one of its names is read, as the Scientific Python ``lazy_loader`` (SPEC 1) does.
``from package import name``, ``from package import *`` and ``dir(package)`` work as with eager
imports.

Example:
    >>> __getattr__, __dir__, __all__ = attach("onnxprune", {"onnxprune.errors": ["ShapeError"]})
    >>> __all__
    ['ShapeError']
    >>> __getattr__("ShapeError").__name__
    'ShapeError'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` of a package whose exports load on first use.

    Args:
        package: the package's ``__name__``.
        exports: the names each module exports, ``{"onnxprune.sparsity": ["analyze"]}``.

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign in the package's ``__init__``; ``__all__``
        is every exported name, sorted as ruff sorts ``__all__``.

    Raises:
        ValueError: a name is exported from two modules.
    """
    origin: dict[str, str] = {}
    for module, exported in exports.items():
        for name in exported:
            if origin.setdefault(name, module) != module:
                raise ValueError(f"{package}: {name!r} exported from {origin[name]} and {module}")
    names = sorted(origin, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))

    def load(name: str) -> Any:
        if name not in origin:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(origin[name]), name)
        setattr(sys.modules[package], name, value)  # later reads skip __getattr__
        return value

    def listing() -> list[str]:
        return sorted({*vars(sys.modules[package]), *origin})

    return load, listing, names
