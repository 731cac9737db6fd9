"""Export a fine-tuned model back to ONNX, shaped like the model it came from, and check the masks.

The export uses the TorchScript exporter (``dynamo=False``: it folds BatchNorm in eval mode and
keeps ``<module>.weight`` names) with the original model's input and output names, symbolic
dimensions and default-domain opset; the IR version is capped at 10, the newest ONNX Runtime
loads. Then the exported weights are mapped back to the parameters (``map_weights``) and
``onnxprune.analyze`` reads their sparsity: every masked entry must be exactly zero.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils import parametrize

from onnxprune.errors import InvalidOptionError
from onnxprune.graph.build import ConnectivityGraph, build_graph
from onnxprune.model import ModelSource, load_model, save_model
from onnxprune.report import SparsityReport
from onnxprune.sparsity import sparsity_report
from onnxprune.torch._layers import (
    default_opset,
    example_arrays,
    graph_inputs,
    graph_outputs,
    onnx_weights,
)
from onnxprune.torch.mapping import map_loaded, torch_layout
from onnxprune.torch.masking import MaskHandle, WeightMask

MAX_IR_VERSION = 10
"""Exported models get at most this IR version (the newest ONNX Runtime 1.x loads)."""


@dataclass(frozen=True, slots=True)
class LayerCheck:
    """Whether one masked parameter is still zero where its mask says so, in the export.

    Attributes:
        parameter: the parameter name.
        onnx_name: the exported weight it maps to (``None``: not found in the export).
        masked: entries the mask removes.
        nonzero: masked entries that are not zero in the export (0 when the mask held).
        direct_sparsity: the exported weight's direct sparsity, from ``analyze``.
    """

    parameter: str
    onnx_name: str | None
    masked: int
    nonzero: int
    direct_sparsity: float | None

    @property
    def held(self) -> bool:
        """Whether the weight was found and every masked entry is zero."""
        return self.onnx_name is not None and self.nonzero == 0

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "parameter": self.parameter,
            "onnx_name": self.onnx_name,
            "masked": self.masked,
            "nonzero": self.nonzero,
            "direct_sparsity": self.direct_sparsity,
            "held": self.held,
        }


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The exported model, its sparsity report, and the check of every mask.

    Attributes:
        path: where the model was written.
        opset: its default-domain opset (the original model's).
        ir_version: its IR version.
        report: ``onnxprune.analyze``'s report of the exported model.
        layers: one check per masked parameter (empty when no masks were given).
    """

    path: Path
    opset: int
    ir_version: int
    report: SparsityReport
    layers: tuple[LayerCheck, ...]

    @property
    def held(self) -> bool:
        """Whether every mask held."""
        return all(layer.held for layer in self.layers)

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "path": str(self.path),
            "opset": self.opset,
            "ir_version": self.ir_version,
            "held": self.held,
            "direct_sparsity": self.report.direct_sparsity,
            "effective_sparsity": self.report.effective_sparsity,
            "layers": [layer.to_dict() for layer in self.layers],
        }


class MaskCheckError(InvalidOptionError):
    """The exported model has nonzero weights where a mask removed them; ``result`` says where.

    An ``InvalidOptionError`` (exit code 2 in the shells): the masks given do not describe the
    model that was exported (taken off with ``remove()``, or changed outside the parametrization).
    """

    def __init__(self, result: ExportResult) -> None:
        bad = [
            f"{c.parameter}: not found in the export"
            if c.onnx_name is None
            else f"{c.parameter} ({c.onnx_name}): {c.nonzero} of {c.masked} masked entries nonzero"
            for c in result.layers
            if not c.held
        ]
        super().__init__("masks did not hold in the exported model: " + "; ".join(bad))
        self.result = result


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    onnx_model: ModelSource,
    *,
    masks: MaskHandle | Mapping[str, torch.Tensor | np.ndarray] | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
    check: bool = True,
) -> ExportResult:
    """Export ``model`` to ``path`` like ``onnx_model``, then check that the masks held.

    Args:
        model: the fine-tuned model. Masks still applied as parametrizations are baked in for
            the export and put back afterwards.
        path: the ``.onnx`` file to write (atomically).
        onnx_model: the model the masks came from: input and output names, symbolic
            dimensions and opset are taken from it.
        masks: a ``MaskHandle`` or boolean masks keyed by parameter name (parameter layout).
        example_inputs: inputs to trace with (default: zeros shaped like ``onnx_model``'s
            inputs, symbolic dimensions set to 1), on the model's device.
        check: raise ``MaskCheckError`` when a mask did not hold (else see ``result.held``).

    Returns:
        An ``ExportResult``.

    Raises:
        MaskCheckError: with ``check``, a masked entry is nonzero or a masked parameter is
            missing from the export.
        InvalidOptionError: no example inputs can be made from ``onnx_model``.
    """
    original = load_model(onnx_model)
    inputs = _example_inputs(model, original, example_inputs)
    with _masks_baked(model):
        proto = _export(model, inputs, original)
        save_model(proto, path)
        graph = build_graph(proto)
        report = sparsity_report(graph)  # what ``onnxprune.analyze`` reports for the file
        wanted = masks.masks if isinstance(masks, MaskHandle) else dict(masks or {})
        checks = _check(model, proto, graph, inputs, wanted, report) if wanted else []
    result = ExportResult(Path(path), default_opset(proto), proto.ir_version, report, tuple(checks))
    if check and not result.held:
        raise MaskCheckError(result)
    return result


@contextmanager
def _masks_baked(model: nn.Module) -> Iterator[None]:
    """Inside: ``model`` with its mask parametrizations baked in; after: masked again.

    Copying the model instead would not do: ``deepcopy`` shares the classes that parametrize
    injects, and removing a parametrization from the copy deletes the property of the original.
    The parameters keep their identity throughout (an optimizer holding them stays valid).
    """
    found = [(m, name, m.parametrizations[name][0].mask) for m, name in _masked_tensors(model)]
    for module, name, _ in found:
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    try:
        yield
    finally:
        for module, name, mask in found:
            parametrize.register_parametrization(module, name, WeightMask(mask))


def _masked_tensors(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, tensor name)`` of every tensor that carries a ``WeightMask``."""
    found = []
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for name, plist in module.parametrizations.items():
            kinds = [isinstance(p, WeightMask) for p in plist]
            if any(kinds) and not all(kinds):
                raise InvalidOptionError(
                    f"{name} of {type(module).__name__} has other parametrizations stacked on "
                    "its mask; call handle.make_permanent() (or remove them) before exporting"
                )
            if any(kinds):
                found.append((module, name))
    return found


def _example_inputs(
    model: nn.Module, original: onnx.ModelProto, given: Sequence[torch.Tensor] | None
) -> tuple[torch.Tensor, ...]:
    if given is not None:
        return tuple(given)
    arrays = example_arrays(graph_inputs(original))
    if isinstance(arrays, str):
        raise InvalidOptionError(f"cannot make example inputs ({arrays}); pass example_inputs=")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def _export(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], original: onnx.ModelProto
) -> onnx.ModelProto:
    in_specs, out_specs = graph_inputs(original), graph_outputs(original)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(*inputs)
        count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        out_specs = out_specs if len(out_specs) == count else []
        axes = {s.name: s.dynamic_axes() for s in (*in_specs, *out_specs) if s.dynamic_axes()}
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # torch 2.9+ calls the TorchScript exporter legacy; it is the one that folds BatchNorm
            # and keeps parameter names, which the mapping back relies on.
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript", Warning)
            torch.onnx.export(
                model,
                inputs,
                buffer,
                dynamo=False,
                opset_version=default_opset(original),
                input_names=[s.name for s in in_specs] if len(in_specs) == len(inputs) else None,
                output_names=[s.name for s in out_specs] or None,
                dynamic_axes=axes or None,
            )
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    return proto


def _check(
    model: nn.Module,
    proto: onnx.ModelProto,
    graph: ConnectivityGraph,
    inputs: tuple[torch.Tensor, ...],
    masks: Mapping[str, torch.Tensor | np.ndarray],
    report: SparsityReport,
) -> list[LayerCheck]:
    """Map the export's weights back to the parameters and count nonzeros under each mask."""
    weights = {w.name: w for w in onnx_weights(graph)}
    mapping = map_loaded(model, proto, list(weights.values()), example_inputs=inputs)
    exported = {m.parameter: m for m in mapping.matched}
    rows = {row.name: row for row in report.layers}
    layers = {layer.name: layer for layer in graph.layers}
    checks = []
    for parameter, mask in masks.items():
        keep = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        keep = keep.astype(bool)
        masked = int(np.count_nonzero(~keep))
        match = exported.get(parameter)
        if match is None:
            checks.append(LayerCheck(parameter, None, masked, 0, None))
            continue
        layer = layers[match.onnx_name]
        stored = layer.contract.source.to_stored(graph.weight(layer))
        weight = torch_layout(weights[match.onnx_name], match, stored)
        if weight.shape != keep.shape:
            checks.append(LayerCheck(parameter, None, masked, 0, None))
            continue
        nonzero = int(np.count_nonzero(weight[~keep]))
        row = rows.get(match.onnx_name)
        sparsity = row.direct_sparsity if row is not None else None
        checks.append(LayerCheck(parameter, match.onnx_name, masked, nonzero, sparsity))
    return checks
