"""The line every benchmark prints per target, which ``run_all.py`` collects into one table.

    RESULT <figure> | <target> | <measured> | ok

(``MISSED`` instead of ``ok`` when the target was missed). Fields never hold ``|``.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "RESULT "


@dataclass(frozen=True)
class Result:
    """One target of one benchmark: what was measured, against which bar, and whether it held."""

    figure: str
    target: str
    measured: str
    ok: bool

    def line(self) -> str:
        """The machine-readable line, ``RESULT figure | target | measured | ok``."""
        fields = (self.figure, self.target, self.measured, "ok" if self.ok else "MISSED")
        return PREFIX + " | ".join(f.replace("|", "/") for f in fields)

    @staticmethod
    def parse(line: str) -> Result | None:
        """The result a printed line holds, or None for any other line."""
        if not line.startswith(PREFIX):
            return None
        fields = [f.strip() for f in line[len(PREFIX) :].split("|")]
        if len(fields) != 4 or fields[3] not in ("ok", "MISSED"):
            return None
        return Result(fields[0], fields[1], fields[2], fields[3] == "ok")


def print_result(figure: str, target: str, measured: str, ok: bool) -> bool:
    """Print the result line of one target; returns ``ok`` so callers can fold it in."""
    print(Result(figure, target, measured, ok).line())
    return ok
