"""What a batch prunes: every ``*.onnx`` under a directory, or the models a manifest lists.

A manifest is YAML or JSON, either a list of entries or ``{"defaults": {...}, "models": [...]}``.
An entry is a path, or a mapping with ``path`` (required; relative to the manifest's folder),
``data`` (an evaluation ``.npz``), ``options`` (prune options, see ``options.py``), ``output``
(a path under the output folder), ``memory_limit`` (e.g. ``"8G"``), ``sensitivity`` (the
``sensitivity.json`` of ``onnxprune sensitivity`` on that model, for ``allocation:
sensitivity``), ``metric`` (a user metric ``module:function`` measured on its data; a
``file.py:function`` is relative to the manifest's folder) and ``class_axis`` (the axis of the
classes in its outputs: accuracy and agreement per token or pixel, as ``validate --class-axis``
measures them; ``null``: per sample, whatever the batch's). For example::

    defaults: {sparsity: 0.9, allocation: erk}
    models:
      - path: zoo/resnet.onnx
        data: evals/resnet.npz
      - path: zoo/bert.onnx
        options: {sparsity: 0.5, allocation: global}
        memory_limit: 16G
      - path: zoo/gpt2.onnx
        data: evals/gpt2-tokens.npz
        class_axis: -1

Outputs keep the models' layout: ``zoo/resnet.onnx`` becomes ``OUT/zoo/resnet.onnx``. With
``data_dir``, a model without ``data`` is evaluated on ``DATA_DIR/<same relative path>.npz``
when that file exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onnxprune.documents import read_document
from onnxprune.errors import InvalidOptionError, OnnxpruneError
from onnxprune.metrics import check_class_axis
from onnxprune.options import PruneOptions, check_prune, merge_options, reads_calibration
from onnxprune.outputs import PrunedFiles, model_files, names, refuse_clashes
from onnxprune.sizes import parse_size

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_ENTRY_KEYS = (
    *("path", "data", "options", "output", "memory_limit", "sensitivity", "metric"),
    "class_axis",
)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One model of a batch.

    Attributes:
        model: the model file.
        name: its path relative to the batch's root, POSIX style (what results show).
        output: the pruned model's path relative to the output folder.
        data: the evaluation ``.npz``, if any.
        options: the merged prune options.
        memory_limit: bytes of address space its worker may add (``None``: no limit), when
            the manifest sets one (``own_limit``); else the batch's default applies.
        sensitivity: the curves of ``onnxprune sensitivity``, for ``allocation: sensitivity``.
        metric: its own user metric (``module:function``), else the batch's applies.
        class_axis: the class axis of its outputs (accuracy and agreement per position), when
            the manifest sets one (``own_axis``); else the batch's applies.
    """

    model: Path
    name: str
    output: PurePosixPath
    data: Path | None
    options: PruneOptions
    memory_limit: int | None = None
    own_limit: bool = False
    sensitivity: Path | None = None
    metric: str | None = None
    class_axis: int | None = None
    own_axis: bool = False

    def limit(self, default: int | None) -> int | None:
        """The memory limit for this item: its own, else ``default``."""
        return self.memory_limit if self.own_limit else default


def collect_items(
    source: str | Path,
    out: str | Path,
    options: PruneOptions,
    data_dir: str | Path | None = None,
    written: Sequence[str] = (),
) -> list[BatchItem]:
    """The models of a batch, from a directory or a manifest file.

    Args:
        source: a directory (every ``*.onnx`` below it, hidden folders and ``out`` left out)
            or a ``.yaml``/``.yml``/``.json`` manifest.
        out: the output folder.
        options: options for every model (a manifest's may override them).
        data_dir: where evaluation data is looked up by relative path.
        written: the files the batch writes in ``out`` itself (its summaries).

    Raises:
        InvalidOptionError: a missing source, a bad manifest, options a prune refuses (a
            structured model given an allocation...), two models with the same output, an
            output folder that is a file, an output that would replace an input (a model, its
            external data, evaluation data, the manifest).
    """
    source, out = Path(source), Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidOptionError(f"--out {out} is a file, not a folder")
    data_root = None if data_dir is None else Path(data_dir)
    if data_root is not None and not data_root.is_dir():
        raise InvalidOptionError(f"--data-dir {data_root} is not a directory")
    if source.is_dir():
        items = _from_directory(source, out, options, data_root)
    elif source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        items = _from_manifest(source, options, data_root)
    elif source.is_file():
        raise InvalidOptionError(
            f"{source.name} is neither a directory nor a manifest ({', '.join(MANIFEST_SUFFIXES)})"
        )
    else:
        raise InvalidOptionError(f"batch source not found: {source}")
    seen: dict[PurePosixPath, str] = {}
    for item in items:
        if item.output in seen:
            raise InvalidOptionError(
                f"{seen[item.output]} and {item.name} would both write {item.output}; "
                "give one an 'output' in the manifest"
            )
        seen[item.output] = item.name
    for item in items:  # combinations a prune refuses fail here, before any model runs
        _check_options(item)
    _refuse_clashes(items, out, source if source.is_file() else None, written)
    return items


def _check_options(item: BatchItem) -> None:
    try:
        inputs = ["sensitivity"] if item.sensitivity else []
        if item.data is not None and reads_calibration(item.options):
            inputs.append("calibration")
        check_prune(item.options, inputs=inputs)
    except InvalidOptionError as e:
        raise InvalidOptionError(f"{item.name}: {e}") from None


MARKER_SUFFIX = ".batch.json"
"""``<output stem>.batch.json``: a model's result and fingerprint, written last."""


def outputs_of(item: BatchItem, out: Path) -> list[Path]:
    """The files a model of the batch writes: pruned model, masks, report, marker."""
    files = PrunedFiles.beside(out / item.output)
    return [files.model, files.masks, files.report, files.model.with_suffix(MARKER_SUFFIX)]


def _refuse_clashes(
    items: Sequence[BatchItem], out: Path, manifest: Path | None, written: Sequence[str]
) -> None:
    """Refuse a batch whose outputs would replace one of its inputs, before any model runs."""
    outputs = [out / name for name in written]
    outputs += [path for item in items for path in outputs_of(item, out)]
    inputs = {} if manifest is None else dict.fromkeys(names(manifest), f"the manifest {manifest}")
    for item in items:
        what = f"the model {item.name}"
        try:
            inputs.update(model_files(item.model, what, outputs))
        except OnnxpruneError:  # unreadable: that model fails on its own; keep its file safe
            inputs.update(dict.fromkeys(names(item.model), what))
        for kind, path in (("data", item.data), ("sensitivity file", item.sensitivity)):
            if path is not None:
                inputs.update(dict.fromkeys(names(path), f"the {kind} {path}"))
    refuse_clashes(outputs, inputs)


def _from_directory(
    root: Path, out: Path, options: PruneOptions, data_root: Path | None
) -> list[BatchItem]:
    out_dir = out.resolve()
    items = []
    for path in sorted(root.rglob("*.onnx")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(out_dir):  # our own outputs, when OUT is inside DIR
            continue
        name = PurePosixPath(rel.as_posix())
        items.append(BatchItem(path, str(name), name, _data_for(data_root, name), options))
    return items


def _from_manifest(path: Path, options: PruneOptions, data_root: Path | None) -> list[BatchItem]:
    document = read_document(path, "manifest")
    entries = document
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - {"defaults", "models"})
        if unknown or "models" not in document:
            raise InvalidOptionError(
                f"manifest {path.name}: expected a list of models or a mapping with 'models' "
                f"(and optional 'defaults'); got keys {', '.join(map(str, document))}"
            )
        options = merge_options(options, document.get("defaults") or {}, f"{path.name} defaults")
        entries = document["models"]
    if not isinstance(entries, list):
        raise InvalidOptionError(f"manifest {path.name}: 'models' must be a list")
    return [
        _entry(path.parent, entry, options, data_root, f"{path.name} models[{i}]")
        for i, entry in enumerate(entries)
    ]


def _entry(
    base: Path, entry: object, options: PruneOptions, data_root: Path | None, where: str
) -> BatchItem:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        raise InvalidOptionError(f"{where}: an entry needs a 'path' (a string)")
    unknown = sorted(set(map(str, entry)) - set(_ENTRY_KEYS))
    if unknown:
        raise InvalidOptionError(
            f"{where}: unknown key {unknown[0]!r}; an entry has {', '.join(_ENTRY_KEYS)}"
        )
    model = base / entry["path"]
    try:
        name = PurePosixPath(model.resolve().relative_to(base.resolve()).as_posix())
    except ValueError:  # outside the manifest's folder: its file name
        name = PurePosixPath(model.name)
    output = _output(entry.get("output"), name, where)
    data, sensitivity = entry.get("data"), entry.get("sensitivity")
    for key, value in (("data", data), ("sensitivity", sensitivity)):
        if value is not None and not isinstance(value, str):
            raise InvalidOptionError(f"{where}: {key!r} must be a path")
    merged = merge_options(options, entry.get("options") or {}, where)
    item = BatchItem(
        model,
        str(name),
        output,
        base / data if data else _data_for(data_root, name),
        merged,
        sensitivity=base / sensitivity if sensitivity else None,
    )
    if "memory_limit" in entry:
        limit = entry["memory_limit"]
        if not isinstance(limit, str | int) or isinstance(limit, bool):
            raise InvalidOptionError(f"{where}: memory_limit must look like 4G, got {limit!r}")
        item = dataclasses.replace(item, memory_limit=parse_size(limit), own_limit=True)
    if "metric" in entry:
        item = dataclasses.replace(item, metric=_metric(base, entry["metric"], item, where))
    if "class_axis" in entry:
        item = _class_axis(entry["class_axis"], item, where)
    return item


def _class_axis(axis: object, item: BatchItem, where: str) -> BatchItem:
    """The item with an entry's own ``class_axis`` (``None`` too: per sample, not the batch's)."""
    if axis is not None and item.data is None:
        raise InvalidOptionError(f"{where}: class_axis is read on data; give the entry 'data'")
    try:
        check_class_axis(axis)
    except InvalidOptionError as e:
        raise InvalidOptionError(f"{where}: {e}") from None
    return dataclasses.replace(item, class_axis=axis, own_axis=True)


def _metric(base: Path, given: object, item: BatchItem, where: str) -> str:
    """An entry's ``metric``: ``module:function``, a ``.py`` file's made absolute."""
    if not isinstance(given, str) or ":" not in given:
        raise InvalidOptionError(f"{where}: metric must look like module:function, got {given!r}")
    if item.data is None:
        raise InvalidOptionError(f"{where}: metric is measured on data; give the entry 'data'")
    module, _, function = given.rpartition(":")
    return f"{base / module}:{function}" if module.endswith(".py") else given


def _output(given: object, name: PurePosixPath, where: str) -> PurePosixPath:
    if given is None:
        return name
    output = PurePosixPath(str(given).replace("\\", "/"))
    if not isinstance(given, str) or output.is_absolute() or ".." in output.parts:
        raise InvalidOptionError(f"{where}: output {given!r} must be a relative path inside OUT")
    if output.suffix != ".onnx":
        raise InvalidOptionError(f"{where}: output {given!r} must end in .onnx")
    return output


def _data_for(data_root: Path | None, name: PurePosixPath) -> Path | None:
    if data_root is None:
        return None
    candidate = data_root / name.with_suffix(".npz")
    return candidate if candidate.is_file() else None
