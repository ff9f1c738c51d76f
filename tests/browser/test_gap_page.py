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


def test_measures_figures_and_shift_slider(page, tmp_path):
    rng = np.random.default_rng(11)
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

    gap = _measure(page, "gap length")
    assert 0 < gap <= 2
    matched, unmatched = _measure(page, "mean cosine, matched pairs"), _measure(page, "mean cosine, unmatched pairs")
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
    page.wait_for_function("""() => { const img = document.querySelector('#explorer-hover-preview');
        return img && img.style.display === 'block' && img.src.startsWith('data:image/jpeg'); }""", timeout=10_000)
    screenshot(page, "gap-hover")
    page.mouse.move(5, 5)

    before = _readout_length(page)
    assert abs(before - gap) < 1e-3
    slider = page.locator("#gap-shift input[type=range]")
    slider.fill("0.8")
    slider.dispatch_event("change")
    page.wait_for_function("document.querySelector('#gap-readout').innerText.includes('λ = 0.80')", timeout=30_000)
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
        page.wait_for_function("document.querySelector('#gap-projection').innerText.includes('Joint UMAP map')",
                               timeout=240_000)
        screenshot(page, "gap-umap")
