"""Sparsity per structured unit: each attention head, each block of FFN neurons or channels.

``analyze`` reports, beside each weight, the units a user thinks in (``structured.units``): an
attention block's heads one by one, an FFN's neurons, a Conv's channels, named by the module
the exporter recorded. A unit's weights are its entries of every layer it belongs to: a head's
columns of Q, K and V and its rows of the output projection. Its direct sparsity is the share
of them that is zero, its effective sparsity the share on no input-to-output path (the
connectivity analysis's, so never over-reported); a unit is *dead* when none is active.
Normalization layers follow, by module: a channel whose scale is zero is dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from onnxprune.report import Sparsities, text_table


@dataclass(frozen=True, slots=True)
class HeadSparsity(Sparsities):
    """One attention head, or the query heads sharing a K/V head (fused grouped-query attention).

    Grouped-query attention written out in plain ops has blocks of query heads and of K/V heads.

    Attributes:
        index: the head's number in its block (the first query head's), from 0.
        heads: how many query heads it is (1, or the query heads per K/V head).
        params: its weights: Q, K, V columns and output-projection rows (a K/V head: its K
            and V columns).
        zeros: those exactly zero.
        active: nonzero ones on some input-to-output path.
    """

    index: int
    heads: int
    params: int
    zeros: int
    active: int

    @property
    def name(self) -> str:
        """``head 2``, or ``heads 2-3`` for query heads sharing a K/V head."""
        return head_name(self.index, self.heads)

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "index": self.index,
            "heads": self.heads,
            "params": self.params,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
        }


@dataclass(frozen=True, slots=True)
class BlockSparsity(Sparsities):
    """The units of one structured layer: an attention block's heads, an FFN's neurons.

    Attributes:
        module: the module its layers share (``model.layers.0.self_attn``), else a layer's
            label or weight name.
        kind: ``head``, ``K/V head``, ``neuron``, ``channel`` or ``hidden unit``; ``norm
            channel`` for a normalization layer (its weights are its scale: a zero one makes the
            channel dead).
        units: how many (heads: query heads).
        dead: units none of whose weights is active.
        blocked: units structured pruning must keep (a graph output, an op it cannot follow).
        params: the weights of its units, in every layer they belong to.
        zeros: those exactly zero.
        active: nonzero ones on some input-to-output path.
        layers: the weights holding them: its filters, then the layers reading them.
        heads: per head, for an attention block (else empty).
    """

    module: str
    kind: str
    units: int
    dead: int
    blocked: int
    params: int
    zeros: int
    active: int
    layers: tuple[str, ...]
    heads: tuple[HeadSparsity, ...] = ()

    def to_dict(self) -> dict:
        """JSON form; ``heads`` is empty for other kinds."""
        return {
            "module": self.module,
            "kind": self.kind,
            "units": self.units,
            "dead": self.dead,
            "blocked": self.blocked,
            "params": self.params,
            "direct_sparsity": self.direct_sparsity,
            "effective_sparsity": self.effective_sparsity,
            "layers": list(self.layers),
            "heads": [head.to_dict() for head in self.heads],
        }


def head_name(index: int, heads: int) -> str:
    """``head 2``, or ``heads 2-3`` for ``heads`` query heads from ``index`` on.

    Example:
        >>> head_name(2, 1), head_name(2, 2)
        ('head 2', 'heads 2-3')
    """
    return f"head {index}" if heads == 1 else f"heads {index}-{index + heads - 1}"


NORM_CHANNEL = "norm channel"
"""The kind of a normalization layer's block: its channels, dead where the scale is zero."""

UNIT_COLUMNS = ("units", "kind", "count", "dead", "blocked", "params", "direct", "effective")
"""The columns of the table of units, here and in rendered reports."""


def format_blocks(blocks: Sequence[BlockSparsity]) -> list[str]:
    """Lines of a table of the units: one row per block, one below it per attention head."""
    rows = []
    for block in blocks:
        rows.append(
            (
                block.module,
                f"{block.kind}s",
                str(block.units),
                str(block.dead),
                str(block.blocked),
                f"{block.params:,}",
                f"{block.direct_sparsity:.2%}",
                f"{block.effective_sparsity:.2%}",
            )
        )
        rows += [
            (
                f"  {head.name}",
                "",
                "",
                "",
                "",
                f"{head.params:,}",
                f"{head.direct_sparsity:.2%}",
                f"{head.effective_sparsity:.2%}",
            )
            for head in block.heads
        ]
    return text_table(UNIT_COLUMNS, rows, "<<>>>>>>")
