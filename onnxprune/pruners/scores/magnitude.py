"""Magnitude, random and LAMP scores: functions of the weights alone."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.pruners.registry import ScoreContext, score


@score("magnitude", "|w|: keep the largest weights (Global MP of Gupta et al., arXiv 2209.14624)")
def magnitude(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Importance = absolute value of each weight.

    Float weights keep their dtype (``|w|`` is exact in it, and the masks only compare scores);
    other dtypes are read as float64, so that ``|int8 min|`` does not wrap around.
    """
    return {
        name: np.abs(w) if w.dtype.kind == "f" else np.abs(w.astype(np.float64))
        for name, w in weights.items()
    }


@score("random", "uniform random scores, seeded (--seed); masks stay nested as sparsity grows")
def random(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Importance drawn uniformly at random from ``ctx.seed``, independently per layer name.

    The same seed gives the same scores, so raising the sparsity only removes more weights
    (masks are nested), which the effective-sparsity bisection relies on.
    """
    out = {}
    for name, w in weights.items():
        # A per-layer stream keyed by the name keeps scores stable when other layers change.
        key = int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "little")
        rng = np.random.default_rng([ctx.seed, key, len(name)])
        out[name] = rng.random(w.shape)
    return out


@score(
    "lamp", "LAMP: w^2 over the sum of w^2 of all larger weights of the layer (arXiv 2010.07611)"
)
def lamp(weights: Mapping[str, np.ndarray], ctx: ScoreContext) -> dict[str, np.ndarray]:
    """Layer-adaptive magnitude-based pruning score (Lee et al., ICLR 2021).

    Within a layer, with weights sorted so that ``w_u^2`` ascends,
    ``score(u) = w_u^2 / sum_{v >= u} w_v^2`` (PAPERS.md, section 1); then prune globally.
    """
    out = {}
    for name, w in weights.items():
        sq = np.square(w.astype(np.float64)).reshape(-1)
        order = np.argsort(sq, kind="stable")
        ascending = sq[order]
        tail = np.cumsum(ascending[::-1])[::-1]  # sum over v >= u in sorted order
        scores = np.empty_like(sq)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[order] = np.where(tail > 0, ascending / tail, 0.0)
        out[name] = scores.reshape(w.shape)
    return out
