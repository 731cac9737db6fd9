"""SparseGPT's blocked OBS pruning of one matrix (``pruners.obs``) against dense float64 solves.

The references solve the quadratic problem directly instead of going through the Cholesky
factor of ``H^-1``. With ``H`` (dampened) and a row ``w``:

- for a fixed mask whose pruned columns all come before its kept ones, the OBS result is the
  least-squares optimum over the kept columns, ``w'_K = w H[:, K] H[K, K]^-1``;
- for any mask, SparseGPT prunes the columns in order and re-fits only the columns after the
  one pruned (earlier ones are fixed): removing column ``j`` from the not-yet-fixed set ``F``
  moves ``w_R += w_j H[R, R]^-1 H[R, j]`` with ``R = F - {j}``.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.pruners.masks import share
from onnxprune.pruners.obs import DAMPING, inverse_factor, prune_matrix, saliency

RNG = np.random.default_rng(7)


def _damped(h: np.ndarray) -> np.ndarray:
    return h + DAMPING * np.mean(np.diag(h)) * np.eye(h.shape[0])


def _sequential_reference(w: np.ndarray, h: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Columns in order; each pruned one removed by a dense solve over the later columns."""
    w = w.astype(np.float64).copy()
    cols = w.shape[1]
    for r in range(w.shape[0]):
        for j in range(cols):
            if keep[r, j]:
                continue
            rest = np.arange(j + 1, cols)
            if rest.size:
                w[r, rest] += w[r, j] * np.linalg.solve(h[np.ix_(rest, rest)], h[rest, j])
            w[r, j] = 0.0
    return w


def _problem(rows: int, cols: int, samples: int = 60) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.standard_normal((cols, samples)) + 0.3 * RNG.standard_normal((cols, 1))
    return RNG.standard_normal((rows, cols)), 2.0 * x @ x.T


def test_leading_pruned_columns_give_the_least_squares_optimum() -> None:
    w, h = _problem(4, 6)
    w[:, :2] *= 1e-3  # the two first columns are the cheapest to remove: SparseGPT takes them
    new, keep = prune_matrix(w, inverse_factor(h), remove=8, blocksize=128)
    assert not keep[:, :2].any() and keep[:, 2:].all()
    hd = _damped(h)
    kept = np.arange(2, 6)
    optimum = w @ hd[:, kept] @ np.linalg.inv(hd[np.ix_(kept, kept)])
    np.testing.assert_allclose(new[:, kept], optimum, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(new[:, :2], 0.0)


@pytest.mark.parametrize("blocksize", [128, 3, 1])
def test_any_mask_matches_the_sequential_dense_solves(blocksize: int) -> None:
    w, h = _problem(5, 9)
    new, keep = prune_matrix(w, inverse_factor(h), remove=20, blocksize=blocksize)
    assert (~keep).sum() == 20
    np.testing.assert_allclose(new, _sequential_reference(w, _damped(h), keep), atol=1e-10)
    assert np.all(new[~keep] == 0.0)


def test_one_block_chooses_the_lowest_saliency_once() -> None:
    # blocksize >= cols: the mask is chosen once, before any update, from w^2 / U[j, j]^2.
    w, h = _problem(3, 8)
    u = inverse_factor(h)
    _, keep = prune_matrix(w, u, remove=10, blocksize=8)
    order = np.argsort(saliency(w, u).ravel(), kind="stable")
    expected = np.ones(w.size, bool)
    expected[order[:10]] = False
    np.testing.assert_array_equal(keep.ravel(), expected)


def test_upper_factor_squares_to_the_dampened_inverse() -> None:
    _, h = _problem(1, 7)
    u = inverse_factor(h)
    assert np.allclose(np.triu(u), u)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(_damped(h)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 8)])
def test_nm_keeps_n_of_every_m_and_does_not_depend_on_the_block(n: int, m: int) -> None:
    w, h = _problem(6, 16)
    u = inverse_factor(h)
    new, keep = prune_matrix(w, u, nm=(n, m), blocksize=128)
    assert (keep.reshape(6, 16 // m, m).sum(axis=2) == n).all()
    np.testing.assert_allclose(new, _sequential_reference(w, _damped(h), keep), atol=1e-10)
    # Lazy batch updates change the order of the arithmetic, not its result.
    blocked, keep_blocked = prune_matrix(w, u, nm=(n, m), blocksize=m)
    np.testing.assert_array_equal(keep_blocked, keep)
    np.testing.assert_allclose(blocked, new, atol=1e-10)


def test_forced_entries_stay_removed_and_count() -> None:
    w, h = _problem(4, 10)
    forced = np.zeros(w.shape, bool)
    forced[0, :7] = True  # more than the share of row 0's block
    new, keep = prune_matrix(w, inverse_factor(h), remove=12, forced=forced, blocksize=5)
    assert not keep[forced].any() and (new[forced] == 0).all()
    assert (~keep).sum() == 12
    _, keep_nm = prune_matrix(w, inverse_factor(h), nm=(2, 5), forced=forced)
    assert not keep_nm[forced].any()
    assert (keep_nm[1:].reshape(3, 2, 5).sum(axis=2) == 2).all()


def test_share_is_exact_and_bounded() -> None:
    present = np.array([5, 0, 7, 3])
    for count in range(16):
        parts = share(count, present)
        assert parts.sum() == count
        assert ((parts >= 0) & (parts <= present)).all()


def test_zero_inputs_still_invert() -> None:
    u = inverse_factor(np.zeros((3, 3)))
    np.testing.assert_allclose(u, np.eye(3))
