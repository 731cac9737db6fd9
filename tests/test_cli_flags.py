"""One name per flag across commands; old spellings still work, say so on stderr, hide from help."""

from __future__ import annotations

import argparse
import re

import pytest

from onnxprune.cli import _serve, main
from onnxprune.cli._aliases import RENAMED
from onnxprune.errors import InvalidOptionError
from onnxprune.service import load_config

COMMANDS = (
    ("analyze",),
    ("prune",),
    ("compact",),
    ("validate",),
    ("sweep",),
    ("batch",),
    ("report",),
    ("serve",),
    ("remote", "analyze"),
    ("remote", "prune"),
    ("remote", "compact"),
    ("remote", "validate"),
    ("remote", "methods"),
)

SHARED = {
    "--jobs": ("sweep", "batch", "serve"),
    "--max-bytes": ("analyze", "prune", "compact", "batch", "serve"),
    "--memory-limit SIZE": ("batch", "serve"),
}
"""Each concept's one name, and the commands that take it."""


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_shows_only_the_new_names(capsys):
    texts = {command: _help(capsys, *command) for command in COMMANDS}
    for command, text in texts.items():
        flags = set(re.findall(r"--[a-z][a-z-]*", text))
        assert not flags & set(RENAMED), command
    for flag, commands in SHARED.items():
        for command in commands:
            assert flag in texts[(command,)], (flag, command)


def _serve_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _serve.add(parser.add_subparsers())
    return parser.parse_args(["serve", *flags])


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("old", "new", "field", "value"),
    [
        (["--workers", "3"], ["--jobs", "3"], "jobs", 3),
        (["--max-model-bytes", "1000"], ["--max-bytes", "1000"], "max_bytes", 1000),
        (["--worker-memory-mb", "512"], ["--memory-limit", "512M"], "memory_limit", 512 * MIB),
        (["--worker-memory-mb", "0"], ["--memory-limit", "0"], "memory_limit", 0),
    ],
)
def test_an_old_serve_flag_warns_and_gives_the_same_config(capsys, old, new, field, value):
    with_old = _serve.server_config(_serve_args(*old))
    assert capsys.readouterr().err == f"warning: {old[0]} is deprecated; use {RENAMED[old[0]]}\n"
    with_new = _serve.server_config(_serve_args(*new))
    assert capsys.readouterr().err == ""
    assert getattr(with_new, field) == value
    assert with_old == with_new


def test_memory_limit_takes_sizes_and_refuses_nonsense():
    sizes = {"4G": 4 * 1024 * MIB, "1.5GiB": 3 * 512 * MIB, "1048576": MIB, "none": 0}
    for text, expected in sizes.items():
        assert _serve.server_config(_serve_args("--memory-limit", text)).memory_limit == expected
    with pytest.raises(InvalidOptionError, match="must look like 512M, 4G or a byte count"):
        _serve.server_config(_serve_args("--memory-limit", "lots"))


def test_load_config_takes_the_old_setting_names_with_a_warning():
    for old, new, value in (
        ("workers", "jobs", 3),
        ("max_model_bytes", "max_bytes", 1000),
        ("worker_memory", "memory_limit", 512 * MIB),
    ):
        with pytest.warns(DeprecationWarning, match=f"^{old} is deprecated; use {new}$"):
            config = load_config(**{old: value})
        assert getattr(config, new) == value
        assert config == load_config(**{new: value})
        same = f"{old} and {new} are the same setting"
        with pytest.warns(DeprecationWarning), pytest.raises(InvalidOptionError, match=same):
            load_config(**{old: value, new: value})
