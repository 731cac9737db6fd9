"""Old spellings of renamed flags: still accepted, hidden from ``--help``, with a note on stderr.

One name per concept across commands: ``--jobs N`` (processes at once), ``--max-bytes N`` (the
largest model accepted), ``--memory-limit SIZE`` (a worker's memory, ``512M``, ``4G`` or bytes).
``serve`` used to say ``--workers``, ``--max-model-bytes`` and ``--worker-memory-mb``; those
still work, as ``RENAMED`` lists them, and say ``warning: --workers is deprecated; use --jobs``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from onnxprune.cli._common import err

RENAMED = {
    "--workers": "--jobs",
    "--max-model-bytes": "--max-bytes",
    "--worker-memory-mb": "--memory-limit",
}
"""Old flag -> its name now."""


class _Renamed(argparse.Action):
    """An old spelling: stores (converted) into the new flag's destination after a warning."""

    def __init__(
        self,
        option_strings: list[str],
        dest: str,
        *,
        convert: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.convert = convert

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        old = self.option_strings[0]
        err(f"warning: {old} is deprecated; use {RENAMED[old]}")
        setattr(namespace, self.dest, values if self.convert is None else self.convert(values))


def add_renamed(
    p: argparse.ArgumentParser,
    old: str,
    *,
    convert: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> None:
    """Accept ``old`` as a hidden spelling of ``RENAMED[old]``, which ``p`` already has.

    Args:
        p: the command's parser.
        old: the old flag, a key of ``RENAMED``.
        convert: turns the old flag's value into the new one's (e.g. MiB into bytes).
        **kwargs: ``add_argument`` keywords of the old flag (``type``).
    """
    dest = RENAMED[old].lstrip("-").replace("-", "_")
    p.add_argument(
        old, dest=dest, action=_Renamed, convert=convert, default=argparse.SUPPRESS, **kwargs
    )
