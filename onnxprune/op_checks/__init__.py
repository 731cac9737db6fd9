"""Load-time checks of the nodes whose inputs and attributes onnxprune reads.

ONNX's checker validates node arity and attribute types, not values: a ``Conv`` with
``group=0``, a ``Transpose`` whose ``perm`` repeats an axis or a ``Reshape`` to the wrong
number of elements pass it and fail in ONNX Runtime, or in NumPy deep inside onnxprune. Each
check here is a short function registered for its op types with ``@op_check``; it reads the
node's attributes, the shapes of its constant inputs (``ConstantResolver``, never materializing
a weight) and the shapes the model declares for its activations, and raises one line naming the
node. Unknown shapes are not an error: what cannot be checked here is left to the analysis.

The package: ``_base`` holds the registry (``op_check``, ``CHECKS``), ``NodeCheck`` and the
drivers; ``constants``, ``layout`` and ``layers`` register their checks when imported here.
"""

from __future__ import annotations

from onnxprune.op_checks import constants, layers, layout  # noqa: F401 - they register checks
from onnxprune.op_checks._base import CHECKS, SHAPED, NodeCheck, check_nodes, check_shapes, op_check

__all__ = ["CHECKS", "SHAPED", "NodeCheck", "check_nodes", "check_shapes", "op_check"]
