"""Which ``torch.nn`` parameter each ONNX weight came from.

Three ways, tried in this order for every prunable weight of the ONNX model:

1. **name**: the stored tensor is named after the parameter (``fc1.weight``), as both exporters
   do when they keep the parameter as it is; the mask is used in the stored layout.
2. **scope**: the TorchScript exporter names nodes after the module that made them
   (``/block/block.0/Conv``), also when it renamed the weight (Conv+BatchNorm folded in eval mode
   becomes ``onnx::Conv_15``); the module's ``weight`` must have the right kind, shape and groups.
3. **structure**: what is left is grouped by signature (layer kind, parameter shape, groups). A
   signature with one ONNX weight and one module matches; with several, ONNX graph order is
   matched to the order in which ``forward`` first calls the modules (one traced call on zero
   inputs shaped like the ONNX model's inputs, or on ``example_inputs``). Unequal counts, or no
   way to trace, leave the group ambiguous.

A folded convolution keeps the module's zero pattern (BatchNorm scales whole output channels),
and a Gemm/MatMul weight stored as ``[in, out]`` is transposed to the ``[out, in]`` of
``nn.Linear``, so every mask lands on the parameter in the parameter's layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils import parametrize

from onnxprune.errors import InvalidOptionError
from onnxprune.model import ModelSource, load_model
from onnxprune.torch._layers import OnnxWeight, example_arrays, graph_inputs, onnx_weights

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NAMES = {"conv": "nn.ConvNd", "conv_transpose": "nn.ConvTransposeNd", "linear": "nn.Linear"}


@dataclass(frozen=True, slots=True)
class Match:
    """An ONNX weight and the parameter it came from.

    Attributes:
        onnx_name: the stored ONNX tensor (the key of its mask).
        parameter: the qualified parameter name, e.g. ``block.0.weight``.
        method: ``"name"``, ``"scope"`` or ``"structure"``.
        transposed: the ONNX tensor is stored in another layout than the parameter (a MatMul's
            or untransposed Gemm's ``[in, out]``); its mask is converted.
    """

    onnx_name: str
    parameter: str
    method: str
    transposed: bool = False

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "onnx_name": self.onnx_name,
            "parameter": self.parameter,
            "method": self.method,
            "transposed": self.transposed,
        }


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An ONNX weight without a parameter: why, and the parameters it could be (if ambiguous)."""

    onnx_name: str
    reason: str
    candidates: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {"onnx_name": self.onnx_name, "reason": self.reason, "candidates": self.candidates}


@dataclass(frozen=True, slots=True)
class MappingReport:
    """What matched, what could be several parameters, and what matched nothing.

    Attributes:
        matched: one entry per mapped ONNX weight, in mask order.
        ambiguous: ONNX weights with several possible parameters.
        unmatched: ONNX weights with no possible parameter.
        order: how structural matches were ordered: ``"execution"`` (a traced forward),
            ``"not needed"`` (every signature was unique) or why tracing failed.
    """

    matched: tuple[Match, ...]
    ambiguous: tuple[Unresolved, ...] = ()
    unmatched: tuple[Unresolved, ...] = ()
    order: str = "not needed"

    @property
    def ok(self) -> bool:
        """Whether every ONNX weight asked about matched exactly one parameter."""
        return not self.ambiguous and not self.unmatched

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "matched": [m.to_dict() for m in self.matched],
            "ambiguous": [u.to_dict() for u in self.ambiguous],
            "unmatched": [u.to_dict() for u in self.unmatched],
            "order": self.order,
        }

    def summary(self) -> str:
        """One line of counts, then one line per ambiguous or unmatched weight."""
        by_method: dict[str, int] = defaultdict(int)
        for m in self.matched:
            by_method[m.method] += 1
        how = ", ".join(f"{n} by {k}" for k, n in sorted(by_method.items()))
        lines = [
            f"{len(self.matched)} matched"
            + (f" ({how})" if how else "")
            + f", {len(self.ambiguous)} ambiguous, {len(self.unmatched)} unmatched"
        ]
        lines += [
            f"ambiguous {u.onnx_name}: {u.reason}"
            + (f" (candidates: {', '.join(u.candidates)})" if u.candidates else "")
            for u in self.ambiguous
        ]
        lines += [f"unmatched {u.onnx_name}: {u.reason}" for u in self.unmatched]
        return "\n".join(lines)


class MaskMappingError(InvalidOptionError):
    """Some ONNX weights could not be mapped to exactly one parameter; ``report`` says which."""

    def __init__(self, report: MappingReport) -> None:
        super().__init__(
            "cannot map every ONNX weight to one parameter (strict=False applies the matched "
            "ones):\n" + report.summary()
        )
        self.report = report


def map_weights(
    model: nn.Module,
    onnx_model: ModelSource,
    names: Iterable[str] | None = None,
    *,
    example_inputs: Sequence[torch.Tensor] | None = None,
) -> MappingReport:
    """Map the prunable weights of ``onnx_model`` to parameters of ``model``.

    Args:
        model: the module the ONNX model was exported from (or one of the same architecture).
        onnx_model: a path, serialized bytes or ``onnx.ModelProto``.
        names: the ONNX weights to report on (default: every prunable weight). All prunable
            weights take part in the structural matching either way.
        example_inputs: inputs for the traced forward that orders structural matches (default:
            zeros shaped like the ONNX model's inputs, symbolic dimensions set to 1).

    Returns:
        A ``MappingReport``; ``map_weights`` itself never raises for unmapped weights.

    Example:
        >>> import io, torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> buf = io.BytesIO()
        >>> torch.onnx.export(net, (torch.zeros(1, 4),), buf, dynamo=False)
        >>> map_weights(net, buf.getvalue()).matched[0].parameter
        '0.weight'
    """
    proto = load_model(onnx_model)
    return map_loaded(model, proto, onnx_weights(proto), names, example_inputs=example_inputs)


def map_loaded(
    model: nn.Module,
    proto: onnx.ModelProto,
    weights: list[OnnxWeight],
    names: Iterable[str] | None = None,
    *,
    example_inputs: Sequence[torch.Tensor] | None = None,
) -> MappingReport:
    """``map_weights`` for a loaded model whose prunable weights ``onnx_weights`` described."""
    return _Matcher(model, proto, weights, example_inputs).run(names)


def torch_layout(weight: OnnxWeight | None, match: Match, stored: np.ndarray) -> np.ndarray:
    """An array in the ONNX weight's stored layout, in the matched parameter's layout."""
    if match.method == "name" or weight is None:
        return np.asarray(stored)
    return weight.to_torch(stored)


@dataclass(frozen=True, slots=True)
class _Candidate:
    parameter: str
    module: str
    kind: str | None
    shape: tuple[int, ...]
    group: int


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, _CONV):
        return "conv"
    if isinstance(module, _CONV_T):
        return "conv_transpose"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def _signature(kind: str | None, shape: tuple[int, ...], group: int) -> tuple:
    return (kind, tuple(shape), group)


class _Matcher:
    """One mapping run: name, then scope, then structure, each claiming parameters once."""

    def __init__(
        self,
        model: nn.Module,
        proto: onnx.ModelProto,
        weights: list[OnnxWeight],
        example_inputs: Sequence[torch.Tensor] | None,
    ) -> None:
        self.model, self.proto, self.example_inputs = model, proto, example_inputs
        self.weights = weights
        self.params = dict(model.named_parameters())
        self.modules = dict(model.named_modules())
        layers = [
            (
                parametrize.is_parametrized(m, "weight"),
                _Candidate(
                    f"{path}.weight" if path else "weight",
                    path,
                    _kind(m),
                    tuple(m.weight.shape),
                    int(getattr(m, "groups", 1)),
                ),
            )
            for path, m in self.modules.items()
            if _kind(m) is not None and isinstance(m.weight, torch.Tensor)
        ]
        self.candidates = [c for busy, c in layers if not busy]
        self._order: dict[str, int] | str | None = None
        self.parametrized = [c for busy, c in layers if busy]

    def run(self, names: Iterable[str] | None) -> MappingReport:
        found: dict[str, Match] = {}
        problems: dict[str, tuple[str, Unresolved]] = {}
        for w in self.weights:
            match = self._by_name(w) or self._by_scope(w)
            if match is not None:
                found[w.name] = match
        order = self._by_structure(found, problems)
        _drop_double_claims(found, problems)
        wanted = [w.name for w in self.weights] if names is None else list(names)
        known = {w.name for w in self.weights}
        matched, ambiguous, unmatched = [], [], []
        for name in wanted:
            if name in found:
                matched.append(found[name])
            elif name in problems:
                kind, problem = problems[name]
                (ambiguous if kind == "ambiguous" else unmatched).append(problem)
            elif name not in known:
                unmatched.append(Unresolved(name, "not a prunable weight of the ONNX model"))
        return MappingReport(tuple(matched), tuple(ambiguous), tuple(unmatched), order)

    def _by_name(self, w: OnnxWeight) -> Match | None:
        param = self.params.get(w.name)
        if param is None or tuple(param.shape) != w.stored_shape:
            return None
        return Match(w.name, w.name, "name")

    def _by_scope(self, w: OnnxWeight) -> Match | None:
        path = w.scope
        module = self.modules.get(path) if path is not None else None
        if module is None or parametrize.is_parametrized(module, "weight"):
            return None
        param = dict(module.named_parameters(recurse=False)).get("weight")
        kind = _kind(module)
        if param is None or tuple(param.shape) != w.torch_shape or kind not in (None, w.kind):
            return None
        if kind in ("conv", "conv_transpose") and module.groups != w.group:
            return None
        return Match(w.name, f"{path}.weight" if path else "weight", "scope", w.transposed)

    def _by_structure(
        self, found: dict[str, Match], problems: dict[str, tuple[str, Unresolved]]
    ) -> str:
        claimed = {m.parameter for m in found.values()}
        by_sig: dict[tuple, list[_Candidate]] = defaultdict(list)
        for c in self.candidates:
            if c.parameter not in claimed:
                by_sig[_signature(c.kind, c.shape, c.group)].append(c)
        groups: dict[tuple, list[OnnxWeight]] = defaultdict(list)
        for w in self.weights:
            if w.name not in found:
                groups[_signature(w.kind, w.torch_shape, w.group)].append(w)
        for sig, ws in groups.items():
            problem = self._pair(ws, by_sig.get(sig, []), found)
            for w in ws:
                if problem is not None:
                    problems[w.name] = problem(w)
        if self._order is None:
            return "not needed"
        return "execution" if isinstance(self._order, dict) else self._order

    def _pair(
        self, ws: list[OnnxWeight], cs: list[_Candidate], found: dict[str, Match]
    ) -> Callable[[OnnxWeight], tuple[str, Unresolved]] | None:
        """Match ONNX weights of one signature to modules of the same; else what went wrong."""
        if not cs:
            sig = _signature(ws[0].kind, ws[0].torch_shape, ws[0].group)
            busy = [
                c.parameter
                for c in self.parametrized
                if _signature(c.kind, c.shape, c.group) == sig
            ]
            return lambda w: ("unmatched", Unresolved(w.name, _nothing_like(w, busy)))
        if len(ws) > 1 or len(cs) > 1:
            order = self._execution_order()
            if isinstance(order, str):
                reason = (
                    f"{len(ws)} ONNX and {len(cs)} module weights share kind and shape; their "
                    f"order is unknown ({order}; pass example_inputs=)"
                )
                return _ambiguous(cs, reason)
            cs = sorted((c for c in cs if c.module in order), key=lambda c: order[c.module])
        if len(ws) != len(cs):
            reason = f"{len(ws)} ONNX and {len(cs)} called module weights share kind and shape"
            return _ambiguous(cs, reason)
        for w, c in zip(ws, cs, strict=True):
            found[w.name] = Match(w.name, c.parameter, "structure", w.transposed)
        return None

    def _execution_order(self) -> dict[str, int] | str:
        """Module path -> rank of its first call in one forward pass, or why there is none."""
        if self._order is None:
            self._order = self._trace()
        return self._order

    def _trace(self) -> dict[str, int] | str:
        inputs = self.example_inputs
        if inputs is None:
            arrays = example_arrays(graph_inputs(self.proto))
            if isinstance(arrays, str):
                return arrays
            device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
            inputs = [torch.from_numpy(a).to(device) for a in arrays]
        order: dict[str, int] = {}
        wanted = {c.module for c in self.candidates}

        def hook_for(path: str):
            def hook(_module: nn.Module, _args: object) -> None:
                order.setdefault(path, len(order))

            return hook

        hooks = [
            m.register_forward_pre_hook(hook_for(path))
            for path, m in self.modules.items()
            if path in wanted
        ]
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(*inputs)
        except Exception as e:  # any failure of user code only means there is no order
            return f"forward on example inputs failed: {type(e).__name__}: {e}"
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was_training)
        return order


def _nothing_like(w: OnnxWeight, parametrized: list[str]) -> str:
    extra = f", groups={w.group}" if w.kind != "linear" else ""
    reason = f"no {_NAMES[w.kind]} with weight shape {list(w.torch_shape)}{extra} left to match"
    if parametrized:
        reason += f" ({', '.join(parametrized)} already parametrized: masks applied twice?)"
    return reason


def _ambiguous(cs: list[_Candidate], reason: str) -> Callable[[OnnxWeight], tuple[str, Unresolved]]:
    names = tuple(c.parameter for c in cs)
    return lambda w: ("ambiguous", Unresolved(w.name, reason, names))


def _drop_double_claims(found: dict[str, Match], problems: dict[str, tuple[str, Unresolved]]):
    """A parameter claimed by several ONNX weights is not a match for any of them."""
    by_param: dict[str, list[str]] = defaultdict(list)
    for name, m in found.items():
        by_param[m.parameter].append(name)
    for param, names in by_param.items():
        if len(names) > 1:
            for name in names:
                del found[name]
                reason = f"{len(names)} ONNX weights ({', '.join(names)}) map to {param}"
                problems[name] = ("ambiguous", Unresolved(name, reason, (param,)))
