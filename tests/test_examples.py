"""The example photos shipped with the app (assets/examples, explorer/app/examples.py): real, small, credited
files; labels and captions that fit them; every tab's handler takes them (hosted too); and gradio keeps
its copies of them for the life of the app."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from explorer.app import examples
from explorer.app.context import AppContext
from explorer.app.ui import classify_tab, gap_tab, heatmaps_tab, prompt_lab_tab
from explorer.embed.model import ModelSlot
from explorer.inputs.captions import labels_of_images, match_csv_captions
from explorer.inputs.settings import load_settings
from explorer.science.prompts import parse_labels, parse_texts

SINGLE = "Single: a photo of a {}."
LICENCES = ("public domain", "CC0", "CC BY 2.0")


def test_every_photo_is_a_real_small_jpeg_and_the_folder_holds_no_other_image():
    assert len(examples.PHOTOS) >= 8
    assert sorted(p.name for p in examples.folder().glob("*.jpg")) == sorted(p.file for p in examples.PHOTOS)
    assert sorted(p.name for p in examples.folder().iterdir()
                  if p.suffix != ".jpg") == ["CREDITS.md", "captions.csv"]
    for path in examples.paths():
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert max(image.size) <= 640 and min(image.size) >= 256, (path, image.size)
            image.load()   # decodes to the end: not truncated
    total = sum((examples.FOLDER / p.file).stat().st_size for p in examples.PHOTOS)
    assert total < 1_000_000, f"{total:,} bytes of example photos: keep the repository small"


def credit_rows() -> dict[str, list[str]]:
    """CREDITS.md's table: file name -> its cells (what it shows, source, author, licence)."""
    rows = {}
    for line in examples.CREDITS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].endswith(".jpg"):
            rows[cells[0]] = cells[1:]
    return rows


def test_every_photo_is_credited_with_its_source_author_and_licence():
    rows = credit_rows()
    assert sorted(rows) == sorted(p.file for p in examples.PHOTOS)
    for name, (shows, source, author, licence) in rows.items():
        assert shows and author, name
        assert re.match(r"scikit-(image|learn), `(skimage/data|sklearn/datasets/images)/\w+\.(png|jpg)`$",
                        source), name
        assert licence.startswith(LICENCES), (name, licence)


def test_labels_and_captions_fit_the_photos():
    labels = [p.label for p in examples.PHOTOS]
    parsed = parse_labels(examples.label_text())
    assert parsed.labels == labels and not parsed.notes   # no blank, no duplicate
    assert parse_texts(examples.caption_text()).labels == [p.caption for p in examples.PHOTOS]
    assert set(examples.A_FEW) <= set(labels)
    assert [p.label for p in examples.chosen(examples.A_FEW)] == list(examples.A_FEW)
    assert examples.caption_text(
        examples.A_FEW).splitlines() == [p.caption for p in examples.chosen(examples.A_FEW)]
    # Each file name starts with its label, so the gap tab's labels-from-names rule pairs them.
    assert labels_of_images(examples.paths(), labels) == list(range(len(labels)))
    captions = match_csv_captions(examples.CAPTIONS_CSV, examples.paths(), examples.FOLDER)
    assert not captions.problems
    assert [captions.caption_of(p) for p in examples.paths()] == [p.caption for p in examples.PHOTOS]


def context(tmp_path, model, hosted: bool) -> AppContext:
    env = {"EXPLORER_INDEX_DIR": str(tmp_path / "idx"), "EXPLORER_ALLOWED_ROOTS": str(tmp_path)}
    settings = load_settings(env={**env, "EXPLORER_HOSTED": "1"} if hosted else env)
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads",
                            hosted_dir=tmp_path / "sessions")
    ctx.slot.model = model
    return ctx.scoped("visitor")


@pytest.mark.parametrize("hosted", [False, True], ids=["local", "hosted"])
def test_every_tab_runs_on_its_examples(shapes_model, tmp_path, hosted):
    ctx = context(tmp_path, shapes_model, hosted)
    names = [p.file for p in examples.PHOTOS]
    view = classify_tab.classify(ctx, examples.paths(examples.A_FEW), examples.label_text(), SINGLE, "", 3)
    assert view.report.names == ["cat-chelsea.jpg", "coffee-cup.jpg", "rocket.jpg"]
    assert view.report.predictions.labels == [p.label for p in examples.PHOTOS] and not view.report.failures
    matrix = heatmaps_tab.compute_matrix(ctx, examples.paths(), examples.caption_text(), None, 12, "Cosine")
    assert matrix.state.names == names and matrix.state.texts == examples.caption_text().split("\n")
    lab = prompt_lab_tab.evaluate_prompts(ctx, [["a photo of a {}."], ["itap of a {}."]], "",
                                          examples.paths(), examples.label_text(), "", None, "Templates",
                                          "ZPE (weights from the images)", 1, False, None, None)
    assert lab.report is not None and sorted(lab.report.images.names) == sorted(names), lab.summary
    for text_source, csv in ((gap_tab.LABELS, None), (gap_tab.CSV, str(examples.CAPTIONS_CSV))):
        gap = gap_tab.compute_gap(ctx, gap_tab.UPLOAD, examples.paths(), "", None, text_source,
                                  examples.label_text(), SINGLE, csv, "PCA (instant)")
        assert gap.run is not None, gap.measures
        assert (gap.run.texts.matches >= 0).all()   # every photo paired with its label or caption


def test_gradio_keeps_its_copies_of_the_example_files_for_the_life_of_the_app(tmp_path, monkeypatch):
    """Hosted mode deletes gradio's cached files one session TTL after they were made; the examples'
    copies are made once, when the page is built, so they must be kept or the examples break."""
    from gradio.route_utils import delete_files_created_by_app

    from explorer.app.ui import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))   # this app's cache only
    settings = load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "idx")})
    app = build_app(
        AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "up", hosted_dir=tmp_path / "s"))
    copies = {p for block in app.blocks.values() for p in getattr(block, "keep_in_cache", ())
              if p.startswith(str(tmp_path / "gradio")) and p.endswith((".jpg", ".csv"))}
    assert {name.rsplit("/", 1)[1] for name in copies} == {p.file for p in examples.PHOTOS} | {"captions.csv"}
    assert copies <= {p
                      for files in app.temp_file_sets
                      for p in files}  # the very copies the examples hand out
    (tmp_path / "probe.txt").write_text("a file some event made")
    probe = next(iter(app.blocks.values())).move_resource_to_block_cache(tmp_path / "probe.txt")
    delete_files_created_by_app(app, age=None)   # what delete_cache does once they are old enough
    assert not Path(probe).exists()   # the deletion ran...
    assert all(Path(p).is_file() for p in copies)   # ...and kept the examples
