"""N:M semi-structured masks: in every M consecutive weights along the input, keep the best N.

The pattern is the one sparse tensor cores accelerate (2:4 on NVIDIA Ampere and later; Mishra et
al., "Accelerating Sparse Deep Neural Networks", arXiv 2104.08378): for each output unit, the
weights over its inputs are cut into groups of M consecutive ones and exactly N of each group
survive. Which N is decided by any score (``importance_scores``, higher = keep).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.errors import InvalidOptionError
from onnxprune.graph.transfers import Contract


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` as ``(2, 4)``.

    Raises:
        InvalidOptionError: not two integers ``N:M`` with ``0 < N < M``.

    Example:
        >>> parse_nm("2:4")
        (2, 4)
    """
    parts = str(text).strip().split(":")
    if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
        raise InvalidOptionError(
            f"N:M={text!r} must be two integers 'N:M' with 0 < N < M, e.g. 2:4"
        )
    n, m = int(parts[0]), int(parts[1])
    _check_nm(n, m)
    return n, m


def nm_masks(
    scores: Mapping[str, np.ndarray],
    kinds: Mapping[str, Contract],
    n: int,
    m: int,
    *,
    skip_indivisible: bool = False,
) -> dict[str, np.ndarray]:
    """Masks keeping the ``n`` highest scores of every ``m`` consecutive weights along the input.

    The input dimension of each layout: matmul ``[K, N]`` along axis 0 (``[N, K]``, axis 1, when
    ``w_transposed``); conv ``[O, C/G, *k]`` along axis 1, each output channel and kernel tap on
    its own; conv_transpose ``[C, O/G, *k]`` along axis 0; recurrent ``W``/``R`` along the
    last axis, each gate row on its own. Equal scores keep the lower index.

    Args:
        scores: importance scores keyed by layer name, in the layout the layer consumes.
        kinds: the layer's ``Contract`` (kind, ``w_transposed``, ``group``) for every key.
        n: weights kept per group.
        m: group size.
        skip_indivisible: leave a layer whose input size is not a multiple of ``m`` dense
            (all-``True`` mask) instead of raising.

    Returns:
        ``bool`` masks keyed like ``scores`` (``True`` = keep).

    Raises:
        InvalidOptionError: ``not 0 < n < m``; a key of ``scores`` missing from ``kinds``; a
            layer's input size not a multiple of ``m`` (unless ``skip_indivisible``).

    Example:
        >>> from onnxprune.weights import WeightSource
        >>> kind = Contract("matmul", 0, 1, WeightSource("W", "initializer"))
        >>> s = np.array([[4.0], [1.0], [3.0], [2.0]])  # [K=4, N=1]
        >>> nm_masks({"W": s}, {"W": kind}, 2, 4)["W"].ravel().tolist()
        [True, False, True, False]
    """
    _check_nm(n, m)
    masks = {}
    for name, values in scores.items():
        if name not in kinds:
            raise InvalidOptionError(f"scores for {name!r} but no layer kind for it")
        values = np.asarray(values)
        axis, size = input_axis(name, values.shape, kinds[name])
        if size % m:
            if not skip_indivisible:
                raise InvalidOptionError(
                    f"layer {name!r} has input size {size}, not a multiple of M={m} for {n}:{m}"
                    f"; {SKIP_HINT}"
                )
            masks[name] = np.ones(values.shape, dtype=bool)  # the caller warns (indivisible)
            continue
        masks[name] = np.moveaxis(_keep_top(np.moveaxis(values, axis, -1), n, m), -1, axis)
    return masks


def indivisible(
    shapes: Mapping[str, tuple[int, ...]], kinds: Mapping[str, Contract], m: int
) -> dict[str, int]:
    """The input size of each layer of ``shapes`` that is not a multiple of ``m``, by name.

    With ``skip_indivisible`` those layers stay dense (an image model's stem reading 3 RGB
    channels), and the caller says so in a warning: the overall sparsity is below N/M.

    Example:
        >>> from onnxprune.weights import WeightSource
        >>> kind = Contract("conv", 0, 1, WeightSource("W", "initializer"))
        >>> indivisible({"W": (8, 3, 7, 7)}, {"W": kind}, 4)
        {'W': 3}
    """
    sizes = {name: input_axis(name, shape, kinds[name])[1] for name, shape in shapes.items()}
    return {name: size for name, size in sizes.items() if size % m}


SKIP_HINT = "--skip-indivisible (skip_indivisible=True) leaves such layers dense"
"""How to prune the other layers when one cannot take N:M: an image model's RGB stem (3
input channels) stops 2:4 on every CNN otherwise."""


def _check_nm(n: int, m: int) -> None:
    integers = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (n, m))
    if not (integers and 0 < n < m):
        raise InvalidOptionError(f"N:M={n}:{m} must be integers with 0 < N < M, e.g. 2:4")


def input_axis(name: str, shape: tuple[int, ...], kind: Contract) -> tuple[int, int]:
    """The axis of the input units in a weight of ``shape``, and the input size per output unit.

    A grouped ConvTranspose stores the channels of all groups along axis 0; a group of M must not
    straddle two of them, so its input size is ``C/G``.
    """
    if kind.kind == "matmul":
        if len(shape) != 2:
            raise InvalidOptionError(f"layer {name!r}: a matmul weight is 2-D, got shape {shape}")
        axis = 1 if kind.w_transposed else 0
        return axis, shape[axis]
    if kind.kind == "recurrent":  # LSTM/GRU/RNN W [D, G*H, I], R [D, G*H, H]: each gate row
        return len(shape) - 1, shape[-1]
    if len(shape) < 3:
        raise InvalidOptionError(f"layer {name!r}: a {kind.kind} weight has rank >= 3, got {shape}")
    if kind.kind == "conv":
        return 1, shape[1]
    if kind.kind == "conv_transpose":
        return 0, shape[0] // max(kind.group, 1)
    raise InvalidOptionError(f"layer {name!r} has unknown kind {kind.kind!r}")


def _keep_top(values: np.ndarray, n: int, m: int) -> np.ndarray:
    """Mask of the ``n`` largest of each ``m`` consecutive entries along the last axis."""
    grouped = values.reshape(*values.shape[:-1], values.shape[-1] // m, m)
    # Stable sort of the negated scores: largest first, and equal scores keep the lower index.
    order = np.argsort(-grouped.astype(np.float64), axis=-1, kind="stable")
    keep = np.zeros(grouped.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :n], True, axis=-1)
    return keep.reshape(values.shape)
