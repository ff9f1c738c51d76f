"""The Prompt lab's token budget, paired evidence and ZPE selection in headless Chromium."""
from __future__ import annotations

import re

from tests.browser.conftest import screenshot
from tests.browser.test_prompt_lab_page import _labelled_zip, _open_tab

# Filled with a class name this is 80+ tokens: the model's 77 end before the class name.
LONG = "a photo of the " + "very " * 70 + "small {}."
EVIDENCE = re.compile(r"([+-]\d+\.\d) \[([+-]\d+\.\d), ([+-]\d+\.\d)\] p=([\d.e+-]+)")


def _run_with(page, tmp_path, template: str | None, mad: bool = False, zpe: bool = False):
    _open_tab(page)
    if template:
        page.fill("#pl-new-template textarea", template)
        page.click("#pl-add")
        page.wait_for_function("document.querySelector('#pl-set-status').innerText.includes('2 template')",
                               timeout=30_000)
    if mad:
        page.click("#pl-zpe-select input")
        page.get_by_role("option", name="MAD selection (the paper's)").click()
    if zpe:
        page.get_by_label("ZPE (weights from the images)").check()
    page.set_input_files("#pl-upload input[type=file]", [str(_labelled_zip(tmp_path))])
    # 90 s: on two busy test workers a zip's upload took over 30 s
    page.wait_for_selector("#pl-upload :text('shapes.zip')", timeout=90_000)
    page.click("#pl-run")
    page.wait_for_selector("#pl-top1", timeout=120_000)


def _rows(page) -> dict[str, dict[str, str]]:
    rows = page.locator("#pl-per-template tbody tr")
    return {rows.nth(i).locator("td.pl-template").inner_text(): {
        "tokens": rows.nth(i).locator("td.pl-tokens").inner_text(),
        "vs": rows.nth(i).locator("td.pl-vs-ensemble").inner_text(),
        "verdict": rows.nth(i).locator("td.pl-verdict").inner_text()} for i in range(rows.count())}


def test_long_template_is_warned_and_verdicts_need_evidence(page, tmp_path):
    _run_with(page, tmp_path, LONG, mad=True)
    warning = page.locator("#pl-token-warnings")
    assert warning.is_visible()
    assert "a photo of the very very" not in warning.inner_text()  # one line: the list is one click away
    page.locator("#pl-token-warnings summary").click()
    text = warning.inner_text()
    assert "longer than the model's context of 77 tokens" in text
    assert "a photo of the very very" in text and re.search(r"is \d+ tokens", text)
    assert "never sees" in text

    rows = _rows(page)
    long_row = next(v for k, v in rows.items() if k.startswith("a photo of the very"))
    short_row = rows["a photo of a {}."]
    assert long_row["tokens"].startswith("⚠") and int(long_row["tokens"].split()[1]) > 77
    assert re.fullmatch(r"\d+ / 77", short_row["tokens"])
    for row in rows.values():  # a verdict only where the interval excludes 0 and p < 0.05
        diff, low, high, p = EVIDENCE.search(row["vs"]).groups()
        clear = float(p) < 0.05 and (float(low) > 0 or float(high) < 0)
        assert ("helps" in row["verdict"] or "hurts" in row["verdict"]) == clear, row
        if not clear:
            assert row["verdict"] == "no clear difference"
    # the class name is cut off, so this prompt cannot add to the ensemble: never "helps"
    assert "helps" not in long_row["verdict"] and float(EVIDENCE.search(long_row["vs"]).group(1)) <= 0

    assert "MAD selection" in page.locator("#pl-zpe-selection").inner_text()  # shown: MAD was chosen
    assert page.locator("#pl-per-template td.pl-zpe-kept").count() == 2
    compared = page.locator("#pl-compare").inner_text()
    assert "− this run" in compared and EVIDENCE.search(compared)
    page.locator("#pl-per-template").scroll_into_view_if_needed()
    shot = screenshot(page, "prompt-lab-evidence")
    assert shot.stat().st_size > 10_000


def test_short_templates_give_no_token_warning(page, tmp_path):
    _run_with(page, tmp_path, None, zpe=True)
    assert page.locator("#pl-token-warnings").count() == 0
    assert "all prompts" in page.locator("#pl-zpe-selection").inner_text()  # ZPE's note, ZPE in force
    assert re.fullmatch(r"\d+ / 77", _rows(page)["a photo of a {}."]["tokens"])
