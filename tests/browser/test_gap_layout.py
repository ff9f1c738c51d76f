"""The Modality gap tab at 1280 and 1920 px after a run (issue 25): the measures table inside the
viewport (or scrolling visibly), no text spilling out of its box."""
from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot
from tests.browser.test_prompt_lab_layout import SPILLS_JS, TABLES_JS

RESULTS = ["#gap-measures", "#gap-readout", "#gap-projection-note", "#gap-selection"]


@pytest.mark.parametrize("width", [1280, 1920])
def test_gap_results_fit_at_both_widths(browser, app_url, width):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        page.goto(app_url)
        page.wait_for_selector("#zs-run", timeout=60_000)
        page.get_by_role("tab", name="Modality gap").click()
        page.wait_for_selector("#gap-run", timeout=30_000)
        page.locator("#gap-examples button").first.click()  # the 8 photos and their labels
        page.wait_for_selector("#gap-measures table", timeout=120_000)
        page.wait_for_selector("#gap-projection .js-plotly-plot", timeout=60_000)
        tables = page.evaluate(TABLES_JS, "#gap-measures")
        assert tables
        for t in tables:
            inside = t["lastRight"] <= min(t["viewport"], t["box"]["right"]) + 1
            assert inside or (t["scrollsX"] and t["canScrollX"] and t["barX"]), t
        assert page.evaluate(SPILLS_JS, RESULTS) == []
        screenshot(page, f"gap-{width}")
    finally:
        context.close()
