"""Library results <-> protobuf messages; the typed fields are filled from ``to_dict()``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from onnxprune.options import PruneOptions, merge_options
from onnxprune.pruners.registry import ALIASES, ALLOCATIONS, CRITERIA, SCORES, Method
from onnxprune.report import SparsityReport, ValidationResult, format_table, format_validation
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.structured import BlockedGroup, CompactResult, Reconstruction, StructuredResult


def options_kwargs(options: Message) -> dict[str, Any]:
    """The options a request set, as keyword arguments of the library call.

    Unset fields are left out, so the library's defaults apply; ``max_bytes`` is the server's
    business (``servicer``), and input shapes become a name -> shape mapping.
    """
    kwargs = {field.name: value for field, value in options.ListFields()}
    kwargs.pop("max_bytes", None)
    if "input_shapes" in kwargs:
        kwargs["input_shapes"] = {s.name: tuple(s.dims) for s in kwargs["input_shapes"]}
    if "dims" in kwargs:
        kwargs["dims"] = dict(kwargs["dims"])
    return kwargs


def prune_options(options: Message) -> PruneOptions:
    """A request's ``PruneOptions`` message as the library's (unset fields: the defaults)."""
    return merge_options(PruneOptions(), options_kwargs(options))


def report_message(report: SparsityReport) -> pb.SparsityReport:
    """A ``SparsityReport`` as its message: typed fields, the JSON and the table of the CLI."""
    return _with_json_and_text(report.to_dict(), pb.SparsityReport(), format_table(report))


def validation_message(result: ValidationResult) -> pb.ValidationResult:
    """A ``ValidationResult`` as its message: typed fields, the JSON and the CLI's lines."""
    return _with_json_and_text(result.to_dict(), pb.ValidationResult(), format_validation(result))


def _with_json_and_text(data: dict, message: Message, text: str) -> Message:
    """``message`` with its typed fields from ``data``, ``data`` as JSON, and ``text``."""
    message = json_format.ParseDict(data, message)
    message.json = json.dumps(data, indent=2)
    message.text = text
    return message


def structured_message(result: StructuredResult) -> pb.PruneResult:
    """A structured prune's result as its message: every key of ``StructuredResult.to_dict``."""
    c = result.compaction
    return pb.PruneResult(
        warnings=list(result.warnings),
        units=_layer_units(result.units, result.kinds),
        labels=result.labels,
        totals=_totals(result.totals),
        removed=_removed(c),
        params_before=c.params_before,
        params_after=c.params_after,
        blocked=_blocked(result.blocked),
        sparsity=result.sparsity,
        scope=result.scope,
        round_to=result.round_to,
        group_sparsity=result.group_sparsity,
        groups_removed=result.groups_removed,
        groups_prunable=result.groups_prunable,
        **_macs(c),
        reconstruction=_reconstruction(result.reconstruction),
    )


def _layer_units(
    units: Mapping[str, tuple[int, int]], kinds: Mapping[str, str]
) -> list[pb.LayerUnits]:
    """Units kept of the total per layer, in its kind; ``sparsity`` the share removed."""
    return [
        pb.LayerUnits(name=n, kept=k, total=t, sparsity=(t - k) / t, kind=kinds[n])
        for n, (k, t) in units.items()
    ]


def _totals(totals: Mapping[str, tuple[int, int]]) -> list[pb.UnitTotal]:
    return [pb.UnitTotal(kind=k, kept=n, total=t) for k, (n, t) in totals.items()]


def structured_dict(message: pb.PruneResult) -> dict:
    """A structured prune's reply as ``StructuredResult.to_dict`` gives it locally."""
    return {
        "sparsity": message.sparsity,
        "scope": message.scope,
        "round_to": message.round_to,
        "group_sparsity": (message.group_sparsity if message.HasField("group_sparsity") else None),
        "groups_removed": message.groups_removed,
        "groups_prunable": message.groups_prunable,
        "units": {u.name: [u.kept, u.total] for u in message.units},
        "layer_sparsity": {u.name: u.sparsity for u in message.units},
        "kinds": {u.name: u.kind for u in message.units},
        "labels": _labels(message),
        "totals": {t.kind: [t.kept, t.total] for t in message.totals},
        "removed": {r.name: r.removed for r in message.removed},
        "params_before": message.params_before,
        "params_after": message.params_after,
        **_macs_dict(message),
        "warnings": list(message.warnings),
        "blocked": _blocked_dicts(message.blocked),
        "reconstruction": (
            _reconstruction_dict(message.reconstruction)
            if message.HasField("reconstruction")
            else None
        ),
    }


def _labels(message: pb.PruneResult | pb.CompactResult) -> dict[str, str]:
    """The labels in the order the result gives them: the units' layers, then the blocked.

    As ``StructuredResult.labels`` and ``CompactResult.labels`` list them.
    """
    names = [*(u.name for u in message.units), *(n for b in message.blocked for n in b.layers)]
    return {n: message.labels[n] for n in dict.fromkeys(names) if n in message.labels}


def _reconstruction(refit: Reconstruction | None) -> pb.Reconstruction | None:
    """What reconstruction did, as its message (``skipped`` as name and reason pairs)."""
    if refit is None:
        return None
    data = refit.to_dict()
    data["skipped"] = [{"name": n, "reason": r} for n, r in data["skipped"].items()]
    return json_format.ParseDict(data, pb.Reconstruction())


def _reconstruction_dict(message: pb.Reconstruction) -> dict:
    """A ``Reconstruction`` message as ``Reconstruction.to_dict`` writes it."""
    return {
        "samples": message.samples,
        "ridge": message.ridge,
        "layers": [
            {
                "name": layer.name,
                "op_type": layer.op_type,
                "inputs_kept": layer.inputs_kept,
                "inputs": layer.inputs,
                "error_before": layer.error_before,
                "error_after": layer.error_after,
            }
            for layer in message.layers
        ],
        "batchnorms": list(message.batchnorms),
        "skipped": {s.name: s.reason for s in message.skipped},
    }


def compact_dict(message: pb.CompactResult) -> dict:
    """A compaction's reply as ``CompactResult.to_dict`` gives it locally."""
    return {
        "removed": {r.name: r.removed for r in message.removed},
        "folded": {r.name: r.folded for r in message.removed if r.folded},
        "units": {u.name: [u.kept, u.total] for u in message.units},
        "kinds": {u.name: u.kind for u in message.units},
        "labels": _labels(message),
        "totals": {t.kind: [t.kept, t.total] for t in message.totals},
        "params_before": message.params_before,
        "params_after": message.params_after,
        **_macs_dict(message),
        "blocked": _blocked_dicts(message.blocked),
    }


_MAC_KEYS = ("macs_before", "macs_after", "nonzero_macs_before", "nonzero_macs_after")
"""The MAC totals a compaction reports, before and after (``CompactResult.to_dict``)."""


def _macs(result: CompactResult) -> dict[str, int]:
    """A compaction's MAC totals as message fields (an unknown total stays unset)."""
    data = result.to_dict()
    return {key: data[key] for key in _MAC_KEYS if data[key] is not None}


def _macs_dict(message: Message) -> dict[str, int | None]:
    """The MAC totals of a reply as ``to_dict`` writes them (unset: ``None``)."""
    return {key: getattr(message, key) if message.HasField(key) else None for key in _MAC_KEYS}


def compact_message(result: CompactResult) -> pb.CompactResult:
    """A ``CompactResult`` as its message (the model itself travels as a file)."""
    return pb.CompactResult(
        removed=_removed(result),
        params_before=result.params_before,
        params_after=result.params_after,
        blocked=_blocked(result.blocked),
        **_macs(result),
        units=_layer_units(result.units, result.kinds),
        labels=result.labels,
        totals=_totals(result.totals),
    )


def _blocked(blocked: tuple[BlockedGroup, ...]) -> list[pb.BlockedGroup]:
    """Blocked groups as messages (a graph output leaves ``op_type`` and ``node`` unset)."""
    return [json_format.ParseDict(group.to_dict(), pb.BlockedGroup()) for group in blocked]


def _blocked_dicts(blocked: Iterable[pb.BlockedGroup]) -> list[dict]:
    """Blocked groups as ``BlockedGroup.to_dict`` writes them (unset: ``None``)."""
    return [
        {
            "layers": list(b.layers),
            "reason": b.reason,
            "op_type": b.op_type if b.HasField("op_type") else None,
            "node": b.node if b.HasField("node") else None,
            "groups": b.groups,
        }
        for b in blocked
    ]


def methods_message() -> pb.ListMethodsResponse:
    """The registered scores, allocations (with their other spellings) and structured criteria."""
    return pb.ListMethodsResponse(
        scores=_methods(SCORES, {}),
        allocations=_methods(ALLOCATIONS, ALIASES),
        criteria=_methods(CRITERIA, {}),
    )


def _removed(result: CompactResult) -> list[pb.LayerRemoved]:
    """Units removed per layer, in the result's (graph) order; folded units are among them."""
    return [
        pb.LayerRemoved(name=name, removed=count, folded=result.folded.get(name, 0))
        for name, count in result.removed.items()
    ]


def _methods(table: Mapping[str, Method], aliases: Mapping[str, str]) -> list[pb.Method]:
    return [
        pb.Method(
            name=name,
            summary=table[name].summary,
            aliases=sorted(k for k, v in aliases.items() if v == name),
        )
        for name in sorted(table)
    ]
