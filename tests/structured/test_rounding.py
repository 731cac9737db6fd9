"""``round_to`` counts columns: a head of ``head_size`` columns is not rounded like a neuron.

The model is ``tests.attention_models.fused(heads=4, c=32, ffn=20)``: ONNX Runtime's fused
``Attention`` with 4 heads of 8 columns (its QKV weight [32, 96] holds 8 columns of each head in
each of Q, K and V), then a feed-forward block of 20 neurons. At sparsity 0.3 per layer the heads
keep ceil(0.7 * 4) = 3 and the neurons ceil(0.7 * 20) = 14. With ``round_to=8``:

- 3 heads are 24 columns of each of Q, K, V, a multiple of 8: the 3 stay (counting heads in
  multiples of 8 would have kept all 4, since no multiple of 8 lies below 4);
- 14 neurons round up to 16.

With ``round_to=16``: 3 heads are 24 columns, not a multiple of 16; 4 heads (32) are, so all 4
stay; the neurons keep 16. Globally (weights drawn with seed 1) at 0.4, round(0.4 * 24) = 10 of
the 24 groups go, the lowest-scoring ones after each layer's scores are divided by their mean;
each layer's kept count is then rounded up the same way.
"""

from __future__ import annotations

import pytest

from onnxprune.structured import structured_prune
from onnxprune.structured.compact import Workspace
from onnxprune.structured.prune import layer_groups
from onnxprune.structured.rounding import steps, widths
from tests.attention_models import fused, fused_feeds
from tests.structured._common import assert_pruned_like_masked, init


def _model():
    return fused(heads=4, c=32, ffn=20)


def test_a_head_spans_its_columns_and_a_neuron_one() -> None:
    groups = Workspace.of(_model()).groups
    layers = layer_groups(groups)
    width = widths(groups)
    # The head layer: 4 groups of 8 columns in Q, K and V (24 of the fused weight's 96, gcd 24
    # or 8 depending on how the filter holds them: a multiple of 8 either way); the neurons: 1.
    by_size = {members.size: sorted(set(width[members].tolist())) for members in layers}
    assert by_size[20] == [1]
    assert len(by_size[4]) == 1 and by_size[4][0] % 8 == 0
    multiples = dict(zip((m.size for m in layers), steps(groups, layers, 8), strict=True))
    assert multiples[4] == 1 and multiples[20] == 8
    multiples = dict(zip((m.size for m in layers), steps(groups, layers, 16), strict=True))
    assert multiples[4] == 2 and multiples[20] == 16


@pytest.mark.parametrize(
    ("round_to", "heads", "neurons"), [(1, 3, 14), (8, 3, 16), (16, 4, 16), (32, 4, 20)]
)
def test_per_layer_rounding_keeps_a_multiple_of_round_to_columns(round_to, heads, neurons):
    result = structured_prune(_model(), sparsity=0.3, round_to=round_to)
    assert result.units == {"qkv": (heads, 4), "w1": (neurons, 20)}
    assert init(result.model, "qkv").shape == (32, 3 * 8 * heads)
    assert init(result.model, "w1").shape == (32, neurons)
    assert (3 * 8 * heads) % round_to == 0 or heads == 4
    assert_pruned_like_masked(result, fused_feeds(32))


def test_global_rounding_keeps_heads_of_a_multiple_of_round_to_columns() -> None:
    model = fused(heads=4, c=32, ffn=20, seed=1)
    plain = structured_prune(model, sparsity=0.4, scope="global")
    rounded = structured_prune(model, sparsity=0.4, scope="global", round_to=8)
    heads, neurons = plain.units["qkv"][0], plain.units["w1"][0]
    assert heads + neurons == 24 - 10  # round(0.4 * 24) groups went
    assert heads < 4  # a head went: under rounding by heads it would come back
    assert rounded.units["qkv"] == (heads, 4)  # heads of 8 columns: nothing to round
    assert rounded.units["w1"] == (8 * -(-neurons // 8), 20)  # up to a multiple of 8
