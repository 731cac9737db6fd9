"""``onnxprune remote ...`` writes and prints what the local commands do, with their exit codes."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.cli import main
from tests.attention_models import fused
from tests.server.conftest import DATA, MLP, MODELS

CNN = MODELS / "cnn_digits.onnx"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_remote_prune_writes_the_same_outputs_as_prune(address, tmp_path, capsys):
    flags = ["--sparsity", "0.9", "--allocation", "erk", "--min-threshold", "0.001"]
    outputs = {}
    for where, prefix in (("local", []), ("remote", ["remote"])):
        folder = tmp_path / where
        folder.mkdir()
        server = ["--server", address] if prefix else []
        code, out, err = _run(
            capsys, *prefix, "prune", str(MLP), "-o", str(folder / "p.onnx"), *flags,
            "--report-out", str(folder / "r.json"), *server,
        )  # fmt: skip
        assert code == 0, err
        outputs[where] = (folder, out.replace(str(folder), "DIR"), err)
    (local, local_out, local_err), (remote, remote_out, remote_err) = outputs.values()
    assert remote_out == local_out
    assert remote_err == local_err
    assert "wrote DIR/p.onnx and DIR/p.masks.npz" in remote_out
    assert (remote / "p.onnx").read_bytes() == (local / "p.onnx").read_bytes()
    assert (remote / "r.json").read_text() == (local / "r.json").read_text()
    with np.load(local / "p.masks.npz") as a, np.load(remote / "p.masks.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


def test_remote_analyze_json_and_table_equal_local(address, capsys):
    for flags in ([], ["--json"], ["--exact"]):
        local = _run(capsys, "analyze", str(MLP), *flags)
        remote = _run(capsys, "remote", "analyze", str(MLP), *flags, "--server", address)
        assert remote == local


def test_remote_analyze_shows_units_as_local_does(address, tmp_path, capsys):
    # An attention model gets its units table by default; an MLP with --units only; --no-units
    # is sent as such (AnalyzeOptions.units set to false), not left to the server's default.
    attention = tmp_path / "attention.onnx"
    onnx.save(fused(heads=2), attention)
    cases = [(attention, []), (attention, ["--no-units"]), (MLP, ["--units", "--json"])]
    tables = []
    for path, flags in cases:
        local = _run(capsys, "analyze", str(path), *flags)
        remote = _run(capsys, "remote", "analyze", str(path), *flags, "--server", address)
        assert remote == local
        tables.append("\nunits " in local[1] or '"module"' in local[1])
    assert tables == [True, False, True]


def test_remote_methods_equal_local(address, capsys):
    assert _run(capsys, "remote", "methods", "--server", address) == _run(capsys, "methods")


def test_remote_validate_gate_exits_3(address, tmp_path, capsys):
    pruned = tmp_path / "p.onnx"
    assert _run(capsys, "prune", str(MLP), "-o", str(pruned), "--sparsity", "0.95")[0] == 0
    flags = ["--data", str(DATA), "--baseline", str(MLP), "--max-accuracy-drop", "0.01", "--json"]
    code, out, err = _run(capsys, "remote", "validate", str(pruned), *flags, "--server", address)
    assert code == 3
    assert json.loads(out)["gate"]["passed"] is False
    assert err.startswith("gate FAILED: top-1 dropped")
    local = _run(capsys, "validate", str(pruned), *flags)
    assert (local[0], local[2]) == (code, err)


def test_remote_validate_label_free_gate_exits_3_as_local(address, tmp_path, capsys):
    pruned = tmp_path / "p.onnx"
    assert _run(capsys, "prune", str(MLP), "-o", str(pruned), "--sparsity", "0.95")[0] == 0
    flags = ["--data", str(DATA), "--baseline", str(MLP), "--min-cosine", "0.99"]
    code, out, err = _run(capsys, "remote", "validate", str(pruned), *flags, "--server", address)
    assert code == 3
    assert err.startswith("gate FAILED: cosine similarity (mean over samples) ")
    assert "outputs against the baseline:" in out
    assert _run(capsys, "validate", str(pruned), *flags)[::2] == (code, err)


def test_remote_validate_times_as_local_and_warns_on_stderr(address, tmp_path, capsys):
    one = tmp_path / "one.npz"
    with np.load(DATA) as data:
        np.savez(one, **{k: v[:10] for k, v in data.items()})  # one batch of 10
    flags = ["--data", str(one), "--baseline", str(MLP), "--min-time", "0", "--min-runs", "25",
             "--threads", "1", "--json"]  # fmt: skip
    code, out, err = _run(capsys, "remote", "validate", str(MLP), *flags, "--server", address)
    assert code == 0
    result = json.loads(out)
    assert (result["timed_runs"], result["threads"]) == (25, 1)
    assert err.splitlines() == [f"warning: {w}" for w in result["warnings"]]
    few = "warning: only 1 distinct batch(es) were timed"
    assert err.startswith(few)  # and a wide interval may follow on a busy machine
    local_code, _, local_err = _run(capsys, "validate", str(MLP), *flags)
    assert (local_code, local_err.splitlines()[0]) == (code, err.splitlines()[0])


def test_remote_validate_refuses_a_user_metric(address, capsys):
    code, out, err = _run(capsys, "remote", "validate", str(MLP), "--data", str(DATA),
                          "--metric", "statistics:fmean", "--server", address)  # fmt: skip
    assert (code, out) == (2, "")
    assert err == (
        "InvalidOptionError: --metric, --min-metric and --max-metric are not offered remotely "
        "(the server runs no user code); run `onnxprune validate` here\n"
    )


def test_remote_errors_exit_like_local(address, tmp_path, capsys):
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model")
    local = _run(capsys, "analyze", str(notes))
    remote = _run(capsys, "remote", "analyze", str(notes), "--server", address)
    assert remote == local == (2, "", "InvalidModelError: not a valid ONNX model (truncated or "
                                     "not ONNX)\n")  # fmt: skip
    code, _, err = _run(capsys, "remote", "prune", str(MLP), "-o", str(tmp_path / "x.onnx"),
                        "--sparsity", "2", "--server", address)  # fmt: skip
    assert (code, err) == (2, "InvalidOptionError: sparsity=2.0 must be in [0, 1)\n")


def test_remote_without_a_server_or_with_a_bad_token(start_server, tmp_path, capsys):
    code, _, err = _run(capsys, "remote", "analyze", str(MLP), "--server", "127.0.0.1:1")
    assert code == 5
    assert err.startswith(
        "ConnectionFailedError: cannot reach an onnxprune server at 127.0.0.1:1: is the server "
        "running there? (use --tls-ca if it serves TLS) (gRPC: "
    )
    assert err.count("\n") == 1
    token = tmp_path / "token"
    token.write_text("right")
    address = start_server(token="right")  # noqa: S106 - a test token
    (tmp_path / "wrong").write_text("wrong")
    for flags in ([], ["--token-file", str(tmp_path / "wrong")]):
        code, _, err = _run(capsys, "remote", "analyze", str(MLP), "--server", address, *flags)
        assert (code, err) == (
            2,
            "CallRefusedError: UNAUTHENTICATED: missing or wrong bearer token\n",
        )
    code, out, _ = _run(capsys, "remote", "analyze", str(MLP), "--server", address,
                        "--token-file", str(token), "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["total_params"] == 50_200


@pytest.mark.parametrize("command", ["analyze", "prune", "compact", "validate", "methods"])
def test_remote_commands_have_the_local_flags(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    local = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["remote", command, "--help"])
    remote = capsys.readouterr().out
    for flag in {w.strip(",[]") for w in local.split() if w.startswith("--")}:
        assert flag in remote, flag
    assert "--server" in remote
    assert "--tls-ca" in remote


def _local_and_remote(
    capsys, tmp_path, address, *argv: str, report: bool = False
) -> list[tuple[int, str, str]]:
    """``argv`` run locally and remotely, each writing ``-o DIR/out.onnx`` into its own folder
    (and ``--report-out DIR/r.json`` with ``report``)."""
    runs = []
    for where, prefix in (("local", []), ("remote", ["remote"])):
        folder = tmp_path / where
        folder.mkdir(parents=True)
        server = ["--server", address] if prefix else []
        written = ["--report-out", str(folder / "r.json")] if report else []
        argv_here = [*prefix, *argv, "-o", str(folder / "out.onnx"), *written, *server]
        code, out, err = _run(capsys, *argv_here)
        runs.append((code, out.replace(str(folder), "DIR"), err))
    return runs


def test_remote_compact_writes_the_same_file_as_compact(address, tmp_path, capsys):
    pruned = tmp_path / "pruned.onnx"
    onnxprune.save_model(onnxprune.prune(CNN, sparsity=0.9).model, pruned)
    printed = []
    for run, flags in enumerate(([], ["--json"])):
        folder = tmp_path / f"run{run}"
        local, remote = _local_and_remote(capsys, folder, address, "compact", str(pruned), *flags)
        assert remote == local
        assert local[0] == 0
        small = (folder / "remote" / "out.onnx").read_bytes()
        assert small == (folder / "local" / "out.onnx").read_bytes()
        assert onnx.load_from_string(small).graph.initializer
        printed.append(remote[1])
    text, as_json = printed
    # named by node (the module) and weight, counted in the layer's units: its 32 channels
    assert re.search(r"^/down/Conv \(down\.weight\): removed \d+ of 32 channels", text, re.M)
    assert "\nunits: channels " in text
    assert "parameters 9770 -> " in text
    assert text.endswith("; wrote DIR/out.onnx\n")
    summary = json.loads(as_json)
    assert summary["params_after"] < summary["params_before"] == 9770
    assert set(summary["folded"]) <= set(summary["removed"])


def test_remote_prune_structured_writes_the_same_file_as_prune(address, tmp_path, capsys):
    flags = ["--structured", "l1", "--sparsity", "0.5", "--round-to", "8"]
    local, remote = _local_and_remote(capsys, tmp_path, address, "prune", str(CNN), *flags)
    assert remote == local
    assert local[0] == 0
    assert "/block/block.0/Conv (onnx::Conv_42): kept 8 of 16 channels" in remote[1]
    assert "; wrote DIR/out.onnx" in remote[1]
    assert (tmp_path / "remote" / "out.onnx").read_bytes() == (
        tmp_path / "local" / "out.onnx"
    ).read_bytes()
    assert not list((tmp_path / "remote").glob("*.npz"))  # no masks, as locally


def test_remote_prune_structured_refuses_like_prune(address, tmp_path, capsys):
    cases = {
        ("--structured", "l1", "--sparsity", "0.5", "--score", "lamp", "--nm", "2:4"): (
            "--structured takes no --score, --nm (they choose single weights); "
            "see --scope and --round-to"
        ),
        ("--structured", "l2"): "--structured needs --sparsity",
        ("--sparsity", "0.5", "--scope", "global", "--round-to", "8"): (
            "--scope, --round-to need --structured"
        ),
    }
    for run, (flags, message) in enumerate(cases.items()):
        folder = tmp_path / f"run{run}"
        local, remote = _local_and_remote(capsys, folder, address, "prune", str(MLP), *flags)
        assert remote == local == (2, "", f"InvalidOptionError: {message}\n")
        assert not list(folder.glob("*/*"))
    code, _, err = _run(capsys, "remote", "prune", str(MLP), "-o", str(tmp_path / "x.onnx"),
                        "--structured", "l1", "--sparsity", "0.5", "--masked-out",
                        str(tmp_path / "m.onnx"), "--server", address)  # fmt: skip
    assert code == 2
    assert err.startswith("InvalidOptionError: remote prune does not send back --masked-out")
    assert not list(tmp_path.glob("*.onnx"))


def test_remote_prune_structured_prints_sparsity_warnings_and_blocked_as_local(
    address, tmp_path, capsys
):
    flags = ["--structured", "l1", "--sparsity", "0.3", "--scope", "global", "--round-to", "8"]
    for run, extra in enumerate(([], ["--json"])):
        folder = tmp_path / f"run{run}"
        local, remote = _local_and_remote(
            capsys, folder, address, "prune", str(CNN), *flags, *extra, report=True
        )
        assert remote == local
        assert local[2].startswith("warning: removed 12.50% of the prunable groups (8 of 64)")
        written = (folder / "remote" / "r.json").read_text()
        assert written == (folder / "local" / "r.json").read_text()
        assert json.loads(written)["blocked"][0]["reason"] == "graph output 'logits'"
        if not extra:
            assert "removed 8 of 64 prunable groups: 12.50% (target 30.00%)" in local[1]
            assert "left alone: 10 groups: graph output 'logits' (layer /head/Gemm)" in local[1]


def test_remote_compact_writes_its_report_out_as_local(address, tmp_path, capsys):
    pruned = tmp_path / "pruned.onnx"
    onnxprune.save_model(onnxprune.prune(CNN, sparsity=0.9).model, pruned)
    runs = []
    for where, prefix in (("local", []), ("remote", ["remote"])):
        (tmp_path / where).mkdir()
        server = ["--server", address] if prefix else []
        argv = [*prefix, "compact", str(pruned), "-o", str(tmp_path / where / "out.onnx")]
        report = ["--report-out", str(tmp_path / where / "r.json")]
        code, out, err = _run(capsys, *argv, *report, *server)
        runs.append((code, out.replace(str(tmp_path / where), "DIR"), err))
    assert runs[0] == runs[1]
    written = (tmp_path / "remote" / "r.json").read_text()
    assert written == (tmp_path / "local" / "r.json").read_text()
    assert json.loads(written)["params_before"] == 9770


def test_remote_prune_compact_prints_and_writes_the_compaction_as_local(address, tmp_path, capsys):
    flags = ["--sparsity", "0.9", "--compact"]
    for run, extra in enumerate(([], ["--json"])):
        folder = tmp_path / f"run{run}"
        local, remote = _local_and_remote(
            capsys, folder, address, "prune", str(CNN), *flags, *extra, report=True
        )
        assert remote == local
        assert local[0] == 0
        written = json.loads((folder / "remote" / "r.json").read_text())
        assert written == json.loads((folder / "local" / "r.json").read_text())
        compaction = written["compaction"]
        assert compaction["params_before"] == 9770 > compaction["params_after"]
        if not extra:
            assert f"compacted: parameters 9770 -> {compaction['params_after']}" in local[1]
            assert "left alone: 10 groups: graph output 'logits' (layer /head/Gemm)" in local[1]


def test_remote_sparsegpt_uploads_its_calibration_and_matches_local(address, tmp_path, capsys):
    flags = ["--score", "sparsegpt", "--nm", "2:4", "--calibration", str(DATA)]
    local, remote = _local_and_remote(capsys, tmp_path, address, "prune", str(MLP), *flags)
    assert local[0] == remote[0] == 0, remote[2]
    weights = {}
    for where in ("local", "remote"):
        model = onnx.load(tmp_path / where / "out.onnx")
        weights[where] = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, value in weights["local"].items():
        np.testing.assert_array_equal(weights["remote"][name] != 0, value != 0)
        np.testing.assert_allclose(weights["remote"][name], value, rtol=1e-4, atol=1e-6)
    refused = _local_and_remote(
        capsys, tmp_path / "refused", address, "prune", str(MLP), "--score", "sparsegpt",
        "--sparsity", "0.5",
    )  # fmt: skip
    assert refused[0] == refused[1]
    assert refused[1][0] == 2
    assert "needs calibration data" in refused[1][2]


def test_remote_validate_class_axis_prints_what_local_prints(address, tmp_path, capsys):
    # Logits [N, 3, 4] of two MatMuls: the per-token agreement goes through the server.
    rng = np.random.default_rng(2)
    paths = []
    for name in ("model", "base"):
        w = onnx.numpy_helper.from_array(rng.standard_normal((2, 4)).astype(np.float32), "W")
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["x", "W"], ["logits"])], "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 2])],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3, 4])],
            [w],
        )  # fmt: skip
        opset = [onnx.helper.make_opsetid("", 17)]
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(onnx.helper.make_model(graph, ir_version=10, opset_imports=opset), paths[-1])
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((10, 3, 2)).astype(np.float32))
    flags = ["--data", str(tmp_path / "d.npz"), "--baseline", str(paths[1]), "--class-axis",
             "-1", "--min-time", "0", "--min-runs", "1", "--json"]  # fmt: skip
    code, out, _ = _run(capsys, "remote", "validate", str(paths[0]), *flags, "--server", address)
    remote = json.loads(out)
    local = json.loads(_run(capsys, "validate", str(paths[0]), *flags)[1])
    assert code == 0
    assert remote["class_axis"] == local["class_axis"] == -1
    assert remote["outputs"] == local["outputs"]
    code, out, err = _run(capsys, "remote", "validate", str(paths[0]), *flags[:4], "--class-axis",
                          "4", "--server", address)  # fmt: skip
    assert (code, out) == (2, "")
    assert err == (
        "InvalidOptionError: class_axis=4 is out of range for output 'logits' of rank 3 "
        "(allowed: 1..2 or -2..-1; axis 0 is the batch)\n"
    )
