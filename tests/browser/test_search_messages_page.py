"""The Search tab's messages on the page (issue 25): a build's progress bar is drawn on a cleared report,
never over the last error; an empty folder and a search of its empty index each say what happened and
what to do (tests/test_search_messages.py checks the words, and the CLI's)."""
from __future__ import annotations

from PIL import Image, ImageDraw
from playwright.sync_api import expect

from tests import shapes
from tests.browser.conftest import screenshot
from tests.browser.layout_checks import overflowing_text

COUNT, SIDE = 96, 1280  # large PNGs: slow enough to decode that the page can be looked at mid-build


def _folder(page, path) -> None:
    page.locator("#search-folder").locator("textarea, input").first.fill(str(path))


def _slow_folder(folder) -> None:
    folder.mkdir()
    base = shapes.draw_shape("red", "circle", size=64, rng=1)
    for i in range(COUNT):
        im = base.resize((SIDE, SIDE), Image.NEAREST)
        ImageDraw.Draw(im).text((10, 10), str(i), fill=(0, 0, 0))
        im.save(folder / f"img_{i:03d}.png", compress_level=1)


def test_the_progress_bar_replaces_the_last_error(page, tmp_path):
    folder = tmp_path / "slow"
    _slow_folder(folder)
    page.get_by_role("tab", name="Search").click()
    _folder(page, "/etc")
    page.click("#search-build")
    expect(page.locator("#search-report")).to_contain_text("Refused", timeout=30_000)
    _folder(page, folder)
    page.click("#search-build")
    # While the progress bar shows, the report under it holds no old text (checked inside the page, at once).
    page.wait_for_function(
        """() => {
            const report = document.querySelector('#search-report');
            const tracker = report.querySelector('[data-testid=status-tracker]');
            if (!tracker || tracker.classList.contains('hide') || tracker.classList.contains('hidden')
                || !/images embedded|processing|queue/.test(tracker.innerText)) return false;
            const old = [...report.querySelectorAll('.explorer-error, p, div.prose')]
              .filter((e) => e.innerText.includes('Refused'));
            window.oldText = old.length;
            window.reportHtml = report.innerHTML;
            return true;
        }""", timeout=120_000, polling=20)
    assert page.evaluate("window.oldText") == 0, page.evaluate("window.reportHtml")
    screenshot(page, "search-progress-after-an-error")
    expect(page.locator("#search-report")).to_contain_text(f"{COUNT} image(s) searchable", timeout=300_000)
    assert "Refused" not in page.locator("#search-report").inner_text()


def test_an_empty_folder_and_its_empty_index_say_so(page, tmp_path):
    empty = tmp_path / "empty"
    (empty / "nothing here").mkdir(parents=True)
    page.get_by_role("tab", name="Search").click()
    _folder(page, empty)
    page.click("#search-build")
    page.wait_for_selector("#search-report .search-counts", timeout=60_000)
    report = page.locator("#search-report .search-empty").inner_text()
    assert report.startswith("No images found (no .bmp") and "build again" in report
    page.fill("#search-text textarea, #search-text input", "a red circle")
    page.click("#search-run")
    expect(page.locator("#search-summary .search-empty")).to_contain_text("The index holds no images",
                                                                         timeout=60_000)
    summary = page.locator("#search-summary").inner_text()
    assert "lower it" not in summary and "lower the threshold" not in summary
    assert overflowing_text(page, "#search-report") == [] and overflowing_text(page, "#search-summary") == []
    screenshot(page, "search-empty-folder")
