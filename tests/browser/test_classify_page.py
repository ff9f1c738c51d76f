"""Drive the zero-shot tab in headless Chromium, as a person would."""
from __future__ import annotations

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot


def test_upload_label_classify_and_read_the_winner(page, tmp_path):
    rng = np.random.default_rng(7)
    files = []
    for color, shape in [("red", "circle"), ("blue", "square"), ("green", "triangle")]:
        path = tmp_path / f"{color}_{shape}.png"
        shapes.draw_shape(color, shape, size=96, rng=rng).save(path)
        files.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    page.set_input_files("#zs-images input[type=file]", [str(p) for p in files + [broken]])
    page.fill("#zs-labels textarea", "a red circle\na blue square\na green triangle\na yellow cross\n"
                                     "a purple circle\na orange square\na red circle")
    page.click("#zs-run")
    page.wait_for_selector("#zs-results table", timeout=60_000)
    rows = page.locator("#zs-results tbody tr")
    assert rows.count() == 3
    winners = {rows.nth(i).locator("td.zs-name").inner_text(): rows.nth(i).locator("td.zs-top").inner_text()
               for i in range(3)}
    assert winners == {"red_circle.png": "a red circle", "blue_square.png": "a blue square",
                       "green_triangle.png": "a green triangle"}
    results = page.locator("#zs-results").inner_text()
    assert "broken.jpg" in results and "not an image" in results
    assert "duplicate" in results  # the repeated label was dropped and the user told
    page.wait_for_selector("#zs-bars .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#zs-heatmap .js-plotly-plot", timeout=30_000)
    shot = screenshot(page, "classify")
    assert shot.stat().st_size > 10_000


def test_custom_template_without_placeholder_is_refused_on_the_page(page, tmp_path):
    path = tmp_path / "one.png"
    shapes.draw_shape("yellow", "cross", size=64, rng=np.random.default_rng(3)).save(path)
    page.set_input_files("#zs-images input[type=file]", [str(path)])
    page.fill("#zs-labels textarea", "yellow cross, red circle")
    page.get_by_label("Custom (edit below)").check()
    page.fill("#zs-custom textarea", "a photo of something")
    page.click("#zs-run")
    page.wait_for_function("document.querySelector('#zs-results').innerText.includes('{}')", timeout=30_000)
    assert "needs {}" in page.locator("#zs-results").inner_text()
