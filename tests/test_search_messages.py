"""What the Search tab and the CLI say about an empty folder, an index with nothing in it, and files
that share a name (issue 25): each case its own message, in the same words on the page and in the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.app.ui import search_html, search_tab
from explorer.index.build import EMPTY_INDEX, build_index, empty_notes
from tests.helpers import local_context
from tests.shapes import draw_shape

ROOT = Path(__file__).resolve().parents[1]
EMPTY_FOLDER_WORDS = "no images found (no .bmp"
UNREADABLE_WORDS = "none of its 2 image file(s) could be read"


@pytest.fixture
def ctx(shapes_model, tmp_path, tmp_path_factory):
    return local_context(shapes_model, tmp_path, tmp_path_factory.getbasetemp()).scoped(None)


def test_an_empty_folder_is_said_to_be_empty_and_searching_it_says_why_nothing_is_found(ctx, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    html, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(empty), None, None)
    assert "<b>0</b> image(s) searchable" in html
    assert 'class="explorer-note search-empty">No images found (no .bmp, .gif' in html
    assert "in this folder or its sub-folders), so nothing is searchable" in html
    assert "add images to it, or choose another folder, and build again" in html
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 10, 0.0)
    assert "The index holds no images, so a search finds nothing" in view.summary
    assert "lower" not in view.summary and view.gallery == []


def test_a_folder_of_unreadable_images_is_told_apart_from_an_empty_one(ctx, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.png", "b.jpg"):
        (broken / name).write_bytes(b"not an image at all")
    html, _ = search_tab.build_search_index(ctx, search_tab.FOLDER, str(broken), None, None)
    assert f'search-empty">{UNREADABLE_WORDS[0].upper()}{UNREADABLE_WORDS[1:]}' in html
    assert EMPTY_FOLDER_WORDS not in html.lower() and html.count("search-failure") == 2


def test_a_folder_with_images_has_no_empty_note_and_a_search_below_the_threshold_says_lower_it(ctx, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=48, rng=1).save(photos / "red.png")
    html, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    assert "search-empty" not in html and "<b>1</b> image(s) searchable" in html
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 10, 0.99)
    assert "lower it to see more" in view.summary and "holds no images" not in view.summary


def test_empty_notes_cover_each_case():
    assert empty_notes(3, 3, 0, False) == [] and empty_notes(0, 5, 0, True) == []  # images; a cancelled run
    assert EMPTY_FOLDER_WORDS in empty_notes(0, 0, 0, False)[0]
    assert UNREADABLE_WORDS in empty_notes(0, 2, 2, False)[0]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_cli_says_it_in_the_same_words(tmp_path, shapes_model_dir, shapes_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    index = tmp_path / "idx"
    made = run_cli("index", str(empty), "--index", str(index), "--model", f"local-dir:{shapes_model_dir}",
                   "--workers", "0")
    assert made.returncode == 0, made.stderr
    note = empty_notes(0, 0, 0, False)[0]
    assert f"note: {note}" in made.stderr and "0 images searchable" in made.stdout
    # The page shows the very same sentence (capitalised, with a full stop).
    report = build_index(shapes_model, empty, tmp_path / "idx2", workers=0)
    page = search_html.build_report(str(empty), report, [])
    assert note[0].upper() + note[1:] + "." in page
    found = run_cli("search", "--index", str(index), "--text", "a red circle")
    assert found.returncode == 0, found.stderr
    assert f"note: {EMPTY_INDEX}" in found.stderr and found.stdout.strip() == ""
    out = json.loads(run_cli("search", "--index", str(index), "--text", "a red circle", "--json").stdout)
    assert out["results"] == [] and EMPTY_INDEX in out["warnings"]
    assert EMPTY_INDEX[0].upper() + EMPTY_INDEX[1:] + "." in search_html.summary("q", 0, 0, 0.0, 0)


def test_search_captions_tell_same_named_files_apart(ctx, tmp_path):
    photos = tmp_path / "photos"
    for folder, colour in (("red", "red"), ("blue", "blue"), ("deep/green", "green")):
        (photos / folder).mkdir(parents=True)
        draw_shape(colour, "circle", size=48, rng=1).save(photos / folder / "0.png")
    draw_shape("yellow", "square", size=48, rng=2).save(photos / "solo.png")
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    view = search_tab.search(ctx, state, "a circle", None, 0.5, 10, -1.0)
    names = sorted(caption.split(" · ", 1)[1] for _, caption in view.gallery)
    assert names == ["blue/0.png", "green/0.png", "red/0.png", "solo.png"]
    # Names do not change when the threshold hides some of the hits.
    some = search_tab.results_view(ctx, view.state, view.state.hits[1].score)
    assert {c.split(" · ", 1)[1] for _, c in some.gallery} <= set(names)
    assert all(" · " in c and c.split(" · ", 1)[1] != "0.png" for _, c in some.gallery)
