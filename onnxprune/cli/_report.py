"""``onnxprune report``: a report JSON rendered as Markdown and/or one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxprune.cli._common import add_debug, out
from onnxprune.errors import InvalidOptionError


def add(sub: argparse._SubParsersAction) -> None:
    """The ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="render a report JSON as Markdown and/or one self-contained HTML page with plots",
        description=(
            "Render any JSON that onnxprune writes (analyze --json, prune --report-out with or "
            "without --structured or --compact, compact --report-out, validate --report-out, "
            "sweep.json, batch.json, sensitivity.json, or {report, validation}) as Markdown "
            "tables and/or one HTML page with the plots embedded (no external files or URLs). The "
            "JSON stays the source of truth; outputs are written atomically."
        ),
    )
    p.add_argument("report", metavar="REPORT.json", help="the report JSON (never overwritten)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML page")
    p.add_argument("--markdown", metavar="OUT.md", help="write Markdown")
    add_debug(p)
    p.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    # Imported here, as each command imports its library code: rendering loads matplotlib.
    from onnxprune.model import write_text_atomic
    from onnxprune.render import load_report, render_html, render_markdown

    outputs = [
        (Path(target), render)
        for target, render in ((args.html, render_html), (args.markdown, render_markdown))
        if target
    ]
    if not outputs:
        raise InvalidOptionError(
            "nothing to write: give --html OUT.html, --markdown OUT.md or both"
        )
    source = Path(args.report).resolve()
    if any(path.resolve() == source for path, _ in outputs):
        raise InvalidOptionError("an output would overwrite the report JSON; choose another path")
    data = load_report(source)
    rendered = [(path, render(data)) for path, render in outputs]  # all rendered before writing
    for path, text in rendered:
        write_text_atomic(path, text)
        out(f"wrote {path}")
    return 0
