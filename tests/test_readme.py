"""The README's examples work as written: its Python blocks run, its command lines parse.

Python: every ```python block of README.md is executed as a reader would paste it, **each block
in its own fresh namespace and its own fresh working directory**, so a block never leans on a
name or a file another block made: it has its own imports. The working directory holds the files
the README's examples name (see ``workdir``): ``model.onnx`` (the bundled digits MLP),
``pruned.onnx`` (it pruned to 95%), ``eval.npz`` (the digits test split), ``models/`` (a folder
of two models) and ``mynet.py``, which stands for the reader's own PyTorch code (the module that
was exported to ``model.onnx``, and data loaders). A block that raises fails its test.

Shell: every ``onnxprune ...`` line of the README's indented code blocks (with its ``\\``
continuations) is parsed by the real parser, ``onnxprune.cli._main._parser()``; nothing runs. A flag
that does not exist, a missing required argument or a bad choice fails. And every ``--flag``
the prose names in backticks must be a flag of some ``onnxprune`` command.

YAML: the batch manifest shown is read by ``onnxprune.batch.collect_items`` as described.

Layout: the README's "Layout" section lists every module and subpackage of ``onnxprune/``, and
every path it lists exists.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from onnxprune.batch import collect_items
from onnxprune.cli._main import _parser
from onnxprune.options import PruneOptions, check_prune
from onnxprune.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MODELS = ROOT / "models"

MYNET = '''\
"""The reader's own code in the README's PyTorch example: the module exported to model.onnx."""
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


torch.manual_seed(0)
model = Mlp()
model.load_state_dict(
    {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
     for t in onnx.load("model.onnx").graph.initializer}
)
with np.load("eval.npz") as data:
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["labels"]).long()
train_loader = DataLoader(TensorDataset(x[:300], y[:300]), batch_size=32, shuffle=True)
val_loader = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=64)
'''


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every ```python fenced block."""
    blocks = re.finditer(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in blocks]


def command_lines(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, argv)`` of every ``onnxprune ...`` line of the indented code blocks.

    Fenced blocks are left out; ``\\`` continuations are joined; the command ends at a shell
    operator (``>``, ``|``, ``&&``) or a comment.
    """
    lines = re.sub(r"^```.*?^```$", lambda m: "\n" * m.group().count("\n"), text, flags=re.M | re.S)
    lines = lines.split("\n")
    found, i = [], 0
    while i < len(lines):
        line, start = lines[i], i + 1
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if line.startswith("    onnxprune "):
            words = shlex.split(line, comments=True)
            ends = [n for n, word in enumerate(words) if word in {">", "|", "&&", ";"}]
            found.append((start, words[1 : ends[0] if ends else None]))
    return found


def parser_flags(parser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands, at any depth."""
    flags = set()
    for action in parser._actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


TEXT = README.read_text()
BLOCKS = python_blocks(TEXT)
COMMANDS = command_lines(TEXT)


def test_the_readme_has_examples():
    # The extractors find what is there (a broken regex would make the tests below vacuous).
    assert len(BLOCKS) >= 5
    assert len(COMMANDS) >= 30
    assert {argv[0] for _, argv in COMMANDS} >= {
        "analyze", "prune", "compact", "validate", "sweep", "report", "batch", "serve", "remote"
    }  # fmt: skip


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder with the files the README's examples name, as the working directory."""
    shutil.copy(MODELS / "mlp_digits.onnx", tmp_path / "model.onnx")
    shutil.copy(MODELS / "mlp_digits_pruned95.onnx", tmp_path / "pruned.onnx")
    shutil.copy(MODELS / "digits_test.npz", tmp_path / "eval.npz")
    (tmp_path / "models").mkdir()
    shutil.copy(MODELS / "mlp_digits.onnx", tmp_path / "models" / "mlp.onnx")
    shutil.copy(MODELS / "cnn_digits.onnx", tmp_path / "models" / "cnn.onnx")
    (tmp_path / "mynet.py").write_text(MYNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mynet", None)


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_python_block_runs(line, code, workdir):
    if "onnxprune.torch" in code:
        pytest.importorskip("torch")  # the torch extra: the only optional part of the README
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - the README's own code
    # Every block shows something: it prints, or it leaves the results it names.
    assert out.getvalue() or len(namespace) > 2


@pytest.mark.parametrize(("line", "argv"), COMMANDS, ids=[f"README.md:{n}" for n, _ in COMMANDS])
def test_command_line_parses(line, argv):
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            args = _parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"README.md:{line}: onnxprune {shlex.join(argv)}\n{errors.getvalue()}")
    assert args.command == argv[0]


def test_flags_named_in_the_prose_exist():
    flags = parser_flags(_parser())
    spans = re.findall(r"`([^`\n]+)`", TEXT)
    ours = [span for span in spans if not span.startswith(("docker ", "podman "))]
    named = {flag for span in ours for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", span)}
    assert len(named) >= 40
    unknown = sorted(named - flags)
    assert not unknown, f"README names flags no onnxprune command has: {unknown}"


def test_layout_matches_the_tree():
    section = TEXT.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^    (\S+)", section, flags=re.MULTILINE)
    missing = [path for path in listed if not (ROOT / path).exists()]
    assert not missing, f"the Layout section lists paths that do not exist: {missing}"
    package = ROOT / "onnxprune"
    modules = {f"onnxprune/{p.name}" for p in package.glob("*.py") if not p.name.startswith("_")}
    packages = {f"onnxprune/{p.parent.name}/" for p in package.glob("*/__init__.py")}
    unlisted = sorted((modules | packages | {"onnxprune/__init__.py"}) - set(listed))
    assert not unlisted, f"the Layout section does not list {unlisted}"


YAML_BLOCKS = re.findall(r"^```yaml\n(.*?)^```$", TEXT, flags=re.MULTILINE | re.DOTALL)


def test_yaml_recipe_is_read_as_documented(tmp_path):
    # The README's recipe, with the files it names, read by onnxprune run's reader.
    (block,) = (b for b in YAML_BLOCKS if "prune:" in b)
    (tmp_path / "recipe.yaml").write_text(block)
    for name in re.findall(r"\b(\w+\.(?:onnx|npz))\b", block):
        (tmp_path / name).write_bytes(b"")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.model == tmp_path / "model.onnx"
    assert recipe.out == tmp_path / "pruned"
    assert (recipe.options.structured, recipe.options.sparsity) == ("l1", 0.3)
    assert recipe.inputs == {"calibration": tmp_path / "calib.npz"}
    assert recipe.data == tmp_path / "eval.npz"
    assert recipe.validate == {"max_accuracy_drop": 0.01, "limits": {"min_cosine": 0.99}}
    assert recipe.compact
    assert recipe.report


def test_yaml_manifest_is_read_as_documented(tmp_path):
    # The README's manifest, with the models and data it names, read by the batch's reader:
    # defaults apply under each model's own options, and those are PruneOptions' fields.
    (block,) = (b for b in YAML_BLOCKS if "models:" in b)
    (tmp_path / "manifest.yaml").write_text(block)
    paths = re.findall(r"(?:path|data): (\S+)", block)
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    items = collect_items(tmp_path / "manifest.yaml", tmp_path / "out", PruneOptions())
    assert [item.name for item in items] == [p for p in paths if p.endswith(".onnx")]
    resnet, bert, mobilenet = (item.options for item in items)
    assert (resnet.sparsity, resnet.allocation) == (0.9, "erk")
    assert (bert.sparsity, bert.allocation, bert.min_threshold) == (0.5, "global", 0.001)
    assert str(items[1].output) == "bert/pruned.onnx"
    assert items[1].memory_limit == 16 * 2**30
    assert (mobilenet.structured, mobilenet.sparsity, mobilenet.round_to) == ("l1", 0.3, 8)
    check_prune(bert)
    check_prune(mobilenet)
