"""Transfer rules, one module per op family; importing this package registers all of them."""

from onnxprune.graph.rules import elementwise, layers, mixing, movement, pooling

__all__ = ["elementwise", "layers", "mixing", "movement", "pooling"]
