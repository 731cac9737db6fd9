"""Ridge least squares of one layer's output on its inputs, from moments summed over batches.

The reconstruction step of channel pruning (He, Zhang and Sun, "Channel Pruning for Accelerating
Very Deep Neural Networks", arXiv 1707.06168, eq. 1 with the channels fixed): given the inputs
``x`` a layer keeps (rows: one per sample and position) and the output ``y`` the dense model
computed, find the affine map ``y ~ W x + b`` closest in squared error. Only moments are kept
(``X^T X``, ``X^T Y``, sums and the sum of ``y**2``), in float64, so memory does not grow with
the calibration set and the error of any affine map is known without another pass.

The damping pulls ``W`` toward the layer's pruned weights ``W0`` rather than toward zero:
``W = argmin ||Yc - W Xc||^2 + lam ||W - W0||^2`` on centered data, with
``lam = ridge * mean(diag(Cov(x)))``, then ``b = mean(y) - W mean(x)`` (the mean contribution of
the removed inputs goes to the bias). ``W0`` with its own bias is a candidate of that objective,
so the error on the calibration data never rises above the pruned layer's, whatever ``ridge``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxprune.options import DEFAULT_RIDGE


@dataclass
class Moments:
    """Sums over the rows ``x`` (inputs, ``k`` features) and ``y`` (outputs, ``m`` units).

    Attributes:
        xx: ``sum x x^T``, [k, k].
        xy: ``sum x y^T``, [k, m].
        x: ``sum x``, [k].
        y: ``sum y``, [m].
        yy: ``sum ||y||^2``.
        n: number of rows.
    """

    xx: np.ndarray
    xy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    yy: float = 0.0
    n: int = 0

    @classmethod
    def zeros(cls, k: int, m: int) -> Moments:
        """Empty sums for ``k`` input features and ``m`` output units."""
        return cls(np.zeros((k, k)), np.zeros((k, m)), np.zeros(k), np.zeros(m))

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add the rows of ``x`` [rows, k] and ``y`` [rows, m] (any float dtype)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.xx += x.T @ x
        self.xy += x.T @ y
        self.x += x.sum(axis=0)
        self.y += y.sum(axis=0)
        self.yy += float(np.einsum("ij,ij->", y, y))
        self.n += x.shape[0]


def refit(
    m: Moments, w0: np.ndarray, ridge: float = DEFAULT_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """The ridge least-squares map ``(W, b)`` of the module docstring.

    Args:
        m: moments of the kept inputs and the dense outputs (``m.n > 0``).
        w0: the pruned weights [m, k] the damping pulls toward.
        ridge: damping relative to the mean input variance (>= 0).

    Returns:
        ``W`` [m, k] and ``b`` [m], float64.
    """
    mean_x, mean_y = m.x / m.n, m.y / m.n
    cov = m.xx / m.n - np.outer(mean_x, mean_x)
    cross = m.xy / m.n - np.outer(mean_x, mean_y)
    lam = ridge * max(float(np.mean(np.diag(cov))), 0.0)
    a = cov + lam * np.eye(cov.shape[0])
    rhs = cross - cov @ w0.T  # solve for the change from w0: the least change when singular
    import scipy.linalg  # deferred: analyze imports this package, and needs no solver

    try:
        delta = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a), rhs)
    except np.linalg.LinAlgError:
        delta = np.linalg.lstsq(a, rhs, rcond=None)[0]
    w = w0 + delta.T
    return w, mean_y - w @ mean_x


def relative_error(m: Moments, w: np.ndarray, b: np.ndarray) -> float:
    """``sum ||y - W x - b||^2 / sum ||y||^2`` over the rows summed in ``m`` (0 when y is 0)."""
    error = (
        m.yy
        - 2 * np.einsum("ij,ji->", w, m.xy)
        - 2 * b @ m.y
        + np.einsum("ij,jk,ik->", w, m.xx, w)
        + 2 * b @ (w @ m.x)
        + m.n * b @ b
    )
    return max(float(error), 0.0) / m.yy if m.yy > 0 else 0.0


def output_statistics(m: Moments, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of each unit of ``W x + b`` over the rows summed in ``m``.

    Exactly what a pass over the data would measure on the layer's output, without the pass.
    """
    mean_x = m.x / m.n
    cov = m.xx / m.n - np.outer(mean_x, mean_x)
    var = np.einsum("ij,jk,ik->i", w, cov, w)
    return w @ mean_x + b, np.maximum(var, 0.0)
