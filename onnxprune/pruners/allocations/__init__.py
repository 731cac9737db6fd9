"""Allocations, one module each; importing this package registers all of them.

An allocation turns an overall target sparsity into the number of weights each layer loses
(see :mod:`onnxprune.pruners.registry`). :func:`minimum_threshold.minimum_threshold` is not an
allocation but a wrapper any allocation's counts can be passed through.
"""

from onnxprune.pruners.allocations import (  # noqa: F401  (registers every entry)
    erk,
    global_,
    igq,
    minimum_threshold,
    sensitivity,
    uniform,
    uniform_plus,
)
