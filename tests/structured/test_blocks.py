"""Channels regrouped in blocks go whole: GroupNorm's groups, DepthToSpace's channel blocks.

GroupNorm, as both torch exporters write it (Reshape ``[N, C, L] -> [N, G, C/G * L]``,
InstanceNormalization, Reshape back, the affine Mul and Add), normalizes each group of ``C/G``
consecutive channels together: removing a whole group leaves the others' statistics alone. The
compacted model is checked against torch running the smaller module it should equal (a
``GroupNorm`` of the groups kept). DepthToSpace moves ``r * r`` channels to space per output
channel: CRD takes consecutive channels, DCR every ``C/(r*r)``-th one, and SpaceToDepth makes
``r * r`` channels of each (built by hand).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxprune.structured import structured_prune
from tests.structured._common import init, params, run
from tests.structured._group_models import graph_model


def _kept(masked, weight: str) -> np.ndarray:
    """The output channels of ``weight`` the masked model keeps (a nonzero filter)."""
    w = init(masked, weight)
    return w.reshape(w.shape[0], -1).any(axis=1)


@pytest.mark.parametrize(
    ("mode", "block"),
    [
        ("CRD", [[0, 1, 2, 3], [4, 5, 6, 7]]),  # output channel c: channels 4c .. 4c + 3
        ("DCR", [[0, 2, 4, 6], [1, 3, 5, 7]]),  # output channel c: channels c, c + 2, ...
    ],
)
def test_depth_to_space_removes_whole_channel_blocks(mode, block):
    # c1 (8 channels, channels 1 and 3 weak) -> DepthToSpace(2) -> 2 channels of 8x8 -> c2 ->
    # c3 -> y. The 2 groups are the blocks; at 50% the weaker block goes.
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 2, 1, 1)).astype(np.float32)
    w1[[1, 3]] *= 0.01
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"]),
        helper.make_node("DepthToSpace", ["h"], ["d"], blocksize=2, mode=mode),
        helper.make_node("Conv", ["d", "w2"], ["e"]),
        helper.make_node("Conv", ["e", "w3"], ["y"]),
    ]
    inits = {
        "w1": w1,
        "b1": rng.normal(size=8).astype(np.float32),
        "w2": rng.normal(size=(4, 2, 1, 1)).astype(np.float32),
        "w3": rng.normal(size=(3, 4, 1, 1)).astype(np.float32),
    }
    model = graph_model(nodes, {"x": [1, 2, 4, 4]}, {"y": [1, 3, 8, 8]}, inits)
    result = structured_prune(model, sparsity=0.5)

    weak = 0 if mode == "CRD" else 1  # the block holding channels 1 and 3
    assert result.units["w1"] == (4, 8)
    assert np.flatnonzero(~_kept(result.masked, "w1")).tolist() == block[weak]
    assert init(result.model, "w2").shape[1] == 1  # reads the one channel left
    feed = {"x": rng.normal(size=(1, 2, 4, 4)).astype(np.float32)}
    np.testing.assert_allclose(run(result.model, feed)[0], run(result.masked, feed)[0], atol=1e-5)


def test_space_to_depth_removes_a_channel_with_its_four_copies():
    # c1 (2 channels, channel 1 weak) -> SpaceToDepth(2) -> 8 channels of 2x2: output channel
    # (i * 2 + j) * 2 + c holds channel c's pixels at offset (i, j) -> c2 -> y. Channel 1 goes
    # with output channels 1, 3, 5, 7, which c2 no longer reads.
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(2, 3, 1, 1)).astype(np.float32)
    w1[1] *= 0.01
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"]),
        helper.make_node("SpaceToDepth", ["h"], ["d"], blocksize=2),
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    inits = {"w1": w1, "w2": rng.normal(size=(3, 8, 1, 1)).astype(np.float32)}
    model = graph_model(nodes, {"x": [1, 3, 4, 4]}, {"y": [1, 3, 2, 2]}, inits)
    result = structured_prune(model, sparsity=0.5)

    assert result.units["w1"] == (1, 2)
    assert _kept(result.masked, "w1").tolist() == [True, False]
    np.testing.assert_array_equal(init(result.model, "w2"), inits["w2"][:, [0, 2, 4, 6]])
    feed = {"x": rng.normal(size=(1, 3, 4, 4)).astype(np.float32)}
    np.testing.assert_allclose(run(result.model, feed)[0], run(result.masked, feed)[0], atol=1e-5)


@pytest.mark.slow  # torch exports
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_group_norm_groups_go_whole_and_equal_torch(exporter):
    torch = pytest.importorskip("torch")
    from tests.corpus.models import Net, _seeded, export

    nn = torch.nn
    module = _seeded(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    )
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = export(Net(module, {"x": x}), exporter)
    result = structured_prune(model, sparsity=0.5)

    conv1 = next(n.input[1] for n in model.graph.node if n.op_type == "Conv")
    assert result.units[conv1] == (4, 8)
    kept = _kept(result.masked, conv1)
    assert kept.tolist() in ([True] * 4 + [False] * 4, [False] * 4 + [True] * 4)  # one group
    assert params(result.model) < params(model)
    # torch, independently: the module with the kept group only (GroupNorm of 1 group of 4)
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(1, 4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    keep = torch.from_numpy(kept)
    with torch.no_grad():
        small[0].weight.copy_(module[0].weight[keep])
        small[0].bias.copy_(module[0].bias[keep])
        small[1].weight.copy_(module[1].weight[keep])
        small[1].bias.copy_(module[1].bias[keep])
        small[3].weight.copy_(module[3].weight[:, keep])
        small[3].bias.copy_(module[3].bias)
        expected = small.eval()(x).numpy()
    np.testing.assert_allclose(run(result.model, {"x": x.numpy()})[0], expected, atol=1e-5)
