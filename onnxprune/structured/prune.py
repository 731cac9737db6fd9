"""Structured filter pruning: remove the lowest-scoring output units of every chain's producer.

L1-norm filter pruning (Li et al., as compared by Wang et al., PAPERS.md section 3): score each
filter by the mean |w| of its incoming weights, remove the lowest fraction per layer (never all),
then rebuild a smaller dense model by slicing the next layer's inputs and the BatchNorm
statistics. Only layers whose units flow one to one into the next layer are pruned (see
``chains``); convolutions feeding a residual Add, a Concat or an unknown op are left alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.errors import InvalidOptionError
from onnxprune.structured._tensors import inferred_shapes, write_back
from onnxprune.structured.chains import attr, find_chains
from onnxprune.structured.compact import CompactResult, compact
from onnxprune.structured.surgery import out_major

Criterion = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def l1(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean |w| of each filter (rows: one per output unit)."""
    return np.abs(rows).mean(axis=1)


def l2(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Root mean square of each filter."""
    return np.sqrt(np.square(rows.astype(np.float64)).mean(axis=1))


def random(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random score per filter (a baseline)."""
    return rng.random(rows.shape[0])


CRITERIA: dict[str, Criterion] = {"l1": l1, "l2": l2, "random": random}


@dataclass(frozen=True)
class StructuredResult:
    """A structured-pruned model.

    Attributes:
        model: the compacted model.
        masked: the same pruning as zeros in the original shapes (same outputs as ``model``).
        units: (kept, total) output units per pruned layer, keyed by weight name.
        compaction: what compaction of ``masked`` removed.
    """

    model: onnx.ModelProto
    masked: onnx.ModelProto
    units: dict[str, tuple[int, int]]
    compaction: CompactResult


def structured_prune(
    model: onnx.ModelProto,
    *,
    sparsity: float,
    criterion: str = "l1",
    round_to: int = 1,
    seed: int = 0,
) -> StructuredResult:
    """Remove ``sparsity`` of the output units of every prunable chain producer, per layer.

    A layer keeps ``ceil((1 - sparsity) * n)`` units, rounded up to a multiple of ``round_to``
    (at most ``n``, at least one). A removed unit's incoming and outgoing weights are zeroed
    (``masked``), then compaction removes it with no fold needed.

    Raises:
        InvalidOptionError: sparsity outside [0, 1), unknown criterion, round_to below 1.
    """
    if not 0 <= sparsity < 1:
        raise InvalidOptionError(f"sparsity={sparsity} must be in [0, 1)")
    if criterion not in CRITERIA:
        raise InvalidOptionError(f"criterion {criterion!r} must be one of {sorted(CRITERIA)}")
    if round_to < 1:
        raise InvalidOptionError(f"round_to={round_to} must be at least 1")
    masked = copy.deepcopy(model)
    arrays = {t.name: numpy_helper.to_array(t) for t in masked.graph.initializer}
    rng = np.random.default_rng(seed)
    units, drops = {}, []
    chains = find_chains(masked.graph, arrays, inferred_shapes(masked))
    for chain in chains:  # scores from the unpruned weights, before any zeroing
        rows = out_major(chain.producer, arrays[chain.producer.input[1]])
        n = rows.shape[0]
        keep_n = min(n, max(1, round_to * math.ceil(math.ceil((1 - sparsity) * n) / round_to)))
        scores = CRITERIA[criterion](rows.reshape(n, -1), rng)
        drop = np.zeros(n, bool)
        drop[np.argsort(scores, kind="stable")[: n - keep_n]] = True
        units[chain.producer.input[1]] = (keep_n, n)
        drops.append(drop)
    for chain, drop in zip(chains, drops, strict=True):
        _zero(chain.producer, chain.consumer, drop, chain.spread, arrays)
    write_back(masked.graph, arrays)
    result = compact(masked)
    return StructuredResult(result.model, masked, units, result)


def _zero(
    p: onnx.NodeProto, c: onnx.NodeProto, drop: np.ndarray, spread: int, arrays: dict
) -> None:
    w = arrays[p.input[1]].copy()
    if p.op_type == "Conv" or (p.op_type == "Gemm" and attr(p, "transB", 0)):
        w[drop] = 0
    else:
        w[:, drop] = 0
    arrays[p.input[1]] = w
    features = np.repeat(drop, spread)
    v = arrays[c.input[1]].copy()
    if c.op_type == "Conv" or (c.op_type == "Gemm" and attr(c, "transB", 0)):
        v[:, features] = 0
    else:
        v[features] = 0
    arrays[c.input[1]] = v
