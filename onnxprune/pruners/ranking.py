"""Score order ordered only where a search asks, so that every removal count is a prefix of it.

An effective target is reached by a search over the number of removed weights ``k``
(``targets.bisect_effective``), one mask set per step. Selecting the ``k`` lowest scores afresh
at each step (``np.partition`` over all weights, per layer and globally) cost far more than the
connectivity analyses themselves on large models, and so did sorting every score once (a stable
argsort of 25M scores takes seconds). Here the order is refined lazily: a :class:`PartialOrder`
knows the set of the ``k`` lowest scores for every ``k`` it was cut at, and a new cut partitions
only the stretch between the two cuts around it. Across layers (:class:`WindowOrder`) only a
window of ranks around where the search looks is gathered and ordered that way; a far count
needs just its threshold, one selection. A search closes in on its answer, so the whole search
costs a few passes over the scores. Between
two steps only the weights ranked between their counts change (:meth:`Ranking.global_changes`,
:meth:`Ranking.layer_changes`), which is what an incremental analysis needs.

The order is the one ``global_`` and ``masks_from_counts`` use: lowest score first, ties by
layer (graph) order and then flat index; already-pruned weights (``-inf``) first and never back.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

import numpy as np

from onnxprune.pruners._cut import SAMPLE, Cut, bracket, common_dtype, find_cut, strided_sample


class PartialOrder:
    """Flat indices of ``values`` from lowest to highest (ties: lower index first), lazily.

    The state is the permutation and the cuts made so far: for every cut ``c``, the first ``c``
    entries of the permutation are the ``c`` lowest values (in no particular order among
    themselves). ``values`` is copied (in its own dtype) and never changed.
    """

    def __init__(self, values: np.ndarray) -> None:
        """Order of ``values`` (flat, NaN-free, float), with no cut yet."""
        self._keys = np.array(values).reshape(-1)
        n = self._keys.size
        self._perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        self._cuts = [0, n]
        self._values: dict[int, np.generic] = {}  # the k-th lowest value at each cut k

    @property
    def size(self) -> int:
        """Number of values."""
        return self._keys.size

    def cut(self, k: int) -> None:
        """Make the first ``k`` entries the ``k`` lowest values; a partition between two cuts."""
        k = min(max(int(k), 0), self.size)
        i = bisect.bisect_left(self._cuts, k)
        if self._cuts[i] == k:
            return
        lo, hi = self._cuts[i - 1], self._cuts[i]
        keys, perm = self._keys[lo:hi], self._perm[lo:hi]  # views: swapped in place
        m = k - lo
        low, self._values[k] = _lowest(keys, perm, m)
        # Only the misplaced entries move: as many high ones below the cut as low ones above.
        up, down = np.flatnonzero(~low[:m]), np.flatnonzero(low[m:]) + m
        keys[up], keys[down] = keys[down], keys[up]
        perm[up], perm[down] = perm[down], perm[up]
        self._cuts.insert(i, k)

    def kth(self, k: int) -> np.generic:
        """The ``k``-th lowest value (``1 <= k <= size``), found without cutting there.

        A selection within the stretch between the cuts around ``k`` (which holds the values
        ranked there): a search that only needs a threshold at a far count, where it will not
        look again, does not pay for moving the values.
        """
        if k not in self._values:
            i = bisect.bisect_left(self._cuts, k)
            lo, hi = self._cuts[i - 1], self._cuts[i]
            self._values[k] = find_cut([self._keys[lo:hi]], k - lo).value
        return self._values[k]

    def span(self, start: int, stop: int) -> np.ndarray:
        """Flat indices ranked ``start`` (included) to ``stop`` (excluded), in no order."""
        self.cut(start)
        self.cut(stop)
        return self._perm[start:stop]


def _lowest(keys: np.ndarray, index: np.ndarray, m: int) -> tuple[np.ndarray, np.generic]:
    """Mask of the ``m`` entries lowest by ``(keys, index)``, and the ``m``-th lowest key.

    ``0 < m < keys.size``.
    """
    cut = find_cut([keys], m)
    low = keys < cut.value
    ties = m - int(cut.below[0])
    if ties:
        tied = np.flatnonzero(keys == cut.value)
        if ties < tied.size:  # the tied entries of lowest index go first
            tied = tied[np.argpartition(index[tied], ties - 1)[:ties]]
        low[tied] = True
    return low, cut.value


class WindowOrder:
    """The order across several flat arrays, ordered only in a window of ranks where asked.

    A search for an effective target looks at a few counts close together once it has closed
    in, and at far counts only for their threshold value. Ordering all weights for it (one
    permutation of them all, and a partition of a stretch of them at every cut) cost more than
    the analyses. Here a far count's value is one selection over the arrays (``find_cut``), and
    a span of ranks is ordered inside a window: the entries whose value lies between two
    values a sorted strided sample puts around the span (a margin on each side), gathered in
    one pass and ordered lazily by a :class:`PartialOrder` of their own. The window moves when a
    span falls outside it. Ties are broken by array order, then by flat index, as everywhere.
    """

    def __init__(
        self, flats: list[np.ndarray], offsets: np.ndarray, dtype: np.dtype, sample: int = SAMPLE
    ) -> None:
        """The order of ``flats`` (flat, of ``dtype``, NaN-free).

        Args:
            flats: the arrays, in order.
            offsets: where each array starts in the concatenation, and the total at the end.
            dtype: the arrays' float dtype.
            sample: about how many values bracket a window; it changes the speed, never the
                result.
        """
        self._flats = flats
        self._offsets = offsets
        self._dtype = np.dtype(dtype)
        self._sample_size = sample
        self._sample: np.ndarray | None = None
        self._cuts: dict[int, Cut] = {}
        # The window: ranks (start, stop], the order of its entries, their flat indices, values
        # and arrays, and per array how many entries rank below it.
        self._start, self._stop = 0, 0
        self._order: PartialOrder | None = None
        self._index = np.zeros(0, np.int64)
        self._inside = (np.zeros(0, self._dtype), np.zeros(0, np.int64))
        self._below = np.zeros(len(flats), np.int64)

    @property
    def size(self) -> int:
        """Number of values."""
        return int(self._offsets[-1])

    def cut(self, k: int) -> Cut:
        """The ``k``-th lowest value (``1 <= k <= size``) and how each array falls around it.

        Inside the window, counted over the window's entries alone; elsewhere one selection.
        """
        if k not in self._cuts:
            if self._order is not None and self._start < k <= self._stop:
                value = self._order.kth(k - self._start)
                values, arrays = self._inside
                n = len(self._flats)
                below = self._below + np.bincount(arrays[values < value], minlength=n)
                equal = np.bincount(arrays[values == value], minlength=n)
                self._cuts[k] = Cut(value, below, equal)
            else:
                self._cuts[k] = find_cut(self._flats, k, self._sample_size)
        return self._cuts[k]

    def span(self, start: int, stop: int) -> np.ndarray:
        """Flat indices (of the concatenation) ranked ``start`` to ``stop`` (excluded)."""
        self._cover(start, stop)
        return self._index[self._order.span(start - self._start, stop - self._start)]

    def _cover(self, start: int, stop: int) -> None:
        """Move the window so that it holds ranks ``start`` to ``stop`` (with a margin)."""
        if self._order is not None and self._start <= start and stop <= self._stop:
            return
        width = max(stop - start, 1)
        want = (max(start - width, 0), min(stop + width, self.size))
        lo, hi = self._around(want)
        while True:
            below, index, values, arrays = self._gather(lo, hi)
            first, last = int(below.sum()), int(below.sum()) + index.size
            if first <= start and stop <= last:
                break
            # The sample missed (adversarial orders): open the side that fell short.
            lo = lo if first <= start else self._dtype.type(-np.inf)
            hi = hi if stop <= last else self._dtype.type(np.inf)
        self._start, self._stop, self._below, self._index = first, last, below, index
        self._inside = (values, arrays)
        self._order = PartialOrder(values)

    def _around(self, ranks: tuple[int, int]) -> tuple[np.generic, np.generic]:
        """Two values that very likely enclose ``ranks``, from a sorted strided sample."""
        if self._sample is None:
            self._sample = strided_sample(self._flats, self.size, self._sample_size)
        if self._sample is None:  # small: the window is everything
            inf = self._dtype.type(np.inf)
            return -inf, inf
        return bracket(self._sample, self.size, max(ranks[0], 1), max(ranks[1], 1))

    def _gather(self, lo: np.generic, hi: np.generic) -> tuple[np.ndarray, ...]:
        """Per array the entries below ``lo``; the entries in ``[lo, hi]``.

        Returns:
            The counts below ``lo``, then each entry inside: flat index (of the
            concatenation), value, and array.
        """
        below = np.zeros(len(self._flats), np.int64)
        index, values = [np.zeros(0, np.int64)], [np.zeros(0, self._dtype)]
        arrays = [np.zeros(0, np.int64)]
        for i, f in enumerate(self._flats):
            above_lo = f >= lo
            below[i] = f.size - np.count_nonzero(above_lo)  # no NaN: the rest is below
            where = np.flatnonzero(above_lo & (f <= hi))
            index.append(where + self._offsets[i])
            values.append(f[where])
            arrays.append(np.full(where.size, i, np.int64))
        return (
            below,
            np.concatenate(index),
            np.concatenate(values),
            np.concatenate(arrays),
        )


class Ranking:
    """The score order of every layer, and optionally of all layers together, built lazily.

    Each layer's order (for per-layer counts) is made on first use, the order across layers
    (``across_layers``) at the first span asked of it. Both are refined only at the counts
    asked for.
    """

    def __init__(
        self,
        scores: Mapping[str, np.ndarray],
        *,
        across_layers: bool = False,
        sample: int = SAMPLE,
    ) -> None:
        """The order of ``scores`` (keyed by layer, in graph order).

        Args:
            scores: importance of every weight (higher = keep), ``-inf`` for pruned ones.
            across_layers: also order all layers together (for ``global_counts``).
            sample: the sample size of the order across layers (``WindowOrder``).
        """
        given = [np.asarray(s) for s in scores.values()]
        dtype = common_dtype(given)
        self._flat = [s.astype(dtype, copy=False).reshape(-1) for s in given]
        self.names = tuple(scores)
        self.shapes = tuple(np.shape(s) for s in given)
        sizes = np.array([f.size for f in self._flat], dtype=np.int64)
        self._offsets = np.concatenate(([0], np.cumsum(sizes)))
        self._pruned = np.array([np.count_nonzero(f == -np.inf) for f in self._flat], np.int64)
        self._layer_orders: dict[int, PartialOrder] = {}
        self._global: WindowOrder | None = None
        if across_layers:
            self._global = WindowOrder(self._flat, self._offsets, dtype, sample)

    @property
    def across_layers(self) -> bool:
        """Whether the order across layers was asked for."""
        return self._global is not None

    def masks(self, counts: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Per layer, the ``counts[name]`` lowest-scored weights removed (``masks_from_counts``).

        Returns:
            Boolean masks shaped like the scores, ``True`` = kept.
        """
        out = {}
        for i, (name, shape) in enumerate(zip(self.names, self.shapes, strict=True)):
            keep = np.ones(self._flat[i].size, bool)
            keep[self._layer(i).span(0, self._floor(i, counts.get(name, 0)))] = False
            out[name] = keep.reshape(shape)
        return out

    def global_masks(self, k: int) -> dict[str, np.ndarray]:
        """``masks(global_counts(k))``, from the order across layers alone.

        One comparison per layer with the ``k``-th lowest score, and its ties by index (as
        ``allocations.global_.global_masks``; already-pruned weights never come back), rather
        than writing the ``k`` removals one by one.
        """
        k = min(max(int(k), int(self._pruned.sum())), self._order_across().size)
        if k == 0:
            return {n: f.reshape(s) != -np.inf for n, f, s in zip(*self._layers(), strict=True)}
        cut = self._order_across().cut(k)
        keep = [f > cut.value for f in self._flat]
        removed = cut.removed(k)
        for f, m, ties, gone in zip(self._flat, keep, cut.equal, removed - cut.below, strict=True):
            if gone < ties and cut.value != -np.inf:  # the ties after the first ``gone`` stay
                m[np.flatnonzero(f == cut.value)[gone:]] = True
        return {
            name: m.reshape(shape)
            for name, m, shape in zip(self.names, keep, self.shapes, strict=True)
        }

    def global_counts(self, k: int) -> dict[str, int]:
        """How many of the ``k`` lowest scores of all layers fall in each layer (``global_``).

        Raises:
            ValueError: the ranking was made without ``across_layers``.
        """
        counts = self._global_counts(k)
        return {name: int(c) for name, c in zip(self.names, counts, strict=True)}

    def emptying_order(self, names: Iterable[str]) -> list[str]:
        """``names`` in the order the global order takes their last weight (``global_counts``).

        A layer's last weight is its highest score, and the lowest scores go first, ties by
        layer order: no count is needed to sort them.
        """
        index = {name: i for i, name in enumerate(self.names)}
        return sorted(names, key=lambda name: (self._flat[index[name]].max(), index[name]))

    def emptied_at(self, name: str) -> int:
        """The fewest removals in the global order that leave layer ``name`` no weight.

        Its last weight's rank plus one: every lower score of all layers, and the ties of its
        highest score up to its own (ties go by layer order). One pass over the scores.
        """
        i = self.names.index(name)
        top = self._flat[i].max()
        below = sum(int(np.count_nonzero(f < top)) for f in self._flat)
        return below + sum(int(np.count_nonzero(f == top)) for f in self._flat[: i + 1])

    def global_changes(self, old: int, new: int) -> dict[str, np.ndarray]:
        """Per layer, where ``global_masks(old)`` and ``global_masks(new)`` differ.

        Flat indices, of the weights ranked between the two counts; layers without any are
        left out.
        """
        floor = int(self._pruned.sum())
        a, b = sorted((max(int(old), floor), max(int(new), floor)))
        changed = self._order_across().span(a, b)
        layer = np.searchsorted(self._offsets, changed, side="right") - 1
        by_layer = np.argsort(layer, kind="stable")
        bounds = np.searchsorted(layer[by_layer], np.arange(len(self.names) + 1))
        out = {}
        for i, name in enumerate(self.names):
            if bounds[i + 1] > bounds[i]:
                out[name] = changed[by_layer[bounds[i] : bounds[i + 1]]] - self._offsets[i]
        return out

    def layer_changes(
        self, old: Mapping[str, int], new: Mapping[str, int]
    ) -> dict[str, np.ndarray]:
        """Per layer, where ``masks(old)`` and ``masks(new)`` differ.

        Flat indices, of the weights ranked between the layer's two counts; layers without any
        are left out.
        """
        out = {}
        for i, name in enumerate(self.names):
            a, b = sorted((self._floor(i, old.get(name, 0)), self._floor(i, new.get(name, 0))))
            if b > a:
                out[name] = self._layer(i).span(a, b)
        return out

    def _layers(self) -> tuple[tuple[str, ...], list[np.ndarray], tuple[tuple[int, ...], ...]]:
        return self.names, self._flat, self.shapes

    def _floor(self, i: int, count: int) -> int:
        """A layer's removals: ``count``, but never fewer than its already-pruned weights."""
        return max(int(count), int(self._pruned[i]))

    def _layer(self, i: int) -> PartialOrder:
        if i not in self._layer_orders:
            self._layer_orders[i] = PartialOrder(self._flat[i])
        return self._layer_orders[i]

    def _order_across(self) -> PartialOrder:
        if self._global is None:
            raise ValueError("the order across layers needs Ranking(..., across_layers=True)")
        return self._global

    def _global_counts(self, k: int) -> np.ndarray:
        """Per layer (array), how many of the ``k`` lowest scores it holds."""
        order = self._order_across()
        k = min(max(int(k), 0), order.size)
        return order.cut(k).removed(k) if k else np.zeros(len(self.names), np.int64)
