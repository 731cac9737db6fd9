"""LSTM, GRU and RNN: their weights as layers, per gate, and which units are dead through time.

Models are built by hand with ``onnx.helper``; the answers are worked out in the comments from
the gate equations (ONNX operator docs), and checked against ONNX Runtime: zeroing every entry
the analysis calls inactive leaves the outputs unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import analyze
from onnxprune.report import format_table
from tests.helpers import zero_inactive

ort = pytest.importorskip("onnxruntime")

LEVELS = ("channel", "exact")
T, F, H = 4, 3, 2  # steps, input features, hidden units
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
CANDIDATE = {"LSTM": 3, "GRU": 2, "RNN": 0}  # gate c (iofc), h (zrh), i


def _model(
    op: str,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray,
    *,
    attrs: dict | None = None,
    states: dict[int, np.ndarray] | None = None,
    directions: int = 1,
) -> onnx.ModelProto:
    """x [T, 1, F] -> MatMul wa [F, F] -> op -> Y_h [D, 1, H] -> Reshape [1, D*H] -> MatMul head.

    ``states`` are constant inputs by index (5: initial_h, 6: initial_c).
    """
    inits = {"wa": np.ones((F, F)), "w": w, "r": r, "b": b, "head": np.ones((directions * H, 2))}
    inputs = ["xa", "w", "r", "b", "", "", ""]
    for index, value in (states or {}).items():
        inits[f"s{index}"] = value
        inputs[index] = f"s{index}"
    inputs = inputs[: max(i for i, n in enumerate(inputs) if n) + 1]
    direction = "bidirectional" if directions == 2 else "forward"
    nodes = [
        helper.make_node("MatMul", ["x", "wa"], ["xa"]),
        helper.make_node(
            op,
            inputs,
            ["", "yh"],
            hidden_size=H,
            direction=direction,
            **(attrs or {}),
        ),
        helper.make_node("Reshape", ["yh", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "head"], ["y"]),
    ]
    tensors = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
    tensors.append(numpy_helper.from_array(np.array([1, directions * H], np.int64), "flat"))
    graph = helper.make_graph(
        nodes,
        "recurrent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, F])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        tensors,
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _weights(op: str, rng: np.random.Generator, directions: int = 1):
    """Random W, R, B (biases nonzero); feature 2 unread; unit 1's candidate rows zero."""
    g = GATES[op]
    w = rng.uniform(0.5, 1.0, (directions, g * H, F)) * rng.choice([-1, 1], (directions, g * H, F))
    r = rng.uniform(0.5, 1.0, (directions, g * H, H)) * rng.choice([-1, 1], (directions, g * H, H))
    b = rng.uniform(0.5, 1.0, (directions, 2 * g * H))
    w[:, :, 2] = 0  # no gate reads input feature 2
    row = CANDIDATE[op] * H + 1  # unit 1 of the candidate gate
    w[:, row] = 0
    r[:, row] = 0
    b[:, row] = 0  # Wb of the candidate
    b[:, g * H + row] = 0  # Rb of the candidate
    return w, r, b


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _rows(report) -> dict[str, tuple[int, int, int, int]]:
    """name -> (zeros, active, dead_inputs, dead_outputs)."""
    return {r.name: (r.zeros, r.active, r.dead_inputs, r.dead_outputs) for r in report.layers}


@pytest.mark.parametrize("level", LEVELS)
def test_lstm_unit_with_zero_candidate_is_dead(level: str) -> None:
    # W [1, 8, 3] rows iofc x units 0,1; column 2 zero everywhere; unit 1's c row zero, and its
    # c biases, so c_1 = f*c_1' + i*0 stays 0 and h_1 = o*tanh(0) = 0 at every step although
    # its i, o, f gates read the input. Active: unit 0's 4 rows x 2 features = 8 of W (zeros:
    # column 2 (8) + unit 1's c row (2) = 10); in R [1, 8, 2] unit 0's rows read unit 0 (4);
    # R's zeros: unit 1's c row (2). Head [2, 2]: row 1 reads h_1, inactive; active 2.
    # wa [3, 3]: column 2 feeds feature 2, which nothing reads: active 6.
    model = _model("LSTM", *_weights("LSTM", np.random.default_rng(0)))
    report = analyze(model, level=level)
    assert _rows(report) == {
        "wa": (0, 6, 0, 1),
        "w": (10, 8, 1, 1),
        "r": (2, 4, 1, 1),
        "head": (0, 2, 1, 0),
    }
    gates = {g.gate: (g.params, g.zeros, g.active) for g in report.layers[1].gates}
    assert gates == {"i": (6, 2, 2), "o": (6, 2, 2), "f": (6, 2, 2), "c": (6, 4, 2)}
    assert [g.gate for g in report.layers[2].gates] == ["i", "o", "f", "c"]


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("directions", [1, 2])
def test_zeroing_inactive_entries_keeps_outputs(op: str, level: str, directions: int) -> None:
    # Unit 1 (each direction) is held at zero by its candidate alone: the other gates keep their
    # nonzero biases, so only the gate equations (not a zero bias everywhere) make this exact.
    rng = np.random.default_rng(1)
    model = _model(op, *_weights(op, rng, directions), directions=directions)
    x = rng.standard_normal((T, 1, F)).astype(np.float32)
    zeroed_model, zeroed = zero_inactive(model, level)
    g = GATES[op]
    # W: unit 1's other gates' rows (2 features each); R: those rows and column 1 of unit 0's
    # rows; head: one row per direction; wa: column 2.
    other_rows = (g - 1) * 2 + (g - 1) * 2 + g
    assert zeroed == directions * (other_rows + 2) + 3
    np.testing.assert_array_equal(_run(zeroed_model, x), _run(model, x))


@pytest.mark.parametrize(
    ("op", "attrs", "states"),
    [
        ("LSTM", {}, {6: np.array([[[0.0, 0.5]]])}),  # c_1 starts nonzero
        ("GRU", {}, {5: np.array([[[0.0, 0.5]]])}),  # h = ... + z * h': h_1 starts nonzero
        ("LSTM", {"activations": ["Sigmoid", "Sigmoid", "Tanh"]}, {}),  # g = sigmoid(0) = 0.5
        ("GRU", {"linear_before_reset": 1, "activations": ["Sigmoid", "HardSigmoid"]}, {}),
    ],
)
def test_unit_stays_alive_when_zero_is_not_shown(op: str, attrs: dict, states: dict) -> None:
    # Only feature 2's column (and what feeds it) is inactive: unit 1 may be nonzero, and its
    # other gates bring it the input's signal.
    rng = np.random.default_rng(2)
    model = _model(op, *_weights(op, rng), attrs=attrs, states=states)
    report = analyze(model)
    rows = _rows(report)
    assert rows["head"] == (0, 4, 0, 0)
    assert rows["w"][2:] == (1, 0)
    x = rng.standard_normal((T, 1, F)).astype(np.float32)
    zeroed_model, _ = zero_inactive(model, "channel")
    np.testing.assert_array_equal(_run(zeroed_model, x), _run(model, x))


def test_candidate_bias_keeps_unit_alive() -> None:
    # A nonzero Rb of unit 1's candidate: g_1 = tanh(Rb) != 0, c_1 grows, h_1 != 0.
    w, r, b = _weights("LSTM", np.random.default_rng(3))
    b[0, 4 * H + 3 * H + 1] = 0.7
    rows = _rows(analyze(_model("LSTM", w, r, b)))
    assert rows["head"] == (0, 4, 0, 0)


def test_gru_unit_dead_through_recurrence_only() -> None:
    # Unit 1's candidate n_1 reads only h_1 through R (W's h row of unit 1 zero, biases zero):
    # from h_1 = 0, n_1 = tanh(r * R h_1) = 0 forever, so unit 1 is dead although R's h row
    # of unit 1 is nonzero.
    rng = np.random.default_rng(4)
    w, r, b = _weights("GRU", rng)
    r[0, 2 * H + 1] = [0.0, 0.9]
    model = _model("GRU", w, r, b)
    assert _rows(analyze(model))["head"] == (0, 2, 1, 0)
    x = rng.standard_normal((T, 1, F)).astype(np.float32)
    zeroed_model, _ = zero_inactive(model, "channel")
    np.testing.assert_array_equal(_run(zeroed_model, x), _run(model, x))


def test_weights_are_counted_and_shown_per_gate() -> None:
    report = analyze(_model("GRU", *_weights("GRU", np.random.default_rng(5))))
    # wa 9 + W 3*2*3 = 18 + R 3*2*2 = 12 + head 4; biases are not counted.
    assert report.total_params == 9 + 18 + 12 + 4
    table = format_table(report)
    for gate in "zrh":
        assert f"  gate {gate}" in table
    (w_row,) = [layer for layer in report.to_dict()["layers"] if layer["name"] == "w"]
    assert [g["gate"] for g in w_row["gates"]] == ["z", "r", "h"]
    assert "gates" not in report.to_dict()["layers"][0]


def test_run_time_weights_fall_back_to_dense() -> None:
    # R computed at run time (Identity of x-derived data is not a constant): dense mixing.
    model = _model("RNN", *_weights("RNN", np.random.default_rng(6)))
    model.graph.node[1].input[2] = "rr"
    model.graph.node.insert(1, helper.make_node("Identity", ["r"], ["r_id"]))
    model.graph.node.insert(2, helper.make_node("Add", ["r_id", "x_r"], ["rr"]))
    model.graph.node.insert(0, helper.make_node("ReduceSum", ["x"], ["x_r"], keepdims=1))
    report = analyze(model)
    assert [f.op_type for f in report.fallbacks] == ["RNN"]
    assert [layer.name for layer in report.layers] == ["wa", "head"]


def test_gates_travel_in_the_service_report() -> None:
    from onnxprune.service.messages import report_message

    report = analyze(_model("LSTM", *_weights("LSTM", np.random.default_rng(7))))
    message = report_message(report)
    (w_row,) = [layer for layer in message.layers if layer.name == "w"]
    assert [(g.gate, g.params) for g in w_row.gates] == [(g, 6) for g in "iofc"]
    assert not message.layers[0].gates
