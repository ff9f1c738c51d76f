"""Select points on the Modality gap tab's joint map with plotly's box select (a real mouse drag) and
see the selected images (thumbnails with names) and texts listed under the map."""
from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.browser.test_gap_page import _run_gap_tab

# Page coordinates of the map's image and text points, with their names.
POINTS = """() => {
  const plot = document.querySelector('#gap-projection .js-plotly-plot');
  const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
  const out = {area: {right: box.left + xa._offset + xa._length, bottom: box.top + ya._offset + ya._length}};
  for (const t of plot._fullData) {
    const kind = (t.name || '').split(' (')[0];
    if (kind !== 'images' && kind !== 'texts') continue;
    out[kind] = Array.from(t.x, (x, i) => ({x: box.left + xa._offset + xa.l2p(x),
                                           y: box.top + ya._offset + ya.l2p(t.y[i]), name: t.text[i]}));
  }
  return out;
}"""


def test_box_select_lists_the_selected_images_and_texts(page, tmp_path):
    _run_gap_tab(page, tmp_path, 13)
    page.wait_for_selector("#gap-projection .js-plotly-plot", timeout=30_000)
    assert "Box Select" in page.locator("#gap-selection").inner_text()    # the hint says how
    page.locator("#gap-projection").scroll_into_view_if_needed()
    plot = page.locator("#gap-projection .js-plotly-plot")
    plot.hover()
    for title in ("Box Select", "Lasso Select"):
        assert plot.locator(f'.modebar-btn[data-title="{title}"]').count() == 1
    plot.locator('.modebar-btn[data-title="Box Select"]').click()

    # Drag a box around every point (the centroids inside it are no items and are left out).
    points = page.evaluate(POINTS)
    every = points["images"] + points["texts"]
    xs, ys = [p["x"] for p in every], [p["y"] for p in every]
    left, right, top, bottom = min(xs) - 8, max(xs) + 8, min(ys) - 8, max(ys) + 8
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move((left + right) / 2, (top + bottom) / 2, steps=5)
    page.mouse.move(right, bottom, steps=5)
    page.mouse.up()

    count = page.locator("#gap-selection-count")
    count.wait_for(timeout=30_000)
    assert count.inner_text() == "12 images and 4 texts selected"
    tiles = page.locator("#gap-selection .gap-selection-images figure")
    assert sorted(tiles.locator("figcaption").all_inner_texts()) == sorted(p["name"]
                                                                           for p in points["images"])
    assert tiles.locator('img[src^="data:image/jpeg"]').count() == 12      # each with its thumbnail
    listed = page.locator("#gap-selection .gap-selection-texts li").all_inner_texts()
    assert sorted(listed) == sorted(p["name"] for p in points["texts"]) and "a red circle" in listed
    page.mouse.move(5, 5)   # no hover preview in the picture
    page.locator("#gap-selection").scroll_into_view_if_needed()
    shot = screenshot(page, "gap-selection")
    assert shot.stat().st_size > 10_000

    # Double-clicking the map clears the selection, and the hint comes back.
    page.locator("#gap-projection").scroll_into_view_if_needed()
    corner = page.evaluate(POINTS)["area"]   # an empty corner of the plot area
    page.mouse.dblclick(corner["right"] - 6, corner["bottom"] - 6)
    page.wait_for_function("document.querySelector('#gap-selection').innerText.includes('Box Select')",
                           timeout=30_000)
