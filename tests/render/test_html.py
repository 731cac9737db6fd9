"""HTML: a self-contained page, plots as PNG data URIs that decode, every report string escaped."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from onnxprune.render import render_html
from onnxprune.render.build import build_document
from onnxprune.render.document import LinePlot
from tests.render import samples

DATA_URI = re.compile(
    r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]*" '
    r'width="(\d+)" height="(\d+)">'
)
TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two series colours


def _pages() -> dict[str, str]:
    return {
        "sparsity": render_html(samples.sparsity_report()),
        "validation": render_html(samples.validation_result()),
        "sweep": render_html(samples.sweep()),
        "combined": render_html(
            {"report": samples.sparsity_report(), "validation": samples.validation_result()}
        ),
    }


def _images(page: str) -> list[Image.Image]:
    images = []
    for data, width, height in DATA_URI.findall(page):
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
        assert image.format == "PNG"
        assert image.size == (int(width), int(height))
        images.append(image)
    return images


def _pixels_near(image: Image.Image, colour: tuple[int, int, int]) -> int:
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(rgb - np.array(colour)).max(axis=-1) <= 12).sum())


@pytest.mark.parametrize("kind", ["sparsity", "validation", "sweep", "combined"])
def test_page_is_self_contained(kind):
    page = _pages()[kind]
    assert page.startswith("<!DOCTYPE html>")
    assert page.isascii()
    assert "http://" not in page
    assert "https://" not in page
    for needle in ("<script", "<link", "url(", "@import", "<iframe", "<object"):
        assert needle not in page.lower(), needle
    sources = re.findall(r'src="([^"]*)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(DATA_URI.findall(page))
    assert "Content-Security-Policy" in page
    assert "default-src 'none'; img-src data:" in page


def test_sparsity_page_embeds_two_bar_plots_that_decode():
    page = _pages()["sparsity"]
    images = _images(page)
    assert len(images) == 2
    for image in images:
        width, height = image.size
        assert 600 <= width <= 2000
        assert 300 <= height <= 1000
        assert _pixels_near(image, TAB_BLUE) > 2000  # direct sparsity / dead inputs bars
        assert _pixels_near(image, TAB_ORANGE) > 2000  # effective sparsity / dead outputs bars
    assert 'alt="Direct vs effective sparsity per layer"' in page
    assert 'alt="Dead units per layer"' in page
    assert "<td>fc2.weight</td>" in page
    assert '<td class="num">30,000</td>' in page
    assert '<td class="num">95.00%</td>' in page


def test_sweep_page_embeds_four_line_plots_and_the_tables():
    page = _pages()["sweep"]
    images = _images(page)
    assert [image.size[0] > 600 and image.size[1] > 400 for image in images] == [True] * 4
    # the first method's line (the speedup plot has every run at one speedup: no line)
    assert all(_pixels_near(image, TAB_BLUE) > 200 for i, image in enumerate(images) if i != 1)
    assert 'alt="Accuracy vs direct compression"' in page
    assert 'alt="Accuracy vs effective compression"' in page
    assert "<td>lamp/global</td>" in page
    assert '<td class="num">&#8734;</td>' in page  # lamp at 99%: every weight inactive
    assert "1 run(s) with infinite effective compression are not plotted." in page


def test_validation_page_has_metrics_and_the_gate_but_no_plots():
    page = _pages()["validation"]
    assert _images(page) == []
    assert '<div class="verdict fail"><strong>Gate FAILED</strong>' in page
    assert "<li>top-1 dropped 2.22% &gt; 1.00% allowed</li>" in page
    assert '<td>top-1 accuracy</td><td class="num">95.00%</td>' in page
    assert '<td>baseline latency p50 per batch</td><td class="num">0.327 ms</td>' in page
    assert '<td>speedup (baseline p50 / model p50)</td><td class="num">2.65x</td>' in page
    passed = render_html(
        samples.validation_result(gate={**samples.validation_result()["gate"], "passed": True})
    )
    assert '<div class="verdict pass"><strong>Gate passed</strong>' in passed


def test_combined_page_has_report_and_validation_sections():
    page = _pages()["combined"]
    assert "<title>Pruning report</title>" in page
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles == ["Totals", "Layers", "Fallback ops", "Validation"]
    assert len(_images(page)) == 2


def test_every_report_string_is_escaped():
    report = samples.sparsity_report()
    report["layers"][0]["name"] = "<script>alert('layer')</script>"
    report["layers"][1]["label"] = "<script>alert('label')</script>"
    report["layers"][1]["op_type"] = '"><img src=x onerror=alert(1)>'
    report["fallback_ops"] = ["<b>Op</b>"]
    validation = samples.validation_result(model="<script>m</script>", provider="<i>CPU</i>")
    validation["gate"]["reason"] = "<script>reason</script>"
    sweep = samples.sweep()
    sweep["model"] = "<script>sweep</script>.onnx"
    sweep["runs"][0]["method"] = "<script>method</script>"
    sweep["runs"].append(samples.failed_run("a/b", 0.9, "<script>error</script>"))
    pages = [
        render_html({"report": report, "validation": validation}),
        render_html(sweep),
        render_html(validation),
    ]
    for page in pages:
        assert "<script" not in page
        assert "<b>" not in page
        assert "<i>" not in page
        assert "onerror=alert" not in page or "&quot;&gt;&lt;img src=x onerror" in page
        assert len(re.findall(r"<img ", page)) == len(DATA_URI.findall(page))
    assert "&lt;script&gt;alert(&#x27;layer&#x27;)&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;alert(&#x27;label&#x27;)&lt;/script&gt;" in pages[0]
    assert "<title>Sparsity sweep: &lt;script&gt;sweep&lt;/script&gt;.onnx</title>" in pages[1]
    assert "&lt;script&gt;error&lt;/script&gt;" in pages[1]
    assert "&lt;script&gt;reason&lt;/script&gt;" in pages[2]


def test_dollar_signs_in_names_are_drawn_as_text():
    report = samples.sparsity_report()
    report["layers"][0]["label"] = r"$\frac{broken$"  # invalid mathtext if parsed as maths
    sweep = samples.sweep()
    sweep["runs"][0]["method"] = r"$\sqrt{$/global"
    assert len(_images(render_html(report))) == 2
    assert len(_images(render_html(sweep))) == 4


def _plots(document, section: str) -> list[LinePlot]:
    return [
        b for s in document.sections if s.title == section for b in s.blocks
        if isinstance(b, LinePlot)
    ]  # fmt: skip


def test_sweep_plots_one_line_per_method_and_skip_infinite_compression():
    direct, effective = _plots(build_document(samples.sweep()), "Accuracy vs compression")
    assert [line.name for line in direct.lines] == ["magnitude/global", "lamp/global"]
    assert direct.lines[0].x == pytest.approx((2.0, 10.0, 100.0))
    assert direct.lines[0].y == (0.97, 0.95, 0.60)
    assert direct.reference == ("dense", 0.9722)
    assert direct.chance == effective.chance == ("chance (1/10)", 0.1)  # ten digits
    assert direct.ylabel == "top-1 accuracy"
    assert effective.lines[1].x == pytest.approx((2.0, 10.0))  # lamp at 99% is infinite
    assert effective.lines[0].x == pytest.approx((2.0, 12.5, 200.0))


def test_sweep_without_labels_plots_agreement_against_one():
    plots = _plots(build_document(samples.sweep(labels=False)), "Accuracy vs compression")
    assert len(plots) == 2
    for plot in plots:
        assert plot.chance is None  # chance is of accuracy, not of agreement
        assert plot.ylabel == "top-1 agreement with the dense model (no labels)"
        assert plot.title.startswith("Agreement vs ")
        assert plot.reference == ("dense (agrees with itself)", 1.0)
        assert plot.lines[0].y == pytest.approx((0.975, 0.965, 0.79))  # 0.99 - (1 - top1) / 2
    page = render_html(samples.sweep(labels=False))
    assert 'alt="Agreement vs direct compression"' in page
    assert len(_images(page)) == 4


def test_sweep_page_has_the_fronts_the_chance_line_and_the_recommendation():
    macs, speed = _plots(build_document(samples.sweep()), "Which model ships")
    # the fronts of samples.sweep: lamp 50%, magnitude 99%, lamp 90% (MACs); lamp 50% (speed)
    assert sorted(macs.front) == [(502.0, 0.60), (5020.0, 0.96), (25100.0, 0.971)]
    assert speed.front == ((1.02, 0.971),)
    assert macs.chance == speed.chance == ("chance (1/10)", 0.1)
    assert macs.x_macs and not speed.x_macs
    page = render_html(samples.sweep())
    assert 'alt="Accuracy vs MACs by nonzero weights"' in page
    assert 'alt="Accuracy vs speedup over the dense model"' in page
    assert "circled: the Pareto front" in page
    assert "The red dashed line is chance accuracy, chance (1/10): 10.00%." in page
    assert "<td>MACs, speedup</td>" in page  # the front marker of lamp at 50%
    assert '<div class="verdict pass"><strong>Gate passed</strong>' in page
    assert "<li>Recommended model: lamp/global at 90% (out/lamp-global-0.9.onnx)" in page
    for image in _images(page):  # every accuracy plot draws the chance line, in tab:red
        assert _pixels_near(image, (214, 39, 40)) > 100
