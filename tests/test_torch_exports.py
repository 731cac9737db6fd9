"""``analyze`` on models exported from PyTorch by the TorchScript exporter (``dynamo=False``).

Every expected value is computed independently with torch from the module itself:

* the MLP by boolean matrix products (a weight is active iff it is nonzero, its input unit is
  reachable from the input and its output unit reaches the output);
* the CNNs by the reference computation of Vysogorets & Kempe (arXiv 2107.02306): a linearized
  float64 copy of the net (weights ``|w|``, biases zero, BatchNorm and ReLU removed), an all-ones
  input and a backward pass of ``sum(output)``; a weight is active iff ``grad * |w| != 0``.

In eval mode the exporter folds BatchNorm into the preceding Conv (the weight becomes
``w * gamma / sqrt(var + eps)`` under a new name such as ``onnx::Conv_15``), so CNN layers are
matched to module weights by graph order and shape, and the folded weight's zero pattern is
checked against the module's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune

torch = pytest.importorskip("torch")
nn = torch.nn
prune = pytest.importorskip("torch.nn.utils.prune")

pytestmark = [
    pytest.mark.slow,  # torch exports
    # torch 2.9+ warns that the TorchScript exporter is legacy; it is still the one that gives
    # the stable ``<module>.weight`` names and the BatchNorm folding these tests are about.
    pytest.mark.filterwarnings(
        "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

ORT_MAX_IR = 10  # newest IR version ONNX Runtime 1.31 loads


# --- helpers -----------------------------------------------------------------------------------


def export(
    module: nn.Module, input_shape: tuple[int, ...], path: Path, *, dynamic_batch: bool = False
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) to ``path`` with the TorchScript exporter, opset 17.

    The saved IR version is capped at what ONNX Runtime loads, and the file is checked to run in
    ONNX Runtime and to agree with torch, so a failure below is about ``analyze``, not the export.
    """
    module.eval()
    x = torch.randn(*input_shape)
    torch.onnx.export(
        module,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None,
    )
    model = onnx.load(str(path))
    if model.ir_version > ORT_MAX_IR:
        model.ir_version = ORT_MAX_IR
        onnx.save(model, str(path))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = (3, *input_shape[1:]) if dynamic_batch else input_shape
    xb = torch.randn(*batch)
    (got,) = session.run(None, {"x": xb.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(xb).numpy(), rtol=1e-4, atol=1e-5)
    if dynamic_batch:
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    return model


def prunable_weights(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, weight)`` of every Conv and Linear, in definition (= execution) order."""
    return [
        (f"{name}.weight", m.weight.detach().clone())
        for name, m in module.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


def random_masks(module: nn.Module, amount: float, seed: int) -> None:
    """Permanent random unstructured masks on every Conv and Linear weight."""
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            prune.random_unstructured(m, name="weight", amount=amount)
            prune.remove(m, "weight")


def linearized_active(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The paper's reference: active entries of every Conv/Linear weight, by backprop in float64."""
    lin = copy.deepcopy(module).double().eval()
    for parent in list(lin.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU)):
                setattr(parent, child_name, nn.Identity())
    with torch.no_grad():
        for name, p in lin.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.abs_()
    lin(torch.ones(input_shape, dtype=torch.float64)).sum().backward()
    return {
        f"{name}.weight": (m.weight.grad * m.weight != 0)
        for name, m in lin.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


def conv_dead_units(active: torch.Tensor, group: int) -> tuple[int, int]:
    """(dead input channels, dead output channels) of a conv's active mask [O, C/g, kh, kw].

    Input channel ``c`` belongs to group ``c // (C/g)`` and is read by that group's outputs only.
    """
    o, cg = active.shape[:2]
    og = o // group
    dead_in = 0
    for c in range(cg * group):
        g, local = divmod(c, cg)
        dead_in += not bool(active[g * og : (g + 1) * og, local].any())
    dead_out = sum(not bool(active[i].any()) for i in range(o))
    return dead_in, dead_out


def match_layers(
    report: onnxprune.SparsityReport, module: nn.Module
) -> list[tuple[onnxprune.LayerSparsity, str, torch.Tensor]]:
    """Pair report rows with module weights by graph order, checking shapes agree."""
    weights = prunable_weights(module)
    assert [row.shape for row in report.layers] == [tuple(w.shape) for _, w in weights]
    return [(row, name, w) for row, (name, w) in zip(report.layers, weights, strict=True)]


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    """Value of initializer ``name`` (where a folded BatchNorm weight ends up)."""
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise AssertionError(f"{name!r} is not an initializer of the exported model")


def check_against_reference(
    path: Path, module: nn.Module, input_shape: tuple[int, ...], groups: dict[str, int]
) -> tuple[onnxprune.SparsityReport, onnxprune.SparsityReport]:
    """Exact level equals the reference per layer; channel level never reports fewer active."""
    expected = linearized_active(module, input_shape)
    exact = onnxprune.analyze(path, level="exact")
    channel = onnxprune.analyze(path, level="channel")
    for report in (exact, channel):
        assert report.fallback_ops == (), f"{report.level}: fell back on {report.fallback_ops}"
    for (row, name, w), ch_row in zip(match_layers(exact, module), channel.layers, strict=True):
        active = expected[name]
        assert row.zeros == ch_row.zeros == int((w == 0).sum()), name
        assert row.active == int(active.sum()), name
        if w.ndim == 4:
            dead_in, dead_out = conv_dead_units(active, groups.get(name, 1))
        else:  # Linear weight [out, in]
            dead_in, dead_out = int((~active.any(0)).sum()), int((~active.any(1)).sum())
        assert (row.dead_inputs, row.dead_outputs) == (dead_in, dead_out), name
        assert ch_row.active >= row.active, name
    assert channel.effective_sparsity <= exact.effective_sparsity
    assert exact.direct_sparsity == channel.direct_sparsity <= channel.effective_sparsity
    return exact, channel


# --- (a) an MLP with random masks and a dead hidden neuron --------------------------------------


def mlp_expected_active(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Active entries of each Linear weight [out, in] by boolean reachability (biases ignored)."""
    nz = [(w != 0).to(torch.float64) for w in weights]
    fwd = [torch.ones(weights[0].shape[1], dtype=torch.float64)]
    for m in nz:
        fwd.append(((m @ fwd[-1]) > 0).to(torch.float64))
    bwd = [torch.ones(weights[-1].shape[0], dtype=torch.float64)]
    for m in reversed(nz):
        bwd.insert(0, ((m.T @ bwd[0]) > 0).to(torch.float64))
    return [
        (w != 0) & (fwd[i][None, :] > 0) & (bwd[i + 1][:, None] > 0) for i, w in enumerate(weights)
    ]


@pytest.mark.parametrize("level", ["channel", "exact"])
def test_mlp_dead_neurons(tmp_path: Path, level: str) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
    )
    random_masks(mlp, amount=0.5, seed=1)
    with torch.no_grad():
        mlp[2].weight[:, 5] = 0  # hidden neuron 5 of layer 1 feeds nothing: its inputs are dead
        mlp[2].weight[7, :] = 0  # hidden neuron 7 of layer 2 is fed by nothing but its bias ...
        mlp[2].bias[7] = 1.0  # ... which does not make it reachable: its outgoing weights are dead
    path = tmp_path / "mlp.onnx"
    export(mlp, (1, 64), path, dynamic_batch=True)
    report = onnxprune.analyze(path, level=level)

    weights = [mlp[i].weight.detach() for i in (0, 2, 4)]
    expected = mlp_expected_active(weights)
    assert report.fallback_ops == ()
    assert [row.name for row in report.layers] == ["0.weight", "2.weight", "4.weight"]
    for row, w, active in zip(report.layers, weights, expected, strict=True):
        assert row.op_type == "Gemm"
        assert row.shape == tuple(w.shape)
        assert row.zeros == int((w == 0).sum())
        assert row.active == int(active.sum()), row.name
        assert row.dead_inputs == int((~active.any(0)).sum()), row.name
        assert row.dead_outputs == int((~active.any(1)).sum()), row.name
    # the two planted dead neurons really are what the counts above rest on
    first, second, third = report.layers
    assert not expected[0][5].any() and bool((weights[0][5] != 0).any())
    assert not expected[2][:, 7].any() and bool((weights[2][:, 7] != 0).any())
    assert first.active <= first.params - first.zeros - int((weights[0][5] != 0).sum())
    assert third.active <= third.params - third.zeros - int((weights[2][:, 7] != 0).sum())
    assert second.dead_inputs >= 1 and second.dead_outputs >= 1
    zeros = sum(int((w == 0).sum()) for w in weights)
    params = sum(w.numel() for w in weights)
    assert report.direct_sparsity == pytest.approx(zeros / params)
    active = sum(int(a.sum()) for a in expected)
    assert report.effective_sparsity == pytest.approx(1 - active / params)
    assert report.effective_sparsity > report.direct_sparsity


# --- (b) Conv + BatchNorm + ReLU + Conv, BatchNorm folded by the exporter -----------------------


def test_conv_bn_relu_conv(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1),
    )
    random_masks(net, amount=0.6, seed=2)
    with torch.no_grad():
        bn = net[1]
        bn.weight.uniform_(0.5, 1.5)  # gamma != 0, so folding keeps the zero pattern
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
        net[0].weight[3] = 0  # channel 3 is only BatchNorm's constant: conv 2 reads no signal
    path = tmp_path / "conv_bn.onnx"
    model = export(net, (1, 3, 12, 12), path)

    folded = not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    report = onnxprune.analyze(path)
    assert report.fallback_ops == ()
    assert [row.op_type for row in report.layers] == ["Conv", "Conv"]
    for row, name, w in match_layers(report, net):
        stored = initializer(model, row.name)
        np.testing.assert_array_equal(stored == 0, w.numpy() == 0)
        assert row.zeros == int((w == 0).sum()), name
        if not folded or name != "0.weight":
            assert row.name == name
    exact, _ = check_against_reference(path, net, (1, 3, 12, 12), {})
    # conv 2's input channel 3 carries no signal, so every weight reading it is inactive
    second = exact.layers[1]
    assert second.dead_inputs >= 1
    assert second.active <= int((net[3].weight[:, [0, 1, 2, 4, 5, 6, 7]] != 0).sum())


# --- (c) a residual block with a zeroed output channel ------------------------------------------


class ResidualNet(nn.Module):
    """stem conv -> [conv-bn-relu-conv-bn + identity] -> relu -> global avgpool -> linear."""

    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(self.relu2(y + x)), 1))


def randomize_bn(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1.0, 1.0)
                m.running_mean.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)


def test_residual_block(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ResidualNet()
    random_masks(net, amount=0.7, seed=3)
    randomize_bn(net)
    with torch.no_grad():
        net.conv1.weight[2] = 0  # body channel 2 carries only bn1's constant
        net.conv2.weight[5] = 0  # body output 5 is dead, but the shortcut still carries channel 5
    shape = (1, 3, 10, 10)
    path = tmp_path / "residual.onnx"
    export(net, shape, path, dynamic_batch=True)

    exact, _ = check_against_reference(path, net, shape, {})
    assert [row.op_type for row in exact.layers] == ["Conv", "Conv", "Conv", "Gemm"]
    _, conv1, conv2, fc = exact.layers
    assert conv2.dead_inputs >= 1  # reads body channel 2: no signal
    assert conv1.dead_outputs >= 1  # its channel 2 has no weights at all
    # the shortcut keeps fc's input 5 alive although conv2's output 5 is all zeros
    expected_fc = linearized_active(net, shape)["fc.weight"]
    assert bool(expected_fc[:, 5].any())
    assert fc.active == int(expected_fc.sum())


# --- (d) grouped and depthwise convolutions -----------------------------------------------------


def test_grouped_and_depthwise(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, groups=4),  # 4 groups: 2 inputs -> 4 outputs each
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16),  # depthwise
        nn.ReLU(),
        nn.Conv2d(16, 6, 1),  # pointwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    random_masks(net, amount=0.5, seed=4)
    with torch.no_grad():
        net[2].weight[9] = 0  # depthwise channel 9 is dead: grouped conv output 9 reaches nothing
        net[0].weight[4:8, 1] = 0  # group 1's second input (channel 3) feeds nothing
    shape = (1, 8, 9, 9)
    path = tmp_path / "grouped.onnx"
    export(net, shape, path)

    groups = {"0.weight": 4, "2.weight": 16}
    exact, _ = check_against_reference(path, net, shape, groups)
    grouped, depthwise, pointwise = exact.layers
    expected = linearized_active(net, shape)
    assert not expected["0.weight"][9].any()
    assert not expected["4.weight"][:, 9].any()
    assert grouped.dead_inputs >= 1 and grouped.dead_outputs >= 1
    assert pointwise.dead_inputs >= 1
    assert depthwise.params == 16 * 1 * 3 * 3


# --- (e) position-level deadness that only the exact level sees ---------------------------------


class CornerNet(nn.Module):
    """conv 3x3 (pad 1) -> relu -> keep only output position (0, 0) -> linear.

    Position (0, 0) of a padded 3x3 conv reads input rows/cols -1..1, so every tap in the first
    kernel row or column reads padding only there: inactive at the exact level, while the channel
    level (any position counts) keeps them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(x))[:, :, :1, :1]
        return self.fc(torch.flatten(y, 1))


def test_position_level_crop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = CornerNet()
    random_masks(net, amount=0.3, seed=5)
    shape = (1, 4, 6, 6)
    path = tmp_path / "corner.onnx"
    export(net, shape, path, dynamic_batch=True)

    exact, channel = check_against_reference(path, net, shape, {})
    w = net.conv.weight.detach()
    alive = (net.fc.weight != 0).any(0)  # conv outputs that fc reads
    inner = int((w[alive, :, 1:, 1:] != 0).sum())  # the taps that read real input at (0, 0)
    assert exact.layers[0].active == inner
    assert channel.layers[0].active > exact.layers[0].active
    assert channel.effective_sparsity < exact.effective_sparsity
