"""How each op carries units: the spaces it makes, the ties, what to slice, and its constants.

One handler per op family, registered in ``handlers.HANDLERS`` when these modules are imported. A
handler either describes the op fully (spaces of its outputs, initializers to slice, rewrites, and
a constant-propagation rule saying what each output unit holds when its inputs' units are
constant) or blocks the spaces it reads.
"""

from onnxprune.structured.ops import (
    attention,
    blocks,
    elementwise,
    heads,
    interleaved,
    layers,
    layout,
    leading,
    picking,
    recurrent,
    shuffle,
    slicing,
)

__all__ = [
    "attention",
    "blocks",
    "elementwise",
    "heads",
    "interleaved",
    "layers",
    "layout",
    "leading",
    "picking",
    "recurrent",
    "shuffle",
    "slicing",
]
