"""Markdown: every table row carries the JSON's numbers, escaped so names stay literal text."""

from __future__ import annotations

import re

from onnxprune.macs import short
from onnxprune.render import render_html, render_markdown
from tests.render import samples


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """Each pipe table, keyed by its first header cell, as rows of cells (header included)."""
    tables: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if current is None:
            current = tables.setdefault(cells[0], [])
        if not all(set(c) <= set("-:") for c in cells):
            current.append(cells)
    return tables


def test_sparsity_report_rows_are_the_analysis():
    report = samples.sparsity_report()
    text = render_markdown(report)
    assert text.startswith("# Sparsity report\n")
    tables = _tables(text)
    totals = dict(tables["quantity"][1:])
    assert totals["level"] == "channel"
    assert totals["prunable weights"] == "50,200"  # 300*64 + 100*300 + 10*100
    assert totals["layers"] == "3"
    assert totals["direct sparsity"] == "95.00%"  # the model was pruned to 95% globally
    assert totals["effective sparsity"] == f"{report['effective_sparsity']:.2%}"
    assert totals["direct compression"] == "20.00x"  # 1 / (1 - 0.95)
    assert totals["effective compression"] == f"{report['effective_compression']:.2f}x"
    assert totals["MACs (dense)"] == "50.2K"  # one sample through an MLP: one MAC per weight
    assert totals["MACs by nonzero weights"] == "2.51K"  # 5% of 50,200
    header, *rows = tables["#"]
    assert header == [
        "#",
        "layer",
        "weight",
        "op",
        "shape",
        "params",
        "direct",
        "effective",
        "dead in",
        "dead out",
        "MACs",
        "nonzero MACs",
    ]
    assert [row[2] for row in rows] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for i, (row, layer) in enumerate(zip(rows, report["layers"], strict=True), 1):
        assert row == [
            str(i),
            layer["label"] or layer["name"],
            layer["name"],
            "Gemm",
            "x".join(map(str, layer["shape"])),
            f"{layer['params']:,}",
            f"{layer['direct_sparsity']:.2%}",
            f"{layer['effective_sparsity']:.2%}",
            str(layer["dead_inputs"]),
            str(layer["dead_outputs"]),
            short(layer["params"]),  # one MAC per weight, as above
            short(round(layer["params"] * (1 - layer["direct_sparsity"]))),
        ]
    assert rows[0][4:6] == ["300x64", "19,200"]
    assert "None: every op was followed by a transfer rule." in text


def test_infinite_compression_and_fallback_ops(tmp_path):
    report = samples.all_zero_report(tmp_path)
    report["fallback_ops"] = ["CustomAttention", "Loop"]
    text = render_markdown(report)
    totals = dict(_tables(text)["quantity"][1:])
    assert totals["direct sparsity"] == "100.00%"
    assert totals["direct compression"] == "∞"
    assert totals["effective compression"] == "∞"
    assert _tables(text)["#"][1] == [
        "1",
        "w",  # the node has no name: the layer is named after its weight
        "w",
        "MatMul",
        "4x3",
        "12",
        "100.00%",
        "100.00%",
        "4",
        "3",
        "12",  # one row of x: one MAC per weight
        "0",  # every weight is zero
    ]
    assert "fell back to dense mixing" in text
    assert "CustomAttention, Loop." in text


def test_validation_metrics_and_failed_gate():
    text = render_markdown(samples.validation_result())
    assert text.startswith("# Validation: mlp\\_pruned.onnx\n")
    metrics = dict(_tables(text)["metric"][1:])
    assert metrics["top-1 accuracy"] == "95.00%"
    assert metrics["baseline top-1 accuracy"] == "97.22%"
    assert metrics["top-5 accuracy"] == "99.44%"
    assert metrics["top-1 agreement with baseline"] == "96.11%"
    assert metrics["max abs output difference"] == "3.25"
    assert metrics["latency p50 per batch"] == "0.123 ms"
    assert metrics["latency p95 per batch"] == "0.200 ms"
    assert metrics["throughput"] == "251,234.5 samples/s"
    assert metrics["baseline latency p50 per batch"] == "0.327 ms"
    assert metrics["baseline latency p95 per batch"] == "0.400 ms"
    assert metrics["speedup (baseline p50 / model p50)"] == "2.65x"
    assert metrics["samples"] == "360"
    assert metrics["provider"] == "CPUExecutionProvider"
    assert "**Gate: FAILED**" in text
    assert "- top-1 dropped 2.22% \\> 1.00% allowed" in text
    assert "- max top-1 drop allowed: 1.00 points" in text  # drops in points, as validate says
    assert "- min agreement required: 95.00%" in text


def test_validation_nulls_and_passed_or_absent_gate():
    gate = {"passed": True, "reason": "passed: agreement 99.0%", "max_accuracy_drop": None}
    data = samples.validation_result(top5=None, baseline=None, gate={**gate, "min_agreement": 0.9})
    text = render_markdown(data)
    metrics = dict(_tables(text)["metric"][1:])
    assert metrics["top-5 accuracy"] == "n/a"
    assert metrics["baseline"] == "n/a"
    assert "**Gate: passed**" in text
    assert "max top-1 drop allowed" not in text
    assert "No gate was set." in render_markdown(samples.validation_result(gate=None))


def test_validation_without_baseline_timings_shows_them_as_missing():
    untimed = samples.validation_result(
        baseline_latency_ms_p50=None, baseline_latency_ms_p95=None, speedup=None
    )
    older = samples.validation_result()  # written before the baseline was timed
    for key in ("baseline_latency_ms_p50", "baseline_latency_ms_p95", "speedup"):
        del older[key]
    for data in (untimed, older):
        metrics = dict(_tables(render_markdown(data))["metric"][1:])
        assert metrics["baseline latency p50 per batch"] == "n/a"
        assert metrics["baseline latency p95 per batch"] == "n/a"
        assert metrics["speedup (baseline p50 / model p50)"] == "n/a"
        assert metrics["latency p50 per batch"] == "0.123 ms"


def test_validation_shows_the_speedup_interval_the_timing_and_its_warnings():
    data = samples.validation_result(
        latency_ms_p90=0.15, baseline_latency_ms_p90=0.35, speedup_low=2.5, speedup_high=2.8,
        speedup_confidence=0.95, timed_runs=1200, threads=0,
        warnings=["only 1 distinct batch(es) were timed (fewer than 5): ..."],
    )  # fmt: skip
    text = render_markdown(data)
    metrics = dict(_tables(text)["metric"][1:])
    assert metrics["speedup (baseline p50 / model p50)"] == "2.65x (95% CI 2.50-2.80)"
    assert metrics["latency p90 per batch"] == "0.150 ms"
    assert metrics["baseline latency p90 per batch"] == "0.350 ms"
    assert metrics["timed runs per side"] == "1,200"
    assert metrics["intra-op threads"] == "ONNX Runtime's default"
    assert "Warnings: only 1 distinct batch(es) were timed (fewer than 5)" in text
    older = dict(_tables(render_markdown(samples.validation_result()))["metric"][1:])
    assert older["speedup (baseline p50 / model p50)"] == "2.65x"  # no interval before it
    assert (older["timed runs per side"], older["intra-op threads"]) == ("n/a", "n/a")


def test_sweep_warnings_are_listed_once_with_the_run_they_are_from():
    data = samples.sweep()
    few = "only 1 distinct batch(es) were timed (fewer than 5): ..."
    data["dense"]["warnings"] = [few]
    for run in data["runs"]:
        run["warnings"] = [few]
    data["runs"][1]["warnings"].append("the speedup's 95% interval reaches beyond +/-10%")
    text = render_markdown(data)
    assert text.count(few) == 2  # once for all the runs, once in the dense model's section
    assert (
        f"Warnings: dense model: {few}; magnitude/global at 90%: the speedup's 95% "
        "interval reaches beyond +/-10%"
    ) in text


def test_sweep_table_has_dense_then_every_run():
    data = samples.sweep()
    data["runs"].append(samples.failed_run("synflow/erk", 0.9, "ShapeError: needs static shapes"))
    text = render_markdown(data)
    assert text.startswith("# Sparsity sweep: mlp\\_digits.onnx\n")
    header, dense, *rows = _tables(text)["method"]
    assert header == [
        "method",
        "target",
        "direct",
        "effective",
        "direct compression",
        "effective compression",
        "nonzero MACs",
        "size",
        "top-1",
        "agreement",
        "cosine",
        "speedup (95% CI)",
        "gate",
        "front",
    ]
    na = "n/a"
    assert dense == ["dense", *[na] * 5, "50.2K", na, "97.22%", *[na] * 5]
    assert len(rows) == 7
    assert rows[1] == [
        "magnitude/global",
        "90%",
        "90.00%",
        "92.00%",
        "10.00x",  # 1 / (1 - 0.9)
        "12.50x",  # 1 / (1 - 0.92)
        "5.02K",  # 10% of 50,200
        "195K",  # 200,000 bytes
        "95.00%",
        "96.50%",  # 0.99 - 0.05 / 2
        "n/a",  # a run written before the comparisons existed
        "1.02x (0.98-1.06)",
        "FAILED",  # 2.22 points below the dense model
        "",  # lamp at 90% is as cheap and more accurate
    ]
    assert [row[-2:] for row in rows[:6]] == [
        ["passed", ""],
        ["FAILED", ""],
        ["FAILED", "MACs"],
        ["passed", "MACs, speedup"],
        ["passed", "MACs"],
        ["FAILED", ""],
    ]
    assert rows[5][:6] == ["lamp/global", "99%", "99.00%", "100.00%", "100.00x", "∞"]
    assert rows[6] == ["synflow/erk", "90%", *["n/a"] * 11, ""]
    assert "Failed runs: synflow/erk at 90%: ShapeError: needs static shapes" in text


def test_sweep_without_labels_says_the_plots_show_agreement():
    text = render_markdown(samples.sweep(labels=False))
    assert "The sweep had no labels: the plots show agreement with the dense model." in text
    assert _tables(text)["method"][2][8:11] == ["n/a", "97.50%", "n/a"]  # no top-1 without labels
    assert "Recommended model: none, no gate was set" in text


def test_comparisons_and_a_user_metric_are_rendered():
    outputs = {
        "logits": {"max_abs_error": 3.25, "cosine": 0.987654321, "agreement": 0.9611},
        "value": {"max_abs_error": 0.5, "cosine": 0.25, "agreement": None},
    }
    gate = {**samples.validation_result()["gate"], "limits": {"min_cosine": 0.99}}
    result = samples.validation_result(
        outputs=outputs, user_metrics={"f1": 0.8125}, baseline_user_metrics={"f1": 0.875}, gate=gate
    )
    text = render_markdown(result)
    tables = _tables(text)
    metrics = dict(tables["metric"][1:])
    assert (metrics["metric f1"], metrics["baseline metric f1"]) == ("0.8125", "0.875")
    assert tables["output"] == [
        ["output", "max abs", "cosine", "top-1 agr"],
        ["logits", "3.25", "0.987654", "96.11%"],
        ["value", "0.5", "0.25", "n/a"],
    ]
    assert "- min\\_cosine: 0.99\n" in text  # the gate's limit, escaped
    sweep = samples.sweep()
    sweep["runs"][0].update(comparison={"cosine": 0.99876}, user_metrics={"f1": 0.75})
    sweep["dense"]["user_metrics"] = {"f1": 0.8}
    header, dense, first, second, *_ = _tables(render_markdown(sweep))["method"]
    cosine = header.index("cosine")
    assert header[-1] == "f1"
    assert (dense[cosine], dense[-1]) == ("n/a", "0.8")
    assert (first[cosine], first[-1]) == ("0.9988", "0.75")
    assert (second[cosine], second[-1]) == ("n/a", "n/a")


def test_sweep_names_the_recommended_model():
    text = render_markdown(samples.sweep())
    assert "## Which model ships" in text
    assert (
        "- Recommended model: lamp/global at 90% (out/lamp-global-0.9.onnx), the most compressed "
        "run that passes the gate"
    ) in text
    assert "- MACs by nonzero weights: 5.02K; file size: 195K; top-1: 96.00%" in text
    nothing = samples.sweep()
    nothing["recommended"] = None
    assert "**Gate: FAILED**\n\n- Recommended model: none passes the gate." in render_markdown(
        nothing
    )


def test_combined_report_has_both_sections():
    text = render_markdown(
        {"report": samples.sparsity_report(), "validation": samples.validation_result()}
    )
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Pruning report",
        "## Totals",
        "## Layers",
        "## Fallback ops",
        "## Validation",
    ]
    assert dict(_tables(text)["metric"][1:])["top-1 accuracy"] == "95.00%"


def test_names_with_markdown_or_html_stay_literal_text():
    report = samples.sparsity_report()
    report["layers"][0]["name"] = "<script>alert(1)</script>|x"
    report["layers"][0]["label"] = "<b>fc1</b>|y"
    text = render_markdown(report)
    row = _tables(text)["#"][1]
    assert len(row) == 12  # the pipes in the names did not split the cells
    assert row[1] == "\\<b\\>fc1\\</b\\>\\|y"
    assert row[2] == "\\<script\\>alert(1)\\</script\\>\\|x"
    assert "<script>" not in text


def test_a_sweep_per_position_says_its_class_axis():
    row = "class axis (accuracy, agreement per position)"
    data = samples.sweep()
    assert row not in render_markdown(data)
    data["class_axis"] = 1
    assert f"| {row} | 1 |" in render_markdown(data)
    assert row in render_html(data)
