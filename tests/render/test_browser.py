"""The HTML page in a real browser: headless Chromium draws it, loads every plot, runs no script.

Skipped only where no Chromium is installed; ``.ci/run`` installs Debian's ``chromium`` as root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxprune.render import render_html
from tests.render import samples

pytestmark = pytest.mark.slow  # starts headless Chromium

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # the plots' first two series colours
# Test-only probe, run by the load event (after every image has loaded or failed): record each
# image's decoded width. A PNG truncated after its header still has a width; the screenshot test
# catches that (no plot colours).
PROBE = (
    "<script>window.addEventListener('load', () => {"
    " for (const img of document.images) {"
    " img.dataset.complete = img.complete; img.dataset.naturalWidth = img.naturalWidth; }"
    " document.body.dataset.loaded = document.images.length; });</script>"
)


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium installed (.ci/run installs it when running as root)")


def _open(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _page(kind: str) -> str:
    if kind == "sweep":
        return render_html(samples.sweep())
    return render_html(
        {"report": samples.sparsity_report(), "validation": samples.validation_result()}
    )


def _near(rgb: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(rgb - np.array(colour)).max(axis=-1) <= 12).sum())


@pytest.mark.parametrize("kind", ["combined", "sweep"])
def test_screenshot_shows_tables_and_plots(tmp_path, kind):
    page = tmp_path / f"{kind}.html"
    page.write_text(_page(kind))
    shot = tmp_path / f"{kind}.png"
    height = 2000 if kind == "combined" else 3200  # the sweep's plots come after two sections
    result = _open(tmp_path, page, f"--screenshot={shot}", f"--window-size=1200,{height}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists(), result.stderr[-2000:]
    image = Image.open(shot)
    assert image.size == (1200, height)
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert rgb.std() > 20  # not a blank page
    assert (rgb.min(axis=-1) < 200).mean() > 0.03  # text, rules and plots cover the page
    # Only the embedded plots use matplotlib's blue and orange: the browser drew them.
    assert _near(rgb, TAB_BLUE) > 2000
    assert _near(rgb, TAB_ORANGE) > 2000


@pytest.mark.parametrize("kind", ["combined", "sweep"])
def test_every_image_loads_in_the_browser(tmp_path, kind):
    html = _page(kind)
    probe = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    assert probe != html
    page = tmp_path / "probe.html"
    page.write_text(probe.replace("</body>", f"{PROBE}</body>"))
    result = _open(tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert f'data-loaded="{html.count("<img ")}"' in dom
    images = re.findall(r"<img [^>]*>", dom)
    assert len(images) == (2 if kind == "combined" else 4)  # the sweep: vs MACs, vs speedup too
    for img in images:
        width = re.search(r' width="(\d+)"', img).group(1)
        assert 'data-complete="true"' in img
        assert f'data-natural-width="{width}"' in img
    title = "Pruning report" if kind == "combined" else "Sparsity sweep: mlp_digits.onnx"
    assert f"<h1>{title}</h1>" in dom


def test_the_page_policy_blocks_scripts(tmp_path):
    html = _page("combined")
    injected = "<script>document.body.dataset.ran = 'yes';</script>"
    page = tmp_path / "injected.html"
    page.write_text(html.replace("</body>", f"{injected}{PROBE}</body>"))
    result = _open(tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<h1>Pruning report</h1>" in result.stdout
    assert 'data-ran="yes"' not in result.stdout
    assert "data-loaded=" not in result.stdout  # the probe is blocked too
