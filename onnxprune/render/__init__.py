"""Render onnxprune's report JSON (the source of truth) as Markdown or a self-contained HTML page.

``kinds.py`` recognizes the JSON (sparsity report, structured prune, compaction, validation
result, sweep, batch, or a sparsity report with its validation), ``build.py`` (with
``structured.py``) turns it into a ``Document``, and ``markdown.py``, ``html.py`` (with
``plots.py``) write that document. Needs matplotlib, which ``import onnxprune`` does not load.
"""

from onnxprune.render._load import MAX_REPORT_BYTES, load_report
from onnxprune.render.html import render_html
from onnxprune.render.kinds import detect_kind
from onnxprune.render.markdown import render_markdown

__all__ = ["MAX_REPORT_BYTES", "detect_kind", "load_report", "render_html", "render_markdown"]
