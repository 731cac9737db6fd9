"""Name-keyed registries that refuse duplicates and are complete whenever they are read.

Every extension point of onnxprune (op families, structured handlers, scores, allocations,
structured criteria) is a ``Registry``: entries are added by a decorator in the module that
defines them, and the registry names those modules. The first read (a lookup, ``in``, a listing,
``len``) imports them, so ``from onnxprune.pruners.registry import CRITERIA`` lists every
criterion although nothing else was imported, and ``import onnxprune`` loads none of the entry
modules (some of them pull in heavy dependencies). A name registered twice is an error at
registration: an import must never silently replace an entry.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")


class Registry(Mapping[str, V], Generic[V]):
    """A read-only mapping from names to entries, filled by ``add`` and loaded on first read.

    Args:
        kind: what an entry is, for messages (``"score"``, ``"op type"``).
        modules: the modules whose import adds every entry, imported on the first read.

    Example:
        >>> colours = Registry("colour", ())
        >>> colours.add("red", 0xFF0000)
        >>> sorted(colours), colours["red"]
        (['red'], 16711680)
        >>> colours.add("red", 0xEE0000)
        Traceback (most recent call last):
        ...
        ValueError: colour 'red' registered twice
    """

    def __init__(self, kind: str, modules: tuple[str, ...]) -> None:
        self.kind = kind
        self._modules = modules
        self._entries: dict[str, V] = {}
        self._complete = not modules
        self._loading = False
        self._lock = threading.RLock()

    def add(self, name: str, entry: V) -> None:
        """Register ``entry`` under ``name``.

        Raises:
            ValueError: ``name`` is registered already.
        """
        with self._lock:
            self.check_new(name)
            self._entries[name] = entry

    def check_new(self, name: str) -> None:
        """Raise ``ValueError`` if ``name`` is registered already (without loading the modules).

        A decorator registering one entry under several names checks them all before adding
        any, so a refused registration leaves the registry as it was.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")

    def _loaded(self) -> dict[str, V]:
        """The entries, after importing the modules that register them (once).

        A read from inside one of those imports (the same thread) sees the entries so far;
        another thread waits until loading is done.
        """
        if not self._complete:
            with self._lock:
                if not self._complete and not self._loading:
                    self._loading = True
                    try:
                        for module in self._modules:
                            importlib.import_module(module)
                        self._complete = True
                    finally:
                        self._loading = False
        return self._entries

    def __getitem__(self, name: str) -> V:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._loaded())})"
