"""Nested groups: units that live within a unit of another group, the same number in each.

Grouped-query attention repeats each K/V head for ``n_rep`` query heads (an ``Expand`` on a new
axis after the heads, a ``Reshape`` merging the two; ``ops.heads.merge_heads``): query head ``i``
reads K/V head ``i // n_rep``. Tying them (one group per K/V head and all its query heads) is
sound but only ever removes whole K/V groups. A *nest* keeps them apart: each query head
(a *child*) is a group of its own under the group of its K/V head (its *parent*). What may go:
a parent with all of its children, and children as long as every parent left keeps the same
number of them (the new repeat count, which the Expand and Reshape targets are rewritten to).

``settle`` finds the nests the groups of the ties leave, or the ties still to add first
(parents sharing a child go together: the K and the V head of one query head); ``respect``
trims a set of groups to remove to one a nest allows (compaction); ``choose`` picks what a
structured prune keeps of a nest, by the scores of the registered criteria.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SlotPairs = tuple[np.ndarray, np.ndarray]
"""Slot ids ``(children, parents)``: child slot ``children[i]`` lives in ``parents[i]``."""


@dataclass(frozen=True)
class Nest:
    """Groups of children, as many under each parent group.

    Attributes:
        parents: [G] parent group ids.
        children: [G, r] child group ids, row ``p`` the children of ``parents[p]``.
    """

    parents: np.ndarray
    children: np.ndarray

    @property
    def members(self) -> np.ndarray:
        """Every group of the nest: the parents, then the children."""
        return np.concatenate([self.parents, self.children.reshape(-1)])


def settle(
    labels: np.ndarray, pairs: Sequence[SlotPairs]
) -> tuple[SlotPairs | None, list[Nest], list[SlotPairs]]:
    """The nests ``pairs`` make under the groups ``labels`` of the slots, or the ties to add.

    Each of ``pairs`` says which slots live in which (one Reshape repeating a space). Parent
    groups sharing a child group must be tied first; a nest that is none (a group both parent
    and child, parents with unequal numbers of children) falls back to tying its children to
    their parents, which is always sound: its pairs are dropped.

    Returns:
        The ties to add before settling again (None when settled), the nests, and the pairs
        left.
    """
    pairs = list(pairs)
    if not pairs:
        return None, [], pairs
    extra = _shared_children(labels, pairs)
    if extra is not None:
        return extra, [], pairs
    nests, undone = _nests(labels, pairs)
    if not undone:
        return None, nests, pairs
    extra = tuple(np.concatenate([pairs[i][k] for i in sorted(undone)]) for k in (0, 1))
    return extra, [], [pair for i, pair in enumerate(pairs) if i not in undone]


def _shared_children(labels: np.ndarray, pairs: list[SlotPairs]) -> SlotPairs | None:
    """Ties between parent slots whose children share a group, or None when there are none."""
    child = np.concatenate([labels[c] for c, _ in pairs])
    parent = np.concatenate([p for _, p in pairs])
    first = {}
    a, b = [], []
    for c, p in zip(child.tolist(), parent.tolist(), strict=True):
        q = first.setdefault(c, p)
        if labels[q] != labels[p]:
            a.append(q)
            b.append(p)
    return (np.array(a), np.array(b)) if a else None


def _nests(labels: np.ndarray, pairs: list[SlotPairs]) -> tuple[list[Nest], set[int]]:
    """The nests of ``pairs`` under ``labels``, and the indices of the pairs that make none.

    Pairs sharing a group are one nest (the K and the V repeat of one layer).
    """
    held = [set(labels[c].tolist()) | set(labels[p].tolist()) for c, p in pairs]
    nests, undone = [], set()
    for members in _joined(held):
        c = np.concatenate([pairs[j][0] for j in members])
        p = np.concatenate([pairs[j][1] for j in members])
        nest = _nest(labels[c], labels[p])
        if nest is None:
            undone.update(members)
        else:
            nests.append(nest)
    return nests, undone


def _joined(held: list[set[int]]) -> list[list[int]]:
    """The indices of ``held``, joined where their sets share an element (union-find)."""
    up = list(range(len(held)))
    first: dict[int, int] = {}
    for i, groups in enumerate(held):
        for g in groups:
            up[_root(up, i)] = _root(up, first.setdefault(g, i))
    pieces: dict[int, list[int]] = {}
    for i in range(len(held)):
        pieces.setdefault(_root(up, i), []).append(i)
    return list(pieces.values())


def _root(up: list[int], i: int) -> int:
    while up[i] != i:
        i = up[i]
    return i


def _nest(child: np.ndarray, parent: np.ndarray) -> Nest | None:
    """The nest of child groups ``child[i]`` in parent groups ``parent[i]``, or None."""
    parents = np.unique(parent)
    kids = [np.unique(child[parent == g]) for g in parents]
    if len({k.size for k in kids}) != 1 or np.isin(parents, child).any():
        return None
    return Nest(parents, np.stack(kids))


def respect(nests: Sequence[Nest], chosen: np.ndarray, gone: np.ndarray) -> np.ndarray:
    """``chosen`` (groups to remove, ``gone`` removed before) less what no nest allows.

    A parent goes only with all of its children; every parent staying keeps as many children
    as the one keeping most (at least one): the children chosen last in a row stay first.
    """
    chosen = chosen.copy()
    for nest in nests:
        out = chosen | gone
        kids = out[nest.children]
        stay = ~(out[nest.parents] & kids.all(axis=1))
        if not stay.any():
            stay[0] = True
        chosen[nest.parents[stay]] = False
        keep = max(1, int((~kids[stay]).sum(axis=1).max()))
        for row in nest.children[stay]:
            more = keep - int((~out[row]).sum())
            if more > 0:
                chosen[row[chosen[row]][-more:]] = False
    return chosen


def choose(
    nest: Nest,
    scores: np.ndarray,
    fixed: np.ndarray,
    want: tuple[float, float],
    round_to: int = 1,
) -> np.ndarray:
    """The groups of ``nest`` to remove: ``k`` parents stay, each with ``n`` of its children.

    ``(k, n)`` is the pair whose parent count and child count are closest to ``want`` (each
    error relative to its total: the parents and the children are two layers, each asked for
    its own sparsity), on a tie the one keeping more; each count a multiple of ``round_to`` or
    all. The children kept are the ``n`` best-scoring of each parent; the parents kept, the
    ``k`` whose score plus their kept children's is highest (scores divided by their kind's
    mean, so parents and children compare). ``fixed`` groups (blocked, excluded) stay: a pair
    that would remove one is passed over (keeping everything always qualifies).
    """
    g, r = nest.children.shape
    parent = _normalized(scores[nest.parents]) + np.where(fixed[nest.parents], np.inf, 0.0)
    child = _normalized(scores[nest.children]) + np.where(fixed[nest.children], np.inf, 0.0)
    order = np.argsort(-child, axis=1, kind="stable")
    ranked = np.take_along_axis(child, order, axis=1)

    def error(pair: tuple[int, int]) -> tuple[float, int, int]:
        k, n = pair
        off = abs(k - want[0]) / g + abs(k * n - want[1]) / (g * r)
        return round(off, 9), -k * n, -k

    pairs = [
        (k, n)
        for k, n in itertools.product(range(1, g + 1), range(1, r + 1))
        if _multiple(k, g, round_to) and _multiple(k * n, g * r, round_to)
    ]
    for k, n in sorted(pairs, key=error):
        rows = np.argsort(-(parent + ranked[:, :n].sum(axis=1)), kind="stable")[:k]
        stays = np.zeros(g, bool)
        stays[rows] = True
        kept = np.zeros((g, r), bool)
        kept[rows] = _rows(order[rows, :n], r)
        drop = np.concatenate([nest.parents[~stays], nest.children[~kept]])
        if not fixed[drop].any():
            return drop
    return np.zeros(0, np.int64)


def _rows(columns: np.ndarray, width: int) -> np.ndarray:
    """[k, width] bool, True at ``columns`` of each row."""
    out = np.zeros((columns.shape[0], width), bool)
    np.put_along_axis(out, columns, True, axis=1)
    return out


def _normalized(values: np.ndarray) -> np.ndarray:
    """``values`` over their mean (as they are when the mean is zero)."""
    values = values.astype(np.float64)
    mean = values.mean() if values.size else 0.0
    return values / mean if mean > 0 else values


def _multiple(count: int, total: int, round_to: int) -> bool:
    return count == total or count % round_to == 0
