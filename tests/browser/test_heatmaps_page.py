"""Drive the Heatmaps tab in headless Chromium: an image x text matrix with its cosine / probability
switch, then a patch map over a two-object image with a live opacity slider and a live map text."""
from __future__ import annotations

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot

TEXTS = ["a red circle", "a blue square", "a green triangle"]

# The plotly figure in #hm-plot: its colour-bar title and z values, read from the plotly div itself.
READ_FIGURE = """() => {
  const div = document.querySelector('#hm-plot .js-plotly-plot');
  if (!div || !div.data || !div.data.length) return null;
  const trace = div.data[0];
  const title = trace.colorbar && trace.colorbar.title;
  // Plotly decodes numpy's typed-array encoding into calcdata; read the numbers from there.
  const z = div.calcdata && div.calcdata[0] && div.calcdata[0][0].z;
  return {title: (title && (title.text || title)) || '', x: trace.x, y: trace.y,
          z: z ? Array.from(z, row => Array.from(row)) : null};
}"""


def _pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _overlay_src(page) -> str:
    return page.locator("#hm-overlay img").first.get_attribute("src") or ""


def test_matrix_switch_views_then_patch_map_with_opacity(page, tmp_path):
    rng = np.random.default_rng(5)
    files = []
    for color, shape in [("red", "circle"), ("blue", "square"), ("green", "triangle")]:
        path = tmp_path / f"{color}_{shape}.png"
        shapes.draw_shape(color, shape, size=96, rng=rng).save(path)
        files.append(path)
    pair, _, _ = shapes.draw_pair(("red", "circle"), ("blue", "square"), size=128, rng=rng)
    pair.save(tmp_path / "pair.png")
    files.append(tmp_path / "pair.png")

    page.get_by_role("tab", name="Heatmaps").click()
    page.set_input_files("#hm-images input[type=file]", [str(p) for p in files])
    page.fill("#hm-texts textarea", "\n".join(TEXTS))
    page.click("#hm-run")
    page.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    page.wait_for_function(f"({READ_FIGURE})() !== null", timeout=30_000)

    cosine = page.evaluate(READ_FIGURE)
    assert "cosine" in cosine["title"]
    assert list(cosine["x"]) == TEXTS
    assert list(cosine["y"]) == ["red_circle.png", "blue_square.png", "green_triangle.png", "pair.png"]
    z = np.array(cosine["z"], dtype=float)
    assert z.shape == (4, 3) and np.all(np.abs(z) <= 1)
    assert [int(np.argmax(row)) for row in z[:3]] == [0, 1, 2]  # each single shape matches its caption
    assert "spanning this matrix's own range" in page.locator("#hm-scale-note").inner_text()

    page.get_by_label("Probability (softmax per image)").check()
    page.wait_for_function(f"(({READ_FIGURE})() || {{}}).title === 'probability'", timeout=30_000)
    probability = page.evaluate(READ_FIGURE)
    p = np.array(probability["z"], dtype=float)
    assert p.shape == (4, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    assert not np.allclose(p, z)
    assert "softmax over the texts" in page.locator("#hm-scale-note").inner_text()

    # Where in the image: the pair image, "a red circle" (the first text is picked by default).
    _pick(page, "hm-map-image", "pair.png")
    assert page.locator("#hm-map-text input").first.input_value() == "a red circle"
    page.click("#hm-map-run")
    page.wait_for_selector("#hm-overlay img", timeout=60_000)
    page.wait_for_function("document.querySelector('#hm-overlay img').getAttribute('src')", timeout=30_000)
    info = page.locator("#hm-map-info").inner_text()
    assert "a red circle" in info and "8×8 patches" in info and "whole image's cosine" in info
    before = _overlay_src(page)

    # Moving the opacity slider re-blends the stored map: a new picture, no new map.
    slider = page.locator("#hm-opacity input[type=range]")
    slider.fill("0.9")
    slider.dispatch_event("change")
    page.wait_for_function("s => document.querySelector('#hm-overlay img').getAttribute('src') !== s",
                           arg=before, timeout=30_000)
    assert _overlay_src(page) != before
    assert page.locator("#hm-map-info").inner_text() == info
    shot = screenshot(page, "heatmaps")
    assert shot.stat().st_size > 10_000

    # Another text, typed (issue 29): the map follows without the button, from the image's kept tokens.
    before = _overlay_src(page)
    box = page.locator("#hm-map-text input").first
    box.fill("a blue square in the corner")
    box.press("Enter")
    page.wait_for_function(
        "(document.querySelector('#hm-map-numbers')?.innerText || '').includes('a blue square in the')",
        timeout=30_000)
    page.wait_for_function("s => document.querySelector('#hm-overlay img').getAttribute('src') !== s",
                           arg=before, timeout=30_000)


def test_patch_map_needs_an_image_and_says_so(page):
    page.get_by_role("tab", name="Heatmaps").click()
    page.fill("#hm-texts textarea", "a red circle")
    page.click("#hm-map-run")
    page.wait_for_function(
        "(document.querySelector('#hm-map-info')?.innerText || '').includes('Pick an image')", timeout=30_000)
    assert not page.locator("#hm-overlay img").count()
