"""Reading the YAML or JSON documents users hand us (batch manifests, pipeline recipes) safely.

A document is read whole, so its size is bounded first; YAML aliases and deep nesting are then
bounded too, because whatever reads the document meets every value as often as it is named: a
400-byte "billion laughs" stands for 10^9 values, and a recursive alias (``&a [*a]``) never ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from onnxprune.errors import InvalidOptionError

MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_DOCUMENT_DEPTH = 32
"""Deepest nesting of lists and mappings (a real manifest needs 5, a recipe 3)."""
MAX_DOCUMENT_VALUES = 1_000_000
"""Most values a document may stand for once its YAML aliases are expanded."""


def read_document(path: Path, what: str) -> object:
    """The YAML (or, for ``.json``, JSON) document in ``path``, checked for size and extent.

    Args:
        path: the file.
        what: what the document is, for messages ("manifest", "recipe").

    Raises:
        InvalidOptionError: the file is too large, does not parse, is nested deeper than
            ``MAX_DOCUMENT_DEPTH`` or stands for more than ``MAX_DOCUMENT_VALUES`` values.
    """
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise InvalidOptionError(f"{what} {path.name} is over {MAX_DOCUMENT_BYTES} bytes")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        document = _parse(path, text, what)
    except RecursionError:  # the parsers recurse once per level
        raise InvalidOptionError(_too_deep(path, what)) from None
    _check_extent(path, document, what)
    return document


def _parse(path: Path, text: str, what: str) -> object:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidOptionError(
                f"{what} {path.name} is not valid JSON: {e.msg} at line {e.lineno}"
            ) from None
    import yaml  # only documents need it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "not YAML"
        raise InvalidOptionError(f"{what} {path.name} is not valid YAML: {first}") from None


def _check_extent(path: Path, document: object, what: str) -> None:
    """Refuse a document nested too deep, or standing for too many values (counted as met)."""
    stack, count = [(document, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DOCUMENT_DEPTH:
            raise InvalidOptionError(_too_deep(path, what))
        if count > MAX_DOCUMENT_VALUES:
            raise InvalidOptionError(
                f"{what} {path.name} stands for over {MAX_DOCUMENT_VALUES} values once its "
                "YAML aliases (*name) are expanded; write it out without aliases"
            )
        if isinstance(value, Mapping):
            stack += [(child, depth + 1) for item in value.items() for child in item]
        elif isinstance(value, list):
            stack += [(child, depth + 1) for child in value]


def _too_deep(path: Path, what: str) -> str:
    return f"{what} {path.name} is nested more than {MAX_DOCUMENT_DEPTH} levels deep"
