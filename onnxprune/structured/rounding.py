"""``round_to``: how many groups a layer keeps so that its width is a multiple of ``round_to``.

``round_to`` asks for hardware-friendly widths: a layer keeps a multiple of ``round_to`` output
columns (channels, neurons; ``onnxprune prune --round-to``), so that GEMM and convolution kernels
work on full blocks. A dependency group can span several columns of its layer: an attention head
is ``head_size`` columns of each of its Q, K and V projections. Counting such groups in multiples
of ``round_to`` would keep every head of a BERT-like encoder with 4 heads at ``round_to=8`` (no
multiple of 8 below 4), although any number of heads of 64 columns is a multiple of 8 columns.
So a layer whose groups each span ``w`` columns (the greatest common divisor over its groups and
filters) keeps a multiple of ``round_to / gcd(round_to, w)`` groups: ``round_to`` itself for
channels and neurons (``w = 1``), 1 for heads of 64 at ``round_to`` 8, 2 for heads of 64 at 128.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from onnxprune.structured.groups import Groups


def widths(groups: Groups) -> np.ndarray:
    """Per group, the columns it spans in each filter holding it (their gcd; 0 if in none).

    Example:
        >>> from onnxprune.structured.groups import Groups, Slice, Space
        >>> space = Space("h", axis=1, rank=2, base=0, size=4)
        >>> labels = np.array([0, 0, 1, 1])  # two heads of two columns
        >>> g = Groups({"h": space}, labels, 2, np.zeros(2, bool), filters=[Slice("w", 1, "h")])
        >>> widths(g).tolist()
        [2, 2]
    """
    out = np.zeros(groups.count, np.int64)
    for s in groups.filters:
        held, counts = np.unique(groups.of(s.tensor), return_counts=True)
        out[held] = np.gcd(out[held], counts)
    return out


def steps(groups: Groups, layers: Sequence[np.ndarray], round_to: int) -> list[int]:
    """Per layer (its group ids), the multiple of groups it keeps for ``round_to`` columns."""
    width = widths(groups)
    return [step(round_to, [int(w) for w in width[members]]) for members in layers]


def step(round_to: int, group_widths: Sequence[int]) -> int:
    """The multiple of groups spanning ``group_widths`` columns each that is ``round_to`` columns.

    Example:
        >>> step(8, [1, 1, 1]), step(8, [64, 64]), step(128, [64, 64]), step(8, [12, 12])
        (8, 1, 2, 2)
    """
    return round_to // math.gcd(round_to, math.gcd(*group_widths))


def kept(n: int, sparsity: float, step: int) -> int:
    """Groups a layer of ``n`` keeps: ``ceil((1 - sparsity) * n)`` up to a multiple of ``step``.

    Example:
        >>> kept(1024, 0.3, 1), kept(1024, 0.3, 8), kept(4, 0.3, 8), kept(4, 0.3, 1)
        (717, 720, 4, 3)
    """
    keep = math.ceil(round((1 - sparsity) * n, 9))
    return min(n, max(1, step * math.ceil(keep / step)))
