"""Empty and half-empty inputs, each with its own message, in the same words in the tabs and the CLI
(issue 25): no images at all, plain images where classes are needed (no class sub-folders), one
class sub-folder, and a class folder whose files are all unreadable (said, and not counted as a
class). Faces: the Prompt lab, Teach and Modality gap tab handlers; `clip-explorer eval`, `fewshot`
and `gap`, run in this process through explorer.cli.main.
"""
from __future__ import annotations

import html
import re

import pytest

from explorer.app.ui import gap_tab, prompt_lab_tab, teach_tab
from explorer.inputs.sources import embed_folder
from tests.helpers import local_context
from tests.shapes import CLASSES, draw_shape, make_labelled_folder

SINGLE = "Single: a photo of a {}."
NO_IMAGES = ("no images found (no .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp files in it or its "
             "sub-folders)")
NO_CLASSES = "no class sub-folders; labelled images need one sub-folder of images per class, at least two"
ONE_CLASS = ("found one class sub-folder ('a_red_circle'); labelled images need one sub-folder of images per "
             "class, at least two")
UNREADABLE_CLASS = "class folder 'a_blue_square' left out: none of its 2 image file(s) could be read"
ONLY_ONE_READABLE = "only the class folder 'a_red_circle' has images that could be read"
FOR_CLASS_NAMES = "or give at least two class names to classify them as unlabelled images"
FOR_LABELS = "or give at least two labels"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One folder per case, under one allowed root."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "empty" / "sub").mkdir(parents=True)
    (root / "empty" / "notes.txt").write_text("no images here")
    (root / "plain").mkdir()
    for i, (color, shape) in enumerate(CLASSES[:3]):
        draw_shape(color, shape, size=24, rng=i).save(root / "plain" / f"{i}.png")
    make_labelled_folder(root / "one", [("red", "circle")], 3, size=24)
    for name, good in (("unreadable", [("red", "circle")]),
                       ("three", [("red", "circle"), ("green", "triangle")])):
        make_labelled_folder(root / name, good, 3, size=24)
        (root / name / "a_blue_square").mkdir()
        for i in range(2):
            (root / name / "a_blue_square" / f"bad{i}.png").write_bytes(b"not a png at all")
    return root


@pytest.fixture(scope="module")
def ctx(shapes_model, tmp_path_factory, folders):
    return local_context(shapes_model, tmp_path_factory.mktemp("work"), folders)


def text_of(fragment: str) -> str:
    """What a person reads in an HTML fragment: tags dropped, entities unescaped."""
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def lab(ctx, folder, labels: str = "") -> prompt_lab_tab.LabView:
    return prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(["a photo of a {}."]), str(folder), None,
                                           labels, "", None, "Templates", "Equal average", 1, False, None,
                                           None)


def teach(ctx, folder) -> str:
    return text_of(teach_tab.run_teach(ctx, str(folder), None, SINGLE, ["prototype"], "All").summary)


def gap(ctx, folder, labels: str = "") -> str:
    return text_of(gap_tab.compute_gap(ctx, gap_tab.FOLDER, None, str(folder), None, gap_tab.LABELS, labels,
                                       SINGLE, None, next(iter(gap_tab.PROJECTIONS))).measures)


def cli(capsys, monkeypatch, tmp_path, *argv: str) -> tuple[int, str]:
    """(exit status, stderr) of `clip-explorer ARGV` run in this process."""
    from explorer.cli import main

    monkeypatch.setenv("EXPLORER_INDEX_DIR", str(tmp_path / "no-indexes"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err


# ---- the core: one message per case ---------------------------------------------------------------
def test_a_class_folder_of_unreadable_files_is_no_class_and_is_said(shapes_model, folders):
    found = embed_folder(shapes_model, folders / "three")
    assert found.class_folders == ["a_green_triangle", "a_red_circle"]
    assert found.class_names == ["a green triangle", "a red circle"]
    assert sorted(set(found.labels.tolist())) == [0, 1] and len(found) == 6
    assert UNREADABLE_CLASS in found.notes
    assert {f.path for f in found.failures} == {"a_blue_square/bad0.png", "a_blue_square/bad1.png"}


def test_a_class_folder_without_images_is_no_class_either(shapes_model, folders, tmp_path):
    make_labelled_folder(tmp_path, [("red", "circle"), ("green", "triangle")], 2, size=24)
    (tmp_path / "a_blue_square").mkdir()
    found = embed_folder(shapes_model, tmp_path, labelled=True)
    assert found.class_folders == ["a_green_triangle", "a_red_circle"]
    assert "class folder 'a_blue_square' left out: it holds no images" in found.notes


def test_an_index_says_which_class_folder_it_could_not_read(shapes_model, folders, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index
    from explorer.inputs.sources import embed_index

    build_index(shapes_model, folders / "three", tmp_path / "idx", workers=0)
    found = embed_index(shapes_model, open_index(tmp_path / "idx"), labelled=None)
    assert found.class_folders == ["a_green_triangle", "a_red_circle"] and len(found) == 6
    assert "class folder 'a_blue_square' left out: none of its image files could be read" in found.notes
    build_index(shapes_model, folders / "one", tmp_path / "one.idx", workers=0)
    with pytest.raises(ValueError, match=r"found one class sub-folder \('a_red_circle'\)"):
        embed_index(shapes_model, open_index(tmp_path / "one.idx"), labelled=True)


def test_each_case_its_own_message_when_classes_are_needed(shapes_model, folders):
    said = {}
    for case in ("empty", "plain", "one", "unreadable"):
        with pytest.raises(ValueError) as caught:
            embed_folder(shapes_model, folders / case, labelled=True)
        said[case] = str(caught.value)
    assert said["empty"] == f"{folders / 'empty'}: {NO_IMAGES}: choose a folder or upload that holds images"
    assert said["plain"] == f"{folders / 'plain'}: {NO_CLASSES} (the ImageFolder layout)"
    assert said["one"] == f"{folders / 'one'}: {ONE_CLASS} (the ImageFolder layout)"
    unreadable = f"{folders / 'unreadable'}: {ONLY_ONE_READABLE} ({UNREADABLE_CLASS})"
    assert said["unreadable"].startswith(unreadable)
    assert len(set(said.values())) == 4


# ---- the Prompt lab and `eval` ----------------------------------------------------------------------
def test_prompt_lab_messages(ctx, folders):
    assert NO_IMAGES in text_of(lab(ctx, folders / "empty").summary)
    plain = text_of(lab(ctx, folders / "plain").summary)
    assert f"{NO_CLASSES} (the ImageFolder layout), {FOR_CLASS_NAMES}" in plain
    one = text_of(lab(ctx, folders / "one").summary)
    assert f"{ONE_CLASS} (the ImageFolder layout), {FOR_CLASS_NAMES}" in one
    assert "no class sub-folders" not in one
    assert ONLY_ONE_READABLE in text_of(lab(ctx, folders / "unreadable").summary)
    three = lab(ctx, folders / "three")
    assert three.report is not None and three.report.class_names == ["a green triangle", "a red circle"]
    assert UNREADABLE_CLASS in text_of(three.summary)
    assert "one class name given ('red circle'): give at least two" in text_of(
        lab(ctx, folders / "plain", "red circle").summary)
    assert lab(ctx, folders / "one", "red circle, blue square").report is not None  # unlabelled + names


def test_eval_command_says_the_same(capsys, monkeypatch, tmp_path, folders, shapes_model_dir):
    model = ["--model", f"local-dir:{shapes_model_dir}", "--templates", "single"]
    cases = {"empty": NO_IMAGES, "plain": f"{NO_CLASSES} (the ImageFolder layout), {FOR_CLASS_NAMES}",
             "one": f"{ONE_CLASS} (the ImageFolder layout), {FOR_CLASS_NAMES}",
             "unreadable": ONLY_ONE_READABLE}
    for case, words in cases.items():
        status, err = cli(capsys, monkeypatch, tmp_path, "eval", str(folders / case), *model)
        assert status == 2 and words in err, (case, err)
    status, err = cli(capsys, monkeypatch, tmp_path, "eval", str(folders / "three"), *model)
    assert f"note: {UNREADABLE_CLASS}" in err


# ---- Teach and `fewshot` ----------------------------------------------------------------------------
def test_teach_messages(ctx, folders):
    assert NO_IMAGES in teach(ctx, folders / "empty")
    plain = teach(ctx, folders / "plain")
    assert NO_CLASSES in plain and FOR_CLASS_NAMES not in plain
    one = teach(ctx, folders / "one")
    assert ONE_CLASS in one and "found 1" not in one
    assert ONLY_ONE_READABLE in teach(ctx, folders / "unreadable")


def test_fewshot_command_says_the_same(capsys, monkeypatch, tmp_path, folders, shapes_model_dir):
    model = ["--model", f"local-dir:{shapes_model_dir}", "--templates", "single"]
    for case, words in {"empty": NO_IMAGES, "plain": NO_CLASSES, "one": ONE_CLASS,
                        "unreadable": ONLY_ONE_READABLE}.items():
        status, err = cli(capsys, monkeypatch, tmp_path, "fewshot", str(folders / case), *model)
        assert status == 2 and words in err, (case, err)


# ---- the Modality gap and `gap` ---------------------------------------------------------------------
def test_gap_messages(ctx, folders):
    empty = gap(ctx, folders / "empty")
    assert NO_IMAGES in empty and "labels" not in empty
    assert NO_IMAGES in gap(ctx, folders / "empty", "cat, dog")  # labels or not: there is nothing to match
    assert f"{NO_CLASSES} (the ImageFolder layout), {FOR_LABELS}" in gap(ctx, folders / "plain")
    assert f"{ONE_CLASS} (the ImageFolder layout), {FOR_LABELS}" in gap(ctx, folders / "one")
    assert ONLY_ONE_READABLE in gap(ctx, folders / "unreadable")
    assert "one label given ('cat'): give at least two distinct labels" in gap(ctx, folders / "plain", "cat")


def test_gap_command_says_the_same(capsys, monkeypatch, tmp_path, folders, shapes_model_dir):
    model = ["--model", f"local-dir:{shapes_model_dir}"]
    for case, words in {"empty": NO_IMAGES, "plain": f"{NO_CLASSES} (the ImageFolder layout), {FOR_LABELS}",
                        "one": f"{ONE_CLASS} (the ImageFolder layout), {FOR_LABELS}",
                        "unreadable": ONLY_ONE_READABLE}.items():
        status, err = cli(capsys, monkeypatch, tmp_path, "gap", "--images", str(folders / case), *model)
        assert status == 2 and words in err, (case, err)


# ---- the Prompt lab's "Add row" ----------------------------------------------------------------------
def test_add_row_names_the_row_being_added():
    rows = ["a photo of a {}.", "a drawing of a {}."]
    with pytest.raises(ValueError, match=r"^row 3 \(the new one\), 'a sketch', has no \{\}"):
        prompt_lab_tab.added(rows, "a sketch")
    with pytest.raises(ValueError, match=r"^row 3 \(the new one\) is empty"):
        prompt_lab_tab.added(rows, "  ")
    assert prompt_lab_tab.added(rows, " a  sketch of a {}. ") == rows + ["a sketch of a {}."]
