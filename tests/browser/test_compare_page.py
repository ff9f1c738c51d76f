"""Drive the Compare models tab in headless Chromium: the resident shapes model against its noisy variant on a
labelled folder of shapes; the progress names each model in turn, the summary shows one column per model,
the plot and the gallery of the images where they disagree appear. Saves the README's picture of the tab,
assets/screenshots/compare.png (1280 px wide, as tests/browser/test_readme_screenshots.py takes the
others)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import shapes

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "assets" / "screenshots" / "compare.png"
# Every text the page shows while it runs, kept (a progress line lasts a moment): a MutationObserver.
WATCH = r"""() => { window.seen = []; new MutationObserver(() => {
    const m = document.body.innerText.match(/model \d of \d \([^\n]*/);
    if (m) window.seen.push(m[0]); })
  .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
DONE = "document.querySelector('#cmp-summary-table') !== null"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare-page") / "shapes"
    shapes.make_labelled_folder(root, shapes.CLASSES[:8], 4, size=96, seed=3)
    return root


def _type(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)


def test_two_models_run_side_by_side_with_progress_and_their_disagreements(wide, folder, shapes_model_dir,
                                                                           noisy_model_dir):
    page = wide
    page.get_by_role("tab", name="Compare models").click()
    page.wait_for_selector("#cmp-run", timeout=30_000)
    assert str(shapes_model_dir) in page.locator("#cmp-models textarea").input_value()  # the loaded model
    _type(page, "cmp-models", f"local-dir:{shapes_model_dir}\nlocal-dir:{noisy_model_dir}")
    _type(page, "cmp-folder", str(folder))
    page.evaluate(WATCH)
    page.click("#cmp-run")
    page.wait_for_function(DONE, timeout=180_000)
    seen = page.evaluate("window.seen")
    assert any(s.startswith(f"model 2 of 2 (local-dir:{noisy_model_dir}") for s in seen), seen
    headers = page.locator("#cmp-summary-table thead th").all_inner_texts()
    assert len(headers) == 3 and "shapes_clip" in headers[1] and "noisy" in headers[2], headers
    summary = page.locator("#cmp-summary").inner_text()
    assert "accuracy (top-1)" in summary and "100.0%" in summary and "ms per image" in summary
    assert "No clear difference" in page.locator("#cmp-pairs").inner_text() or \
        "better" in page.locator("#cmp-pairs").inner_text()
    page.wait_for_selector("#cmp-plot .js-plotly-plot", timeout=30_000)
    gallery = page.locator("#cmp-gallery .thumbnail-item, #cmp-gallery button img")
    page.wait_for_function("document.querySelectorAll('#cmp-gallery img').length > 0", timeout=30_000)
    assert gallery.count() > 0
    assert page.locator("#cmp-per-image-table tbody tr").count() == 32
    assert not page.locator("#cmp-cancel").is_visible()       # shown only while it runs
    page.mouse.move(1, 1)
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000
