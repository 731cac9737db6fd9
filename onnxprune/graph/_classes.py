"""Units with the same position map, merged: the exact level's layers on few units.

A convolution ORs ``w[o, c, t] & x[c, p + t]`` over channels and taps (a matmul over input units
at each position). Channels whose maps are equal (in a pruned CNN most are reached everywhere, or
nowhere; a classifier's inputs at its one position are reached or not) can be merged first: their
kernel slices are OR-ed into one, and the layer runs over the distinct maps only. The result is
the same bit for bit, at the cost of one pass over the weight's pattern instead of a product
over every unit.
"""

from __future__ import annotations

import numpy as np

MERGE_SHARE = 0.5
"""Merge only when the distinct maps are at most this share of the channels."""


def channel_classes(m: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct channel maps of ``m`` (channels along ``axis``) and each channel's class.

    Returns:
        ``(distinct, classes)``: ``distinct`` is ``m`` with one channel per class along
        ``axis`` (in class order), ``classes`` [C] maps each channel to its class; ``None``
        when merging would save little (more than ``MERGE_SHARE`` of the channels distinct).
    """
    channels = m.shape[axis]
    if m.size == 0 or channels < 2:
        return None
    rows = np.packbits(np.moveaxis(m, axis, 0).reshape(channels, -1), axis=1)
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1])))[:, 0]
    _, first, classes = np.unique(keys, return_index=True, return_inverse=True)
    if first.size > MERGE_SHARE * channels:
        return None
    return np.take(m, first, axis=axis), classes.reshape(-1)


def merge(pattern: np.ndarray, classes: np.ndarray, count: int, axis: int) -> np.ndarray:
    """OR of ``pattern``'s slices along ``axis`` within each class: that axis becomes ``count``."""
    order = np.argsort(classes, kind="stable")
    starts = np.searchsorted(classes[order], np.arange(count))
    return np.logical_or.reduceat(np.take(pattern, order, axis=axis), starts, axis=axis)
