"""A ``Document`` as one self-contained HTML page: inline CSS, plots as base64 PNG data URIs.

Nothing is fetched: no external CSS, script, font or URL, and a Content-Security-Policy that
forbids any load but ``data:`` images, so the file reads the same offline, attached to a ticket
or opened years later. Every report string goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import struct
from collections.abc import Mapping

from onnxprune.render.build import build_document
from onnxprune.render.document import BarPlot, Block, Document, LinePlot, Paragraph, Table, Verdict
from onnxprune.render.plots import render_png

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .6rem; text-align: left; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
.verdict { border-radius: 6px; padding: .6rem 1rem; margin: .5rem 0 1rem; }
.verdict.pass { background: #e8f5e9; color: #1b5e20; border: 1px solid #a5d6a7; }
.verdict.fail { background: #ffebee; color: #8e1b1b; border: 1px solid #ef9a9a; }
.verdict ul { margin: .3rem 0 0; }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88rem; }
footer { color: #777; font-size: .8rem; margin-top: 3rem; }
"""


def render_html(data: Mapping) -> str:
    """Render a report JSON as a self-contained HTML page with its plots embedded.

    Args:
        data: the parsed JSON of a report (sparsity report, validation result, sweep, combined).

    Returns:
        The page; ASCII only (other characters are written as character references).

    Raises:
        InvalidOptionError: the JSON is not a known report.

    Example:
        >>> page = render_html({"kind": "sweep", "model": "m.onnx", "dense": None, "runs": []})
        >>> "<h1>Sparsity sweep: m.onnx</h1>" in page
        True
    """
    return write_html(build_document(data))


def write_html(document: Document) -> str:
    """The document as an HTML page."""
    body = [f"<h1>{_e(document.title)}</h1>"]
    for section in document.sections:
        body.append(f"<section>\n<h2>{_e(section.title)}</h2>")
        body += [_block(block) for block in section.blocks]
        body.append("</section>")
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(document.title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "<footer>Rendered by onnxprune from the report JSON, the source of truth.</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _block(block: Block) -> str:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Paragraph):
        return f"<p>{_e(block.text)}</p>"
    if isinstance(block, Verdict):
        state, word = ("pass", "passed") if block.passed else ("fail", "FAILED")
        items = "".join(f"<li>{_e(d)}</li>" for d in block.details)
        details = f"<ul>{items}</ul>" if items else ""
        return f'<div class="verdict {state}"><strong>Gate {word}</strong>{details}</div>'
    return _figure(block)


def _table(table: Table) -> str:
    def cells(tag: str, row: tuple[str, ...]) -> str:
        return "".join(
            f'<{tag} class="num">{_e(c)}</{tag}>' if num else f"<{tag}>{_e(c)}</{tag}>"
            for c, num in zip(row, table.numeric, strict=True)
        )

    head = f"<thead><tr>{cells('th', table.header)}</tr></thead>"
    rows = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in table.rows)
    return f'<div class="scroll"><table>{head}\n<tbody>\n{rows}\n</tbody></table></div>'


def _figure(plot: BarPlot | LinePlot) -> str:
    png = render_png(plot)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk's first fields
    data = base64.b64encode(png).decode("ascii")
    caption = f"<figcaption>{_e(plot.caption)}</figcaption>" if plot.caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(plot.title)}" '
        f'width="{width}" height="{height}">{caption}</figure>'
    )
