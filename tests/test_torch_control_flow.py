"""A scripted torch module with an ``if`` on a tensor value: TorchScript exports an ``If`` node.

Its branches read main-graph initializers (``a.weight`` in one branch, ``b.weight`` in the
other); they are found, named by their branch, pruned, and the pruned model equals the torch
module with the same masks applied, whichever branch runs.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxprune

torch = pytest.importorskip("torch")
nn = torch.nn
onnxprune_torch = pytest.importorskip("onnxprune.torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning"),
]


class Branchy(nn.Module):
    """``head(relu(a(x)))`` when ``x`` sums above 0, else ``head(tanh(b(x)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):  # noqa: SIM108 - an if statement, as users write them
            h = torch.relu(self.a(x))
        else:
            h = torch.tanh(self.b(x))
        return self.head(h)


def _export(module: nn.Module) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        torch.jit.script(module.eval()),
        (torch.randn(3, 4),),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    return onnx.load_from_string(buffer.getvalue())


def test_scripted_if_weights_are_found_and_pruned_in_both_branches():
    torch.manual_seed(0)
    module = Branchy()
    model = _export(module)
    assert "If" in [n.op_type for n in model.graph.node]
    report = onnxprune.analyze(model)
    labels = {row.name: row.label or row.name for row in report.layers}
    assert set(labels) == {"a.weight", "b.weight", "head.weight"}
    assert "then_branch" in labels["a.weight"] and "else_branch" in labels["b.weight"]
    result = onnxprune.prune(model, sparsity=0.5)
    assert all(not result.masks[name].all() for name in ("a.weight", "b.weight"))
    onnx.checker.check_model(result.model, full_check=True)
    # the fine-tuning hooks map the branch weights (main-graph initializers) to their modules
    handle = onnxprune_torch.apply_masks(module, result.masks, onnx_model=result.model)
    assert {"a.weight", "b.weight"} <= set(handle.masks)
    session = ort.InferenceSession(
        result.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(5, 4)
    for sign in (1.0, -1.0):  # the then branch, then the else branch
        xs = sign * x.abs()
        (got,) = session.run(None, {"x": xs.numpy()})
        np.testing.assert_allclose(got, module(xs).detach().numpy(), rtol=1e-4, atol=1e-5)
