"""Export back to ONNX like the original model, and the check that the masks held."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import onnxprune  # noqa: E402
import onnxprune.torch as opt  # noqa: E402
from tests.torch.helpers import (  # noqa: E402
    LEGACY_EXPORTER_WARNINGS,
    ConvBnNet,
    export,
    randomize_batchnorm,
    run_onnx,
    run_torch,
)

nn = torch.nn
pytestmark = [pytest.mark.filterwarnings(w) for w in LEGACY_EXPORTER_WARNINGS]


def train_a_little(model, steps=5):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        x, y = torch.randn(8, 3, 6, 6, generator=gen), torch.randint(0, 5, (8,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()


@pytest.fixture
def pruned_convbn(tmp_path):
    torch.manual_seed(0)
    net = ConvBnNet()
    randomize_batchnorm(net)
    original = export(net, (1, 3, 6, 6), opset=13, input_name="image", output_name="logits")
    pruned = onnxprune.prune(original, sparsity=0.7)
    path = tmp_path / "pruned.onnx"
    onnxprune.save_model(pruned.model, path)
    return net, path, pruned


@pytest.mark.slow
def test_export_like_the_original_and_masks_held(pruned_convbn, tmp_path):
    net, pruned_path, pruned = pruned_convbn
    handle = opt.apply_masks(net, pruned.masks, onnx_model=pruned_path)
    train_a_little(net)
    # Still parametrized: the export bakes the masks into a copy and leaves the model alone.
    result = opt.export_onnx(net, tmp_path / "out.onnx", pruned_path, masks=handle)
    assert torch.nn.utils.parametrize.is_parametrized(net.first[0], "weight")
    assert result.held and result.path == tmp_path / "out.onnx"
    proto = onnx.load(str(result.path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert result.opset == 13 and proto.opset_import[0].version == 13
    assert proto.ir_version <= 10 and result.ir_version == proto.ir_version
    assert sorted(c.parameter for c in result.layers) == sorted(handle.masks)
    for check in result.layers:
        assert check.nonzero == 0 and check.masked == int((~handle.masks[check.parameter]).sum())
    # The same direct sparsity as the pruned model, per weight and overall.
    before = {row.name: row for row in pruned.report.layers}
    names = {m.parameter: m.onnx_name for m in handle.report.matched}
    for check in result.layers:
        assert check.direct_sparsity == before[names[check.parameter]].direct_sparsity
    assert result.report.direct_sparsity == pytest.approx(pruned.report.direct_sparsity)
    assert onnxprune.analyze(result.path).direct_sparsity == result.report.direct_sparsity
    # The file computes what the fine-tuned module computes.
    x = np.random.default_rng(0).standard_normal((3, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(proto, x), run_torch(net, x), rtol=1e-4, atol=1e-5)
    d = result.to_dict()
    assert d["held"] is True and len(d["layers"]) == 4
    # The masks are back on the model: training goes on, and they can still be made permanent.
    train_a_little(net)
    handle.make_permanent()
    for name, keep in handle.masks.items():
        weight = net.get_parameter(name)
        assert torch.all(weight[~keep] == 0) and torch.any(weight[keep] != 0)


def test_export_after_make_permanent_keeps_parameter_names(pruned_convbn, tmp_path):
    net, pruned_path, pruned = pruned_convbn
    handle = opt.apply_masks(net, pruned.masks, onnx_model=pruned_path)
    handle.make_permanent()
    result = opt.export_onnx(net, tmp_path / "out.onnx", pruned_path, masks=handle.masks)
    assert result.held
    by_param = {c.parameter: c.onnx_name for c in result.layers}
    assert by_param["head.weight"] == "head.weight"
    assert by_param["first.0.weight"].startswith("onnx::Conv_")  # folded again


def test_masks_that_did_not_hold_raise(pruned_convbn, tmp_path):
    net, pruned_path, _ = pruned_convbn
    claimed = {
        "head.weight": np.zeros((5, 8), bool),  # claims everything is pruned: it is not
        "missing.weight": np.zeros((2, 2), bool),
    }
    with pytest.raises(opt.MaskCheckError, match=r"head.weight \(head.weight\): 40 of 40") as e:
        opt.export_onnx(net, tmp_path / "out.onnx", pruned_path, masks=claimed)
    assert "missing.weight: not found in the export" in str(e.value)
    assert isinstance(e.value, onnxprune.InvalidOptionError)
    result = opt.export_onnx(net, tmp_path / "out.onnx", pruned_path, masks=claimed, check=False)
    assert not result.held
    assert [(c.parameter, c.nonzero, c.held) for c in result.layers] == [
        ("head.weight", 40, False),
        ("missing.weight", 0, False),
    ]


def test_export_without_masks_only_exports(pruned_convbn, tmp_path):
    net, pruned_path, _ = pruned_convbn
    result = opt.export_onnx(net, tmp_path / "out.onnx", pruned_path)
    assert result.layers == () and result.held
    assert (tmp_path / "out.onnx").is_file()
