"""Op families (``registry.op_rule``), one module per kind of op; importing this registers all."""

from onnxprune.graph.rules import (
    attention,
    elementwise,
    layers,
    mixing,
    movement,
    pooling,
    recurrent,
)

__all__ = ["attention", "elementwise", "layers", "mixing", "movement", "pooling", "recurrent"]
