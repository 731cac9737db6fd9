"""The connectivity graph: units, transfer rules, and reachability at two levels.

The exports load on first use (``onnxprune.lazy``): a module that needs one piece of the graph
(``transfers``, ``conv_geometry``) does not pay for ONNX and SciPy through this ``__init__``.
"""

from onnxprune.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(
    __name__,
    {
        "onnxprune.graph.build": ["ConnectivityGraph", "Fallback", "Layer", "Step", "build_graph"],
        "onnxprune.graph.channel": ["LayerActivity", "channel_reachability"],
        "onnxprune.graph.exact": ["exact_reachability"],
        "onnxprune.graph.registry": ["NodeView", "OpFamily", "op_rule"],
    },
)
