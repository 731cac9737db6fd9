r"""Text for a terminal: names from a model shown as escapes, never as terminal commands.

Weight, node and input names come from the model, paths from the user; either can hold an
ANSI or OSC escape sequence (``\x1b]52;...`` rewrites the clipboard, ``\x1b[2J`` clears the
screen), a carriage return that overwrites what came before, or a newline that forges a line of
output. Every text output (tables, warnings, error lines, batch and sweep summaries) passes
through ``printable``; JSON needs nothing more, since ``json.dumps`` escapes them itself.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL and C1 controls (ESC, CSI \x9b, NEL \x85, ...)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional overrides and marks
    "\u2028\u2029]"  # line and paragraph separators (line breaks to str.splitlines)
)


def printable(text: str, *, keep: str = "") -> str:
    r"""``text`` with every control character shown as its escape: ESC as ``\x1b``.

    Args:
        text: any string; ordinary characters, non-ASCII letters included, are kept.
        keep: control characters to leave alone (``"\n"`` for multi-line output).

    Returns:
        The text, safe to print on a terminal.

    Example:
        >>> print(printable("conv\x1b[31m.weight\n"))
        conv\x1b[31m.weight\n
        >>> printable("a\nb", keep="\n")
        'a\nb'
    """

    def escape(match: re.Match) -> str:
        char = match.group()
        if char in keep:
            return char
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _UNSAFE.sub(escape, text)


def points(fraction: float) -> str:
    """A difference of accuracies in percentage points, as accuracies print in percent.

    Example:
        >>> points(0.0123)
        '1.23 points'
    """
    return f"{fraction * 100:.2f} points"


def display_name(name: str, label: str | None = None) -> str:
    """How lines name a weight: ``label (name)`` where it has a readable label, else ``name``.

    Example:
        >>> display_name("val_37", "encoder.layer.0.attention.self.query")
        'encoder.layer.0.attention.self.query (val_37)'
        >>> display_name("fc1.weight"), display_name("w", "w")
        ('fc1.weight', 'w')
    """
    return f"{label} ({name})" if label and label != name else name
