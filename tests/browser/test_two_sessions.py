"""Two visitors in two browsers on one hosted demo: what A uploads and indexes is offered to A in
every tab and to B in none, and B's page never shows A's file names."""
from __future__ import annotations

import re
import zipfile

from playwright.sync_api import expect

from tests import shapes
from tests.browser.conftest import screenshot

SECRET = "a-holiday-secret"


def _open(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#zs-run", timeout=60_000)
    return context, page


def _dropdown_options(page, elem_id: str) -> list[str]:
    page.locator(f"#{elem_id} input").click()
    page.wait_for_timeout(300)
    options = page.locator('li[data-testid="dropdown-option"]')
    texts = [options.nth(i).get_attribute("aria-label") for i in range(options.count())]
    page.keyboard.press("Escape")
    return texts


def _indexed_choices_in_gap_tab(page) -> list[str]:
    page.get_by_role("tab", name="Modality gap").click()
    page.locator("#gap-source").get_by_text("Indexed folder").click()
    page.wait_for_selector("#gap-index", state="visible", timeout=30_000)
    page.wait_for_timeout(500)  # the choices arrive with the radio's change event
    return _dropdown_options(page, "gap-index")


def test_a_visitors_uploads_and_indexes_never_reach_another(browser, hosted_app, tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, (color, shape) in enumerate(shapes.CLASSES[:6]):
            picture = tmp_path / f"{i}.png"
            shapes.draw_shape(color, shape, size=48, rng=i).save(picture)
            z.write(picture, f"{SECRET}/{color}_{shape}.png")
    a_context, a = _open(browser, hosted_app.url)
    b_context, b = _open(browser, hosted_app.url)
    try:
        a.get_by_role("tab", name="Search").click()
        a.set_input_files("#search-upload input[type=file]", [str(archive)])
        expect(a.locator("#search-upload")).to_contain_text(re.compile(r"a\s*\.zip"), timeout=30_000)
        a.click("#search-build")
        a.wait_for_selector("#search-report .search-counts", timeout=120_000)
        a.fill("#search-text textarea, #search-text input", "a red circle")
        a.click("#search-run")
        a.wait_for_selector("#search-results table", timeout=60_000)
        assert SECRET in a.locator("#search-results").inner_text()
        a_choices = _indexed_choices_in_gap_tab(a)
        assert len(a_choices) == 1 and a_choices[0].startswith(
            "your upload of") and "6 images" in a_choices[0]

        # B: no index to search, none offered in the gap tab or the heatmaps tab.
        b.get_by_role("tab", name="Search").click()
        b.fill("#search-text textarea, #search-text input", "a red circle")
        b.click("#search-run")
        expect(b.locator("#search-summary")).to_contain_text("Build an index first", timeout=30_000)
        assert _indexed_choices_in_gap_tab(b) == []
        b.get_by_role("tab", name="Heatmaps").click()
        b.locator("#hm-index-box").get_by_text("sample from a search index").click()
        b.wait_for_timeout(500)
        assert _dropdown_options(b, "hm-index") == ["(none)"]
        screenshot(b, "hosted-second-visitor")
        # Nothing of A's workspace (ws-<digest>/...) reaches B's page; gradio's own cache URLs may show.
        assert SECRET not in b.content() and "/ws-" not in b.content()
    finally:
        a_context.close()
        b_context.close()
