"""The test-time switches in the Classify page (issue 27), as a person would use them: classify, open the
switches, ask for augmented views and TDA; the results change and the page names each switch, its cost
and how many top labels moved."""
from __future__ import annotations

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot

SWITCHED = "document.querySelector('#zs-results')?.querySelector('#zs-switched') !== null"


def _wait_until_results_say(page, *words: str) -> None:
    said = " && ".join(f"document.querySelector('#zs-results').innerText.includes('{w}')" for w in words)
    page.wait_for_function(f"{SWITCHED} && {said}", timeout=60_000)


def _table(page) -> str:
    return page.locator("#zs-results table").inner_text()


def test_a_switch_changes_the_results_and_the_page_names_it(page, tmp_path):
    rng = np.random.default_rng(11)
    files = []
    for color, shape in [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]:
        path = tmp_path / f"{color}_{shape}.png"
        shapes.draw_shape(color, shape, size=64, rng=rng).save(path)
        files.append(str(path))
    page.set_input_files("#zs-images input[type=file]", files)
    page.locator("#zs-labels textarea").press_sequentially(
        "a red circle, a blue square, a green triangle, a yellow cross")
    page.click("#zs-run")
    page.wait_for_selector("#zs-results table", timeout=60_000)
    plain = _table(page)
    assert "Test-time switches on" not in page.locator("#zs-results").inner_text()

    page.click("#zs-switches button, #zs-switches .label-wrap")  # open the accordion
    views = page.locator("#zs-views input[type=number]")
    views.wait_for(state="visible")
    views.fill("6")
    views.press("Enter")
    # One switch at a time, as a person does: the views are on screen before TDA is ticked. (One CI run
    # ended on a page without the views, its time x1.0: most likely the edit made while the accordion
    # was still opening had not reached the page's state when TDA was ticked.)
    _wait_until_results_say(page, "6 views")
    page.locator("#zs-tda input[type=checkbox]").check()
    _wait_until_results_say(page, "6 views", "TDA")
    page.wait_for_timeout(500)  # the last edit's answer is the one on screen
    results = page.locator("#zs-results").inner_text()
    assert "Test-time switches on" in results and "6 views" in results and "TDA" in results
    assert "the time of plain classification" in results and "top label(s) changed" in results
    assert "Source:" in results
    assert _table(page) != plain  # the switched probabilities and cosines, not the plain ones
    shot = screenshot(page, "classify-switches")
    assert shot.stat().st_size > 10_000
