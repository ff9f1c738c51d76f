"""The Prompt lab's result HTML (issue 25): ZPE's notes only where ZPE is in force, long lists (cut
prompts, notes, skipped files) folded under one summary line, the comparison never cut at a height, and
a table taller than its box says that it scrolls. (tests/browser/test_prompt_lab_layout.py measures the
drawn page.)"""
from __future__ import annotations

import re

import pytest

from explorer.app.ui import prompt_lab_html as show
from explorer.embed.images import ImageFailure
from explorer.inputs.sources import embed_folder
from explorer.science.prompt_lab import run_lab
from tests.shapes import CLASSES, class_name, draw_shape, make_labelled_folder

LONG = "a photo of the " + "very " * 70 + "small {}."
TEMPLATES = ["a photo of a {}.", "a {}."]


@pytest.fixture(scope="module")
def labelled(shapes_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    make_labelled_folder(root, CLASSES[:3], 3, size=24)
    return embed_folder(shapes_model, root)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


@pytest.mark.parametrize("weighting, select, shown", [
    ("mean", "all", set()), ("single", "all", set()), ("mean", "mad", {"pl-zpe-selection"}),
    ("zpe", "all", {"pl-bias-source", "pl-zpe-selection"}),
    ("zpe", "mad", {"pl-bias-source", "pl-zpe-selection"})])
def test_zpe_notes_only_for_the_option_in_force(shapes_model, labelled, weighting, select, shown):
    report = run_lab(shapes_model, labelled, TEMPLATES, weighting=weighting, template=0, zpe_select=select)
    assert _ids(show.summary(report)) & {"pl-bias-source", "pl-zpe-selection"} == shown
    assert ("ZPE bias correction" in show.summary(report)) == ("pl-bias-source" in shown)


def test_unlabelled_images_keep_the_zpe_notes_their_table_is_zpes(shapes_model, tmp_path):
    for i, (color, shape) in enumerate(CLASSES[:3]):
        draw_shape(color, shape, size=24, rng=i).save(tmp_path / f"{i}.png")
    images = embed_folder(shapes_model, tmp_path)
    report = run_lab(shapes_model, images, TEMPLATES, labels=[class_name(c, s) for c, s in CLASSES[:3]])
    assert {"pl-bias-source", "pl-zpe-selection"} <= _ids(show.summary(report))


def test_cut_prompts_fold_under_one_line(shapes_model, labelled):
    report = run_lab(shapes_model, labelled, TEMPLATES + [LONG])
    html = show.summary(report)
    folded = re.search(r'<details class="explorer-error" id="pl-token-warnings"[^>]*><summary[^>]*>'
                       r'(.*?)</summary>(.*?)</details>', html, re.S)
    assert folded is not None and " open" not in folded.group(0).split(">")[0]
    assert "3 prompt(s) longer than the model's context of 77 tokens" in folded.group(1)
    assert "a photo of the very" not in folded.group(1) and folded.group(2).count("<li>") == 3


def test_long_notes_and_skipped_files_fold_under_a_count():
    assert "<details" not in show.notes_and_failures(["one", "two"], [ImageFailure("a.png", "broken")] * 2)
    html = show.notes_and_failures([f"note {i}" for i in range(3)], [ImageFailure("a.png", "broken")] * 5)
    assert '<details id="pl-notes"' in html and "3 notes on this run" in html
    assert '<details id="pl-failures"' in html and "5 file(s) skipped" in html
    assert html.count("Skipped a.png: broken") == 5


def test_comparison_is_never_cut_at_a_height_and_tall_tables_say_they_scroll(shapes_model, labelled):
    report = run_lab(shapes_model, labelled, TEMPLATES, compare_builtins=True)
    compared = show.comparison(report.comparison, report.compare_evidence)
    assert "80 templates" in compared and "max-height" not in compared and "pl-scroll-hint" not in compared
    rows = [f"<tr><td>{i}</td></tr>" for i in range(40)]
    assert "40 prompts: scroll inside the table" in show._table(["x"], rows, 420, "prompts")
    assert "pl-scroll-hint" not in show._table(["x"], rows[:5], 420, "prompts")
