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


def test_loading_a_model_replaces_the_classify_panes_could_not_load_message(browser, shapes_model_dir,
                                                                            tmp_path):
    """The classify pane said no model could be loaded; after a successful load it must not still say so."""
    from tests import shapes

    app = RunningApp(f"local-dir:{tmp_path / 'no-such-model'}", tmp_path)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(app.url)
        page.locator("#model-status").wait_for(timeout=60_000)
        image = tmp_path / "red.png"
        shapes.draw_shape("red", "circle", size=64, rng=1).save(image)
        page.set_input_files("#zs-images input[type=file]", [str(image)])
        page.fill("#zs-labels textarea", "a red circle\na blue square")
        page.click("#zs-run")
        page.wait_for_function(
            "document.querySelector('#zs-results').innerText.includes('No model is loaded')", timeout=60_000)
        assert "no-such-model" in page.locator("#zs-results").inner_text()
        page.fill("#model-name input, #model-name textarea", f"local-dir:{shapes_model_dir}")
        page.click("#model-load")
        page.wait_for_function("document.querySelector('#zs-results').innerText.includes('Run this again')",
                               timeout=60_000)
        pane = page.locator("#zs-results").inner_text()
        assert "No model is loaded" not in pane and "no-such-model" not in pane and "shapes_clip" in pane
        screenshot(page, "model-loaded-stale-message-replaced")
        page.click("#zs-run")  # and classifying now works
        page.wait_for_selector("#zs-results table", timeout=60_000)
        # The patch-map method control offers MaskCLIP and says what each method computes.
        page.get_by_role("tab", name="Heatmaps").click()
        page.locator("#hm-method").get_by_label("maskclip").check()
        page.wait_for_function("document.querySelector('#hm-method').innerText.includes('residual')",
                               timeout=30_000)
        assert "value-only" in page.locator("#hm-method").inner_text()
        page.locator("#hm-method").scroll_into_view_if_needed()
        screenshot(page, "heatmaps-method-maskclip")
        context.close()
    finally:
        app.stop()


def test_the_heatmaps_radio_follows_a_sigmoid_model_on_load_and_reload(browser, shapes_model_dir,
                                                                        sigmoid_model_dir, tmp_path):
    """The "Show" radio names the loaded model's rule: softmax for the shapes model; once its sigmoid
    variant loads, sigmoid, at once (no run needed) and on a reloaded page too."""
    softmax, sigmoid = "Probability (softmax per image)", "Probability (sigmoid per image and text)"
    app = RunningApp(f"local-dir:{shapes_model_dir}", tmp_path)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(app.url)
        page.wait_for_selector("#zs-run", timeout=60_000)
        page.get_by_role("tab", name="Heatmaps").click()
        radio = page.locator("#hm-view")
        radio.wait_for(timeout=30_000)
        assert softmax in radio.inner_text() and sigmoid not in radio.inner_text()
        page.get_by_text("Load another model").click()  # closed while a model is loaded
        page.fill("#model-name input, #model-name textarea", f"local-dir:{sigmoid_model_dir}")
        page.click("#model-load")
        page.wait_for_function("s => document.querySelector('#hm-view').innerText.includes(s)", arg=sigmoid,
                               timeout=60_000)
        assert softmax not in radio.inner_text()
        assert "sigmoid_clip" in page.locator("#model-status").inner_text()
        radio.scroll_into_view_if_needed()
        screenshot(page, "heatmaps-radio-after-sigmoid-load")
        page.reload()
        page.wait_for_selector("#zs-run", timeout=60_000)
        page.get_by_role("tab", name="Heatmaps").click()
        page.wait_for_function("s => document.querySelector('#hm-view').innerText.includes(s)", arg=sigmoid,
                               timeout=30_000)
        assert softmax not in page.locator("#hm-view").inner_text()
        context.close()
    finally:
        app.stop()
