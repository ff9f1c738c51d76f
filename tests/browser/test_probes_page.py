"""Drive the Probes tab in headless Chromium: one page load, the five probes run one after another on
folders of shapes images, each showing its result (the probe's heading, its method and source, its plot and
its table). Saves the README's picture of the tab, assets/screenshots/probes.png (1280 px wide, as
tests/browser/test_readme_screenshots.py takes the others)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import shapes
from tests.test_probes_tab import draw_count

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "assets" / "screenshots" / "probes.png"
FOUR = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]
SHOWN = "(document.querySelector('#pr-summary')?.innerText || '').includes({!r})"
PLOTTED = "document.querySelector('#pr-plot .js-plotly-plot') !== null"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("probes-page")
    for k in (1, 2, 3, 4):
        (root / "counts" / str(k)).mkdir(parents=True)
        for i in range(2):
            draw_count(k, size=96, seed=10 * k + i).save(root / "counts" / str(k) / f"{i}.png")
    shapes.make_labelled_folder(root / "named", FOUR, 3, size=64, seed=2)
    rng = np.random.default_rng(4)
    for left, right in (FOUR[:2], (("blue", "circle"), ("red", "square"))):
        folder = root / "pairs" / f"{left[0]}_{left[1]}_and_{right[0]}_{right[1]}"
        folder.mkdir(parents=True)
        for i in range(3):
            shapes.draw_pair(left, right, size=96, rng=rng)[0].save(folder / f"{i}.png")
    return {k: str(root / k) for k in ("counts", "named", "pairs")}


def _type(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill("")
    box.press_sequentially(text)


def _run(page, kind: str, folder: str, heading: str, **boxes: str) -> str:
    """Pick the probe, type its folder and boxes, run it, wait for its result; returns the summary text."""
    page.get_by_label(kind, exact=True).check()
    _type(page, "pr-folder", folder)
    for elem_id, text in boxes.items():
        _type(page, elem_id, text)
    page.click("#pr-run")
    page.wait_for_function(SHOWN.format(heading), timeout=120_000)
    page.wait_for_function(PLOTTED, timeout=30_000)
    summary = page.locator("#pr-summary").inner_text()
    assert "Method" in summary and "Source" in summary, summary
    assert page.locator("#pr-details table tbody tr").count() >= 2
    return summary


def test_the_five_probes_run_on_one_page(wide, folders):
    page = wide
    page.get_by_role("tab", name="Probes").click()
    page.wait_for_selector("#pr-run", timeout=30_000)
    grid = {"pr-attributes": "red, blue, green, yellow", "pr-objects": "circle, square, triangle, cross"}
    _run(page, "Attributes x objects", folders["named"], "Attributes x objects: 4 x 4", **grid)
    said = _run(page, "Binding", folders["pairs"], "Binding:")
    assert "chance 50%" in said and "sign test" in said
    said = _run(page, "Label geometry (Loki)", folders["named"], "Label geometry (Loki)",
                **{"pr-extra": "purple circle, orange square"})
    assert "Loki changed" in said
    said = _run(page, "Synonym swap", folders["named"], "Synonym swap",
                **{"pr-synonyms": "a red circle: a crimson circle\na blue square: zqxv"})
    assert "→" in said
    # last, for the picture: the count curves, and a page that says the readings are no better than chance
    said = _run(page, "Counting", folders["counts"], "Counting: red circle", **{"pr-object": "red circle"})
    assert "chance (10.0%)" in said and "majority baseline" in said
    page.mouse.move(1, 1)
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000
