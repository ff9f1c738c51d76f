"""Drive the Search tab in headless Chromium: index a folder, search by text, filter, click to search by
image."""
from __future__ import annotations

import re
import zipfile

import numpy as np
from playwright.sync_api import expect

from tests import shapes
from tests.browser.conftest import RunningApp, screenshot

PICKED = [("red", "circle"), ("red", "square"), ("red", "triangle"), ("blue", "circle"), ("blue", "square"),
          ("green", "triangle"), ("green", "circle"), ("yellow", "cross"), ("purple", "square"),
          ("orange", "circle")]


def _make_folder(folder):
    folder.mkdir()
    rng = np.random.default_rng(11)
    for color, shape in PICKED:
        for i in range(3):
            shapes.draw_shape(color, shape, size=64, rng=rng).save(folder / f"{color}_{shape}_{i}.png")
    (folder / "corrupt.png").write_bytes(b"definitely not a png")


def _rows(page):
    rows = page.locator("#search-results tbody tr")
    return [(rows.nth(i).locator("td.sr-name").inner_text(),
             float(rows.nth(i).locator("td.sr-score").inner_text())) for i in range(rows.count())]


def _results_text_contains(page, text: str, timeout: int = 60_000) -> None:
    expect(page.locator("#search-summary")).to_contain_text(text, timeout=timeout)


def test_index_search_filter_and_click_to_search_by_image(page, tmp_path):
    folder = tmp_path / "photos"
    _make_folder(folder)
    page.get_by_role("tab", name="Search").click()
    folder_box = page.locator("#search-folder").locator("textarea, input").first

    # A folder outside the allowed roots is refused, with the reason on the page.
    folder_box.fill("/etc")
    page.click("#search-build")
    page.wait_for_function("document.querySelector('#search-report').innerText.includes('Refused')",
                           timeout=30_000)
    assert "outside the folders this app may read" in page.locator("#search-report").inner_text()

    # Build: the report counts what was added and names the bad file with its reason.
    folder_box.fill(str(folder))
    page.click("#search-build")
    page.wait_for_selector("#search-report .search-counts", timeout=120_000)
    report = page.locator("#search-report").inner_text()
    assert "30 added" in report and "1 failed" in report and "30 image(s) searchable" in report
    failure = page.locator("#search-report .search-failure").inner_text()
    assert "corrupt.png" in failure and "not an image" in failure

    # Text search: the top result is a red circle.
    page.fill("#search-text textarea, #search-text input", "a red circle")
    page.click("#search-run")
    page.wait_for_selector("#search-results table", timeout=60_000)
    rows = _rows(page)
    assert len(rows) >= 3
    top_name, top_score = rows[0]
    assert top_name.startswith("red_circle_"), rows[:5]
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    assert {name for name, _ in rows[:3]} == {f"red_circle_{i}.png" for i in range(3)}, rows[:5]
    gallery = page.locator("#search-gallery")
    assert gallery.locator("img").count() == len(rows)
    assert f"{top_score:.3f} · {top_name}" in gallery.inner_text()
    screenshot(page, "search-text")

    # Threshold: raise it between the 3rd and 4th score; only the first three stay, with no new search.
    cut = round((rows[2][1] + rows[3][1]) / 2, 2) if len(rows) > 3 else rows[2][1]
    number = page.locator("#search-threshold input[type=number]")
    number.fill(f"{cut:.2f}")
    number.press("Enter")
    expected = [r for r in rows if r[1] >= cut]
    page.wait_for_function(
        f"document.querySelectorAll('#search-results tbody tr').length === {len(expected)}", timeout=30_000)
    assert _rows(page) == expected
    assert gallery.locator("img").count() == len(expected)
    _results_text_contains(page, f"{len(expected)} of 24 result(s)")  # k = 24 of 30 images

    # Open the second result full size, then "More like this": an image -> image search by its stored
    # embedding; it finds itself first.
    clicked = expected[1][0] if len(expected) > 1 else expected[0][0]
    gallery.locator("img").nth(1 if len(expected) > 1 else 0).click()
    page.click("#search-like")
    _results_text_contains(page, f"Images like {clicked}")
    image_rows = _rows(page)
    assert image_rows[0][0] == clicked and image_rows[0][1] >= 0.99
    assert "1.000 · " in gallery.inner_text() or "0.99" in gallery.inner_text()
    assert image_rows[1][0].startswith("_".join(clicked.split("_")[:2]))  # its siblings come next
    shot = screenshot(page, "search")
    assert shot.stat().st_size > 10_000


def test_hosted_mode_takes_a_zip_and_no_server_path(browser, shapes_model_dir, tmp_path):
    folder = tmp_path / "photos"
    _make_folder(folder)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"photos/{path.name}")
        zf.writestr("../escape.png", b"zip-slip attempt")
    app = RunningApp(f"local-dir:{shapes_model_dir}", tmp_path, EXPLORER_HOSTED="1",
                     EXPLORER_INDEX_DIR=str(tmp_path / "indexes"))
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(app.url)
        page.get_by_role("tab", name="Search").click()
        page.wait_for_selector("#search-build", timeout=60_000)
        assert page.locator("#search-folder").count() == 0 or not page.locator("#search-folder").is_visible()
        page.set_input_files("#search-upload input[type=file]", [str(archive)])
        expect(page.locator("#search-upload")).to_contain_text(re.compile(r"photos\s*\.zip"), timeout=30_000)
        page.click("#search-build")
        page.wait_for_selector("#search-report .search-counts", timeout=120_000)
        report = page.locator("#search-report").inner_text()
        assert "30 added" in report and "1 failed" in report and "1 entry refused: ../escape.png" in report
        page.fill("#search-text textarea, #search-text input", "a blue square")
        page.click("#search-run")
        page.wait_for_selector("#search-results table", timeout=60_000)
        assert _rows(page)[0][0].startswith("photos/blue_square_")
        # Text and a dropped image together, weighted: all weight on the image finds the image's own
        # colour/shape.
        query = tmp_path / "query.png"
        shapes.draw_shape("green", "triangle", size=64, rng=np.random.default_rng(5)).save(query)
        page.set_input_files("#search-image input[type=file]", [str(query)])
        page.wait_for_selector("#search-image-preview img", timeout=30_000)  # the app's own safe preview
        weight = page.locator("#search-weight input[type=number]")
        weight.fill("1")
        weight.press("Enter")
        page.click("#search-run")
        expect(page.locator("#search-summary")).to_contain_text("image query.png (weight 1.00)",
                                                                timeout=60_000)
        assert _rows(page)[0][0].startswith("photos/green_triangle_")
        screenshot(page, "search-hosted")
        context.close()
    finally:
        app.stop()
