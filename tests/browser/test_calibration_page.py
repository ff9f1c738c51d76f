"""Drive the Prompt lab's calibration view in headless Chromium: evaluate a labelled zip, open the
calibration view, move the temperature and see the ECE and the reliability diagram follow."""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np

from tests import shapes
from tests.browser.conftest import screenshot

ECE = "document.querySelector('#pl-cal-ece')"


def _labelled_zip(tmp_path):
    """8 classes (red and orange shapes), 5 images each: 2 of the shape alone, 3 with a second, random
    shape beside it on the right (labelled by the left one). The pairs make the classes overlap: the
    model is often confidently wrong on them, which is what a reliability diagram is for."""
    classes = [c for c in shapes.CLASSES if c[0] in ("red", "orange")]
    rng = np.random.default_rng(11)
    archive = tmp_path / "cal.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for color, shape in classes:
            for i in range(5):
                if i < 2:
                    image = shapes.draw_shape(color, shape, size=64, rng=rng)
                else:
                    image = shapes.draw_pair((color, shape), classes[rng.integers(len(classes))], 64, rng)[0]
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                zf.writestr(f"cal/{color}_{shape}/{i}.png", buffer.getvalue())
    return archive


def _set_temperature(page, value: float) -> None:
    box = page.locator("#pl-cal-t input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_calibration_view_follows_the_temperature(page, tmp_path):
    page.get_by_role("tab", name="Prompt lab").click()
    page.wait_for_selector("#pl-run", timeout=30_000)
    page.set_input_files("#pl-upload input[type=file]", [str(_labelled_zip(tmp_path))])
    # 90 s: on two busy test workers a zip's upload took over 30 s
    page.wait_for_selector("#pl-upload :text('cal.zip')", timeout=90_000)
    page.click("#pl-run")
    page.wait_for_selector("#pl-top1", timeout=120_000)
    # The summary and the "none of these" table say which probabilities these are and which rule is in force.
    assert "softmax" in page.locator("#pl-probability").inner_text()
    page.wait_for_selector("#pl-none-rule", timeout=30_000)
    assert "model's default" in page.locator("#pl-none-rule").inner_text()
    page.wait_for_function("document.querySelector('#pl-min-prob input[type=number]').value === '0.56'",
                           timeout=30_000)  # the model's default for a softmax over 8 labels: (1 + 1/8) / 2

    page.get_by_text("Calibration: are the probabilities right").click()
    page.wait_for_selector("#pl-cal-ece", timeout=60_000)
    page.wait_for_selector("#pl-cal-plot .js-plotly-plot", timeout=30_000)
    numbers = page.locator("#pl-cal-numbers").inner_text()
    assert "as shipped (T = 1)" in numbers and "fitted T" in numbers
    assert "overlap" in page.locator("#pl-cal-limits").inner_text()
    before = page.locator("#pl-cal-ece").inner_text()
    assert re.fullmatch(r"\d+\.\d\d%", before)
    assert before == page.locator("#pl-cal-ece-model").inner_text()  # at T = 1 the two agree

    _set_temperature(page, 3)
    page.wait_for_function(f"{ECE}.innerText !== {before!r}", timeout=30_000)
    after = page.locator("#pl-cal-ece").inner_text()
    assert after != before and "T = 3.00" in page.locator("#pl-cal-numbers").inner_text()
    page.wait_for_function(
        "(document.querySelector('#pl-cal-plot .js-plotly-plot')?.layout?.annotations || [])"
        ".some(a => a.text.includes('T = 3.00'))", timeout=30_000)  # the diagram redrawn

    page.click("#pl-cal-fit")  # the slider moves to the fitted temperature (clipped to the slider's range)
    page.wait_for_function("!document.querySelector('#pl-cal-numbers').innerText.includes('at T = 3.00')",
                           timeout=30_000)
    page.locator("#pl-calibration").scroll_into_view_if_needed()
    shot = screenshot(page, "prompt-lab-calibration")
    page.locator("#pl-calibration").screenshot(path=str(shot.with_name("prompt-lab-calibration-view.png")))
    assert shot.stat().st_size > 10_000
