"""Drive the Teach by example tab in headless Chromium: a labelled folder whose class names the model
cannot read (kind_1..kind_4), so zero-shot is near chance and the shots must win; then sort new
images and download the classifier."""
from __future__ import annotations

import zipfile
from pathlib import Path

from tests import shapes
from tests.browser.conftest import screenshot


def _opaque_folder(root: Path) -> Path:
    shapes.make_labelled_folder(root, shapes.CLASSES[:4], 10, size=64, seed=1)
    for i, (colour, shape) in enumerate(shapes.CLASSES[:4], start=1):
        (root / f"a_{colour}_{shape}").rename(root / f"kind_{i}")
    return root


def _top1(page, method: str) -> float:
    cell = page.locator(f'#teach-accuracy tr[data-method="{method}"] td.teach-top1').inner_text()
    return float(cell.split("%")[0])


def test_teach_beats_zero_shot_shows_the_curve_sorts_and_downloads(page, tmp_path):
    examples = _opaque_folder(tmp_path / "examples")
    new = tmp_path / "new"
    shapes.make_labelled_folder(new, shapes.CLASSES[:4], 2, size=64, seed=7)
    page.get_by_role("tab", name="Teach by example").click()
    page.wait_for_selector("#teach-run", timeout=30_000)
    page.fill("#teach-folder textarea", str(examples))
    page.click("#teach-run")
    page.wait_for_selector("#teach-accuracy", timeout=180_000)

    assert page.locator("#teach-accuracy tbody tr").count() == 4
    zero_shot = _top1(page, "zero-shot")
    assert max(_top1(page, m) for m in ("prototype", "tip-adapter", "gda")) > zero_shot + 30
    table = page.locator("#teach-table").inner_text()
    assert "cross-validation" in table and "held out for testing" in table
    assert "leave-one-out" in table and "Where each method departs from its paper" in table
    assert page.locator("#teach-accuracy tr[data-informative]").count() == 3   # each adapted method says
    page.wait_for_selector("#teach-curve .js-plotly-plot", timeout=30_000)
    assert page.locator("#teach-curve .js-plotly-plot .scatterlayer .trace").count() == 4
    page.wait_for_selector("#teach-confusion .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#teach-fixed img", timeout=30_000)
    assert "→" in page.locator("#teach-fixed").inner_text()

    files = sorted(str(p) for p in new.rglob("*.png"))
    page.set_input_files("#teach-apply-upload input[type=file]", files)
    page.wait_for_selector("#teach-apply-upload :text('0.png')", timeout=30_000)
    page.click("#teach-apply")
    page.wait_for_selector("#teach-sort-line", timeout=60_000)
    page.wait_for_selector("#teach-class-0 img", timeout=30_000)
    assert "none of these" in page.locator("#teach-sort").inner_text()

    page.click("#teach-download")
    page.wait_for_selector("#teach-download-file a", timeout=30_000)
    with page.expect_download() as info:
        page.locator("#teach-download-file a").first.click()
    saved = tmp_path / "clf.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as z:
        assert sorted(n.rsplit(".", 1)[1] for n in z.namelist()) == ["json", "safetensors"]
    screenshot(page, "teach")
