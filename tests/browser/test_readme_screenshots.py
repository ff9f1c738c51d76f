"""The README's screenshots, taken fresh: each tab run once at 1280 px wide with the project's shapes
model on images drawn by tests/shapes.py (the only weights these machines have; on shapes its answers
are right, so the pictures show what the tab is for), saved as assets/screenshots/<tab>.png, the files
README.md shows. Every run of the browser tests rewrites them, so they follow the page.

Each test waits for the tab's results before its picture and checks that the picture was written;
what the results say is checked by the tab's own page test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from playwright.sync_api import expect

from tests import shapes
from tests.browser.test_prompt_lab_page import _labelled_zip

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "screenshots"
TABS = ("classify", "prompt-lab", "search", "heatmaps", "gap", "teach")
THREE = [("red", "circle"), ("blue", "square"), ("green", "triangle")]


def save(page, tab: str) -> Path:
    """The whole page as assets/screenshots/<tab>.png, from the top."""
    assert tab in TABS
    ASSETS.mkdir(parents=True, exist_ok=True)
    path = ASSETS / f"{tab}.png"
    page.mouse.move(1, 1)             # no hover label left over the results
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    return path


def draw(folder: Path, picks, size: int = 96, seed: int = 7, copies: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for color, shape in picks:
        for k in range(copies):
            path = folder / (f"{color}_{shape}.png" if copies == 1 else f"{color}_{shape}_{k}.png")
            shapes.draw_shape(color, shape, size=size, rng=rng).save(path)
            paths.append(path)
    return paths


def open_tab(page, name: str, ready: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_selector(ready, timeout=30_000)


def test_classify(wide, tmp_path):
    files = draw(tmp_path, THREE)
    wide.set_input_files("#zs-images input[type=file]", [str(p) for p in files])
    wide.fill("#zs-labels textarea", "a red circle\na blue square\na green triangle\na yellow cross\n"
                                     "a purple circle\na orange square")
    wide.click("#zs-run")
    wide.wait_for_selector("#zs-results table", timeout=60_000)
    wide.wait_for_selector("#zs-bars .js-plotly-plot", timeout=30_000)
    wide.wait_for_selector("#zs-heatmap .js-plotly-plot", timeout=30_000)
    wide.wait_for_selector("#zs-gallery img", timeout=30_000)
    save(wide, "classify")


def test_prompt_lab(wide, tmp_path):
    archive = _labelled_zip(tmp_path)  # 6 classes x 4 shapes, as the Prompt lab's own page test uses
    open_tab(wide, "Prompt lab", "#pl-run")
    wide.locator("#pl-new-template textarea").fill("a {} on a dark background.")
    wide.click("#pl-add")
    wide.wait_for_function("document.querySelector('#pl-set-status').innerText.includes('2 template')",
                           timeout=30_000)
    wide.set_input_files("#pl-upload input[type=file]", [str(archive)])
    # 90 s: on two busy test workers a zip's upload took over 30 s
    wide.wait_for_selector("#pl-upload :text('shapes.zip')", timeout=90_000)
    wide.click("#pl-run")
    wide.wait_for_selector("#pl-top1", timeout=120_000)
    wide.wait_for_selector("#pl-confusion .js-plotly-plot", timeout=30_000)
    save(wide, "prompt-lab")


def test_search(wide, tmp_path):
    picks = [("red", "circle"), ("red", "square"), ("blue", "circle"), ("blue", "square"),
             ("green", "triangle"), ("yellow", "cross"), ("purple", "square"), ("orange", "circle")]
    folder = tmp_path / "photos"
    draw(folder, picks, size=160, seed=11, copies=3)   # large enough to be seen when opened full size
    open_tab(wide, "Search", "#search-build")
    wide.locator("#search-folder").locator("textarea, input").first.fill(str(folder))
    wide.click("#search-build")
    wide.wait_for_selector("#search-report .search-counts", timeout=120_000)
    wide.fill("#search-text textarea, #search-text input", "a red circle")
    wide.click("#search-run")
    wide.wait_for_selector("#search-results table", timeout=60_000)
    wide.locator("#search-gallery img").first.click()     # the top result, full size with its path
    expect(wide.locator("#search-full img")).to_be_visible(timeout=30_000)
    expect(wide.locator("#search-full-score")).to_contain_text("score", timeout=30_000)
    save(wide, "search")


def test_heatmaps(wide, tmp_path):
    files = draw(tmp_path, THREE)
    pair, _, _ = shapes.draw_pair(("red", "circle"), ("blue", "square"), size=128,
                                  rng=np.random.default_rng(5))
    pair.save(tmp_path / "pair.png")
    open_tab(wide, "Heatmaps", "#hm-run")
    wide.set_input_files("#hm-images input[type=file]", [str(p) for p in files + [tmp_path / "pair.png"]])
    wide.fill("#hm-texts textarea", "\n".join(shapes.caption(c, s) for c, s in THREE))
    wide.click("#hm-run")
    wide.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    wide.locator("#hm-map-image input").first.click()
    wide.get_by_role("option", name="pair.png", exact=True).click()
    wide.click("#hm-map-run")
    wide.wait_for_function("document.querySelector('#hm-overlay img')?.getAttribute('src')", timeout=60_000)
    save(wide, "heatmaps")


def test_gap(wide, tmp_path):
    chosen = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]
    files = draw(tmp_path, chosen, size=64, seed=11, copies=3)
    open_tab(wide, "Modality gap", "#gap-run")
    wide.set_input_files("#gap-images input[type=file]", [str(p) for p in files])
    wide.fill("#gap-labels textarea", "\n".join(shapes.caption(c, s) for c, s in chosen))
    wide.click("#gap-run")
    wide.wait_for_selector("#gap-measures table", timeout=60_000)
    for elem_id in ("gap-hist", "gap-projection", "gap-curve"):
        wide.wait_for_selector(f"#{elem_id} .js-plotly-plot", timeout=30_000)
    save(wide, "gap")


def test_teach(wide, tmp_path):
    examples = tmp_path / "examples"
    shapes.make_labelled_folder(examples, shapes.CLASSES[:4], 10, size=64, seed=1)
    for i, (colour, shape) in enumerate(shapes.CLASSES[:4], start=1):   # names the text tower cannot read
        (examples / f"a_{colour}_{shape}").rename(examples / f"kind_{i}")
    open_tab(wide, "Teach by example", "#teach-run")
    wide.fill("#teach-folder textarea", str(examples))
    wide.click("#teach-run")
    wide.wait_for_selector("#teach-accuracy", timeout=180_000)
    wide.wait_for_selector("#teach-curve .js-plotly-plot", timeout=30_000)
    wide.wait_for_selector("#teach-confusion .js-plotly-plot", timeout=30_000)
    wide.wait_for_selector("#teach-fixed img", timeout=30_000)
    save(wide, "teach")
