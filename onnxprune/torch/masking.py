"""Masks from ONNX on ``torch.nn`` modules, kept exactly zero while the model trains.

Each masked weight gets a parametrization (``torch.nn.utils.parametrize``): the module's
``weight`` becomes ``where(mask, original, 0)``. The forward pass sees exact zeros and the
gradient of ``original`` is zero at masked entries. The masked entries of ``original`` are also
set to zero when the mask is applied, so SGD with momentum and weight decay, Adam and AdamW leave
them at zero too (zero gradient, zero decay, zero moments) and the parameter the optimizer holds
is the pruned one. The mask is a buffer of the parametrization, so ``model.to(device)`` moves it
with the module (CPU, CUDA, ``meta``) and ``state_dict`` saves it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from onnxprune.errors import InvalidOptionError
from onnxprune.model import ModelSource, load_model
from onnxprune.pruners.masks import as_mask, load_masks
from onnxprune.torch._layers import OnnxWeight, onnx_weights
from onnxprune.torch.mapping import (
    MappingReport,
    MaskMappingError,
    Match,
    Unresolved,
    map_loaded,
    torch_layout,
)


class WeightMask(nn.Module):
    """The parametrization ``weight = where(mask, original, 0)``; ``mask`` is a bool buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight with masked entries set to exactly zero (gradients there are zero)."""
        return torch.where(self.mask, weight, weight.new_zeros(()))


@dataclass(frozen=True, slots=True)
class _Entry:
    """One masked parameter: where it lives (every alias, for tied weights) and what it lost."""

    parameter: str
    places: tuple[tuple[nn.Module, str], ...]
    mask: torch.Tensor  # bool, on the CPU
    saved: torch.Tensor | None  # the masked entries' values before masking (CPU; None on meta)


class MaskHandle:
    """The masks ``apply_masks`` put on a model, and the way to take them off again.

    Attributes:
        report: how the ONNX weights were mapped to parameters.
    """

    def __init__(self, report: MappingReport, entries: list[_Entry]) -> None:
        self.report = report
        self._entries = entries
        self._active = True

    @property
    def active(self) -> bool:
        """Whether the masks are still parametrizations on the model."""
        return self._active

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean masks (``True`` = kept) keyed by parameter name, in the parameter's layout."""
        return {e.parameter: e.mask for e in self._entries}

    def sparsity(self) -> dict[str, float]:
        """Fraction of exact zeros of each masked weight as the module now computes it."""
        out = {}
        for e in self._entries:
            module, name = e.places[0]
            with torch.no_grad():
                weight = getattr(module, name)
                out[e.parameter] = float((weight == 0).sum().item()) / max(weight.numel(), 1)
        return out

    def make_permanent(self) -> None:
        """Bake the zeros in: plain modules whose ``weight`` is zero at every masked entry.

        The parameters stay the same objects (an optimizer holding them keeps working).
        """
        self._finish(leave_parametrized=True)

    def remove(self) -> None:
        """Take the masks off: plain modules again, with the pruned entries restored.

        Kept entries keep what training gave them; masked entries get back the values they had
        before ``apply_masks``. The parameters stay the same objects.
        """
        self._finish(leave_parametrized=False)
        for e in self._entries:
            module, name = e.places[0]
            weight = getattr(module, name)
            if e.saved is None or weight.device.type == "meta":
                continue  # no values to give back
            with torch.no_grad():
                keep = e.mask.to(weight.device)
                weight[~keep] = e.saved.to(device=weight.device, dtype=weight.dtype)

    def _finish(self, *, leave_parametrized: bool) -> None:
        if not self._active:
            raise InvalidOptionError("the masks were already removed or made permanent")
        for e in self._entries:
            for module, name in e.places:
                parametrize.remove_parametrizations(
                    module, name, leave_parametrized=leave_parametrized
                )
        self._active = False

    def __repr__(self) -> str:
        state = "active" if self._active else "removed"
        return f"MaskHandle({len(self._entries)} masked weights, {state})"


def apply_masks(
    model: nn.Module,
    masks: str | os.PathLike | Mapping[str, np.ndarray],
    *,
    onnx_model: ModelSource | None = None,
    strict: bool = True,
    example_inputs: Sequence[torch.Tensor] | None = None,
) -> MaskHandle:
    """Put the masks of a pruned ONNX model on the parameters ``model`` exported it from.

    Args:
        model: the module (modified in place: masked weights become parametrized).
        masks: an ``.npz`` of boolean masks keyed by ONNX weight name in the stored layout
            (what ``onnxprune prune`` writes), or such a mapping.
        onnx_model: the ONNX model the masks belong to (pruned or not), a path, bytes or proto.
            Without it, only masks named after a parameter of the same shape can be mapped.
        strict: raise when a mask is ambiguous or matches nothing; with ``False`` the matched
            masks are applied and ``handle.report`` lists the others.
        example_inputs: inputs for the traced forward that orders structural matches.

    Returns:
        A ``MaskHandle``: its ``report``, ``masks``, ``remove()`` and ``make_permanent()``.

    Raises:
        MaskMappingError: with ``strict``, some mask maps to no parameter or to several.
        InvalidOptionError: a weight is already parametrized, or masks cannot be read.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> handle = apply_masks(net, {"0.weight": [[True, False], [False, True]]})
        >>> net[0].weight[0, 1].item(), handle.report.matched[0].method
        (0.0, 'name')
        >>> handle.make_permanent()
    """
    given = load_masks(masks) if isinstance(masks, (str, os.PathLike)) else masks
    given = {k: as_mask(k, v) for k, v in given.items()}
    if onnx_model is None:
        report, weights = _by_name_only(model, given), {}
    else:
        proto = load_model(onnx_model)
        found = onnx_weights(proto)
        weights = {w.name: w for w in found}
        report = map_loaded(model, proto, found, given, example_inputs=example_inputs)
        report = _check_shapes(report, weights, given)
    if strict and not report.ok:
        raise MaskMappingError(report)
    aliases = _aliases(model)
    entries = []
    for match in report.matched:
        mask = torch_layout(weights.get(match.onnx_name), match, given[match.onnx_name])
        entries.append(_apply(model, match, torch.from_numpy(mask.copy()), aliases))
    return MaskHandle(report, entries)


def _by_name_only(model: nn.Module, masks: Mapping[str, np.ndarray]) -> MappingReport:
    params = dict(model.named_parameters())
    matched, unmatched = [], []
    for name, mask in masks.items():
        param = params.get(name)
        path, _, attr = name.rpartition(".")
        owner = _submodule(model, path)
        if owner is not None and parametrize.is_parametrized(owner, attr):
            unmatched.append(Unresolved(name, "already parametrized (masks applied twice?)"))
        elif param is None:
            reason = "not a parameter name; give onnx_model= to map by scope and structure"
            unmatched.append(Unresolved(name, reason))
        elif tuple(param.shape) != mask.shape:
            reason = f"mask has shape {list(mask.shape)}, the parameter has {list(param.shape)}"
            unmatched.append(Unresolved(name, reason))
        else:
            matched.append(Match(name, name, "name"))
    return MappingReport(tuple(matched), (), tuple(unmatched))


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _aliases(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """Every (module, attribute) holding each parameter object (tied weights have several)."""
    places: dict[int, list[tuple[nn.Module, str]]] = defaultdict(list)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            places[id(param)].append((module, name))
    return places


def _apply(
    model: nn.Module,
    match: Match,
    mask: torch.Tensor,
    aliases: Mapping[int, list[tuple[nn.Module, str]]],
) -> _Entry:
    path, _, attr = match.parameter.rpartition(".")
    module = model.get_submodule(path)
    if parametrize.is_parametrized(module, attr):
        raise InvalidOptionError(
            f"{match.parameter} is already parametrized (masks applied twice?); remove that first"
        )
    param = getattr(module, attr)
    places = tuple(aliases.get(id(param), [(module, attr)]))
    with torch.no_grad():
        keep = mask.to(param.device)
        saved = None if param.is_meta else param[~keep].detach().to("cpu", copy=True)
        param.masked_fill_(~keep, 0)
    for owner, name in places:
        parametrize.register_parametrization(owner, name, WeightMask(keep))
    return _Entry(match.parameter, places, mask, saved)


def _check_shapes(
    report: MappingReport, weights: Mapping[str, OnnxWeight], masks: Mapping[str, np.ndarray]
) -> MappingReport:
    """Move matches whose mask does not have the ONNX weight's stored shape to ``unmatched``."""
    good, bad = [], list(report.unmatched)
    for m in report.matched:
        w = weights.get(m.onnx_name)
        expected = w.stored_shape if w is not None else None
        shape = tuple(np.shape(masks[m.onnx_name]))
        if expected is not None and shape != expected:
            bad.append(
                Unresolved(
                    m.onnx_name, f"mask has shape {list(shape)}, the weight has {list(expected)}"
                )
            )
        else:
            good.append(m)
    return MappingReport(tuple(good), report.ambiguous, tuple(bad), report.order)
