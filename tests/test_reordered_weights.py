"""Recurrent weights the TorchScript exporter reorders with nodes: found, analysed, pruned.

The exporter turns torch's gate order (LSTM ``ifgo``, GRU ``rzn``) into ONNX's (``iofc``,
``zrh``) with ``Unsqueeze(Concat(Slice(w), ...))``. It folds that into a stored constant
unless it cannot: inside the branches of a scripted model's ``if`` (Silero VAD's LSTM, shipped
in the ``silero-vad`` wheel, is written so) or with ``do_constant_folding=False``. The stored
tensor, torch's own parameter, is then the weight: ``onnxprune.weights`` follows the reordering
(a ``take`` step). Known answers come from the torch module: its parameter sizes, and its
outputs with the pruned masks applied to its parameters.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest

import onnxprune
from tests.helpers import zero_inactive
from tests.structured._transformers import MARKS

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

pytestmark = MARKS  # torch exports: slow, their warnings quiet

T, F, H = 5, 6, 8


class Branches(nn.Module):
    """An LSTM in one branch of an ``if``, a GRU in the other, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.gru = nn.GRU(F, H, batch_first=True)
        self.head = nn.Linear(H, 3)

    def forward(self, x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0] if bool(first.item()) else self.gru(x)[0]
        return self.head(h)


def _scripted(net: Branches) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        torch.jit.script(net.eval()), (torch.randn(1, T, F), torch.tensor(True)), buffer,
        dynamo=False, opset_version=17, input_names=["x", "first"], output_names=["y"],
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 10)
    return model


def _feeds(seed: int = 0) -> list[dict[str, np.ndarray]]:
    x = np.random.default_rng(seed).standard_normal((1, T, F)).astype(np.float32)
    return [{"x": x, "first": np.array(flag)} for flag in (True, False)]


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def _net(seed: int = 0) -> Branches:
    torch.manual_seed(seed)
    return Branches()


def _stored(model: onnx.ModelProto, net: Branches) -> dict[str, str]:
    """The tensor (initializer or Constant node) holding each recurrent weight of ``net``."""
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [
        (n.output[0], n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"
    ]
    found = {}
    for param, p in net.named_parameters():
        value = p.detach().numpy()
        for name, t in tensors:
            same = ".weight_" in param and tuple(t.dims) == value.shape
            if same and np.array_equal(onnx.numpy_helper.to_array(t), value):
                found[param] = name
    return found


def test_reordered_weights_are_counted_per_gate() -> None:
    net = _net()
    model = _scripted(net)
    report = onnxprune.analyze(model)

    recurrent = sum(p.numel() for n, p in net.named_parameters() if ".weight_" in n)
    assert report.total_params == recurrent + net.head.weight.numel()
    stored = _stored(model, net)
    assert len(stored) == 4  # the stored tensors are torch's own parameters
    layers = {layer.name: layer for layer in report.layers}
    for name, tensor in stored.items():
        layer = layers[tensor]  # stored in the main graph, read in a branch
        gates = "iofc" if name.startswith("lstm") else "zrh"
        assert [g.gate for g in layer.gates] == list(gates)
        assert layer.params == net.get_parameter(name).numel()


def test_cell_gate_units_found_dead_through_the_reordering() -> None:
    # Units 0-3 of the LSTM have zero cell-gate rows (torch's g: rows 2H..2H+4) in weight_ih,
    # weight_hh and both biases: c stays 0 and h = 0. Only if the reordering is followed do
    # those rows land on ONNX's c gate, where the analysis finds the units dead.
    net = _net(1)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(net.lstm, name)[2 * H : 2 * H + 4] = 0
    model = _scripted(net)
    report = onnxprune.analyze(model)
    w = {layer.name: layer for layer in report.layers}[_stored(model, net)["lstm.weight_ih_l0"]]
    assert w.dead_outputs == 4
    assert {g.gate: g.active for g in w.gates}["i"] == (H - 4) * F

    zeroed_model, zeroed = zero_inactive(model)
    assert zeroed > 0
    for feed in _feeds(1):
        np.testing.assert_array_equal(_run(zeroed_model, feed), _run(model, feed))


def test_prune_masks_torch_parameters() -> None:
    # The masks are in the stored layout, which is torch's: applied to the module's parameters,
    # torch computes what ONNX Runtime computes with the pruned model, in both branches.
    net = _net(2)
    model = _scripted(net)
    result = onnxprune.prune(model, sparsity=0.6)
    stored = _stored(model, net)
    by_tensor = {name.rsplit("/", 1)[-1]: mask for name, mask in result.masks.items()}
    with torch.no_grad():
        for param, tensor in stored.items():
            mask = by_tensor[tensor]
            assert 0.3 < 1 - mask.mean() < 0.95  # the recurrent weights carry the prune
            net.get_parameter(param).mul_(torch.from_numpy(mask.astype(np.float32)))
        net.head.weight.mul_(torch.from_numpy(by_tensor[_head(model)].T.astype(np.float32)))
    for feed in _feeds(2):
        with torch.no_grad():
            expected = net(torch.from_numpy(feed["x"]), torch.from_numpy(feed["first"])).numpy()
        np.testing.assert_allclose(_run(result.model, feed), expected, rtol=1e-4, atol=1e-5)


def _head(model: onnx.ModelProto) -> str:
    return next(n.input[1] for n in model.graph.node if n.op_type == "MatMul")


def test_structured_removes_hidden_units_of_an_unfolded_export() -> None:
    # do_constant_folding=False leaves the reordering in the main graph: compaction folds it
    # (a Concat of constants) and removes half the units of both layers.

    class Stacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(F, H, num_layers=2, batch_first=True)
            self.head = nn.Linear(H, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(3)
    net = Stacked().eval()
    x = torch.randn(1, T, F)
    buffer = io.BytesIO()
    torch.onnx.export(
        net, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
        output_names=["y"], do_constant_folding=False,
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    assert any(n.op_type == "Concat" for n in model.graph.node)  # the reordering is there
    s = onnxprune.prune(model, structured="l1", sparsity=0.5).structured
    sizes = [
        next(a.i for a in n.attribute if a.name == "hidden_size")
        for n in s.model.graph.node
        if n.op_type == "LSTM"
    ]
    assert sizes == [H // 2, H // 2]
    onnx.checker.check_model(s.model, full_check=True)
    feed = {"x": x.numpy()}
    np.testing.assert_allclose(_run(s.model, feed), _run(s.masked, feed), rtol=1e-5, atol=1e-6)
