"""Loading and saving models safely: ``onnxprune.model.load_model`` and ``save_model``."""

from __future__ import annotations

import errno
import mmap
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import InvalidModelError, LimitExceededError, OutputError
from onnxprune.model import load_model, save_model
from tests.helpers import single_io_model

W_EXT = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
"""4096 bytes: above the 1024-byte size onnx keeps inline when writing external data."""


def _matmul_model(weight: np.ndarray, ir_version: int = 10) -> onnx.ModelProto:
    """y = x @ W with W an initializer."""
    rows, cols = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(
        graph, ir_version=ir_version, opset_imports=[helper.make_opsetid("", 17)]
    )


def _rich_model(ir_version: int, shift: float = 0.0) -> onnx.ModelProto:
    """Gemm + Relu with every top-level field set; the weight (2048 bytes) can go external."""
    weight = np.arange(16 * 32, dtype=np.float32).reshape(16, 32) + shift
    bias = np.arange(16, dtype=np.float32) - 8
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
            helper.make_node("Relu", ["h"], ["y"], name="act"),
        ],
        "rich",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(weight, "fc1.weight"), numpy_helper.from_array(bias, "fc1.bias")],
        doc_string="graph doc",
    )
    model = helper.make_model(
        graph,
        ir_version=ir_version,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="exporter",
        producer_version="2.1",
        domain="org.example",
        model_version=7,
        doc_string="model doc",
    )
    helper.set_model_props(model, {"author": "tests", "license": "MIT"})
    return model


def _arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _assert_one_line(error: Exception) -> None:
    message = str(error)
    assert message
    assert "\n" not in message
    assert message.isprintable()


# --- loading: sources -------------------------------------------------------------------------


@pytest.mark.parametrize("as_type", [str, Path])
def test_load_from_path(tmp_path, as_type):
    model = _matmul_model(np.eye(3, dtype=np.float32))
    onnx.save_model(model, tmp_path / "m.onnx")
    assert load_model(as_type(tmp_path / "m.onnx")) == model


def test_a_loaded_file_is_no_longer_mapped(tmp_path):
    # the file is parsed from a read-only mapping, released once the model is built
    model = _matmul_model(np.eye(3, dtype=np.float32))
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path)
    assert load_model(path) == model
    assert onnxprune.analyze(path).total_params == 9
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(path) not in maps.read_text()


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.ENODEV, "no mmap on this file system")

    model = _matmul_model(np.eye(3, dtype=np.float32))
    onnx.save_model(model, tmp_path / "m.onnx")
    monkeypatch.setattr(mmap, "mmap", refuse)
    assert load_model(tmp_path / "m.onnx") == model


def test_load_from_bytes():
    model = _matmul_model(np.eye(3, dtype=np.float32))
    assert load_model(model.SerializeToString()) == model


def test_load_model_proto_is_returned_unchanged():
    model = _matmul_model(np.eye(3, dtype=np.float32))
    before = model.SerializeToString()
    assert load_model(model) is model
    assert model.SerializeToString() == before


def _open_size_model() -> onnx.ModelProto:
    """y = relu(x @ W1) @ W2 as Paddle2ONNX declares it: input [-1, 4], output [-1, 3].

    W1's column 1 is zero, so hidden unit 1 is dead and W2's row 1 (3 nonzero weights) is on no
    input-to-output path."""
    w1 = np.arange(1, 9, dtype=np.float32).reshape(4, 2)
    w1[:, 1] = 0
    w2 = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["r"], name="act"),
            helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc2"),
        ],
        "paddle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


def _sizes(value: onnx.ValueInfoProto) -> list:
    return [
        d.dim_value if d.HasField("dim_value") else d.dim_param or None
        for d in value.type.tensor_type.shape.dim
    ]


@pytest.mark.parametrize("as_proto", [False, True])
def test_a_declared_size_of_minus_one_reads_as_unknown(tmp_path, as_proto):
    model = _open_size_model()
    before = model.SerializeToString()
    path = tmp_path / "paddle.onnx"
    path.write_bytes(before)
    loaded = load_model(model if as_proto else path)
    assert _sizes(loaded.graph.input[0]) == [None, 4]
    assert _sizes(loaded.graph.output[0]) == [None, 3]
    assert model.SerializeToString() == before  # a proto is copied, not changed
    report = onnxprune.analyze(model if as_proto else path)
    assert (report.total_params, report.layers[1].params, report.layers[1].active) == (14, 6, 3)
    exact = onnxprune.analyze(path, level="exact", input_shapes={"x": [5, 4]})
    assert exact.layers[1].active == 3


# --- loading: refusals ------------------------------------------------------------------------


def test_missing_file_is_invalid(tmp_path):
    with pytest.raises(InvalidModelError) as excinfo:
        load_model(tmp_path / "nothere.onnx")
    _assert_one_line(excinfo.value)
    assert "nothere.onnx" in str(excinfo.value)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(InvalidModelError):
        load_model(tmp_path)


def _truncated() -> bytes:
    data = _matmul_model(W_EXT).SerializeToString()
    return data[: len(data) // 2]  # cut inside the 4096-byte weight


BAD_CONTENTS = {
    "empty": b"",
    "text": b"graph {\n  node: Conv\n}\nthis is a text file, not a model\n",
    "random": np.random.default_rng(0).bytes(1000),
    "truncated": _truncated(),
}


@pytest.mark.parametrize("content", BAD_CONTENTS.values(), ids=BAD_CONTENTS.keys())
def test_bad_file_is_invalid_with_one_line_message(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidModelError) as excinfo:
        load_model(path)
    _assert_one_line(excinfo.value)


@pytest.mark.parametrize("content", BAD_CONTENTS.values(), ids=BAD_CONTENTS.keys())
def test_bad_bytes_are_invalid_with_one_line_message(content):
    with pytest.raises(InvalidModelError) as excinfo:
        load_model(content)
    _assert_one_line(excinfo.value)


# --- loading: size limit ----------------------------------------------------------------------


def test_limit_is_checked_before_parsing(tmp_path):
    # 1000 garbage bytes: over a 999-byte limit the size is the error, not the garbage.
    path = tmp_path / "garbage.onnx"
    path.write_bytes(BAD_CONTENTS["random"])
    with pytest.raises(LimitExceededError) as excinfo:
        load_model(path, max_bytes=999)
    _assert_one_line(excinfo.value)
    with pytest.raises(LimitExceededError):
        load_model(path.read_bytes(), max_bytes=999)
    # at the limit the file is parsed, and refused for what it is
    with pytest.raises(InvalidModelError):
        load_model(path, max_bytes=1000)


def test_model_exactly_at_the_limit_loads(tmp_path):
    model = _matmul_model(np.eye(3, dtype=np.float32))
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path)
    size = path.stat().st_size
    assert load_model(path, max_bytes=size) == model
    with pytest.raises(LimitExceededError):
        load_model(path, max_bytes=size - 1)


# --- loading: external data -------------------------------------------------------------------


def _save_external(folder: Path, weight: np.ndarray) -> Path:
    """folder/m.onnx whose initializer W (``weight``) is stored in folder/w.data."""
    folder.mkdir()
    onnx.save_model(
        _matmul_model(weight),
        folder / "m.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.data",
        size_threshold=0,
    )
    assert (folder / "w.data").stat().st_size == weight.nbytes
    return folder / "m.onnx"


@pytest.fixture
def external(tmp_path) -> Path:
    """tmp_path/model/m.onnx whose initializer W (W_EXT) is stored in tmp_path/model/w.data."""
    return _save_external(tmp_path / "model", W_EXT)


@pytest.fixture
def in_model_dir(external, monkeypatch) -> Path:
    """Run from the model's folder, so that onnx's checker (which resolves external data against
    the working directory, see test_external_data_does_not_depend_on_working_directory) finds the
    file, and only onnxprune's own checks can refuse it."""
    monkeypatch.chdir(external.parent)
    return external


def _edit_external(path: Path, **entries: object) -> None:
    """Rewrite the external_data entries of initializer W in the model file at ``path``."""
    model = onnx.load(path, load_external_data=False)
    tensor = model.graph.initializer[0]
    for entry in tensor.external_data:
        if entry.key in entries:
            entry.value = str(entries.pop(entry.key))
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=str(value))
    path.write_bytes(model.SerializeToString())


def test_external_data_loads_with_right_values(in_model_dir):
    model = load_model(in_model_dir)
    (weight,) = model.graph.initializer
    assert weight.data_location != TensorProto.EXTERNAL
    np.testing.assert_array_equal(numpy_helper.to_array(weight), W_EXT)


def test_external_data_from_bytes_with_base_dir(in_model_dir):
    model = load_model(in_model_dir.read_bytes(), base_dir=in_model_dir.parent)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), W_EXT)


@pytest.mark.parametrize("rows", [32, 128], ids=["2048_elements", "8192_elements"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_external_data_does_not_depend_on_working_directory(tmp_path, monkeypatch, as_bytes, rows):
    # The usual case: the model lives in another folder than the one we run from.
    weight = np.arange(rows * 64, dtype=np.float32).reshape(rows, 64)
    path = _save_external(tmp_path / "model", weight)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = load_model(path.read_bytes(), base_dir=path.parent) if as_bytes else load_model(path)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), weight)


def test_external_data_with_bytes_needs_base_dir(in_model_dir):
    with pytest.raises(InvalidModelError) as excinfo:
        load_model(in_model_dir.read_bytes())
    _assert_one_line(excinfo.value)


def test_external_absolute_location_is_refused(in_model_dir):
    # the absolute path names the real data file: it is the form that is refused
    _edit_external(in_model_dir, location=str(in_model_dir.parent.resolve() / "w.data"))
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_location_with_dotdot_is_refused(in_model_dir):
    outside = in_model_dir.parent.parent / "outside.data"
    outside.write_bytes(W_EXT.tobytes())
    _edit_external(in_model_dir, location="../outside.data")
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_symlink_leaving_the_dir_is_refused(in_model_dir):
    secret = in_model_dir.parent.parent / "secret" / "secret.data"
    secret.parent.mkdir()
    secret.write_bytes(W_EXT.tobytes())
    data = in_model_dir.parent / "w.data"
    data.unlink()
    os.symlink(secret, data)
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_symlinked_folder_leaving_the_dir_is_refused(in_model_dir):
    # the data file itself is a regular file; the folder it is reached through is a symlink
    outside = in_model_dir.parent.parent / "outside"
    outside.mkdir()
    (outside / "w.data").write_bytes(W_EXT.tobytes())
    os.symlink(outside, in_model_dir.parent / "sub", target_is_directory=True)
    _edit_external(in_model_dir, location="sub/w.data")
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_data_in_a_subfolder_loads(in_model_dir):
    # control for the test above: a real subfolder inside the model's directory is fine
    (in_model_dir.parent / "sub").mkdir()
    (in_model_dir.parent / "w.data").rename(in_model_dir.parent / "sub" / "w.data")
    _edit_external(in_model_dir, location="sub/w.data")
    model = load_model(in_model_dir)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), W_EXT)


def test_external_missing_data_file_is_refused(in_model_dir):
    (in_model_dir.parent / "w.data").unlink()
    with pytest.raises(InvalidModelError) as excinfo:
        load_model(in_model_dir)
    _assert_one_line(excinfo.value)


def test_external_data_file_too_short_is_refused(in_model_dir):
    data = in_model_dir.parent / "w.data"
    data.write_bytes(data.read_bytes()[:-4])  # length says 4096, the file has 4092
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_offset_past_the_data_is_refused(in_model_dir):
    _edit_external(in_model_dir, offset=4, length=W_EXT.nbytes)  # needs 4100 bytes of 4096
    with pytest.raises(InvalidModelError):
        load_model(in_model_dir)


def test_external_data_counts_toward_the_limit(in_model_dir):
    total = in_model_dir.stat().st_size + W_EXT.nbytes
    assert in_model_dir.stat().st_size < total - 1  # the .onnx alone is under the limit below
    with pytest.raises(LimitExceededError):
        load_model(in_model_dir, max_bytes=total - 1)
    model = load_model(in_model_dir, max_bytes=total)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), W_EXT)


# --- saving -----------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [None, 0], ids=["inline", "external"])
@pytest.mark.parametrize("ir_version", [8, 10])
def test_save_keeps_model_fields(tmp_path, ir_version, threshold):
    model = _rich_model(ir_version)
    path = tmp_path / "m.onnx"
    if threshold is None:
        save_model(model, path)
    else:
        save_model(model, path, external_data_threshold=threshold)
    back = onnx.load(path)  # onnx's own reader, external data included

    assert back.ir_version == ir_version
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        assert getattr(back, field) == getattr(model, field), field
    assert [(o.domain, o.version) for o in back.opset_import] == [("", 17), ("ai.onnx.ml", 3)]
    assert {p.key: p.value for p in back.metadata_props} == {"author": "tests", "license": "MIT"}
    assert (back.graph.name, back.graph.doc_string) == ("rich", "graph doc")
    assert [(n.name, list(n.input), list(n.output)) for n in back.graph.node] == [
        ("fc1", ["x", "fc1.weight", "fc1.bias"], ["h"]),
        ("act", ["h"], ["y"]),
    ]
    assert [i.name for i in back.graph.input] == ["x"]
    assert [o.name for o in back.graph.output] == ["y"]
    assert back.graph.input == model.graph.input
    assert back.graph.output == model.graph.output
    original, saved = _arrays(model), _arrays(back)
    assert list(saved) == ["fc1.weight", "fc1.bias"]
    for name, array in original.items():
        np.testing.assert_array_equal(saved[name], array)
        assert saved[name].dtype == array.dtype
    if threshold is None:
        assert back == model


def test_save_leaves_no_temp_files_and_replaces_old_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old content")
    model = _rich_model(10)
    save_model(model, path)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    assert onnx.load(path) == model


def test_save_does_not_modify_the_model(tmp_path):
    model = _rich_model(10)
    before = model.SerializeToString()
    save_model(model, tmp_path / "a.onnx")
    save_model(model, tmp_path / "b.onnx", external_data_threshold=0)
    assert model.SerializeToString() == before


def test_failed_rename_keeps_destination_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    save_model(_rich_model(10), path)
    before = _files(tmp_path)

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_model(_rich_model(10, shift=1000.0), path)
    assert _files(tmp_path) == before


def test_failed_write_keeps_destination_and_leaves_no_temp(tmp_path, monkeypatch):
    # a full disk: half of the bytes are written, then the write fails
    path = tmp_path / "m.onnx"
    save_model(_rich_model(10), path)
    before = _files(tmp_path)

    def half_write(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_write)
    with pytest.raises(OutputError, match=r"cannot write .*m\.onnx: No space left on device"):
        save_model(_rich_model(10, shift=1000.0), path)
    monkeypatch.undo()
    assert _files(tmp_path) == before


def test_failed_save_with_external_data_keeps_previous_model(tmp_path, monkeypatch):
    # The .onnx rename fails after the new data file was put in place: the old .onnx must still
    # read its own weights (it indexes <name>.data by offset and length).
    path = tmp_path / "m.onnx"
    old = _rich_model(10)
    save_model(old, path, external_data_threshold=0)
    before = _files(tmp_path)
    real_replace = os.replace

    def replace_all_but_model(src, dst):
        if Path(dst) == path:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_all_but_model)
    with pytest.raises(OSError, match="rename failed"):
        save_model(_rich_model(10, shift=1000.0), path, external_data_threshold=0)
    monkeypatch.undo()
    assert _files(tmp_path) == before
    np.testing.assert_array_equal(
        _arrays(onnx.load(path))["fc1.weight"], _arrays(old)["fc1.weight"]
    )


def test_threshold_writes_external_data_next_to_the_model(tmp_path, monkeypatch):
    model = _rich_model(10)
    path = tmp_path / "m.onnx"
    save_model(model, path, external_data_threshold=0)

    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[0] == "m.onnx"
    assert re.fullmatch(r"m\.onnx\.[0-9a-f]{12}\.data", names[1])
    raw = onnx.load(path, load_external_data=False)
    weight = {t.name: t for t in raw.graph.initializer}["fc1.weight"]
    assert weight.data_location == TensorProto.EXTERNAL
    locations = {
        e.value for t in raw.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {names[1]}  # no temporary name left behind
    assert (tmp_path / names[1]).stat().st_size >= 16 * 32 * 4

    save_model(model, path, external_data_threshold=0)  # a second save replaces the data file
    again = sorted(os.listdir(tmp_path))
    assert len(again) == 2 and again[1] != names[1]

    monkeypatch.chdir(tmp_path)  # see test_external_data_does_not_depend_on_working_directory
    loaded = _arrays(load_model(path))
    for name, array in _arrays(model).items():
        np.testing.assert_array_equal(loaded[name], array)


def test_threshold_with_only_small_tensors_saves(tmp_path):
    # every tensor is under onnx's 1024-byte inline size, yet the model is over the threshold
    model = _matmul_model(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    path = tmp_path / "m.onnx"
    save_model(model, path, external_data_threshold=0)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    np.testing.assert_array_equal(_arrays(onnx.load(path))["W"], [[1.0, 2.0], [3.0, 4.0]])


def test_raw_data_sizes_are_read_from_the_bytes_as_the_message_holds_them() -> None:
    from onnxprune.model_checks import raw_data_sizes

    inits = {"a": np.ones((3, 4), np.float32), "b": np.zeros(0, np.float32), "c": np.ones(5)}
    inits["e"] = np.ones((2, 300), np.float32)  # dims of two-byte varints
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()]
        + [helper.make_tensor("d", TensorProto.FLOAT, [2], [1.0, 2.0])],  # float_data, no raw
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    sizes = raw_data_sizes(model.SerializeToString())
    assert sizes == (48, 0, 40, 2400, None)  # an empty raw_data is present all the same (proto2)
    held = [len(t.raw_data) if t.HasField("raw_data") else None for t in graph.initializer]
    assert list(sizes) == held
    assert raw_data_sizes(b"\x0b") == ()  # a group: not followed, the caller reads the message
    assert raw_data_sizes(b"\x08\x80") == ()  # a varint cut off at the end


def test_a_short_raw_data_is_refused_from_a_file(tmp_path) -> None:
    # large enough that ONNX's checker sees a light copy without it: onnxprune's check answers
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = single_io_model(nodes, [1, 80], [1, 80], {"w": np.ones((80, 80))})
    tensor = model.graph.initializer[0]
    tensor.raw_data = tensor.raw_data[:-4]
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    for load in (onnxprune.analyze, load_model):
        with pytest.raises(InvalidModelError, match="stores 25596 bytes of raw data"):
            load(path)
