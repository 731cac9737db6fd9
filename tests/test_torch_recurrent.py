"""LSTM and GRU models exported from PyTorch (TorchScript exporter): counted, pruned, analysed.

Each model is ``nn.LSTM``/``nn.GRU`` (2 layers, bidirectional, sequence-first or batch-first)
and a ``Linear`` head. Expected counts come from the torch module's own parameters; soundness is
checked against ONNX Runtime: zeroing every entry the analysis calls inactive leaves the
outputs unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from tests.helpers import run_cli, zero_inactive
from tests.structured._transformers import MARKS

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

pytestmark = MARKS  # torch exports: slow, their warnings quiet

T, B, F, H = 5, 2, 6, 8
KINDS = [("LSTM", False), ("LSTM", True), ("GRU", False), ("GRU", True)]


class _Net(nn.Module):
    def __init__(self, kind: str, batch_first: bool) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(
            F, H, num_layers=2, bidirectional=True, batch_first=batch_first
        )
        self.head = nn.Linear(2 * H, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def _export(net: _Net, path: Path) -> onnx.ModelProto:
    net.eval()
    shape = (B, T, F) if net.rnn.batch_first else (T, B, F)
    torch.onnx.export(
        net,
        (torch.randn(*shape),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
    )
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)  # what ONNX Runtime loads
    onnx.save(model, str(path))
    return model


def _net(kind: str, batch_first: bool, seed: int = 0) -> _Net:
    torch.manual_seed(seed)
    return _Net(kind, batch_first)


def _recurrent_params(net: _Net) -> int:
    return sum(p.numel() for n, p in net.rnn.named_parameters() if n.startswith("weight_"))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _input(model: onnx.ModelProto, seed: int) -> np.ndarray:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


@pytest.mark.parametrize(("kind", "batch_first"), KINDS)
def test_every_recurrent_weight_is_counted_per_gate(
    kind: str, batch_first: bool, tmp_path: Path
) -> None:
    net = _net(kind, batch_first)
    model = _export(net, tmp_path / "m.onnx")
    report = onnxprune.analyze(model)
    assert report.total_params == _recurrent_params(net) + net.head.weight.numel()
    recurrent = [layer for layer in report.layers if layer.op_type == kind]
    assert len(recurrent) == 4  # W and R of each of the 2 layers
    gates = "iofc" if kind == "LSTM" else "zrh"
    assert all([g.gate for g in layer.gates] == list(gates) for layer in recurrent)
    result = run_cli("analyze", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("  gate ") == 4 * len(gates)


@pytest.mark.parametrize(("kind", "batch_first"), KINDS)
def test_prune_reaches_the_target_over_all_weights(
    kind: str, batch_first: bool, tmp_path: Path
) -> None:
    net = _net(kind, batch_first)
    model = _export(net, tmp_path / "m.onnx")
    result = onnxprune.prune(model, sparsity=0.9, allocation="erk")
    total = result.report.total_params
    assert total == _recurrent_params(net) + net.head.weight.numel()
    assert abs(result.report.direct_sparsity - 0.9) <= 1 / total
    for layer in result.report.layers:
        if layer.op_type == kind:  # the recurrent weights carry the prune, not only the head
            assert layer.direct_sparsity > 0.5, layer
    onnx.checker.check_model(result.model, full_check=True)
    x = _input(model, 0)
    assert _run(result.model, x).shape == _run(model, x).shape


@pytest.mark.parametrize(("kind", "batch_first"), KINDS)
def test_zeroing_inactive_entries_keeps_outputs(
    kind: str, batch_first: bool, tmp_path: Path
) -> None:
    # Recurrent biases zero (a unit without an input path then outputs zero, as the path
    # convention assumes), every weight randomly pruned at 90%: many units lose their paths.
    net = _net(kind, batch_first, seed=1)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.rnn.named_parameters():
            if name.startswith("bias"):
                p.zero_()
            else:
                p.mul_(torch.rand(p.shape, generator=gen) > 0.9)
        net.head.weight.mul_(torch.rand(net.head.weight.shape, generator=gen) > 0.9)
    model = _export(net, tmp_path / "m.onnx")
    zeroed_model, zeroed = zero_inactive(model)
    assert zeroed > 0
    x = _input(model, 1)
    np.testing.assert_array_equal(_run(zeroed_model, x), _run(model, x))


def test_lstm_units_held_at_zero_by_their_cell_gate(tmp_path: Path) -> None:
    # With biases kept: units 0-3 of layer 0 (forward) have zero cell-gate (g) rows in weight_ih,
    # weight_hh and both biases (torch's gate order is i, f, g, o): c stays 0 and h = 0, so
    # their other gates' rows and the weights reading them are inactive, and zeroing changes
    # nothing.
    net = _net("LSTM", False, seed=2)
    with torch.no_grad():
        rows = slice(2 * H, 2 * H + 4)
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(net.rnn, name)[rows] = 0
    model = _export(net, tmp_path / "m.onnx")
    report = onnxprune.analyze(model)
    first_w = next(layer for layer in report.layers if layer.op_type == "LSTM")
    assert first_w.dead_outputs == 4
    assert {g.gate: g.active for g in first_w.gates}["i"] == (2 * H - 4) * F
    zeroed_model, zeroed = zero_inactive(model)
    # The 4 dead units' i, o, f rows of W (4 * 3 * F) and of R (4 * 3 * H); their columns of R
    # in the forward direction's other rows (4 * H rows less the dead units' 16, their c rows
    # being zero and the rest counted); and layer 1's input columns that read them (both
    # directions' 4 * H rows).
    assert zeroed == 4 * 3 * F + 4 * 3 * H + 4 * (4 * H - 16) + 4 * 2 * 4 * H
    x = _input(model, 2)
    np.testing.assert_array_equal(_run(zeroed_model, x), _run(model, x))


@pytest.mark.parametrize(("kind", "batch_first"), KINDS)
def test_structured_removes_hidden_units_exactly(
    kind: str, batch_first: bool, tmp_path: Path
) -> None:
    # Both layers lose half their units in both directions; layer 1's initial state (an
    # Expand of zeros to the batch size, read through Shape) is dropped, zero by default.
    model = _export(_net(kind, batch_first), tmp_path / "m.onnx")
    s = onnxprune.prune(model, structured="l1", sparsity=0.5).structured
    sizes = [
        next(a.i for a in n.attribute if a.name == "hidden_size")
        for n in s.model.graph.node
        if n.op_type == kind
    ]
    assert sizes == [H // 2, H // 2]
    onnx.checker.check_model(s.model, full_check=True)
    for seed in range(3):
        x = _input(model, seed)
        np.testing.assert_allclose(_run(s.model, x), _run(s.masked, x), rtol=1e-5, atol=1e-6)
