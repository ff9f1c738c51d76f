"""Live edits (issue 29), without a browser: a text-only edit on images already embedded reads no image
and encodes none. A new Search query over an open index (the query image beside it included), and a
Prompt lab re-scoring after a run (another ensembling, the "none of these" thresholds) call neither the
image decoder (images.load_image / images.prepare, wherever they are imported) nor the image encoder
(model.image_encodes); a weighting change encodes no text either (the prompts are in the text cache).
tests/browser/test_live_page.py drives the same edits through the page."""
from __future__ import annotations

from pathlib import Path

import pytest

from explorer.app.ui import classify_tab, prompt_lab_tab, search_tab
from explorer.embed import images as images_module
from explorer.index import build as index_build
from explorer.inputs import sources
from tests.helpers import local_context
from tests.shapes import CLASSES, draw_shape, make_labelled_folder


@pytest.fixture
def ctx(shapes_model, tmp_path, tmp_path_factory):
    return local_context(shapes_model, tmp_path, tmp_path_factory.getbasetemp()).scoped(None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("live") / "photos"
    make_labelled_folder(root, CLASSES[:4], 3, size=32, seed=5)  # 12 images, 4 classes
    return root


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every call of the image decoder from now on, by the module that made it."""
    calls: list[str] = []

    def counted(module, name):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(f"{module.__name__}.{name}")
                            or real(*a, **k))
    for module, name in ((images_module, "load_image"), (images_module, "prepare"), (sources, "prepare"),
                         (index_build, "prepare"), (search_tab, "load_image")):
        counted(module, name)
    return calls


def test_a_new_search_query_reads_and_encodes_no_image(ctx, shapes_model, photos, tmp_path, decodes):
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    query_image = tmp_path / "query.png"
    draw_shape("blue", "square", size=32, rng=1).save(query_image)
    first = search_tab.search(ctx, state, "a red circle", str(query_image), 0.3, 12, -1.0)
    assert len(first.gallery) == 12 and decodes  # every thumbnail and the query image read once
    decodes.clear()
    images_before, texts_before = shapes_model.image_encodes, shapes_model.text_encodes
    second = search_tab.search(ctx, first.state, "a red triangle", str(query_image), 0.3, 12, -1.0)
    assert decodes == [] and shapes_model.image_encodes == images_before
    assert shapes_model.text_encodes <= texts_before + 1  # the new text only (unless an earlier test had it)
    assert second.state.query != first.state.query and second.state.hits != first.state.hits
    assert second.state.hits[0].path.startswith("a_red_triangle/"), second.state.hits[:3]


def test_the_same_results_again_send_no_gallery(ctx, photos):
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    run = search_tab._guarded(lambda cur, text: search_tab.search(ctx, cur, text, None, 0.5, 5, -1.0))
    summary, gallery, table, shown, _ = run(state, "a red circle")
    assert "value" in gallery and shown.hits
    # the same query, a space typed after it: the same hits, so neither gallery nor table is sent again
    summary, gallery, table, kept, viewer = run(shown, "a red circle ")
    assert "red circle" in summary and "value" not in gallery and "value" not in table
    assert "value" not in kept and viewer == {"__type__": "update"}


def test_a_new_query_reuses_the_thumbnail_files_already_in_gradios_cache(ctx, photos, tmp_path, monkeypatch,
                                                                         decodes):
    """The results' thumbnails are files in gradio's cache, made once: a second query showing the same
    images writes, decodes and encodes none, and gradio takes the files as they are (no copy)."""
    import gradio as gr
    from gradio import processing_utils

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    encodes = []
    real = images_module.encode_picture
    monkeypatch.setattr(images_module, "encode_picture", lambda *a, **k: encodes.append(1) or real(*a, **k))
    _, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(photos), None, None)
    first = search_tab.search(ctx, state, "a red circle", None, 0.5, 12, -1.0)
    files = [item for item, _ in first.gallery]
    assert len(files) == 12 and all(isinstance(f, str) and Path(f).is_file() for f in files)
    assert all(Path(f).parent.parent == cache for f in files) and len(encodes) == 12
    made = sorted(p for p in cache.rglob("*") if p.is_file())
    decodes.clear()
    encodes.clear()
    second = search_tab.search(ctx, first.state, "a green triangle", None, 0.5, 12, -1.0)
    assert [h.path for h in second.state.hits] != [h.path for h in first.state.hits]  # another order
    assert sorted(item for item, _ in second.gallery) == sorted(files)
    assert decodes == [] and encodes == [] and sorted(p for p in cache.rglob("*") if p.is_file()) == made
    gallery = gr.Gallery(render=False)
    sent = processing_utils.move_files_to_cache(gallery.postprocess(second.gallery).model_dump(), gallery,
                                                postprocess=True)
    assert [entry["image"]["path"] for entry in sent] == [item for item, _ in second.gallery]  # not copied


def _lab(ctx, photos, weighting: str, images=None):
    return prompt_lab_tab.evaluate_prompts(
        ctx, [["a photo of a {}."], ["a {}."], ["a drawing of a {}."]], str(photos), None, "", "", None,
        "Templates", weighting, 1, True, None, None, images=images)


def test_a_weighting_or_threshold_change_after_a_run_reads_and_encodes_nothing(ctx, shapes_model, photos,
                                                                               decodes):
    first = _lab(ctx, photos, "Equal average")
    assert first.report is not None and first.report.weighting == "mean", first.summary
    decodes.clear()
    images_before, texts_before = shapes_model.image_encodes, shapes_model.text_encodes
    again = _lab(ctx, photos, "ZPE (weights from the images)", images=first.report.images)
    assert again.report is not None and again.report.weighting == "zpe", again.summary
    assert not (again.report.weights == first.report.weights).all()
    assert again.report.images is first.report.images
    threshold = prompt_lab_tab.none_view(again.flags, 0.9, 0.9)
    assert "None of these" in threshold
    assert decodes == [] and shapes_model.image_encodes == images_before
    assert shapes_model.text_encodes == texts_before  # every prompt was in the text cache


def test_a_live_edit_sends_what_changed_and_keeps_results_on_an_error(ctx, photos):
    first = _lab(ctx, photos, "Equal average")
    chosen = prompt_lab_tab.chosen_images(str(photos), None)
    outputs = prompt_lab_tab.lab_outputs(first, chosen, None)  # the button: everything
    kept = outputs[-1]
    assert kept.images is first.report.images and kept.chosen == chosen and "value" in outputs[4]
    # the same set scored again (a row moved): no prediction moves, so the confusion matrix is not re-sent
    again = prompt_lab_tab.lab_outputs(_lab(ctx, photos, "Equal average", kept.images), chosen, kept)
    assert "value" not in again[4] and again[6] is not None
    # a live edit that fails (a template without {}) says why and leaves the last results as they are
    broken = prompt_lab_tab.evaluate_prompts(ctx, [["a photo"]], str(photos), None, "", "", None, "Templates",
                                             "Equal average", 1, False, None, None, images=kept.images)
    failed = prompt_lab_tab.lab_outputs(broken, chosen, kept)
    assert "explorer-error" in failed[0] and all(o == {"__type__": "update"} for o in failed[1:])


def test_a_label_edit_reads_and_encodes_no_image_and_resends_only_what_changed(ctx, shapes_model, photos,
                                                                               decodes):
    paths = sorted(str(p) for p in photos.rglob("*.png"))[:3]
    labels = "red circle, green circle, blue circle, yellow circle"
    first = classify_tab.classify(ctx, paths, labels, "Single: a photo of a {}.", "", 5)
    assert decodes and first.gallery  # the images read and encoded once
    gallery, _, heat, shown = classify_tab._figures_update(first, None)
    assert gallery["value"] and heat["value"] is not None and shown is not None
    decodes.clear()
    images_before, texts_before = shapes_model.image_encodes, shapes_model.text_encodes
    edited = classify_tab.classify(ctx, paths, labels + ", orange circle", "Single: a photo of a {}.", "", 5)
    assert decodes == [] and shapes_model.image_encodes == images_before
    assert shapes_model.text_encodes <= texts_before + 1  # the new label's prompt only (if not cached yet)
    # a sixth label changes the heatmap; the gallery is re-sent only if a caption (top label) changed
    gallery, bars, heat, now = classify_tab._figures_update(edited, shown)
    assert heat["value"] is not None and bars is edited.bars
    assert ("value" in gallery) == (edited.gallery != first.gallery)
    # top-k moved: only the bars are sent again
    fewer = classify_tab.classify(ctx, paths, labels + ", orange circle", "Single: a photo of a {}.", "", 2)
    gallery, bars, heat, _ = classify_tab._figures_update(fewer, now)
    assert "value" not in gallery and "value" not in heat and bars is fewer.bars
    assert decodes == [] and shapes_model.image_encodes == images_before
