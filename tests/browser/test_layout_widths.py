"""The page at two widths, as a newcomer meets it (issue 25): one image classified is shown whole with its
caption; after a run on Classify, Search, Heatmaps and Teach no text is cut or spills out of its box, no
plot title runs off its figure or sits on an axis; gallery captions never break a file name mid-word."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests import shapes
from tests.browser.conftest import screenshot
from tests.browser.layout_checks import (
    assert_shown_whole,
    gallery_geometry,
    overflowing_text,
    plot_problems,
)

WIDTHS = (1280, 1920)
LABELS = "a red circle\na blue square\na green triangle\na yellow cross"


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def sized(request, browser, app_url):
    context = browser.new_context(viewport={"width": request.param, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#zs-run", timeout=60_000)
    page.width = request.param
    yield page
    context.close()


def _wide(path: Path, colour: str, shape: str, size=(240, 120)) -> Path:
    """A shape on a canvas of another aspect ratio than the gallery's square cells."""
    canvas = Image.new("RGB", size, "white")
    side = min(size)
    shape_image = shapes.draw_shape(colour, shape, size=side, rng=1)
    canvas.paste(shape_image, ((size[0] - side) // 2, (size[1] - side) // 2))
    canvas.save(path)
    return path


def _classify(page, files: list[Path]) -> None:
    page.set_input_files("#zs-images input[type=file]", [str(f) for f in files])
    page.fill("#zs-labels textarea", LABELS)
    page.click("#zs-run")
    page.wait_for_selector("#zs-results table", timeout=60_000)
    page.wait_for_function("n => [...document.querySelectorAll('#zs-gallery .thumbnail-item img')]"
                           ".filter((i) => i.complete && i.naturalWidth > 0).length === n", arg=len(files),
                           timeout=30_000)
    page.wait_for_selector("#zs-bars .js-plotly-plot", timeout=30_000)
    page.wait_for_timeout(300)  # the gallery's own layout pass after the images decode


def _assert_tidy(page, root: str) -> None:
    assert overflowing_text(page, root) == []
    assert plot_problems(page, root) == []


def test_one_image_is_shown_whole_with_its_caption(sized, tmp_path):
    image = _wide(tmp_path / "a_wide_red_circle.png", "red", "circle")
    _classify(sized, [image])
    [item] = gallery_geometry(sized, "#zs-gallery")
    assert_shown_whole(item)
    assert "a red circle (" in item["caption"]["text"]
    sized.locator("#zs-gallery").scroll_into_view_if_needed()
    screenshot(sized, f"layout-classify-one-{sized.width}")
    _assert_tidy(sized, "#zs-results")
    _assert_tidy(sized, "#zs-bars")


def test_several_images_are_each_shown_whole_and_the_tab_is_tidy(sized, tmp_path):
    files = [_wide(tmp_path / "wide.png", "red", "circle"),
             _wide(tmp_path / "tall_blue_square_with_a_long_file_name.png", "blue", "square", (90, 200)),
             _wide(tmp_path / "4.png", "green", "triangle", (128, 128)),
             _wide(tmp_path / "x.png", "yellow", "cross", (300, 100))]
    _classify(sized, files)
    items = gallery_geometry(sized, "#zs-gallery")
    assert len(items) == 4
    for item in items:
        assert_shown_whole(item)
    screenshot(sized, f"layout-classify-several-{sized.width}")
    _assert_tidy(sized, "#zs-results")
    _assert_tidy(sized, "#zs-heatmap")
    _assert_tidy(sized, "#zs-bars")


def test_search_after_a_run(sized, tmp_path):
    photos = tmp_path / "photos"
    for folder, colour in (("red", "red"), ("blue", "blue")):
        (photos / folder).mkdir(parents=True)
        shapes.draw_shape(colour, "circle", size=64, rng=1).save(photos / folder / "0.png")
    shapes.draw_shape("green", "square", size=64, rng=2).save(photos / "a_green_square_named_at_length.png")
    sized.get_by_role("tab", name="Search").click()
    sized.locator("#search-folder").locator("textarea, input").first.fill(str(photos))
    sized.click("#search-build")
    sized.wait_for_selector("#search-report .search-counts", timeout=120_000)
    threshold = sized.locator("#search-threshold input[type=number]")
    threshold.fill("-1")
    threshold.press("Enter")
    sized.fill("#search-text textarea, #search-text input", "a red circle")
    sized.click("#search-run")
    sized.wait_for_selector("#search-gallery .thumbnail-item img", timeout=60_000)
    sized.wait_for_timeout(300)
    shown = gallery_geometry(sized, "#search-gallery")
    captions = sorted(i["caption"]["text"].split(" · ", 1)[1] for i in shown)
    assert captions == ["a_green_square_named_at_length.png", "blue/0.png", "red/0.png"]
    for item in gallery_geometry(sized, "#search-gallery"):
        assert_shown_whole(item, min_side=40)
    screenshot(sized, f"layout-search-{sized.width}")
    for root in ("#search-report", "#search-summary", "#search-results", "#search-gallery"):
        _assert_tidy(sized, root)


def test_heatmaps_after_a_run(sized, tmp_path):
    files = [_wide(tmp_path / f"{c}_{s}.png", c, s, (96, 96)) for c, s in shapes.CLASSES[:3]]
    sized.get_by_role("tab", name="Heatmaps").click()
    sized.set_input_files("#hm-images input[type=file]", [str(f) for f in files])
    sized.fill("#hm-texts textarea", LABELS)
    sized.click("#hm-run")
    sized.wait_for_selector("#hm-plot .js-plotly-plot", timeout=60_000)
    for view in ("Cosine", None):  # None: the probability view, whatever the rule calls it
        radio = sized.locator("#hm-view label").nth(0 if view else 1)
        radio.click()
        sized.wait_for_timeout(500)
        _assert_tidy(sized, "#hm-plot")
    screenshot(sized, f"layout-heatmaps-{sized.width}")
    for root in ("#hm-status", "#hm-scale-note", "#hm-view"):
        _assert_tidy(sized, root)


def _line_of_extension_breaks(page, selector: str) -> list[str]:
    """Captions of the galleries under `selector` whose file extension ('.png') is split over two lines."""
    return page.evaluate("""(selector) => {
      const broken = [];
      const labels = [...document.querySelectorAll(selector)]
        .flatMap((g) => [...g.querySelectorAll('.caption-label')]);
      for (const label of labels) {
        const node = [...label.childNodes].find((n) => n.nodeType === 3);
        if (!node) continue;
        const dot = node.textContent.lastIndexOf('.');
        if (dot < 0) continue;
        const range = document.createRange();
        range.setStart(node, Math.max(0, dot - 1));
        range.setEnd(node, node.textContent.length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width)
          .map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(node.textContent);
      }
      return broken;
    }""", selector)


def test_teach_after_a_run(sized, tmp_path):
    examples = tmp_path / "examples"
    shapes.make_labelled_folder(examples, shapes.CLASSES[:3], 8, size=64, seed=1)
    new = tmp_path / "new"
    new.mkdir()
    for i, (colour, shape) in enumerate(shapes.CLASSES[:3] * 2):
        shapes.draw_shape(colour, shape, size=64, rng=i).save(new / f"{i}.png")
    shapes.draw_shape("red", "circle", size=64, rng=9).save(new / "holiday_photo_of_a_red_circle_at_sea.png")
    sized.get_by_role("tab", name="Teach by example").click()
    sized.fill("#teach-folder textarea", str(examples))
    sized.click("#teach-run")
    sized.wait_for_selector("#teach-accuracy", timeout=180_000)
    sized.wait_for_selector("#teach-confusion .js-plotly-plot", timeout=30_000)
    sized.set_input_files("#teach-apply-upload input[type=file]", sorted(str(p) for p in new.glob("*.png")))
    expect(sized.locator("#teach-apply-upload")).to_contain_text("holiday_photo", timeout=90_000)
    sized.click("#teach-apply")
    sized.wait_for_selector("#teach-class-0 .thumbnail-item img", timeout=60_000)
    sized.wait_for_timeout(500)
    galleries = "[id^=teach-class-], #teach-none, #teach-fixed, #teach-broken"
    assert _line_of_extension_breaks(sized, galleries) == []
    for gallery in ("#teach-class-0", "#teach-class-1", "#teach-class-2"):
        if sized.locator(f"{gallery} .thumbnail-item").count():
            for item in gallery_geometry(sized, gallery):
                assert_shown_whole(item, min_side=40)
    sized.locator("#teach-sort").scroll_into_view_if_needed()
    screenshot(sized, f"layout-teach-{sized.width}")
    for root in ("#teach-summary", "#teach-table", "#teach-curve", "#teach-confusion", "#teach-changes",
                 "#teach-sort", "#teach-class-0", "#teach-class-1", "#teach-class-2"):
        _assert_tidy(sized, root)
