"""Structured prune and compaction JSON -> sections: sparsity reached, units, groups left alone.

``prune --structured`` writes ``StructuredResult.to_dict()``, ``compact`` writes
``CompactResult.to_dict()`` and ``prune --compact`` adds the latter as ``compaction`` to its
sparsity report; each becomes the same kind of sections as the other reports, every number read
from the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onnxprune.render import _format as fmt
from onnxprune.render.document import BarPlot, Bars, Block, Paragraph, Section, Table
from onnxprune.text import display_name

UNITS_HEADER = ("#", "layer", "kind", "units kept", "units", "removed")
REMOVED_HEADER = ("layer", "units removed")
FOLDED_HEADER = "of them folded"
REFIT_HEADER = ("layer", "op", "inputs kept", "inputs", "error before", "error after")
BLOCKED_HEADER = ("groups", "reason", "layers")
BLOCKED_ROWS = 20
"""Reasons listed in the "Left alone" table, most groups first; the rest are counted."""
BLOCKED_LAYERS = 5
"""Layers named per reason; the rest are counted."""


def structured_sections(data: Mapping) -> tuple[Section, ...]:
    """Target and reached sparsity, warnings, units per layer, compaction, groups left alone."""
    totals = Table(
        ("quantity", "value"),
        (
            ("target sparsity (groups)", fmt.percent(data["sparsity"])),
            ("scope", data["scope"]),
            ("round to", fmt.count(data["round_to"])),
            ("groups removed", fmt.count(data["groups_removed"])),
            ("prunable groups", fmt.count(data["groups_prunable"])),
            ("sparsity reached (groups)", fmt.percent(data["group_sparsity"])),
            *_parameters(data),
        ),
        (False, True),
    )
    blocks: list[Block] = [totals]
    blocks += [Paragraph(f"Warning: {line}") for line in data["warnings"]]
    refit = data.get("reconstruction")  # absent from reports written before reconstruction
    return (
        Section("Totals", tuple(blocks)),
        Section("Layers", _unit_blocks(data)),
        *((Section("Reconstruction", _refit_blocks(refit)),) if refit else ()),
        Section("Compaction", (_removed_table(data["removed"], None, data.get("labels", {})),)),
        Section("Left alone", _blocked_blocks(data["blocked"])),
    )


def _refit_blocks(refit: Mapping) -> tuple[Block, ...]:
    """The re-fit layers' output errors before and after, what was re-estimated or skipped."""
    blocks: list[Block] = [
        Paragraph(
            f"Layers that lost inputs, re-fit by least squares on {fmt.count(refit['samples'])} "
            f"calibration samples (ridge {fmt.number(refit['ridge'])}); error: relative MSE of "
            "the layer's output against the dense model's, before and after."
        )
    ]
    rows = tuple(
        (
            layer["name"],
            layer["op_type"],
            fmt.count(layer["inputs_kept"]),
            fmt.count(layer["inputs"]),
            fmt.number(layer["error_before"]),
            fmt.number(layer["error_after"]),
        )
        for layer in refit["layers"]
    )
    if rows:
        blocks.append(Table(REFIT_HEADER, rows, (False, False, True, True, True, True)))
    if refit["batchnorms"]:
        names = ", ".join(refit["batchnorms"])
        blocks.append(Paragraph(f"BatchNormalization statistics re-estimated: {names}."))
    blocks += [Paragraph(f"Not re-fit: {n} ({why}).") for n, why in refit["skipped"].items()]
    return tuple(blocks)


def compact_sections(data: Mapping) -> tuple[Section, ...]:
    """Parameters before and after, units removed (and folded) per layer, groups left alone."""
    removed = data["removed"]
    totals = Table(
        ("quantity", "value"),
        (
            ("units removed", fmt.count(sum(removed.values()))),
            ("of them folded into biases", fmt.count(sum(data["folded"].values()))),
            *_parameters(data),
        ),
        (False, True),
    )
    return (
        Section(
            "Compaction",
            (totals, _removed_table(removed, data["folded"], data.get("labels", {}))),
        ),
        Section("Left alone", _blocked_blocks(data["blocked"])),
    )


def _parameters(data: Mapping) -> tuple[tuple[str, str], ...]:
    before, after = data["params_before"], data["params_after"]
    return (
        ("parameters before", fmt.count(before)),
        ("parameters after", fmt.count(after)),
        ("parameters removed", fmt.percent((before - after) / before if before else None)),
        *_macs(data),
    )


def _macs(data: Mapping) -> tuple[tuple[str, str], ...]:
    """MACs before and after, dense and by nonzero weights (reports from before lack them)."""
    if "macs_before" not in data:
        return ()
    return (
        ("MACs before", fmt.macs(data["macs_before"])),
        ("MACs after", fmt.macs(data["macs_after"])),
        ("MACs by nonzero weights before", fmt.macs(data["nonzero_macs_before"])),
        ("MACs by nonzero weights after", fmt.macs(data["nonzero_macs_after"])),
    )


def _unit_blocks(data: Mapping) -> tuple[Block, ...]:
    """Units kept per layer, named ``label (weight)``, counted in their kind (heads, neurons).

    Reports written before kinds and labels name the weight and count ``units``.
    """
    units, shares, target = data["units"], data["layer_sparsity"], data["sparsity"]
    if not units:
        return (Paragraph("No layer had a unit free to go: see the groups left alone."),)
    labels, kinds = data.get("labels", {}), data.get("kinds", {})
    names = tuple(display_name(name, labels.get(name)) for name in units)
    rows = tuple(
        (
            str(i),
            shown,
            f"{kinds[name]}s" if name in kinds else "units",
            fmt.count(kept),
            fmt.count(total),
            fmt.percent(shares[name]),
        )
        for i, (shown, (name, (kept, total))) in enumerate(
            zip(names, units.items(), strict=True), 1
        )
    )
    table = Table(UNITS_HEADER, rows, (True, False, False, True, True, True))
    plot = BarPlot(
        "Units removed per layer",
        "units removed",
        names,
        (Bars("removed", tuple(float(shares[name]) for name in units)),),
        percent=True,
        caption=f"The share of each layer's units removed; the target was {fmt.percent(target)} "
        "of the groups.",
    )
    return (table, plot)


def _removed_table(
    removed: Mapping[str, float], folded: Mapping[str, float] | None, labels: Mapping[str, str]
) -> Block:
    """Units removed per layer, and of them folded when the JSON says (``compact``'s does).

    Layers are named ``label (weight)``; reports written before labels name the weight.
    """
    if not removed:
        return Paragraph("Compaction removed no unit.")
    shown = {name: display_name(name, labels.get(name)) for name in removed}
    if folded is None:
        rows = tuple((shown[name], fmt.count(count)) for name, count in removed.items())
        return Table(REMOVED_HEADER, rows, (False, True))
    rows = tuple(
        (shown[name], fmt.count(count), fmt.count(folded.get(name, 0)))
        for name, count in removed.items()
    )
    return Table((*REMOVED_HEADER, FOLDED_HEADER), rows, (False, True, True))


def _blocked_blocks(blocked: Sequence[Mapping]) -> tuple[Block, ...]:
    """One row per reason, most groups first (``by_reason``), capped at ``BLOCKED_ROWS``."""
    from onnxprune.structured.blocked import BlockedGroup, by_reason

    if not blocked:
        return (Paragraph("None: every group could be followed."),)
    reasons = by_reason(BlockedGroup.from_dict(group) for group in blocked)
    rows = []
    for group in reasons[:BLOCKED_ROWS]:
        names = ", ".join(group.layers[:BLOCKED_LAYERS])
        more = len(group.layers) - BLOCKED_LAYERS
        if more > 0:
            names += f" and {more} more"
        rows.append((fmt.count(group.groups), group.reason, names))
    blocks: list[Block] = [
        Paragraph("Dependency groups that had to stay whole, and why."),
        Table(BLOCKED_HEADER, tuple(rows), (True, False, False)),
    ]
    rest = reasons[BLOCKED_ROWS:]
    if rest:
        count = sum(group.groups for group in rest)
        blocks.append(Paragraph(f"And {fmt.count(count)} groups for {len(rest)} other reasons."))
    return tuple(blocks)
