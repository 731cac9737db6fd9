"""Which of onnxprune's JSON reports a dict is, checked against the documented keys.

Eight shapes are known (extra keys are allowed, missing or mistyped ones are not):

- ``sparsity``: ``SparsityReport.to_dict()`` (``onnxprune analyze --json``, ``prune
  --report-out``), with a ``compaction`` (a ``compact`` result) after ``prune --compact``;
- ``structured``: ``StructuredResult.to_dict()`` (``prune --structured --report-out``);
- ``compact``: ``CompactResult.to_dict()`` (``onnxprune compact --report-out``);
- ``validation``: ``ValidationResult.to_dict()``;
- ``sweep``: ``SweepResult.to_dict()`` (``"kind": "sweep"``);
- ``batch``: ``BatchResult.to_dict()`` (``"kind": "batch"``, ``onnxprune batch``'s batch.json);
- ``sensitivity``: ``SensitivityResult.to_dict()`` (``"kind": "sensitivity"``, ``onnxprune
  sensitivity``'s sensitivity.json);
- ``combined``: ``{"report": <sparsity>, "validation": <validation or null>}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from onnxprune.errors import InvalidOptionError

Kind = Literal[
    "sparsity", "structured", "compact", "validation", "sweep", "batch", "sensitivity", "combined"
]

# What a field may hold: "num" (int or float, not bool), "str", "bool", "list", "dict";
# a trailing "?" also allows null.
SPARSITY_FIELDS = {
    "total_params": "num",
    "direct_sparsity": "num",
    "effective_sparsity": "num",
    "direct_compression": "num?",
    "effective_compression": "num?",
    "level": "str",
    "layers": "list",
    "fallback_ops": "list",
}
MAC_FIELDS = {"macs": "num?", "nonzero_macs": "num?"}
OPTIONAL_SPARSITY_FIELDS = {
    **MAC_FIELDS,
    "dead_inputs": "num?",
    "dead_outputs": "num?",
    "blocks": "list",
}
OPTIONAL_LAYER_FIELDS = {**MAC_FIELDS, "label": "str?", "shared_by": "list"}
"""Checked when present (sparsity reports, layers, sweep runs): older reports lack them."""
COMPACTION_MAC_FIELDS = {
    "macs_before": "num?",
    "macs_after": "num?",
    "nonzero_macs_before": "num?",
    "nonzero_macs_after": "num?",
}
"""Checked when present (compactions, structured prunes)."""
BLOCK_FIELDS = {
    "module": "str",
    "kind": "str",
    "units": "num",
    "dead": "num",
    "blocked": "num",
    "params": "num",
    "direct_sparsity": "num",
    "effective_sparsity": "num",
    "heads": "list",
}
"""A sparsity report's ``blocks`` (``unit_report.BlockSparsity``)."""
HEAD_FIELDS = {
    "index": "num",
    "heads": "num",
    "params": "num",
    "direct_sparsity": "num",
    "effective_sparsity": "num",
}
LAYER_FIELDS = {
    "name": "str",
    "op_type": "str",
    "shape": "list",
    "params": "num",
    "direct_sparsity": "num",
    "effective_sparsity": "num",
    "dead_inputs": "num",
    "dead_outputs": "num",
}
VALIDATION_FIELDS = {
    "model": "str?",
    "baseline": "str?",
    "provider": "str?",
    "samples": "num?",
    "batch_size": "num?",
    "top1": "num?",
    "top5": "num?",
    "baseline_top1": "num?",
    "baseline_top5": "num?",
    "agreement": "num?",
    "max_abs_diff": "num?",
    "mean_abs_diff": "num?",
    "latency_ms_p50": "num?",
    "latency_ms_p95": "num?",
    "throughput": "num?",
    "gate": "dict?",
}
OPTIONAL_VALIDATION_FIELDS = {  # checked when present: results from before they existed lack them
    "baseline_latency_ms_p50": "num?",
    "baseline_latency_ms_p95": "num?",
    "speedup": "num?",
    "latency_ms_p90": "num?",
    "baseline_latency_ms_p90": "num?",
    "speedup_low": "num?",
    "speedup_high": "num?",
    "speedup_confidence": "num?",
    "timed_runs": "num?",
    "threads": "num?",
    "warnings": "list",
    "outputs": "dict?",
    "user_metrics": "dict?",
    "baseline_user_metrics": "dict?",
    "class_axis": "num?",
}
OPTIONAL_GATE_FIELDS = {"limits": "dict?"}
GATE_FIELDS = {
    "passed": "bool",
    "reason": "str?",
    "max_accuracy_drop": "num?",
    "min_agreement": "num?",
}
SWEEP_FIELDS = {"kind": "str", "model": "str?", "dense": "dict?", "runs": "list"}
OPTIONAL_SWEEP_FIELDS = {
    "classes": "num?",
    "gated": "bool",
    "recommended": "str?",
    "class_axis": "num?",
}
RUN_FIELDS = {
    "method": "str",
    "score": "str?",
    "allocation": "str?",
    "sparsity": "num",
    "direct_sparsity": "num?",
    "effective_sparsity": "num?",
    "direct_compression": "num?",
    "effective_compression": "num?",
    "top1": "num?",
    "agreement": "num?",
    "provider": "str?",
    "model_path": "str?",
    "report_path": "str?",
}
OPTIONAL_RUN_FIELDS = {  # checked when present: sweeps from before they existed lack them
    "error": "str?",
    **MAC_FIELDS,
    "speedup": "num?",
    "speedup_low": "num?",
    "speedup_high": "num?",
    "warnings": "list",
    "comparison": "dict?",
    "user_metrics": "dict?",
    "size_bytes": "num?",
    "passed": "bool?",
    "gate_reason": "str?",
    "front_macs": "bool",
    "front_speedup": "bool",
}
BATCH_FIELDS = {
    "kind": "str",
    "models": "num",
    "ok": "num",
    "skipped": "num",
    "failed": "num",
    "seconds": "num",
    "results": "list",
}
ITEM_FIELDS = {
    "model": "str",
    "status": "str",
    "output": "str?",
    "streamed": "bool?",
    "target": "num?",
    "direct_sparsity": "num?",
    "effective_sparsity": "num?",
    "accuracy": "num?",
    "baseline_accuracy": "num?",
    "agreement": "num?",
    "seconds": "num",
    "error": "str?",
    "warnings": "list",
}
OPTIONAL_ITEM_FIELDS = {
    **MAC_FIELDS,
    "baseline_macs": "num?",
    "comparison": "dict?",
    "user_metrics": "dict?",
    "size_bytes": "num?",
    "passed": "bool?",
    "gate_reason": "str?",
    "front_macs": "bool",
}
OPTIONAL_BATCH_FIELDS = {"gated": "bool", "recommended": "str?"}
BLOCKED_FIELDS = {
    "layers": "list",
    "reason": "str",
    "op_type": "str?",
    "node": "str?",
    "groups": "num",
}
COMPACT_FIELDS = {
    "removed": "dict",
    "folded": "dict",
    "params_before": "num",
    "params_after": "num",
    "blocked": "list",
}
STRUCTURED_FIELDS = {
    "sparsity": "num",
    "scope": "str",
    "round_to": "num",
    "group_sparsity": "num?",
    "groups_removed": "num",
    "groups_prunable": "num",
    "units": "dict",
    "layer_sparsity": "dict",
    "removed": "dict",
    "params_before": "num",
    "params_after": "num",
    "warnings": "list",
    "blocked": "list",
}
SENSITIVITY_FIELDS = {
    "kind": "str",
    "model": "str?",
    "metric": "str",
    "higher_is_better": "bool",
    "percent": "bool",
    "baseline": "num",
    "levels": "list",
    "score": "str",
    "structured": "str?",
    "provider": "str?",
    "samples": "num",
    "layers": "list",
    "groups": "list",
}
CURVE_FIELDS = {"name": "str", "params": "num", "levels": "list", "values": "list", "error": "str?"}
OPTIONAL_STRUCTURED_FIELDS = {"reconstruction": "dict?"}
"""Absent from reports written before ``--reconstruct``; null without it."""
RECONSTRUCTION_FIELDS = {
    "samples": "num",
    "ridge": "num",
    "layers": "list",
    "batchnorms": "list",
    "skipped": "dict",
}
REFIT_FIELDS = {
    "name": "str",
    "op_type": "str",
    "inputs_kept": "num",
    "inputs": "num",
    "error_before": "num",
    "error_after": "num",
}
_KINDS_WITH_TAG = ("sweep", "batch", "sensitivity")

_EXPECTED = (
    "a sparsity report (total_params, layers, ...), a structured prune (units, params_before, "
    "...), a compaction (removed, folded, params_before, ...), a validation result (top1, "
    'agreement, ...), a sweep ("kind": "sweep"), a batch ("kind": "batch"), a sensitivity '
    'analysis ("kind": "sensitivity") or {"report": ..., "validation": ...}'
)


def detect_kind(data: object) -> Kind:
    """The kind of a parsed report JSON, after checking every documented key of that kind.

    Args:
        data: the parsed JSON.

    Returns:
        ``"sparsity"``, ``"structured"``, ``"compact"``, ``"validation"``, ``"sweep"``,
        ``"batch"`` or ``"combined"``.

    Raises:
        InvalidOptionError: not an object, an unknown shape, or a known shape with a missing or
            mistyped key; the message names the key and what it must hold.

    Example:
        >>> detect_kind({"kind": "sweep", "model": "m.onnx", "dense": None, "runs": []})
        'sweep'
    """
    if not isinstance(data, Mapping):
        raise InvalidOptionError(f"a report must be a JSON object, got {_type_name(data)}")
    if "kind" in data:
        if data["kind"] not in _KINDS_WITH_TAG:
            known = ", ".join(map(repr, _KINDS_WITH_TAG))
            raise InvalidOptionError(f"unknown report kind {_short(data['kind'])}; known: {known}")
        if data["kind"] == "batch":
            check_batch(data)
            return "batch"
        if data["kind"] == "sensitivity":
            check_sensitivity(data)
            return "sensitivity"
        check_sweep(data)
        return "sweep"
    if "report" in data:
        _check(data, {"report": "dict", "validation": "dict?"}, "report JSON")
        check_sparsity(data["report"], "report")
        if data.get("validation") is not None:
            check_validation(data["validation"], "validation")
        return "combined"
    if "total_params" in data and "layers" in data:
        check_sparsity(data)
        return "sparsity"
    if "folded" in data and "params_before" in data:  # compact's JSON has units too
        check_compact(data)
        return "compact"
    if "units" in data and "params_before" in data:
        check_structured(data)
        return "structured"
    if "top1" in data and "agreement" in data:
        check_validation(data)
        return "validation"
    keys = ", ".join(_short(k) for k in sorted(map(str, data))[:8]) or "none"
    raise InvalidOptionError(f"unknown report JSON (top-level keys: {keys}); expected {_EXPECTED}")


def check_sparsity(data: Mapping, where: str = "sparsity report") -> None:
    """Check a sparsity report's keys, layers, fallback ops and (``prune --compact``) compaction."""
    _check(data, SPARSITY_FIELDS, where)
    _check(data, OPTIONAL_SPARSITY_FIELDS, where, required=False)
    for i, layer in enumerate(data["layers"]):
        _check(layer, LAYER_FIELDS, f"{where} layers[{i}]")
        _check(layer, OPTIONAL_LAYER_FIELDS, f"{where} layers[{i}]", required=False)
        _check_items(layer["shape"], "num", f"{where} layers[{i}].shape")
        _check_items(layer.get("shared_by", []), "str", f"{where} layers[{i}].shared_by")
    for i, block in enumerate(data.get("blocks", [])):
        _check(block, BLOCK_FIELDS, f"{where} blocks[{i}]")
        for j, head in enumerate(block["heads"]):
            _check(head, HEAD_FIELDS, f"{where} blocks[{i}].heads[{j}]")
    _check_items(data["fallback_ops"], "str", f"{where} fallback_ops")
    if "compaction" in data:
        check_compact(data["compaction"], f"{where} compaction")


def check_structured(data: Mapping, where: str = "structured prune") -> None:
    """Check a structured prune's keys: units as [kept, total] per layer, shares, blocked."""
    _check(data, STRUCTURED_FIELDS, where)
    _check(data, COMPACTION_MAC_FIELDS, where, required=False)
    for name, kept_total in data["units"].items():
        if not (isinstance(kept_total, list) and len(kept_total) == 2):
            raise InvalidOptionError(
                f"{where}.units[{_short(name)}] must be [kept, total], got {_type_name(kept_total)}"
            )
        _check_items(kept_total, "num", f"{where}.units[{_short(name)}]")
    _check_values(data["layer_sparsity"], "num", f"{where}.layer_sparsity")
    _check_values(data["removed"], "num", f"{where}.removed")
    _check_items(data["warnings"], "str", f"{where}.warnings")
    _check_blocked(data["blocked"], where)
    _check(data, OPTIONAL_STRUCTURED_FIELDS, where, required=False)
    refit = data.get("reconstruction")
    if refit is not None:
        _check(refit, RECONSTRUCTION_FIELDS, f"{where}.reconstruction")
        for i, layer in enumerate(refit["layers"]):
            _check(layer, REFIT_FIELDS, f"{where}.reconstruction.layers[{i}]")
        _check_items(refit["batchnorms"], "str", f"{where}.reconstruction.batchnorms")
        _check_values(refit["skipped"], "str", f"{where}.reconstruction.skipped")


def check_compact(data: Mapping, where: str = "compaction") -> None:
    """Check a compaction's keys: units removed and folded per layer, parameters, blocked."""
    _check(data, COMPACT_FIELDS, where)
    _check(data, COMPACTION_MAC_FIELDS, where, required=False)
    _check_values(data["removed"], "num", f"{where}.removed")
    _check_values(data["folded"], "num", f"{where}.folded")
    _check_blocked(data["blocked"], where)


def _check_blocked(blocked: list, where: str) -> None:
    for i, group in enumerate(blocked):
        _check(group, BLOCKED_FIELDS, f"{where} blocked[{i}]")
        _check_items(group["layers"], "str", f"{where} blocked[{i}].layers")


def check_validation(data: Mapping, where: str = "validation result") -> None:
    """Check a validation result's keys and, when there is one, its gate's."""
    _check(data, VALIDATION_FIELDS, where)
    _check(data, OPTIONAL_VALIDATION_FIELDS, where, required=False)
    _check_items(data.get("warnings", []), "str", f"{where}.warnings")
    if data["gate"] is not None:
        _check(data["gate"], GATE_FIELDS, f"{where} gate")
        _check(data["gate"], OPTIONAL_GATE_FIELDS, f"{where} gate", required=False)


def check_sweep(data: Mapping, where: str = "sweep") -> None:
    """Check a sweep's keys, its dense validation and every run's keys."""
    _check(data, SWEEP_FIELDS, where)
    _check(data, OPTIONAL_SWEEP_FIELDS, where, required=False)
    if data["dense"] is not None:
        check_validation(data["dense"], f"{where} dense")
    for i, run in enumerate(data["runs"]):
        _check(run, RUN_FIELDS, f"{where} runs[{i}]")
        _check(run, OPTIONAL_RUN_FIELDS, f"{where} runs[{i}]", required=False)
        _check_items(run.get("warnings", []), "str", f"{where} runs[{i}].warnings")


def check_batch(data: Mapping, where: str = "batch") -> None:
    """Check a batch's keys and every model result's keys."""
    _check(data, BATCH_FIELDS, where)
    _check(data, OPTIONAL_BATCH_FIELDS, where, required=False)
    for i, item in enumerate(data["results"]):
        _check(item, ITEM_FIELDS, f"{where} results[{i}]")
        _check(item, OPTIONAL_ITEM_FIELDS, f"{where} results[{i}]", required=False)
        _check_items(item["warnings"], "str", f"{where} results[{i}].warnings")


def check_sensitivity(data: Mapping, where: str = "sensitivity") -> None:
    """Check a sensitivity analysis: its keys, and each curve's levels and values (numbers)."""
    _check(data, SENSITIVITY_FIELDS, where)
    _check_items(data["levels"], "num", f"{where}.levels")
    for key in ("layers", "groups"):
        for i, curve in enumerate(data[key]):
            _check(curve, CURVE_FIELDS, f"{where} {key}[{i}]")
            _check_items(curve["levels"], "num", f"{where} {key}[{i}].levels")
            _check_items(curve["values"], "num?", f"{where} {key}[{i}].values")
            if len(curve["levels"]) != len(curve["values"]):
                raise InvalidOptionError(
                    f"{where} {key}[{i}] has {len(curve['levels'])} levels and "
                    f"{len(curve['values'])} values; they go in pairs"
                )


def _check(obj: object, fields: Mapping[str, str], where: str, *, required: bool = True) -> None:
    if not isinstance(obj, Mapping):
        raise InvalidOptionError(f"{where} must be a JSON object, got {_type_name(obj)}")
    for key, spec in fields.items():
        if key not in obj:
            if required:
                raise InvalidOptionError(f"{where} lacks the key {key!r}")
            continue
        if not _holds(obj[key], spec):
            raise InvalidOptionError(
                f"{where}.{key} must be {_describe(spec)}, got {_type_name(obj[key])}"
            )


def _check_items(items: list, spec: str, where: str) -> None:
    for i, item in enumerate(items):
        if not _holds(item, spec):
            raise InvalidOptionError(
                f"{where}[{i}] must be {_describe(spec)}, got {_type_name(item)}"
            )


def _check_values(mapping: Mapping, spec: str, where: str) -> None:
    for key, value in mapping.items():
        if not _holds(value, spec):
            raise InvalidOptionError(
                f"{where}[{_short(key)}] must be {_describe(spec)}, got {_type_name(value)}"
            )


def _holds(value: object, spec: str) -> bool:
    if value is None:
        return spec.endswith("?")
    base = spec.rstrip("?")
    if base == "num":
        return isinstance(value, int | float) and not isinstance(value, bool)
    types = {"str": str, "bool": bool, "list": list, "dict": Mapping}
    return isinstance(value, types[base])


def _describe(spec: str) -> str:
    words = {"num": "a number", "str": "a string", "bool": "true or false", "list": "a list"}
    text = words.get(spec.rstrip("?"), "an object")
    return f"{text} or null" if spec.endswith("?") else text


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    if isinstance(value, int | float):
        return names.get(type(value), "a number")
    return names.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
