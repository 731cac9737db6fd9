"""Symbolic dimensions fixed by name (``--dim batch=1``) wherever a model is analyzed.

The sizes go into shape inference once (``graph.shapes.infer_shapes``): ``analyze``, every
prune, ``compact`` and structured pruning take them, as they take ``--input-shape``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.cli import main
from onnxprune.errors import InvalidOptionError
from onnxprune.graph.rules.movement import NEEDS_SHAPES
from onnxprune.graph.shapes import infer_shapes
from onnxprune.structured import compact, structured_prune
from tests.helpers import refused, zero_inactive
from tests.structured._common import assert_close, run


def _model(nodes, inits, x_dims, y_dims) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_dims)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _split_rows() -> onnx.ModelProto:
    """x[batch,6] -> MatMul -> [batch,6] -> Reshape [-1,3] -> Reshape [-1,6] -> MatMul -> y.

    The Reshapes move elements across rows: the analysis follows them with static shapes only.
    """
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(size=(6, 6)).astype(np.float32),
        "w2": rng.normal(size=(6, 2)).astype(np.float32),
        "s1": np.array([-1, 3], np.int64),
        "s2": np.array([-1, 6], np.int64),
    }
    inits["w1"][:, 4] = 0  # a dead unit that the analysis sees through the Reshapes
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Reshape", ["h", "s1"], ["r"]),
        helper.make_node("Reshape", ["r", "s2"], ["b"]),
        helper.make_node("MatMul", ["b", "w2"], ["y"]),
    ]
    return _model(nodes, inits, ["batch", 6], ["batch", 2])


def test_dims_give_the_reshapes_static_shapes():
    model = _split_rows()
    reasons = {f.reason for f in onnxprune.analyze(model).fallbacks}
    assert NEEDS_SHAPES in reasons
    fixed = onnxprune.analyze(model, dims={"batch": 2})
    assert fixed.fallbacks == ()
    # the same as the whole input shape given (an independent spelling)
    assert fixed.to_dict() == onnxprune.analyze(model, input_shapes={"x": (2, 6)}).to_dict()
    # position by position, w2's row 4 reads only the dead unit 4 (moved there and back)
    exact = onnxprune.analyze(model, level="exact", dims={"batch": 2})
    assert exact.layers[1].active == 10  # 12 weights less its row 4


def test_an_unknown_dim_is_refused_naming_the_symbolic_dims():
    with pytest.raises(InvalidOptionError) as error:
        onnxprune.analyze(_split_rows(), dims={"batsh": 2})
    assert (
        str(error.value)
        == "--dim names ['batsh'], but the inputs' symbolic dimensions are ['batch']"
    )


def test_a_dim_for_a_model_without_symbolic_dims_says_none_is_needed():
    model = _split_rows()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # every size declared
    with pytest.raises(InvalidOptionError) as error:
        onnxprune.analyze(model, dims={"batch": 2})
    assert str(error.value) == (
        "--dim names ['batch'], but the inputs have no symbolic dimensions: every size is "
        "declared, and used as it is (leave out --dim)"
    )


def _padded() -> onnx.ModelProto:
    """x[batch,3,h,w] -> Conv pad 1 (+b1) -> Relu -> Conv pad 1 -> y[batch,2,h,w].

    Channel 1 of the first Conv has no weights, only its bias 0.5: a constant 0.5 after Relu.
    Folding it into the padded second Conv needs the spatial sizes (the padding adds nothing
    at the borders), so compaction removes the channel only when h and w are known.
    """
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w1[1] = 0
    inits = {
        "w1": w1,
        "b1": np.array([0.1, 0.5, -0.2, 0.3], np.float32),
        "w2": rng.normal(size=(2, 4, 3, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, inits, ["batch", 3, "h", "w"], ["batch", 2, "h", "w"])


def test_compact_with_dims_folds_into_a_padded_conv_and_declares_the_sizes():
    model = _padded()
    assert compact(model).removed == {}
    result = compact(model, dims={"h": 8, "w": 8})
    assert result.removed == {"w1": 1}
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 8, 8]
    dims = result.model.graph.output[0].type.tensor_type.shape.dim  # h and w there too
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 2, 8, 8]
    onnx.checker.check_model(result.model, full_check=True)
    x = {"x": np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)}
    assert_close(run(model, x), run(result.model, x))


def test_structured_prune_takes_dims():
    model = _padded()
    result = structured_prune(model, sparsity=0.25, dims={"h": 8, "w": 8})
    assert result.units == {"w1": (3, 4)}
    x = {"x": np.random.default_rng(3).normal(size=(1, 3, 8, 8)).astype(np.float32)}
    assert_close(run(result.masked, x), run(result.model, x))


def _positions() -> onnx.ModelProto:
    """x[batch,seq] -> Shape -> Gather 1 (seq) -> Range(0, seq, 1) -> p; y = x + Cast(p).

    With seq fixed at 5, p is [0, 1, 2, 3, 4]: 5 long. onnx's inference does not compute a
    Range from a Shape, even with the input's sizes known.
    """
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "step"], ["p"]),
        helper.make_node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "pf"], ["y"]),
    ]
    inits = {
        "one": np.array(1, np.int64),
        "zero": np.array(0, np.int64),
        "step": np.array(1, np.int64),
    }
    return _model(nodes, inits, ["batch", "seq"], ["batch", "seq"])


def test_dims_resolve_shape_arithmetic_over_them():
    model = _positions()
    assert infer_shapes(model)["p"] == (None,)
    shapes = infer_shapes(model, dims={"batch": 2, "seq": 5})
    assert shapes["p"] == (5,)
    assert shapes["pf"] == (5,)


def _half_sliced() -> onnx.ModelProto:
    """x[batch,4] -> W1[4,6] -> h -> Slice of columns 0 .. h.shape[1] / 2 -> W2[3,2] -> y.

    The Slice's end is computed from ``Shape(h)`` (LLaMA's rotary halves in the TorchScript
    export); with the sizes fixed it is 3, so W1's columns 3-5 feed nothing.
    """
    rng = np.random.default_rng(5)
    inits = {
        "W1": rng.normal(size=(4, 6)).astype(np.float32),
        "W2": rng.normal(size=(3, 2)).astype(np.float32),
        "one": np.array(1, np.int64),
        "two": np.array(2, np.int64),
        "zero": np.array([0], np.int64),
        "axis": np.array([1], np.int64),
        "axis0": np.array([0], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Shape", ["h"], ["hs"]),
        helper.make_node("Gather", ["hs", "one"], ["width"], axis=0),
        helper.make_node("Div", ["width", "two"], ["half"]),
        helper.make_node("Unsqueeze", ["half", "axis0"], ["end"]),
        helper.make_node("Slice", ["h", "zero", "end", "axis"], ["first"]),
        helper.make_node("MatMul", ["first", "W2"], ["y"]),
    ]
    return _model(nodes, inits, ["batch", 4], ["batch", 2])


def test_dims_give_slice_bounds_computed_from_shapes():
    model = _half_sliced()
    free = onnxprune.analyze(model)
    assert [f.reason for f in free.fallbacks if f.op_type == "Slice"] == [
        "Slice bounds are computed at run time"
    ]
    assert free.layers[0].dead_outputs == 0
    fixed = onnxprune.analyze(model, dims={"batch": 2})
    assert not any(f.op_type == "Slice" for f in fixed.fallbacks)
    assert fixed.layers[0].dead_outputs == 3  # W1's columns 3, 4, 5
    zeroed, count = zero_inactive(model, dims={"batch": 2})
    assert count == 4 * 3
    x = {"x": np.random.default_rng(6).normal(size=(2, 4)).astype(np.float32)}
    assert_close(run(model, x), run(zeroed, x))


def _computed_target() -> onnx.ModelProto:
    """x[batch,4] -> W1[4,6] -> Relu -> h -> Reshape to [-1, h.shape[1]] -> W2[6,3] -> y.

    The target is computed (GPT-2's ``x.view(-1, x.size(-1))``): Concat([-1], Shape(h)[1]). With
    batch fixed it is the constant [-1, 6], which the cut rewrites to [-1, 3] (W1 keeps 3 of 6
    units at 50%); without, the Reshape blocks W1's units.
    """
    rng = np.random.default_rng(0)
    inits = {
        "W1": rng.normal(size=(4, 6)).astype(np.float32),
        "W2": rng.normal(size=(6, 3)).astype(np.float32),
        "one": np.array([1], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["m"]),
        helper.make_node("Relu", ["m"], ["h"]),
        helper.make_node("Shape", ["h"], ["hs"]),
        helper.make_node("Gather", ["hs", "one"], ["width"], axis=0),
        helper.make_node("Concat", ["minus1", "width"], ["target"], axis=0),
        helper.make_node("Reshape", ["h", "target"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["y"]),
    ]
    return _model(nodes, inits, ["batch", 4], ["batch", 3])


def test_dims_let_structured_pruning_rewrite_a_computed_target():
    model = _computed_target()
    assert structured_prune(model, sparsity=0.5).units == {}  # target computed at run time
    result = structured_prune(model, sparsity=0.5, dims={"batch": 2})
    assert result.units == {"W1": (3, 6)}
    values = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    reshape = next(n for n in result.model.graph.node if n.op_type == "Reshape")
    assert values[reshape.input[1]].tolist() == [-1, 3]
    assert [n.op_type for n in result.model.graph.node] == ["MatMul", "Relu", "Reshape", "MatMul"]
    for m in (result.model, result.masked):  # both hold the target for batch 2 only
        dims = m.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims] == [2, 4]
        onnx.checker.check_model(m, full_check=True)
    x = {"x": np.random.default_rng(4).normal(size=(2, 4)).astype(np.float32)}
    assert_close(run(result.masked, x), run(result.model, x))


def test_cli_commands_take_dim_and_input_shape(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(_padded(), src)
    assert main(["compact", str(src), "-o", str(tmp_path / "c.onnx"), "--dim", "h=8",
                 "--dim", "w=8", "--json"]) == 0  # fmt: skip
    assert '"w1": 1' in capsys.readouterr().out
    argv = ["prune", str(src), "-o", str(tmp_path / "s.onnx"), "--structured", "l1"]
    assert main([*argv, "--sparsity", "0.25", "--input-shape", "x=1,3,8,8"]) == 0
    onnx.save(_split_rows(), src)
    capsys.readouterr()
    assert main(["analyze", str(src), "--dim", "batch=2"]) == 0
    assert "fell back to dense mixing: none" in capsys.readouterr().out
    message = refused(capsys, "analyze", str(src), "--dim", "batch=0")
    assert (
        message
        == "InvalidOptionError: --dim must map dimension names to positive sizes, got ['batch=0']"
    )


def test_sweep_takes_dims_for_exact_level_runs(tmp_path):
    from onnxprune.sweep import sweep
    from tests.helpers import QUICK_TIMING

    model, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    onnx.save(_padded(), model)
    x = np.random.default_rng(4).normal(size=(4, 3, 8, 8)).astype(np.float32)
    np.savez(data, x=x)
    kwargs = {"sparsities": [0.5], "methods": [("magnitude", "global")], "level": "exact"}
    (failed,) = sweep(model, data, tmp_path / "a", **kwargs, **QUICK_TIMING).runs
    assert failed.error.startswith("ShapeError: ")  # h and w unknown: no exact level
    (run_,) = sweep(
        model, data, tmp_path / "b", dims={"h": 8, "w": 8}, **kwargs, **QUICK_TIMING
    ).runs
    assert run_.error is None
    assert run_.direct_sparsity == pytest.approx(0.5, abs=0.01)


def test_prune_takes_dims_and_shapes_as_the_options_hold_them():
    # PruneOptions keeps (name, size) and (name, dims) pairs: handed back to prune as
    # keywords, they mean what the mapping and the CLI strings do.
    model = _padded()
    by_pairs = onnxprune.prune(
        model, structured="l1", sparsity=0.25, dims=(("h", 8), ("w", 8))
    ).structured
    by_strings = onnxprune.prune(
        model, structured="l1", sparsity=0.25, dims=["h=8", "w=8"]
    ).structured
    assert by_pairs.units == by_strings.units == {"w1": (3, 4)}
    shaped = onnxprune.prune(
        model, structured="l1", sparsity=0.25, input_shapes=(("x", (1, 3, 8, 8)),)
    ).structured
    assert shaped.units == {"w1": (3, 4)}
