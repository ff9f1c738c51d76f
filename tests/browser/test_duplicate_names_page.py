"""Display integrity in headless Chromium: images with the same file name from different class folders
(red/0.png, blue/0.png ...) keep one heatmap row each, with their own values, and the cells carry
their numbers; caps are said on the page."""
from __future__ import annotations

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot

CLASSES = [("red", "circle"), ("blue", "square")]
TEXTS = ["a red circle", "a blue square"]

# The heatmap trace as plotly laid it out: its categories, the z it drew, and the cell texts shown.
READ_HEATMAP = """(sel) => {
  const div = document.querySelector(sel + ' .js-plotly-plot');
  if (!div || !div.calcdata || !div.calcdata.length) return null;
  const cd = div.calcdata[0][0];
  const ya = div._fullLayout.yaxis;
  return {y: Array.from(div.data[0].y), categories: Array.from(ya._categories),
          z: Array.from(cd.z, row => Array.from(row)),
          cellTexts: Array.from(div.querySelectorAll('g.heatmaplayer text')).map(t => t.textContent)};
}"""


def _same_named_files(tmp_path, n_per_class: int = 3) -> list[str]:
    made = shapes.make_labelled_folder(tmp_path / "data", CLASSES, n_per_class, size=64, seed=4)
    return [str(path) for path, _ in made]   # data/a_red_circle/0.png, data/a_blue_square/0.png, ...


def test_heatmap_keeps_same_named_images_apart(page, tmp_path):
    files = _same_named_files(tmp_path)
    page.get_by_role("tab", name="Heatmaps").click()
    page.set_input_files("#hm-images input[type=file]", files)
    page.fill("#hm-texts textarea", "\n".join(TEXTS))
    page.click("#hm-run")
    page.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    page.wait_for_function(f"({READ_HEATMAP})('#hm-plot') !== null", timeout=30_000)
    fig = page.evaluate(READ_HEATMAP, "#hm-plot")
    assert len(fig["y"]) == 6 and len(set(fig["y"])) == 6, fig["y"]
    assert len(fig["categories"]) == 6          # plotly drew six rows, none merged
    z = np.array(fig["z"], dtype=float)
    assert z.shape == (6, 2)
    # The first three are red circles, the last three blue squares: each row keeps its own values.
    assert all(row[0] > row[1] for row in z[:3]) and all(row[1] > row[0] for row in z[3:])
    assert len(fig["cellTexts"]) == 12 and all(t.strip() for t in fig["cellTexts"])  # a number on every cell
    shown = sorted(float(t.replace("\u2212", "-")) for t in fig["cellTexts"])
    np.testing.assert_allclose(shown, sorted(z.ravel()), atol=0.006)                 # each cell's own cosine
    page.locator("#hm-plot").scroll_into_view_if_needed()
    screenshot(page, "duplicate-names-heatmap")


def test_classify_heatmap_and_capped_bars_are_announced(page, tmp_path):
    files = _same_named_files(tmp_path, n_per_class=7)   # 14 images: more than the 12 bar panels
    page.get_by_role("tab", name="Zero-shot classification").click()
    page.set_input_files("#zs-images input[type=file]", files)
    page.fill("#zs-labels textarea", "\n".join(TEXTS))
    page.click("#zs-run")
    page.wait_for_selector("#zs-heatmap .js-plotly-plot", timeout=60_000)
    page.wait_for_function(f"({READ_HEATMAP})('#zs-heatmap') !== null", timeout=30_000)
    fig = page.evaluate(READ_HEATMAP, "#zs-heatmap")
    assert len(fig["categories"]) == 14 and len(set(fig["y"])) == 14
    assert "showing 12 of 14 images" in page.locator("#zs-results").inner_text()
    bars_title = page.evaluate("() => document.querySelector('#zs-bars .js-plotly-plot .gtitle').textContent")
    assert "showing 12 of 14 images" in bars_title
    page.locator("#zs-heatmap").scroll_into_view_if_needed()
    screenshot(page, "duplicate-names-classify")
