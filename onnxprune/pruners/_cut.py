"""The k-th smallest score over several arrays, and the mask that cuts below it, in linear time.

Global pruning removes the ``k`` lowest scores of the concatenated flattened layers, ties broken
as a stable sort would (by layer order, then by flat index). That needs one number, the cut
value ``v`` (the ``k``-th smallest score), and per layer how many scores lie below it and how
many equal it; the masks are then one comparison per layer (``score > v``) plus the few ties.

The cut is found Floyd-Rivest style: a strided sample of about 2^16 scores, sorted, brackets the
rank with a margin of a few standard deviations; one pass per layer counts the scores below the
bracket and gathers the (about 1%) inside it, and a partition of those gives the exact value.
The sample only decides the speed: when the bracket misses the rank (adversarial orders), the
scores are concatenated and partitioned whole. No float64 copy is made: every layer is read in
the widest float dtype present (exact for float16/32/64; other dtypes are read as float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLE = 1 << 16
"""Default sample size of ``find_cut``."""
_MARGIN = 4.0  # standard deviations of the sample rank on each side of the bracket


@dataclass(frozen=True)
class Cut:
    """The ``k``-th smallest score over some arrays, and how each array's scores fall around it.

    Attributes:
        value: the ``k``-th smallest score (a NumPy scalar of the arrays' common dtype).
        below: per array, how many scores are below ``value`` (int64).
        equal: per array, how many scores equal ``value`` (int64).
    """

    value: np.generic
    below: np.ndarray
    equal: np.ndarray

    def removed(self, k: int) -> np.ndarray:
        """Per array, how many of the ``k`` lowest scores it holds, ties by array order.

        Every score below ``value`` is removed; the ``k - below.sum()`` tied ones left go to
        the first arrays first, as a stable sort of the concatenation would take them.
        """
        ties_left = k - int(self.below.sum())
        before = np.cumsum(self.equal) - self.equal
        return self.below + np.clip(ties_left - before, 0, self.equal)


def common_dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
    """The dtype that orders every array's values exactly: the widest float, else float64."""
    dtypes = [a.dtype for a in arrays]
    if dtypes and all(d.kind == "f" for d in dtypes):
        return np.result_type(*dtypes)
    return np.dtype(np.float64)


def find_cut(arrays: Sequence[np.ndarray], k: int, sample: int = SAMPLE) -> Cut:
    """The ``k``-th smallest value (1-based) over flat ``arrays`` of one float dtype, NaN-free.

    Args:
        arrays: flat arrays, all of the same float dtype, without NaN.
        k: the rank, ``1 <= k <= total size``.
        sample: about how many scores bracket the rank; inputs up to four times that are
            partitioned whole. It changes the speed, never the result.
    """
    dtype = arrays[0].dtype if arrays else np.dtype(np.float64)
    total = sum(a.size for a in arrays)
    bracket = _bracket(arrays, k, total, sample)
    if bracket is not None:
        lo, hi = bracket
        below, inside = np.zeros(len(arrays), np.int64), []
        for i, a in enumerate(arrays):
            above_lo = a >= lo
            below[i] = a.size - np.count_nonzero(above_lo)  # no NaN: the rest is below
            inside.append(a[above_lo & (a <= hi)])
        rank = k - int(below.sum())
        if 1 <= rank <= sum(x.size for x in inside):
            value = np.partition(np.concatenate(inside), rank - 1)[rank - 1]
            return _around(value, inside, below)
    everything = np.concatenate(arrays) if arrays else np.empty(0, dtype)
    value = np.partition(everything, k - 1)[k - 1]
    return _around(value, arrays, np.zeros(len(arrays), np.int64))


def _bracket(arrays: Sequence[np.ndarray], k: int, total: int, sample: int) -> tuple | None:
    """Two values that very likely enclose the ``k``-th smallest; None for small inputs."""
    values = strided_sample(arrays, total, sample)
    return None if values is None else bracket(values, total, k, k)


def strided_sample(arrays: Sequence[np.ndarray], total: int, sample: int) -> np.ndarray | None:
    """About ``sample`` values taken at a fixed stride through ``arrays``, sorted.

    ``None`` when ``total`` is at most four times ``sample``: such inputs are handled whole.
    """
    if total <= 4 * sample:
        return None
    step = total // sample
    return np.sort(np.concatenate([a[step // 2 :: step] for a in arrays]))


def bracket(sample: np.ndarray, total: int, first: int, last: int) -> tuple:
    """Two values that very likely enclose ranks ``first`` to ``last`` (1-based) of ``total``.

    ``sample`` is ``strided_sample``'s; each end has a margin of a few standard deviations of
    the sample rank (infinite where the margin runs past the sample).
    """
    m = sample.size

    def at(k: int, side: int) -> int:
        margin = _MARGIN * np.sqrt(m * (k / total) * (1 - k / total)) + 2
        where = (k - 0.5) / total * m + side * margin
        return int(np.floor(where)) if side < 0 else int(np.ceil(where))

    low, high = at(first, -1), at(last, 1)
    lo = sample[low] if low >= 0 else sample.dtype.type(-np.inf)
    hi = sample[high] if high < m else sample.dtype.type(np.inf)
    return lo, hi


def _around(value: np.generic, parts: Sequence[np.ndarray], offset: np.ndarray) -> Cut:
    below = offset + np.array([np.count_nonzero(p < value) for p in parts], np.int64)
    equal = np.array([np.count_nonzero(p == value) for p in parts], np.int64)
    return Cut(value, below, equal)


def keep_above(flat: np.ndarray, value: np.generic, ties_removed: int, ties: int) -> np.ndarray:
    """Keep mask of ``flat``: scores above ``value``, and its ties but the first ``ties_removed``.

    ``ties`` is how many scores of ``flat`` equal ``value``. A ``value`` of ``-inf`` removes
    every ``-inf`` score (already-pruned weights never come back), however few ties were asked
    for.
    """
    if value == -np.inf or ties_removed >= ties:
        return flat > value
    keep = flat >= value
    if ties_removed > 0:
        keep[np.flatnonzero(flat == value)[:ties_removed]] = False
    return keep
