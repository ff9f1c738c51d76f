"""Drive the Modality gap tab in headless Chromium: upload labelled shapes, compute the measures,
see the figures, and slide along the gap."""
from __future__ import annotations

import re

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot

CHOSEN = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]


def _measure(page, name: str) -> float:
    return float(page.locator(f'#gap-measures tr[data-measure="{name}"] td.gap-value').inner_text())


def _readout_length(page) -> float:
    return float(page.locator("#gap-readout .gap-shift-length").inner_text())


def _run_gap_tab(page, tmp_path, seed: int) -> None:
    """Upload three shapes of each chosen class, label them, and run the Modality gap tab."""
    rng = np.random.default_rng(seed)
    files = []
    for color, shape in CHOSEN:
        for k in range(3):  # the file name carries the label: red_circle_0.png -> "a red circle"
            path = tmp_path / f"{color}_{shape}_{k}.png"
            shapes.draw_shape(color, shape, size=64, rng=rng).save(path)
            files.append(str(path))
    page.get_by_role("tab", name="Modality gap").click()
    page.set_input_files("#gap-images input[type=file]", files)
    page.fill("#gap-labels textarea", "\n".join(shapes.caption(c, s) for c, s in CHOSEN))
    page.click("#gap-run")
    page.wait_for_selector("#gap-measures table", timeout=60_000)


def test_measures_figures_and_shift_slider(page, tmp_path):
    _run_gap_tab(page, tmp_path, 11)

    gap = _measure(page, "gap length")
    assert 0 < gap <= 2
    matched, unmatched = _measure(page,
                                  "mean cosine, matched pairs"), _measure(page,
                                                                          "mean cosine, unmatched pairs")
    assert matched > unmatched
    text = page.locator("#gap-measures").inner_text()
    assert "12 images" in text and "12 matched pairs" in text
    for elem_id in ("gap-hist", "gap-projection", "gap-curve"):
        page.wait_for_selector(f"#{elem_id} .js-plotly-plot", timeout=30_000)

    # Hovering an image point shows its thumbnail (plotly's own hover label cannot show pictures).
    page.locator("#gap-projection").scroll_into_view_if_needed()
    point = page.evaluate("""() => {
        const plot = document.querySelector('#gap-projection .js-plotly-plot');
        const trace = plot._fullData.find(t => (t.name || '').startsWith('images'));  // arrays decoded
        const i = Array.from(trace.customdata).findIndex(c => c && c.startsWith('data:image/'));
        const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
        return {x: box.left + xa._offset + xa.l2p(trace.x[i]), y: box.top + ya._offset + ya.l2p(trace.y[i]),
                previews: Array.from(trace.customdata).filter(Boolean).length};
    }""")
    assert point["previews"] == 12
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.move(point["x"], point["y"])
    page.wait_for_function(
        """() => { const img = document.querySelector('#explorer-hover-preview');
        return img && img.style.display === 'block' && img.src.startsWith('data:image/jpeg'); }""",
        timeout=10_000)
    screenshot(page, "gap-hover")
    page.mouse.move(5, 5)

    before = _readout_length(page)
    assert abs(before - gap) < 1e-3
    slider = page.locator("#gap-shift input[type=range]")
    slider.fill("0.8")
    slider.dispatch_event("change")
    page.wait_for_function("document.querySelector('#gap-readout').innerText.includes('λ = 0.80')",
                           timeout=30_000)
    after = _readout_length(page)
    assert after < before
    assert re.search(r"zero-shot accuracy \d", page.locator("#gap-readout").inner_text())
    shot = screenshot(page, "gap")
    assert shot.stat().st_size > 10_000

    # UMAP on request (numba compiles it on first use); without umap-learn the page says so instead.
    page.get_by_label("UMAP (slower, cached)").check()
    try:
        import umap  # noqa: F401
    except ImportError:
        page.wait_for_selector("#gap-projection-note .explorer-error", timeout=60_000)
        assert "umap-learn" in page.locator("#gap-projection-note").inner_text()
    else:
        page.wait_for_function(
            "document.querySelector('#gap-projection').innerText.includes('Joint UMAP map')", timeout=240_000)
        screenshot(page, "gap-umap")


# The joint map as plotly holds it: each trace's name and points (typed arrays decoded), the title, the x
# range.
READ_MAP = """() => {
  const plot = document.querySelector('#gap-projection .js-plotly-plot');
  if (!plot || !plot._fullData) return null;
  const traces = {};
  for (const t of plot._fullData) traces[(t.name || '').split(' (')[0]] = {x: Array.from(t.x || []), y:
  Array.from(t.y || [])};
  return {traces, title: plot._fullLayout.title.text, xrange: Array.from(plot._fullLayout.xaxis.range),
          xtitle: plot._fullLayout.xaxis.title.text};
}"""
READ_HIST = """() => Array.from(document.querySelector('#gap-hist .js-plotly-plot')._fullData,
                                t => Array.from(t.y))"""


def test_gap_aligned_map_moves_with_the_slider(page, tmp_path):
    _run_gap_tab(page, tmp_path, 12)
    page.wait_for_function(f"({READ_MAP})() !== null", timeout=30_000)
    gap = _measure(page, "gap length")
    before, hist_before = page.evaluate(READ_MAP), page.evaluate(READ_HIST)
    assert "gap-aligned" in before["title"] and "along the gap" in before["xtitle"]   # the default map
    offset = before["traces"]["image centroid"]["x"][0] - before["traces"]["text centroid"]["x"][0]
    assert abs(offset - gap) < 2e-3                    # the centroids sit the measured gap apart on x
    assert "slider moves the points" in page.locator("#gap-projection-note").inner_text()
    page.locator("#gap-projection").scroll_into_view_if_needed()
    screenshot(page, "gap-map-lambda-0")

    slider = page.locator("#gap-shift input[type=range]")
    slider.fill("0.8")
    slider.dispatch_event("change")
    page.wait_for_function(f"(({READ_MAP})() || {{title: ''}}).title.includes('λ = 0.80')", timeout=30_000)
    after, hist_after = page.evaluate(READ_MAP), page.evaluate(READ_HIST)
    moved = np.abs(np.array(after["traces"]["images"]["x"]) - np.array(before["traces"]["images"]["x"]))
    assert moved.min() > 0.2 * gap                     # every image point moved along the gap
    offset_after = after["traces"]["image centroid"]["x"][0] - after["traces"]["text centroid"]["x"][0]
    assert offset_after < 0.5 * offset
    assert after["xrange"] == before["xrange"]         # same frame: the clouds are seen to close in
    assert hist_after != hist_before                   # the histograms follow the slider
    assert "Measures at λ = 0.80" in page.locator("#gap-measures").inner_text()
    assert _measure(page, "gap length") < 0.5 * gap    # and the table too
    page.locator("#gap-projection").scroll_into_view_if_needed()
    screenshot(page, "gap-map-lambda-080")
