"""Drive the Search tab's comforts in headless Chromium: open an index made by the command line, open a
result full size with its path and score, list near-duplicates, and cancel a build part-way then build
again to resume."""
from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from explorer.index.build import build_index
from tests import shapes
from tests.browser.conftest import screenshot

PICKED = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross"),
          ("purple", "square")]
BIG_COUNT, BIG_SIDE = 256, 1536  # large PNGs: slow enough to decode that a build can be cancelled part-way


def _make_folder(folder, side=320):
    folder.mkdir()
    rng = np.random.default_rng(3)
    for color, shape in PICKED:
        for i in range(3):
            shapes.draw_shape(color, shape, size=side, rng=rng).save(folder / f"{color}_{shape}_{i}.png")


def _make_big_folder(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    bases = [shapes.draw_shape(c, s, size=64, rng=rng) for c, s in PICKED[:4]]
    for i in range(BIG_COUNT):
        im = bases[i % len(bases)].resize((BIG_SIDE, BIG_SIDE), Image.NEAREST)
        ImageDraw.Draw(im).text((10, 10), str(i), fill=(0, 0, 0))
        im.save(folder / f"img_{i:03d}.png", compress_level=1)


def _textbox(page, elem_id):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _top_row(page):
    row = page.locator("#search-results tbody tr").first
    return row.locator("td.sr-name").inner_text(), float(row.locator("td.sr-score").inner_text())


def test_open_a_cli_index_a_result_full_size_and_the_duplicates(page, shapes_model, tmp_path):
    folder = tmp_path / "photos"
    _make_folder(folder)
    made = tmp_path / "made-by-the-cli"
    build_index(shapes_model, folder, made, workers=0)  # what `clip-explorer index DIR --index PATH` does
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-open-acc").get_by_text("open an index made with").click()
    _textbox(page, "search-index-folder").fill(str(made))
    page.click("#search-open-index")
    expect(page.locator("#search-report")).to_contain_text("15 image(s) searchable", timeout=60_000)
    assert str(made) in page.locator("#search-report").inner_text()

    # Search, then click the top result: it opens full size with its (copyable) path and its score.
    page.fill("#search-text textarea, #search-text input", "a red circle")
    page.click("#search-run")
    page.wait_for_selector("#search-results table", timeout=60_000)
    name, score = _top_row(page)
    assert name.startswith("red_circle_")
    page.locator("#search-gallery img").first.click()
    viewer = page.locator("#search-viewer")
    expect(viewer).to_be_visible(timeout=30_000)
    expect(page.locator("#search-full img")).to_be_visible(timeout=30_000)
    expect(_textbox(page, "search-full-path")).to_have_value(str(folder / name), timeout=30_000)
    expect(page.locator("#search-full-score")).to_contain_text(f"score {score:.3f}")
    natural = page.locator("#search-full img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [320, 320]  # the file's own size, not the 256-pixel thumbnail
    assert page.locator("#search-full-path button").count() >= 1  # the copy button
    screenshot(page, "search-fullsize")

    # "More like this" searches by the opened image's stored embedding and closes the view.
    page.click("#search-like")
    expect(page.locator("#search-summary")).to_contain_text(f"Images like {name}", timeout=60_000)
    expect(viewer).to_be_hidden()
    assert _top_row(page)[0] == name

    # Near-duplicates of the current index: groups with their cosines and thumbnails.
    page.locator("#search-dups-acc").get_by_text("Near-duplicates in this index").click()
    page.click("#search-dups-run")
    page.wait_for_selector("#search-dups .dup-group", timeout=60_000)
    groups = page.locator("#search-dups .dup-group")
    assert groups.count() >= 1
    assert groups.first.locator("img").count() >= 2
    head = groups.first.locator(".dup-head").inner_text()
    low, high = float(page.locator("#search-dups .dup-min").first.inner_text()), \
        float(page.locator("#search-dups .dup-max").first.inner_text())
    assert "cosine min" in head and 0.9 <= high and low <= high <= 1.0001
    assert str(folder) not in page.locator("#search-dups").inner_html()  # names relative to the folder only
    page.locator("#search-dups-acc").scroll_into_view_if_needed()
    screenshot(page, "search-duplicates")


def test_cancel_a_build_part_way_then_build_again_to_resume(page, tmp_path):
    folder = tmp_path / "big"
    _make_big_folder(folder)
    page.get_by_role("tab", name="Search").click()
    _textbox(page, "search-folder").fill(str(folder))
    page.click("#search-build")
    cancel = page.locator("#search-cancel")
    expect(cancel).to_be_visible(timeout=30_000)
    # As soon as some images are embedded (the progress text says so), press Cancel from inside the page:
    # on a fast machine the whole build takes a few seconds, so no round trip to the test may come between.
    # At that moment there is one progress bar, on the report (none on the build's other outputs).
    page.wait_for_function(
        f"""() => {{
            if (!/[1-9][0-9]*\\/{BIG_COUNT} images embedded/.test(document.body.innerText)) return false;
            window.progressBars = [document.querySelectorAll('#search-report .progress-text').length,
                document.querySelectorAll(
                    '#search-summary .progress-text, #search-results .progress-text').length];
            document.querySelector('#search-cancel').click();
            return true;
        }}""", timeout=120_000, polling=20)
    assert page.evaluate("window.progressBars") == [1, 0]
    page.wait_for_selector("#search-report .search-counts", timeout=120_000)
    report = page.locator("#search-report").inner_text()
    found = re.search(rf"cancelled after (\d+) of {BIG_COUNT}", report)
    assert found, report
    done = int(found.group(1))
    assert 0 < done < BIG_COUNT and f"{done} image(s) searchable" in report
    assert "build again to resume" in report
    expect(cancel).to_be_hidden(timeout=30_000)
    screenshot(page, "search-cancel")

    # The index is usable for what was done...
    page.fill("#search-text textarea, #search-text input", "a red circle")
    page.click("#search-run")
    page.wait_for_selector("#search-results table", timeout=60_000)
    assert f"of {done} indexed images" in page.locator("#search-summary").inner_text() or done <= 24

    # ...and building again encodes only the rest.
    page.click("#search-build")
    expect(page.locator("#search-report")).to_contain_text(f"{BIG_COUNT} image(s) searchable",
                                                           timeout=180_000)
    report = page.locator("#search-report").inner_text()
    assert f"{BIG_COUNT - done} added, 0 updated, 0 removed, {done} unchanged" in report, report
    assert "cancelled" not in report
