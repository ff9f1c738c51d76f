"""Drive the Map tab in headless Chromium (issue 26): an index's map drawn, a hovered point's thumbnail,
a box selection filling the gallery, a label typed recolouring the map in place with the images deleted
from disk (so nothing could have read or encoded one: only the stored embeddings and the typed labels
are used), and a UMAP layout running in the background until it replaces the PCA map. Saves the README's
picture of the tab, assets/screenshots/map.png (1280 px wide, as tests/browser/test_readme_screenshots.py
takes the others)."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from tests import shapes

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "assets" / "screenshots" / "map.png"
FOUR = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]
SIX = [*FOUR, ("purple", "circle"), ("orange", "square")]
LABELS = "red circle, blue square, green triangle, yellow cross, purple circle, orange square"
# A small vocabulary typed into the tab: the shapes model knows colours and shapes; the rest distract
WORDS = "red, blue, green, yellow, purple, orange, circle, square, triangle, cross, dog, car, tree, sky"

# Page coordinates of the map's points (the trace plots.map_figure marks "map-points"), with their names.
POINTS = """() => {
  const plot = document.querySelector('#map-plot .js-plotly-plot');
  const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
  const t = plot._fullData.find((d) => d.meta === 'map-points');
  return Array.from(t.x, (x, i) => ({x: box.left + xa._offset + xa.l2p(x),
                                     y: box.top + ya._offset + ya.l2p(t.y[i]), name: t.text[i]}));
}"""
CAPTION_HAS = "(document.querySelector('#map-hover-caption')?.innerText || '').includes({})"
COUNT_IS = "document.querySelector('#map-selection-count')?.innerText === '{}'"
AREA = """() => {
  const plot = document.querySelector('#map-plot .js-plotly-plot');
  const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
  return {right: box.left + xa._offset + xa._length, bottom: box.top + ya._offset + ya._length};
}"""
LEGEND = """() => document.querySelector('#map-plot .js-plotly-plot')._fullData
  .filter((d) => d.meta === 'map-legend').map((d) => d.name)"""
UMAP_SHOWN = "document.querySelector('#map-note').innerText.includes('UMAP map of 12 images')"
COLOURS = """() => Array.from(document.querySelector('#map-plot .js-plotly-plot')._fullData
  .find((d) => d.meta === 'map-points').marker.color)"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("map-page") / "photos"
    shapes.make_labelled_folder(root, SIX, 4, size=64, seed=9)   # 24 images in 6 class folders
    return root


def _index(page, folder: Path) -> None:
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-folder textarea, #search-folder input").first.fill(str(folder))
    page.click("#search-build")
    page.wait_for_selector("#search-report .search-counts", timeout=120_000)
    page.get_by_role("tab", name="Map", exact=True).click()
    page.wait_for_selector("#map-run", timeout=30_000)


def _legend_has(page, text: str) -> None:
    page.wait_for_function(f"({LEGEND})().some((n) => n.includes({text!r}))", timeout=60_000)


def _drag_box(page, points) -> None:
    """A box select (the map's Box Select tool chosen) around `points`, dragged with the mouse."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    left, right, top, bottom = min(xs) - 8, max(xs) + 8, min(ys) - 8, max(ys) + 8
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move((left + right) / 2, (top + bottom) / 2, steps=5)
    page.mouse.move(right, bottom, steps=5)
    page.mouse.up()


def test_map_hover_select_and_recolour_in_place_with_the_images_gone(page, folder):
    _index(page, folder)
    page.locator("#map-method").get_by_label("PCA (instant)").check()   # an edit: draws the map live
    page.wait_for_selector("#map-plot .js-plotly-plot", timeout=60_000)
    page.wait_for_function("document.querySelector('#map-note').innerText.includes('PCA map of 24 images')",
                           timeout=60_000)
    points = page.evaluate(POINTS)
    assert len(points) == 24 and {p["name"].split("/")[0] for p in points} == {
        f"a_{c}_{s}" for c, s in SIX}
    _legend_has(page, "a_red_circle (4)")                  # coloured by folder to begin with

    # Hover a point: its thumbnail and name beside the map
    page.locator("#map-plot").scroll_into_view_if_needed()
    points = page.evaluate(POINTS)
    target = points[5]
    page.mouse.move(target["x"] - 20, target["y"] - 20)
    page.mouse.move(target["x"], target["y"], steps=4)
    caption = page.locator("#map-hover-caption")
    page.wait_for_function(f"document.querySelector('#map-hover-caption').innerText.includes({target['name']!r})",
                           timeout=30_000)
    assert "folder:" in caption.inner_text()
    page.wait_for_selector("#map-hover-image img[src*='thumb.webp']", timeout=30_000)

    # Box-select every point: the gallery shows them, and H6's actions get their names
    plot = page.locator("#map-plot .js-plotly-plot")
    plot.hover()
    plot.locator('.modebar-btn[data-title="Box Select"]').click()
    points = page.evaluate(POINTS)
    _drag_box(page, points)
    count = page.locator("#map-selection-count")
    count.wait_for(timeout=30_000)
    assert count.inner_text() == "24 images selected"
    page.wait_for_function("document.querySelectorAll('#map-selection-gallery img').length === 24",
                           timeout=30_000)
    # double-click clears it; then the red circles alone (one group on the map): their images, and the
    # words that tell them apart
    corner = page.evaluate(AREA)
    page.mouse.dblclick(corner["right"] - 6, corner["bottom"] - 6)
    page.wait_for_function("document.querySelector('#map-selection').innerText.includes('Lasso')",
                           timeout=30_000)
    _drag_box(page, [p for p in page.evaluate(POINTS) if p["name"].startswith("a_red_circle/")])
    page.wait_for_function(COUNT_IS.format("4 images selected"), timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#map-selection-gallery img').length === 4",
                           timeout=30_000)
    captions = page.locator("#map-selection-gallery").inner_text()
    assert captions.count("a_red_circ") == 4, captions
    page.wait_for_selector("#map-selection-words .map-word", timeout=120_000)   # the vocabulary, once

    # Export the selection: the CSV the page hands back names exactly the four red circles' files
    page.click("#map-export")
    link = page.locator("#map-export-file a[href]").first
    link.wait_for(timeout=30_000)
    exported = page.request.get(link.get_attribute("href")).text()
    header, *rows = csv.reader(io.StringIO(exported))
    assert header == ["name", "path"]
    assert sorted(Path(path).resolve() for _, path in rows) == sorted(
        p.resolve() for p in (folder / "a_red_circle").iterdir())

    # Search by it: the Search tab opens with the selection's stored embeddings as the query, so the four
    # red circles come first; then back to the map
    page.click("#map-search-by")
    page.wait_for_selector("#search-results tbody tr", timeout=60_000)
    top = page.locator("#search-results tbody tr td:nth-child(2)").all_inner_texts()[:4]
    assert all("a_red_circle" in name for name in top), top
    page.get_by_role("tab", name="Map", exact=True).click()

    # The lists: each item, clicked, shows its image beside the map with its evidence
    page.locator("#map-lists-acc").click()
    page.click("#map-lists-run")
    page.wait_for_selector("#map-lists .map-list-item", timeout=60_000)
    item = page.locator("#map-lists .map-list-item").first
    name = item.inner_text()
    evidence = item.locator("xpath=..").locator(".explorer-muted").inner_text()
    item.click()
    page.wait_for_function(CAPTION_HAS.format(repr(name)), timeout=30_000)
    assert evidence in page.locator("#map-hover-caption").inner_text()

    # Words typed into the vocabulary name the clusters, the selection and a clicked image (SpLiCE)
    page.locator("#map-vocabulary textarea").fill(WORDS)
    page.locator("#map-vocabulary textarea").press("Tab")                  # the selection's words follow
    page.locator("#map-colour-by").get_by_label("Clusters").check()
    k = page.locator("#map-k input[type='number']")
    k.fill("6")
    k.press("Enter")
    page.wait_for_function(f"({LEGEND})().length === 6 && ({LEGEND})().every((n) => "
                           "['circle', 'square', 'triangle', 'cross'].some((w) => n.includes(w)))",
                           timeout=60_000)
    page.wait_for_function("(document.querySelector('#map-selection-words')?.innerText || '')"
                           ".includes('the words typed')", timeout=30_000)
    assert "circle" in page.locator("#map-selection-words").inner_text()   # the red circles' best words
    explained = page.locator("#map-explanation")
    page.wait_for_function("(document.querySelector('#map-explanation')?.innerText || '')"
                           ".includes('the words typed')", timeout=30_000)   # the image shown, again
    item = page.locator("#map-lists .map-list-item").nth(1)
    name = item.inner_text()
    item.click()                                                           # a list item: shown and explained
    page.wait_for_function("(document.querySelector('#map-explanation')?.innerText || '')"
                           f".includes({name!r})", timeout=30_000)
    text = explained.inner_text()
    assert f"{name} in words (SpLiCE)" in text and "cosine" in text, text
    said = text.splitlines()[0]                                            # "NAME in words (SpLiCE): ..."
    assert any(w in said.split(":", 1)[1] for w in name.split("/")[0].split("_")[1:]), text
    # a hovered point names itself in the button, which explains it
    page.locator("#map-plot").scroll_into_view_if_needed()
    target = next(p for p in page.evaluate(POINTS) if p["name"].startswith("a_purple_circle/"))
    page.mouse.move(target["x"] - 20, target["y"] - 20)
    page.mouse.move(target["x"], target["y"], steps=4)
    button = page.locator("#map-explain-run")
    page.wait_for_function(f"document.querySelector('#map-explain-run').innerText.includes({target['name']!r})",
                           timeout=30_000)
    button.click()
    page.wait_for_function("(document.querySelector('#map-explanation')?.innerText || '')"
                           f".includes({target['name'] + ' in words'!r})", timeout=30_000)
    said = explained.inner_text().splitlines()[0].split(":", 1)[1]
    assert "purple" in said or "circle" in said, said

    page.set_viewport_size({"width": 1280, "height": 900})   # the README's picture, as the other tabs'
    page.mouse.move(1, 1)
    page.wait_for_timeout(800)
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000

    # The images leave the disk; typing labels still recolours the map, in place (the same plot element)
    shutil.rmtree(folder)
    page.evaluate("document.querySelector('#map-plot .js-plotly-plot').dataset.mark = 'drawn-once'")
    before = page.evaluate(COLOURS)
    page.locator("#map-colour-by").get_by_label("Zero-shot labels").check()
    page.locator("#map-labels textarea").press_sequentially(LABELS)
    _legend_has(page, "orange square")                        # the last label, typed in full
    assert page.evaluate("document.querySelector('#map-plot .js-plotly-plot').dataset.mark") == "drawn-once"
    after = page.evaluate(COLOURS)
    assert after != before and len(after) == 24
    by_folder = {}
    for point, colour in zip(page.evaluate(POINTS), after):
        by_folder.setdefault(point["name"].split("/")[0], set()).add(colour)
    assert all(len(colours) == 1 for colours in by_folder.values())          # each folder one label
    assert len({next(iter(c)) for c in by_folder.values()}) == 6
    assert "zero-shot" in page.locator("#map-colour-note").inner_text()


def test_umap_replaces_the_pca_map_when_its_job_is_done(page, tmp_path):
    root = tmp_path / "umap-photos"
    shapes.make_labelled_folder(root, FOUR, 3, size=48, seed=4)   # 12 images
    _index(page, root)
    page.click("#map-run")                     # UMAP is the default layout: PCA at once, UMAP to follow
    page.wait_for_function("document.querySelector('#map-note').innerText.includes('UMAP layout is being')",
                           timeout=60_000)
    assert page.locator("#map-cancel").is_visible()
    try:
        page.wait_for_function(UMAP_SHOWN, timeout=240_000)
    except Exception:
        pytest.fail(f"no UMAP map: {page.locator('#map-progress').inner_text()!r}, "
                    f"{page.locator('#map-note').inner_text()!r}")
    assert not page.locator("#map-cancel").is_visible()
    assert page.evaluate("document.querySelector('#map-plot .js-plotly-plot')._fullLayout.xaxis.title.text") \
        == "UMAP 1"
