"""A ``Document`` as GitHub-flavoured Markdown: headings, pipe tables, the gate verdict.

Plots are HTML-only (``html.py``); Markdown keeps every number of the tables. Report text is
backslash-escaped, so names like ``a|b`` or ``<script>`` stay literal text.
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxprune.render.build import build_document
from onnxprune.render.document import Block, Document, Paragraph, Table, Verdict
from onnxprune.text import printable

_SPECIAL = frozenset("\\`*_[]<>|~&")


def render_markdown(data: Mapping) -> str:
    """Render any report JSON onnxprune writes (see ``kinds.py``) as Markdown.

    Args:
        data: the parsed JSON of a report.

    Returns:
        The Markdown text, ending with a newline.

    Raises:
        InvalidOptionError: the JSON is not a known report.

    Example:
        >>> text = render_markdown({"kind": "sweep", "model": "m.onnx", "dense": None, "runs": []})
        >>> text.splitlines()[0]
        '# Sparsity sweep: m.onnx'
    """
    return write_markdown(build_document(data))


def write_markdown(document: Document) -> str:
    """The document as Markdown text."""
    out = [f"# {escape(document.title)}", ""]
    for section in document.sections:
        out += [f"## {escape(section.title)}", ""]
        for block in section.blocks:
            lines = _block(block)
            if lines:
                out += [*lines, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def escape(text: str) -> str:
    """Text as literal Markdown: specials backslash-escaped, line breaks made spaces.

    Other control characters show as escapes (``printable``), as on a terminal.
    """
    text = printable(" ".join(text.splitlines()))
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in text)


def _block(block: Block) -> list[str]:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Paragraph):
        return [escape(block.text)]
    if isinstance(block, Verdict):
        verdict = "passed" if block.passed else "FAILED"
        return [f"**Gate: {verdict}**", "", *(f"- {escape(d)}" for d in block.details)]
    return []  # plots are drawn in the HTML page only


def _table(table: Table) -> list[str]:
    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(escape(c) for c in cells) + " |"

    rule = "| " + " | ".join("---:" if n else "---" for n in table.numeric) + " |"
    return [row(table.header), rule, *map(row, table.rows)]
