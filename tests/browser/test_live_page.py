"""Live edits in the page (issue 29), no button pressed: a query typed in Search updates the results, and
several typed quickly end with the last one's results; in the Prompt lab, after one run, the ensembling
choice, a template added and a "none of these" threshold update the view without pressing Evaluate.
(tests/test_live_edits.py checks that no image is read or encoded for them.)"""
from __future__ import annotations

import numpy as np

from tests import shapes

HEATMAP_SHOWS = "(document.querySelector('#zs-heatmap')?.textContent || '').includes('{}')"
QUERIES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]


def _top(page) -> str:
    return page.locator("#search-results tbody tr").first.locator("td.sr-name").inner_text()


def test_typing_a_query_searches_and_the_last_query_wins(page, tmp_path):
    folder = tmp_path / "live-photos"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for color, shape in QUERIES + [("purple", "square"), ("orange", "circle")]:
        for i in range(2):
            shapes.draw_shape(color, shape, size=48, rng=rng).save(folder / f"{color}_{shape}_{i}.png")
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-folder textarea, #search-folder input").first.fill(str(folder))
    page.click("#search-build")
    page.wait_for_selector("#search-report .search-counts", timeout=120_000)

    box = page.locator("#search-text textarea, #search-text input").first
    # typed key by key (gradio's textbox sends its input event on keys: page.fill alone sends none);
    # no Enter, no button
    box.press_sequentially("a red circle")
    page.wait_for_function("document.querySelector('#search-summary').innerText.includes('a red circle')",
                           timeout=30_000)
    assert _top(page).startswith("red_circle_")
    page.wait_for_function("document.querySelector('#search-gallery').innerText.includes('red_circle_')")

    for color, shape in QUERIES[1:]:  # quickly, one after another: only the last may stay on screen
        box.fill("")
        box.press_sequentially(f"a {color} {shape}")
    page.wait_for_function("document.querySelector('#search-summary').innerText.includes('a yellow cross')",
                           timeout=30_000)
    page.wait_for_timeout(1500)  # an earlier query answering late would now overwrite it
    assert "a yellow cross" in page.locator("#search-summary").inner_text()
    assert _top(page).startswith("yellow_cross_")
    first_caption = page.locator("#search-gallery").inner_text().strip().splitlines()[0]
    assert "yellow_cross_" in first_caption, first_caption

    # the number of results, dragged or typed, is live too
    count = page.locator("#search-k input[type=number]")
    count.fill("3")
    count.press("Enter")
    page.wait_for_function("document.querySelectorAll('#search-results tbody tr').length === 3",
                           timeout=30_000)


def test_prompt_lab_options_answer_without_evaluate(page, tmp_path):
    root = tmp_path / "live-labelled"
    shapes.make_labelled_folder(root, shapes.CLASSES[:4], 3, size=48, seed=6)
    page.get_by_role("tab", name="Prompt lab").click()
    page.wait_for_selector("#pl-run", timeout=30_000)
    page.locator("#pl-folder textarea, #pl-folder input").first.fill(str(root))
    page.click("#pl-run")
    page.wait_for_selector("#pl-top1", timeout=120_000)
    assert "ensembled by equal average" in page.locator("#pl-summary").inner_text()

    page.locator("#pl-weighting").get_by_label("ZPE (weights from the images)").check()
    page.wait_for_function("document.querySelector('#pl-summary').innerText.includes('ensembled by ZPE')",
                           timeout=30_000)
    assert page.locator("#pl-top1").count() == 1

    added = "a {} on a dark background."  # a template added: the set is scored again, 2 prompts now
    page.fill("#pl-new-template textarea", added)
    page.click("#pl-add")
    page.wait_for_function("document.querySelector('#pl-summary').innerText.includes('2 prompt(s)')",
                           timeout=30_000)
    assert page.locator("#pl-per-template tbody tr").count() == 2

    number = page.locator("#pl-min-cos input[type=number]")  # a threshold: every image under it
    # Known race (noted, not yet fixed): the model's default thresholds arrive in an event of their own just
    # after a run (flags.change, with "use the defaults" ticked) and can overwrite a value typed in between;
    # type it again once if that happened, so what is checked is that the threshold answers without Evaluate.
    for attempt in range(2):
        number.fill("0.99")
        number.press("Enter")
        try:
            page.wait_for_function(
                "document.querySelector('#pl-none-count').innerText.startsWith('12 of 12')",
                timeout=15_000 if attempt == 0 else 30_000)
            break
        except Exception:
            if attempt == 1 or number.input_value() == "0.99":
                raise


def test_typed_labels_classify_live_the_last_edit_wins_and_no_image_is_fetched_again(page, tmp_path):
    files = []
    for i, (color, shape) in enumerate(QUERIES[:3]):
        path = tmp_path / f"live_{i}.png"
        shapes.draw_shape(color, shape, size=64, rng=i).save(path)
        files.append(str(path))
    page.set_input_files("#zs-images input[type=file]", files)
    page.wait_for_function("document.querySelector('#zs-images').textContent.includes('live_2 .png')",
                           timeout=30_000)  # uploaded
    box = page.locator("#zs-labels textarea")
    box.press_sequentially("red circle, blue square, green triangle")  # typed: no button, no Enter
    page.wait_for_function(HEATMAP_SHOWS.format("green triangle"), timeout=60_000)
    assert [c.inner_text() for c in page.locator("#zs-results td.zs-top").all()] == [
        "red circle", "blue square", "green triangle"]
    page.wait_for_selector("#zs-gallery img", timeout=30_000)
    fetched: list[str] = []  # every image the page asks for from now on
    page.on("request", lambda r: fetched.append(r.url) if r.resource_type == "image" else None)

    for n in range(5):  # five edits, quickly: only the last may stay on screen
        box.fill("")
        box.press_sequentially(f"red circle, blue square, green triangle, cross {n}")
    page.wait_for_function(HEATMAP_SHOWS.format("cross 4"), timeout=30_000)
    page.wait_for_timeout(1500)  # an earlier edit answering late would now overwrite it
    for selector in ("#zs-heatmap", "#zs-bars"):
        text = page.locator(selector).text_content()
        assert "cross 4" in text and not any(f"cross {n}" in text for n in range(4)), selector
    assert page.locator("#zs-gallery img").count() == 3
    assert not [url for url in fetched if "live_" in url], fetched  # the gallery's images: not again


def test_the_page_saves_no_run_history(app_url):
    """Gradio would save every call (every live keystroke) in the visitor's browser, and the saving made
    each round trip slower as the tabs filled (bench_interaction's noop_at_end): the app turns it off."""
    import json
    import urllib.request

    with urllib.request.urlopen(app_url + "config", timeout=10) as answer:
        config = json.load(answer)
    assert config["run_history"] is False
