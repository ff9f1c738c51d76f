"""A model that cannot load does not take the app down: the page says why and offers another."""
from __future__ import annotations

from tests.browser.conftest import RunningApp, screenshot


def test_app_starts_with_a_broken_model_and_loads_a_good_one(browser, shapes_model_dir, tmp_path):
    app = RunningApp(f"local-dir:{tmp_path / 'no-such-model'}", tmp_path)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(app.url)
        status = page.locator("#model-status")
        status.wait_for(timeout=60_000)
        assert "no-such-model" in status.inner_text() and "folder not found" in status.inner_text()
        screenshot(page, "model-failed")
        page.fill("#model-name input, #model-name textarea", f"local-dir:{shapes_model_dir}")
        page.click("#model-load")
        page.wait_for_function("document.querySelector('#model-status').innerText.includes('Loaded')",
                               timeout=60_000)
        assert "shapes_clip" in status.inner_text()
        context.close()
    finally:
        app.stop()
