"""Mapping ONNX weights to module parameters: by name, by node scope, by structure.

Each case exports a module, prunes the export with ``onnxprune.prune`` (random scores, so every
layer loses weights), applies the masks to the module and checks two things: the report maps each
ONNX weight to the parameter worked out by hand, and the masked module computes what the pruned
ONNX model computes (a mask on the wrong layer, or not transposed, would change the output).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnx import numpy_helper  # noqa: E402

import onnxprune  # noqa: E402
import onnxprune.torch as opt  # noqa: E402
from onnxprune.errors import InvalidOptionError  # noqa: E402
from onnxprune.pruners.masks import apply_masks as zero_masked  # noqa: E402
from onnxprune.torch._layers import onnx_weights  # noqa: E402
from tests.torch.helpers import (  # noqa: E402
    LEGACY_EXPORTER_WARNINGS,
    ConvBnNet,
    GroupedNet,
    ResidualNet,
    export,
    randomize_batchnorm,
    renamed,
    run_onnx,
    run_torch,
    without_node_names,
)

nn = torch.nn
pytestmark = [pytest.mark.filterwarnings(w) for w in LEGACY_EXPORTER_WARNINGS]


def prune_and_apply(module, onnx_model, *, sparsity=0.6, **kwargs):
    pruned = onnxprune.prune(onnx_model, sparsity=sparsity, score="random", seed=1)
    handle = opt.apply_masks(module, pruned.masks, onnx_model=onnx_model, **kwargs)
    return pruned, handle


def random_masks(onnx_model, *, density=0.4, seed=1):
    """Random stored-layout masks and the model with them applied, without ``prune``'s report."""
    weights = onnx_weights(onnx_model)
    rng = np.random.default_rng(seed)
    masks = {w.name: rng.random(w.stored_shape) < density for w in weights}
    pruned = zero_masked(onnx_model, masks, {w.name: w.source for w in weights})
    return masks, pruned


def assert_same_function(module, pruned_model, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        run_torch(module, x), run_onnx(pruned_model, x), rtol=1e-4, atol=1e-5
    )


def methods(handle):
    return {m.onnx_name: (m.parameter, m.method) for m in handle.report.matched}


def test_linear_by_name_gemm_trans_b():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    onnx_model = export(mlp, (1, 6))
    assert [n.op_type for n in onnx_model.graph.node].count("Gemm") == 2
    pruned, handle = prune_and_apply(mlp, onnx_model)
    assert methods(handle) == {"0.weight": ("0.weight", "name"), "2.weight": ("2.weight", "name")}
    assert handle.report.ok and not any(m.transposed for m in handle.report.matched)
    for name, mask in pruned.masks.items():  # Gemm transB=1 stores [out, in] like nn.Linear
        np.testing.assert_array_equal(handle.masks[name].numpy(), mask)
    assert_same_function(mlp, pruned.model, (4, 6))


def test_linear_as_matmul_is_transposed():
    # A 3-D input makes the exporter write MatMul with the weight stored [in, out] under a new
    # name (onnx::MatMul_6); the node is still named after the module (/0/MatMul).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    onnx_model = export(net, (2, 5, 4))
    stored = {t.name: tuple(t.dims) for t in onnx_model.graph.initializer if len(t.dims) == 2}
    assert all(name.startswith("onnx::MatMul") for name in stored)
    assert sorted(stored.values()) == [(4, 6), (6, 3)]
    # (Masks by hand: ``prune``'s report fails on a MatMul over a 3-D activation in
    # graph/channel.py, a core bug outside these hooks.)
    masks, pruned = random_masks(onnx_model)
    handle = opt.apply_masks(net, masks, onnx_model=onnx_model)
    assert sorted(p for p, _ in methods(handle).values()) == ["0.weight", "2.weight"]
    assert {m for _, m in methods(handle).values()} == {"scope"}
    assert all(m.transposed for m in handle.report.matched)
    for m in handle.report.matched:
        np.testing.assert_array_equal(handle.masks[m.parameter].numpy(), masks[m.onnx_name].T)
    assert_same_function(net, pruned, (2, 5, 4))
    # Without node names the same matches come from structure (unique shapes: no trace needed).
    handle.remove()
    bare = without_node_names(onnx_model)
    handle = opt.apply_masks(net, masks, onnx_model=bare)
    assert {m for _, m in methods(handle).values()} == {"structure"}
    assert handle.report.order == "not needed"
    assert_same_function(net, pruned, (2, 5, 4))


def test_conv_bn_folded_by_scope_and_by_structure():
    torch.manual_seed(0)
    net = ConvBnNet()
    randomize_batchnorm(net)
    onnx_model = export(net, (1, 3, 6, 6))
    folded = [t.name for t in onnx_model.graph.initializer if t.name.startswith("onnx::Conv_")]
    assert len(folded) == 6  # three folded weights and their new biases
    # Mapped by the module path in the node names (/first/first.0/Conv).
    pruned, handle = prune_and_apply(net, onnx_model)
    got = {p: m for p, m in methods(handle).values()}
    assert got == {
        "stem.0.weight": "scope",
        "first.0.weight": "scope",
        "second.0.weight": "scope",
        "head.weight": "name",
    }
    assert_same_function(net, pruned.model, (2, 3, 6, 6))
    handle.remove()
    # Without node names: ``first`` and ``second`` have the same shape and are defined in the
    # opposite order to the one they run in; a traced forward puts them in graph order.
    bare = without_node_names(onnx_model)
    pruned, handle = prune_and_apply(net, bare)
    got = {p: m for p, m in methods(handle).values()}
    assert got == {
        "stem.0.weight": "structure",
        "first.0.weight": "structure",
        "second.0.weight": "structure",
        "head.weight": "name",
    }
    assert handle.report.order == "execution"
    convs = [n.input[1] for n in bare.graph.node if n.op_type == "Conv"]
    assert methods(handle)[convs[1]][0] == "first.0.weight"  # the second Conv node runs `first`
    assert_same_function(net, pruned.model, (2, 3, 6, 6))


def test_folded_conv_keeps_the_module_zero_pattern():
    # BatchNorm scales whole output channels: a zero in the module stays a zero after folding.
    torch.manual_seed(0)
    net = ConvBnNet()
    randomize_batchnorm(net)
    with torch.no_grad():
        net.first[0].weight[:, :4] = 0
    onnx_model = export(net, (1, 3, 6, 6))
    report = opt.map_weights(net, onnx_model)
    name = next(m.onnx_name for m in report.matched if m.parameter == "first.0.weight")
    weight = next(t for t in onnx_model.graph.initializer if t.name == name)
    folded = numpy_helper.to_array(weight)
    np.testing.assert_array_equal(folded == 0, net.first[0].weight.detach().numpy() == 0)


def test_grouped_convs_match_on_groups_not_only_shape():
    torch.manual_seed(0)
    net = GroupedNet()
    randomize_batchnorm(net)
    names = {"plain.weight": "w_a", "grouped.weight": "w_b"}  # depthwise is folded already
    onnx_model = renamed(export(net, (1, 2, 5, 5)), names)
    pruned, handle = prune_and_apply(net, onnx_model)
    convs = [n.input[1] for n in onnx_model.graph.node if n.op_type == "Conv"]
    assert [methods(handle)[c] for c in convs] == [
        ("plain.weight", "structure"),
        ("grouped.weight", "structure"),
        ("depthwise.weight", "structure"),
    ]
    assert handle.report.order == "not needed"  # (shape, groups) is unique for each
    assert_same_function(net, pruned.model, (2, 2, 5, 5))


@pytest.mark.parametrize("strip", [False, True])
def test_residual_blocks_of_identical_shapes(strip):
    torch.manual_seed(0)
    net = ResidualNet()
    randomize_batchnorm(net)
    onnx_model = export(net, (1, 1, 6, 6))
    onnx_model = without_node_names(onnx_model) if strip else onnx_model
    pruned, handle = prune_and_apply(net, onnx_model, sparsity=0.5)
    expected = ["stem.weight", *(f"blocks.{b}.{i}.weight" for b in (0, 1) for i in (0, 3))]
    convs = [n.input[1] for n in onnx_model.graph.node if n.op_type == "Conv"]
    assert [methods(handle)[c][0] for c in convs] == expected
    assert handle.report.ok
    assert_same_function(net, pruned.model, (2, 1, 6, 6))


def test_unmatched_is_an_error_unless_not_strict():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    onnx_model = export(mlp, (1, 6))
    masks = onnxprune.prune(onnx_model, sparsity=0.5, score="random").masks
    masks["bogus"] = np.ones((2, 2), bool)
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))  # first layer differs
    renamed_model = renamed(onnx_model, {"0.weight": "w0", "2.weight": "w1"})
    masks = {"w0": masks["0.weight"], "w1": masks["2.weight"], "bogus": masks["bogus"]}
    with pytest.raises(opt.MaskMappingError) as info:
        opt.apply_masks(other, masks, onnx_model=renamed_model)
    assert "w0: no nn.Linear with weight shape [5, 6]" in str(info.value)
    assert "bogus: not a prunable weight of the ONNX model" in str(info.value)
    assert isinstance(info.value, InvalidOptionError)
    assert not torch.nn.utils.parametrize.is_parametrized(other[2])  # nothing applied
    handle = opt.apply_masks(other, masks, onnx_model=renamed_model, strict=False)
    report = handle.report
    assert [(m.onnx_name, m.parameter, m.method) for m in report.matched] == [
        ("w1", "2.weight", "structure")
    ]
    assert sorted(u.onnx_name for u in report.unmatched) == ["bogus", "w0"]
    assert not report.ok and report.to_dict()["unmatched"][0]["reason"]
    assert torch.nn.utils.parametrize.is_parametrized(other[2], "weight")
    assert not torch.nn.utils.parametrize.is_parametrized(other[0])


def test_ambiguous_when_counts_differ_or_order_is_unknown():
    torch.manual_seed(0)
    two = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    onnx_model = renamed(export(two, (1, 4)), {"0.weight": "w0", "2.weight": "w1"})
    masks = {k: v for k, v in onnxprune.prune(onnx_model, sparsity=0.5).masks.items()}
    three = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(opt.MaskMappingError, match="2 ONNX and 3 called module weights"):
        opt.apply_masks(three, masks, onnx_model=onnx_model)
    report = opt.apply_masks(three, masks, onnx_model=onnx_model, strict=False).report
    assert report.matched == ()
    assert [u.candidates for u in report.ambiguous] == [("0.weight", "2.weight", "4.weight")] * 2
    # Same counts, but the forward cannot run on the example inputs: order unknown.
    fresh = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    bad = [torch.zeros(1, 3)]
    with pytest.raises(opt.MaskMappingError, match="order is unknown"):
        opt.apply_masks(fresh, masks, onnx_model=onnx_model, example_inputs=bad)
    # With inputs that run, the trace orders them.
    handle = opt.apply_masks(fresh, masks, onnx_model=onnx_model, example_inputs=[torch.ones(2, 4)])
    assert [(m.onnx_name, m.parameter) for m in handle.report.matched] == [
        ("w0", "0.weight"),
        ("w1", "2.weight"),
    ]


def test_mask_of_the_wrong_shape_is_unmatched():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5))
    onnx_model = export(mlp, (1, 6))
    with pytest.raises(opt.MaskMappingError, match=r"mask has shape \[6, 5\], the weight has"):
        opt.apply_masks(mlp, {"0.weight": np.ones((6, 5), bool)}, onnx_model=onnx_model)


def test_names_only_without_onnx_model():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 2))
    mask = np.array([[True, False, True], [False, True, True]])
    handle = opt.apply_masks(mlp, {"0.weight": mask})
    assert methods(handle) == {"0.weight": ("0.weight", "name")}
    np.testing.assert_array_equal(mlp[0].weight.detach().numpy() != 0, mask)
    with pytest.raises(opt.MaskMappingError, match="already parametrized"):
        opt.apply_masks(mlp, {"0.weight": mask})
    handle.remove()
    with pytest.raises(opt.MaskMappingError, match="give onnx_model="):
        opt.apply_masks(mlp, {"onnx::Gemm_3": mask})


def test_masks_applied_twice_through_onnx_are_reported():
    torch.manual_seed(0)
    net = ConvBnNet()
    onnx_model = export(net, (1, 3, 6, 6))
    prune_and_apply(net, onnx_model)
    with pytest.raises(opt.MaskMappingError, match="already parametrized"):
        prune_and_apply(net, onnx_model)


def test_masks_from_an_npz_file(tmp_path):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    onnx_model = export(mlp, (1, 6))
    pruned = onnxprune.prune(onnx_model, sparsity=0.5)
    onnxprune.pruners.masks.save_masks(pruned.masks, tmp_path / "m.masks.npz")
    onnxprune.save_model(pruned.model, tmp_path / "pruned.onnx")
    handle = opt.apply_masks(mlp, tmp_path / "m.masks.npz", onnx_model=tmp_path / "pruned.onnx")
    assert handle.report.ok and len(handle.report.matched) == 2
    assert_same_function(mlp, pruned.model, (3, 6))
