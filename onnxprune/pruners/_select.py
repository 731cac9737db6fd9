"""The k-th smallest magnitude over tensors read in chunks, without holding the scores at once.

Magnitudes ``|w|`` are non-negative floats, and the bits of a non-negative IEEE float, read as an
unsigned integer, sort like the float. So the k-th smallest magnitude over any number of chunked
tensors is found by radix selection on those *keys*: one pass per 16-bit digit (two for float32)
builds a 65,536-bin histogram of the next digit among the keys that share the digits found so far.
Memory is one chunk and one histogram, whatever the tensors' size.

Zeros have key 0, below every nonzero magnitude, as the ``-inf`` scores of already-pruned weights
are in the in-memory pruner; NaN sorts last, as ``np.partition`` puts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

DIGIT = 16
_BINS = 1 << DIGIT

Keys = Callable[[], Iterable[np.ndarray]]
"""Produces the keys of one tensor, a chunk at a time (a fresh pass on every call)."""


def key_dtype(dtypes: Iterable[np.dtype]) -> np.dtype:
    """The float dtype whose bits order the magnitudes of weights of ``dtypes`` exactly.

    float16/32/64 weights keep their own width (widened to the widest one present, which is
    exact); any other dtype (integers, bfloat16, float8) is read as float64.
    """
    widths = [
        np.dtype(d).itemsize if np.dtype(d).kind == "f" and np.dtype(d).itemsize in (2, 4, 8) else 8
        for d in dtypes
    ]
    return np.dtype(f"f{max(widths, default=4)}")


def to_keys(values: np.ndarray, floats: np.dtype) -> np.ndarray:
    """Sort keys of ``|values|``: their magnitudes as ``floats``, bits read as unsigned ints."""
    magnitude = np.abs(values).astype(floats, copy=False)
    return magnitude.view(f"u{floats.itemsize}")


def kth_smallest(streams: Sequence[Keys], k: int, bits: int) -> int:
    """The ``k``-th smallest key (1-based) over every chunk of every stream.

    Args:
        streams: the keys of each tensor, read once per digit.
        k: rank wanted, ``1 <= k <= number of keys``.
        bits: key width (16, 32 or 64).

    Raises:
        ValueError: ``k`` is outside ``[1, number of keys]`` (a bug in the caller).
    """
    prefix = 0
    left = k
    for shift in range(bits - DIGIT, -1, -DIGIT):
        high = shift + DIGIT
        hist = np.zeros(_BINS, np.int64)
        for stream in streams:
            for keys in stream():
                if high < bits:
                    keys = keys[(keys >> high) == (prefix >> high)]
                digits = ((keys >> shift) & (_BINS - 1)).astype(np.intp)
                hist += np.bincount(digits, minlength=_BINS)
        cumulative = np.cumsum(hist)
        if not 1 <= left <= int(cumulative[-1]):
            raise ValueError(f"rank {k} outside the {int(cumulative[-1])} keys")
        digit = int(np.searchsorted(cumulative, left))
        left -= int(cumulative[digit - 1]) if digit else 0
        prefix |= digit << shift
    return prefix


def count_around(stream: Keys, key: int) -> tuple[int, int]:
    """How many keys of ``stream`` are below ``key``, and how many equal it."""
    below = equal = 0
    for keys in stream():
        below += int(np.count_nonzero(keys < key))
        equal += int(np.count_nonzero(keys == key))
    return below, equal
