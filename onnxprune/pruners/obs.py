"""SparseGPT's blocked Optimal-Brain-Surgeon pruning of one weight matrix, in float64.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(arXiv 2301.00774, Algorithm 1; PAPERS.md section 4). A layer computes ``W X`` with ``W``
``[rows, cols]`` (rows = outputs, cols = inputs) and calibration inputs ``X`` ``[cols,
samples]``; pruning minimises ``||W X - W' X||^2`` under the mask. With ``H = 2 X X^T / n``,
dampened by ``0.01 * mean(diag H)`` (section 3.2), and ``U`` the upper Cholesky factor of
``H^-1`` (``H^-1 = U^T U``), the columns are visited in order, in blocks of ``blocksize``
(128 in the paper):

- at the start of a block the mask of the block is chosen from the current weights, lowest
  ``w^2 / U[j, j]^2`` first (the OBS error of removing ``w`` once the earlier columns are
  fixed, section 3.3 "adaptive mask selection"); for N:M, per row in each run of M columns, at
  the first column of the run;
- for column ``j``: ``q`` = the column with its pruned entries zeroed, ``err = (w_j - q) /
  U[j, j]``, and ``err * U[j, j:]`` is subtracted from the block's remaining columns (the OBS
  update of the weights not yet fixed);
- after the block, its errors reach the later columns at once through ``U[block, later]`` (lazy
  batch updates, section 3.4).

Unlike the paper's per-block threshold, each block removes an exact number of weights (the same
fraction of the entries it still has, rounded cumulatively), so a layer hits its allocation
exactly. Entries marked ``forced`` (already pruned) are always removed and count towards it.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from onnxprune.pruners.masks import masks_from_counts, share

BLOCKSIZE = 128
"""Columns per block of lazy updates and of adaptive mask selection (B = Bs = 128, section 3)."""

DAMPING = 0.01
"""Dampening of ``H``: ``0.01 * mean(diag H)`` added to its diagonal (section 3.2)."""


def hessian(x: np.ndarray) -> np.ndarray:
    """``2 X X^T`` in float64 for inputs ``x`` ``[cols, samples]`` (the sum, not the mean)."""
    x = np.asarray(x, dtype=np.float64)
    return 2.0 * (x @ x.T)


def inverse_factor(h: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """``U``, upper triangular with ``U^T U = (H + damping * mean(diag H) * I)^-1``.

    A zero ``H`` (inputs that never carry signal) is dampened by 1 instead, so it stays
    invertible; every weight then counts alike.
    """
    h = np.array(h, dtype=np.float64)
    mean = float(np.mean(np.diag(h))) if h.size else 0.0
    h[np.diag_indices_from(h)] += damping * mean if mean > 0 else 1.0
    lower = scipy.linalg.cholesky(h, lower=True)
    inverse = scipy.linalg.cho_solve((lower, True), np.eye(h.shape[0]))
    return scipy.linalg.cholesky(inverse, lower=False)


def saliency(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """SparseGPT's selection score ``w^2 / U[j, j]^2`` of every entry of ``w`` ``[rows, cols]``."""
    return np.square(np.asarray(w, np.float64)) / np.square(np.diag(u))[None, :]


def prune_matrix(
    w: np.ndarray,
    u: np.ndarray,
    *,
    remove: int | None = None,
    nm: tuple[int, int] | None = None,
    forced: np.ndarray | None = None,
    blocksize: int = BLOCKSIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Prune ``w`` ``[rows, cols]`` with SparseGPT, given ``U`` from :func:`inverse_factor`.

    Args:
        w: the weights, rows = outputs, cols = inputs (not modified).
        u: upper Cholesky factor of the dampened ``H^-1``, ``[cols, cols]``.
        remove: unstructured: the number of entries to remove (forced ones included).
        nm: N:M: keep ``n`` of every ``m`` consecutive columns of each row (``cols % m == 0``).
        forced: entries that must be removed (already pruned), or ``None``.
        blocksize: columns per block; with ``nm``, rounded down to a multiple of ``m``.

    Returns:
        The updated float64 weights (zero where removed) and the boolean mask (``True`` = kept).
    """
    w = np.array(w, dtype=np.float64)
    cols = w.shape[1]
    forced = np.zeros(w.shape, bool) if forced is None else np.asarray(forced, bool)
    if nm is not None:
        blocksize = max(nm[1], blocksize - blocksize % nm[1])
    starts = range(0, cols, blocksize)
    quotas = None if nm is not None else _block_quotas(remove or 0, forced, starts, blocksize)
    keep = np.ones(w.shape, bool)
    for index, i1 in enumerate(starts):
        i2 = min(i1 + blocksize, cols)
        block, u1 = w[:, i1:i2].copy(), u[i1:i2, i1:i2]
        pruned = np.zeros(block.shape, bool)
        if quotas is not None:
            pruned = _lowest(block, u1, forced[:, i1:i2], int(quotas[index]))
        err = np.zeros_like(block)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                run = slice(i, i + nm[1])
                pruned[:, run] = _lowest_per_row(
                    block[:, run], u1[run, run], forced[:, i1:i2][:, run], nm
                )
            column = block[:, i]
            q = np.where(pruned[:, i], 0.0, column)
            err[:, i] = (column - q) / u1[i, i]
            block[:, i:] -= np.outer(err[:, i], u1[i, i:])
            block[:, i] = q
        w[:, i1:i2] = block
        w[:, i2:] -= err @ u[i1:i2, i2:]
        keep[:, i1:i2] = ~pruned
    return w, keep


def _block_quotas(remove: int, forced: np.ndarray, starts: range, blocksize: int) -> np.ndarray:
    """Entries each block removes: its forced ones, plus its ``share`` of the rest of ``remove``."""
    rows, cols = forced.shape
    widths = np.array([min(blocksize, cols - s) for s in starts], dtype=np.int64)
    floor = np.array([int(forced[:, s : s + blocksize].sum()) for s in starts], dtype=np.int64)
    return floor + share(remove - int(floor.sum()), rows * widths - floor)


def _lowest(block: np.ndarray, u: np.ndarray, forced: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` entries of lowest saliency in the block (forced first; ties by index)."""
    scores = np.where(forced, -np.inf, saliency(block, u))
    return ~masks_from_counts({"": scores}, {"": count})[""]


def _lowest_per_row(
    run: np.ndarray, u: np.ndarray, forced: np.ndarray, nm: tuple[int, int]
) -> np.ndarray:
    """Per row, the ``m - n`` entries of lowest saliency of a run of ``m`` columns, and forced."""
    n, m = nm
    scores = np.where(forced, -np.inf, saliency(run, u))
    order = np.argsort(scores, axis=1, kind="stable")
    pruned = forced.copy()
    np.put_along_axis(pruned, order[:, : m - n], True, axis=1)
    return pruned
