"""One click on an example photo set fills a tab's inputs and runs it, in headless Chromium (locally and
in a hosted demo, where the clicked files must pass as uploads). The test model knows only coloured
shapes, so what is checked is that a result appears for the examples' photos and labels, not which
label wins."""
from __future__ import annotations

import pytest

from explorer.app import examples
from tests.browser.conftest import screenshot

LABELS = [p.label for p in examples.PHOTOS]


def click_example(page, tab: str | None, elem_id: str, name: str) -> None:
    if tab:
        page.get_by_role("tab", name=tab).click()
    page.locator(f"#{elem_id}").get_by_text(name, exact=True).click()


def top_labels(page) -> dict[str, str]:
    rows = page.locator("#zs-results tbody tr")
    return {rows.nth(i).locator("td.zs-name").inner_text(): rows.nth(i).locator("td.zs-top").inner_text()
            for i in range(rows.count())}


def test_classify_example_fills_photos_and_labels_and_runs(page):
    click_example(page, None, "zs-examples", "Cat, coffee, rocket · 8 labels")
    page.wait_for_selector("#zs-results table", timeout=60_000)
    winners = top_labels(page)
    assert list(winners) == ["cat-chelsea.jpg", "coffee-cup.jpg", "rocket.jpg"]
    assert set(winners.values()) <= set(LABELS)
    assert page.locator("#zs-labels textarea").input_value() == examples.label_text()
    page.wait_for_selector("#zs-bars .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#zs-gallery img", timeout=30_000)
    assert screenshot(page, "examples-classify").stat().st_size > 10_000


def test_search_example_indexes_the_photos_and_a_text_search_finds_them(page):
    click_example(page, "Search", "search-examples", "Index the 8 example photos")
    page.wait_for_function("document.querySelector('#search-report')?.innerText.includes('searchable')",
                           timeout=120_000)
    assert page.locator("#search-report b").first.inner_text() == "8"
    page.locator("#search-text textarea, #search-text input").first.fill("a cat")
    page.locator("#search-text textarea, #search-text input").first.press("Enter")
    page.wait_for_selector("#search-results tbody tr", timeout=60_000)
    names = page.locator("#search-results tbody tr td:nth-child(2)").all_inner_texts()
    assert names and set(names) <= {p.file for p in examples.PHOTOS}   # those scoring >= the 0 threshold
    assert screenshot(page, "examples-search").stat().st_size > 10_000


def test_heatmaps_example_draws_photos_by_captions(page):
    click_example(page, "Heatmaps", "hm-examples", "All 8 photos × 8 captions")
    page.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    figure = page.evaluate("""() => { const d = document.querySelector('#hm-plot .js-plotly-plot');
                                      return d && d.data && d.data.length ? {x: d.data[0].x, y: d.data[0].y} :
                                      null; }"""
                           )
    assert list(figure["y"]) == [p.file for p in examples.PHOTOS]
    assert list(figure["x"]) == [p.caption for p in examples.PHOTOS]
    page.click("#hm-map-run")   # the example also filled the patch map's image and text
    page.wait_for_selector("#hm-overlay img", timeout=60_000)
    assert screenshot(page, "examples-heatmaps").stat().st_size > 10_000


def test_prompt_lab_example_weighs_the_seven_templates_on_the_photos(page):
    click_example(page, "Prompt lab", "pl-examples", "8 photos · 8 labels · ZPE over 7 templates")
    page.wait_for_function("document.querySelector('#pl-per-template')?.innerText.includes('itap of a {}.')",
                           timeout=90_000)
    assert "8" in page.locator("#pl-summary").inner_text()
    assert "error" not in (page.locator("#pl-summary").inner_html())
    assert screenshot(page, "examples-prompt-lab").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["8 photos + their labels", "8 photos + their captions (CSV)"])
def test_gap_example_measures_photos_against_their_texts(page, name):
    click_example(page, "Modality gap", "gap-examples", name)
    page.wait_for_selector("#gap-measures table", timeout=90_000)
    page.wait_for_selector("#gap-projection .js-plotly-plot", timeout=30_000)
    measures = page.locator("#gap-measures").inner_text()
    assert "8" in measures and "no label" not in measures and "no caption" not in measures
    if "CSV" in name:
        assert screenshot(page, "examples-gap").stat().st_size > 10_000


def test_hosted_demo_accepts_the_clicked_examples(browser, hosted_app):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(hosted_app.url)
        page.wait_for_selector("#zs-run", timeout=60_000)
        click_example(page, None, "zs-examples", "All 8 photos · 8 labels")
        page.wait_for_selector("#zs-results table", timeout=60_000)
        assert list(top_labels(page)) == [p.file for p in examples.PHOTOS]
        click_example(page, "Modality gap", "gap-examples",
                      "8 photos + their labels")  # unpacked into the session
        page.wait_for_selector("#gap-measures table", timeout=90_000)
    finally:
        context.close()
