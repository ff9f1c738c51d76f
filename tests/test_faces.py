"""One core, two faces: for the same inputs, the command line's JSON and the tab handlers' views carry
the same numbers; and the tabs never encode an image twice. Handlers are called as plain functions,
without a browser (tests/browser/ drives the real page)."""
from __future__ import annotations

import json
import re
import shutil
import zipfile

import numpy as np
import pytest

from explorer.app.context import AppContext
from explorer.app.ui import classify_tab, gap_tab, heatmaps_tab, map_tab, prompt_lab_tab, search_tab
from explorer.cli import main as cli
from explorer.embed.model import ModelSlot
from explorer.index.build import build_index
from explorer.inputs.settings import load_settings
from tests.shapes import CLASSES, caption, draw_shape, make_labelled_folder

SINGLE = "Single: a photo of a {}."
SIMPLE = "7 templates (OpenAI subset)"
PCA = "PCA (instant)"


@pytest.fixture
def ctx(shapes_model, tmp_path, tmp_path_factory):
    roots = str(tmp_path_factory.getbasetemp())
    settings = load_settings(
        env={"EXPLORER_ALLOWED_ROOTS": roots, "EXPLORER_INDEX_DIR": str(tmp_path / "idx")})
    context = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    context.slot.model = shapes_model
    return context


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces") / "data"
    make_labelled_folder(root, CLASSES[::4], 3, size=40, seed=3)  # 6 classes x 3 images
    return root


def run_cli(capsys, *args, model_dir):
    code = cli([*args, "--model", f"local-dir:{model_dir}", "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_classify_tab_and_command_agree(ctx, labelled, shapes_model_dir, capsys):
    files = sorted(str(p) for p in labelled.rglob("*.png"))[:7]
    labels = ", ".join(caption(*c) for c in CLASSES[::4])
    view = classify_tab.classify(ctx, files, labels, SIMPLE, "", 3)
    code, doc = run_cli(capsys, "classify", *files, "--labels", labels, "--templates", "simple", "--top-k",
                        "3", model_dir=shapes_model_dir)
    assert code == 0 and doc["templates"] == len(view.report.templates) == 7
    page = view.report.as_dict(3)["results"]
    assert [r["path"] for r in page] == [r["path"] for r in doc["results"]] == files
    for ours, theirs in zip(page, doc["results"]):
        assert [e["label"] for e in ours["labels"]] == [e["label"] for e in theirs["labels"]]
        for a, b in zip(ours["labels"], theirs["labels"]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
            assert a["cosine"] == pytest.approx(b["cosine"], abs=1e-5)
    assert "a blue" in view.summary or "a red" in view.summary  # the winners table was drawn


def test_classify_with_new_labels_encodes_no_image_again(ctx, labelled, shapes_model):
    files = sorted(str(p) for p in labelled.rglob("*.png"))
    before = shapes_model.image_encodes
    classify_tab.classify(ctx, files, "a red circle, a blue square", SINGLE, "", 2)
    assert shapes_model.image_encodes == before + len(files)
    view = classify_tab.classify(ctx, files, "a green cross, a yellow circle, a red circle", SIMPLE, "", 2)
    assert shapes_model.image_encodes == before + len(files) and len(view.report.names) == len(files)


def test_prompt_lab_and_eval_agree_and_the_app_reads_what_it_saves(ctx, labelled, shapes_model_dir, capsys):
    rows = ["a photo of a {}.", "a drawing of a {}.", "a green square next to a {}."]
    view = prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(rows), str(labelled), None, "", "", None,
                                           "Templates", "ZPE (weights from the images)", 1, True, 0.2, 0.5)
    assert view.report is not None, view.summary
    _, saved_json = prompt_lab_tab.save_files(rows)
    code, doc = run_cli(capsys, "eval", str(labelled), "--templates", saved_json, "--weighting", "zpe",
                        "--compare", model_dir=shapes_model_dir)
    result = view.report.result
    assert code == 0 and doc["top1"] == pytest.approx(result.top1) and doc["top5"] == pytest.approx(
        result.top5)
    assert [t["template"] for t in doc["per_template"]] == rows
    for ours, theirs in zip(result.per_template, doc["per_template"]):
        assert theirs["accuracy"] == pytest.approx(ours.accuracy)
        assert theirs["weight"] == pytest.approx(ours.weight, abs=1e-5)
    assert [(c["prompt_set"], c["weighting"]) for c in doc["compare"]] == \
        [(c.prompt_set, c.weighting) for c in view.report.comparison]
    assert [c["top1"] for c in doc["compare"]] == pytest.approx([c.top1 for c in view.report.comparison])
    assert "pl-top1" in view.summary and f"{result.top1:.1%}" in view.summary


def test_unlabelled_images_get_zpe_in_both_faces(ctx, labelled, tmp_path, shapes_model_dir, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    for i, path in enumerate(sorted(labelled.rglob("*.png"))[:8]):
        (plain / f"{i}.png").write_bytes(path.read_bytes())
    labels = "a red circle, a blue square, a green cross"
    view = prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(["a photo of a {}.",
                                                                      "a {}."]), str(plain), None, labels, "",
                                           None, "Templates", "Equal average", 1, False, 0.2, 0.5)
    tmpl = tmp_path / "t.txt"
    tmpl.write_text("a photo of a {}.\na {}.\n")
    code, doc = run_cli(capsys, "eval", str(plain), "--labels", labels, "--templates", str(tmpl),
                        model_dir=shapes_model_dir)
    assert code == 0 and not doc["labelled"] and view.report.result is None
    assert doc["zpe"]["weights"] == pytest.approx(view.report.zpe.weights.tolist(), abs=1e-5)
    assert [p["predicted"] for p in doc["predictions"]] == view.report.predicted
    assert "ZPE" in view.per_template and "pl-none-count" in view.none_of_these


def test_gap_tab_and_command_agree_with_labels_from_sub_folders(ctx, labelled, shapes_model_dir, capsys):
    view = gap_tab.compute_gap(ctx, gap_tab.FOLDER, None, str(labelled), None, gap_tab.LABELS, "", SINGLE,
                               None, PCA)
    assert view.run is not None, view.measures
    code, doc = run_cli(capsys, "gap", "--images", str(labelled), "--projection", "none",
                        model_dir=shapes_model_dir)
    assert code == 0 and doc["texts"] == "labels" and "labels taken from the 6 sub-folder names" in doc[
        "notes"]
    assert view.run.texts.texts == [c.replace("_", " ") for c in sorted(p.name for p in labelled.iterdir())]
    ours = view.run.measures.as_dict()
    for key in ("n_images", "n_texts", "n_matched", "gap_length", "mean_cos_matched", "uniformity_text"):
        assert doc["measures"][key] == pytest.approx(ours[key], abs=1e-5), key
    tab = {p.lam: p for p in view.run.curve}
    shared = [p for p in doc["shift"] if p["lam"] in tab]
    assert [p["lam"] for p in shared] == [0, 0.5, 1]
    for p in shared:
        assert p["gap_length"] == pytest.approx(tab[p["lam"]].gap_length, abs=1e-5)
        assert p["mean_rank"] == pytest.approx(tab[p["lam"]].mean_rank, abs=1e-5)


def test_caption_csv_pairs_the_same_images_in_both_faces(ctx, labelled, tmp_path, shapes_model_dir, capsys):
    images = sorted(labelled.rglob("*.png"))
    rows = ["path,caption", f"{images[0]},an absolute path",               # absolute
            f"{images[1].relative_to(labelled)},relative to the folder",   # relative to the image folder
            "nowhere/else.png,matches nothing"]
    csv = tmp_path / "captions.csv"
    csv.write_text("\n".join(rows) + "\n")
    view = gap_tab.compute_gap(ctx, gap_tab.FOLDER, None, str(labelled), None, gap_tab.CSV, "", SINGLE,
                               str(csv), PCA)
    code, doc = run_cli(capsys, "gap", "--images", str(labelled), "--captions", str(csv), "--projection",
                        "none", model_dir=shapes_model_dir)
    assert code == 1  # partial: most images have no caption, one row matches no image
    assert view.run.texts.texts == ["an absolute path", "relative to the folder"]
    assert doc["n_texts"] == 2 and doc["measures"]["n_matched"] == view.run.measures.n_matched == 2
    assert doc["problems"] == view.run.texts.problems
    assert doc["measures"]["mean_cos_matched"] == pytest.approx(view.run.measures.mean_cos_matched, abs=1e-5)


def test_heatmap_matrix_and_similarity_command_agree(ctx, labelled, shapes_model_dir, capsys):
    files = [str(p) for p in sorted(labelled.rglob("0.png"))]
    texts = ["a red circle", "a blue square", "a photo of a dog"]
    view = heatmaps_tab.compute_matrix(ctx, files, "\n".join(texts), None, 12, "Cosine")
    args = ["similarity", *files]
    for text in texts:
        args += ["--text", text]
    code, doc = run_cli(capsys, *args, model_dir=shapes_model_dir)
    matrix = view.state
    assert code == 0 and matrix.texts == doc["texts"] == texts
    np.testing.assert_allclose(np.array(doc["cosine"]), matrix.cosines, atol=1e-5)
    np.testing.assert_allclose(np.array(doc["probability"]), matrix.probabilities, atol=1e-5)
    assert [item.name
            for item in view.items] == matrix.names == ["0.png"] + [f"0.png ({i})" for i in range(2, 7)]


def test_a_matrix_with_an_index_sample_agrees_in_the_tab_and_the_command(ctx, labelled, shapes_model,
                                                                         shapes_model_dir, tmp_path, capsys):
    """One core (heatmaps.run_similarity): the same files, index sample, texts and notes give the same
    rows, numbers and notes on the page and in `clip-explorer similarity --json`."""
    target = ctx.indexes.path_for(labelled, shapes_model)
    build_index(shapes_model, labelled, target, workers=0)
    [(_, index_folder)] = heatmaps_tab.index_choices(ctx)[1:]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    files = [str(p) for p in sorted(labelled.rglob("1.png"))[:2]] + [str(broken)]
    texts = ["a red circle", "a blue square", "a red circle"]  # the repeat is dropped, and said
    view = heatmaps_tab.compute_matrix(ctx, files, "\n".join(texts), index_folder, 4, "Cosine")
    code, doc = run_cli(capsys, "similarity", *files, *[a for t in texts for a in ("--text", t)], "--index",
                        str(target), "--sample", "4", model_dir=shapes_model_dir)
    matrix = view.state
    assert code == 1 and [e["path"] for e in doc["errors"]] == [str(broken)] and "Skipped" in view.summary
    assert matrix.texts == doc["texts"] == texts[:2] and len(matrix.names) == len(doc["images"]) == 6
    assert doc["notes"] == ["dropped the repeated text “a red circle”"] and doc["notes"][0] in view.summary
    assert matrix.names[2:] == doc["images"][2:] and all("/" in name for name in matrix.names[2:])
    assert [item.root is not None for item in view.items] == [False] * 2 + [True] * 4
    np.testing.assert_allclose(np.array(doc["cosine"]), matrix.cosines, atol=1e-5)
    np.testing.assert_allclose(np.array(doc["probability"]), matrix.probabilities, atol=1e-5)
    assert doc["scoring"] == matrix.rule.as_dict()


def test_prompt_lab_and_gap_on_an_indexed_folder_encode_nothing(ctx, labelled, shapes_model):
    build_index(shapes_model, labelled, ctx.indexes.path_for(labelled, shapes_model), workers=0)
    before = shapes_model.image_encodes
    for rows in (["a photo of a {}."], ["a photo of a {}.", "a {}."]):
        view = prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(rows), str(labelled), None, "", "",
                                               None, "Templates", "Equal average", 1, True, 0.2, 0.5)
        assert view.report is not None and "re-used from the index" in view.summary
    folder = gap_tab.compute_gap(ctx, gap_tab.FOLDER, None, str(labelled), None, gap_tab.LABELS, "", SINGLE,
                                 None, PCA)
    [(label, index_folder)] = gap_tab.index_choices(ctx)
    indexed = gap_tab.compute_gap(ctx, gap_tab.INDEXED, None, "", index_folder, gap_tab.LABELS, "", SINGLE,
                                  None, PCA)
    assert str(labelled.resolve()) in label and indexed.run is not None and folder.run is not None
    assert shapes_model.image_encodes == before
    # The index's class sub-folders label its images, as the folder's do.
    assert indexed.run.texts.texts == folder.run.texts.texts
    assert folder.run.measures.gap_length == pytest.approx(indexed.run.measures.gap_length, abs=1e-5)
    assert folder.run.measures.n_matched == indexed.run.measures.n_matched == 18


def test_uploaded_zip_of_class_folders_is_a_labelled_source(ctx, labelled, tmp_path):
    archive = tmp_path / "classes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(labelled.rglob("*.png")):
            z.write(path, f"wrapper/{path.relative_to(labelled)}")  # one top folder, stepped into
    view = prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(["a photo of a {}."]), "",
                                           [str(archive)], "", "", None, "Templates", "Equal average", 1,
                                           False, 0.2, 0.5)
    assert view.report is not None and view.report.result is not None, view.summary
    assert len(view.report.class_names) == 6 and len(view.report.images) == 18
    assert ctx.uploads.contains(view.report.images.paths[0])


def test_search_handlers_build_search_filter_and_click(ctx, labelled, shapes_model, monkeypatch):
    html, state = search_tab.build_search_index(ctx, search_tab.FOLDER, str(labelled), None, None)
    assert "18</b> image(s) searchable" in html
    view = search_tab.search(ctx, state, "a red circle", None, 0.5, 5, -1.0)
    assert len(view.gallery) == 5 and view.state.hits[0].path.startswith("a_red_circle/")
    index = ctx.indexes.get(state.index)
    calls = []
    monkeypatch.setattr(index, "search", lambda *a: calls.append(a) or pytest.fail("searched again"))
    top = view.state.hits[0].score
    filtered = search_tab.results_view(ctx, view.state, top)  # the threshold only filters
    assert len(filtered.gallery) == 1 and not calls
    monkeypatch.undo()
    before = shapes_model.image_encodes
    like = search_tab.search_like(ctx, view.state, 0, 3, -1.0)  # a click searches by the stored embedding
    assert like.state.hits[0].path == view.state.hits[0].path and shapes_model.image_encodes == before
    with pytest.raises(ValueError, match="Type a text or drop an image"):
        search_tab.search(ctx, state, " ", None, 0.5, 5, 0.0)
    with pytest.raises(ValueError, match="Build an index first"):
        search_tab.search(ctx, search_tab.SearchState(), "x", None, 0.5, 5, 0.0)


@pytest.fixture(scope="module")
def misfiled(tmp_path_factory):
    """Three class folders of four images, one green triangle filed among the blue squares and one red
    circle copied into the green triangles (a mistake and a duplicate across folders to list)."""
    root = tmp_path_factory.mktemp("faces-map") / "photos"
    make_labelled_folder(root, [("red", "circle"), ("blue", "square"), ("green", "triangle")], 4, size=40,
                         seed=5)
    draw_shape("green", "triangle", size=40, rng=np.random.default_rng(50)).save(
        root / "a_blue_square" / "odd.png")
    shutil.copy(root / "a_red_circle" / "0.png", root / "a_green_triangle" / "copy.png")
    return root


def _list_items(html: str) -> dict[str, list[tuple[int, str]]]:
    """The Map tab's lists as drawn (map_html.lists): per section title, its items (map row, evidence)."""
    item = r'data-map-point="(\d+)"[^>]*>[^<]*</button> <span class="explorer-muted">([^<]*)</span>'
    return {title: [(int(row), said) for row, said in re.findall(item, body)]
            for title, body in re.findall(r"<h4>(.*?) \(\d+\)</h4>(.*?)</section>", html, flags=re.S)}


def test_map_tab_and_command_agree(ctx, misfiled, shapes_model, shapes_model_dir, capsys, monkeypatch,
                                   tmp_path_factory):
    """`clip-explorer map INDEX --json` and the Map tab's handlers on the same index: the same points in
    the same places (PCA), the same clusters and names for the same k, the same zero-shot colours, the
    same mistakes, outliers and duplicates in the same order."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))  # word vectors
    build_index(shapes_model, misfiled, ctx.indexes.path_for(misfiled, shapes_model), workers=0)
    [(_, folder)] = map_tab.index_choices(ctx)
    labels = "a red circle, a blue square, a green triangle"
    code, doc = run_cli(capsys, "map", folder, "--method", "pca", "--labels", labels, "--templates", "single",
                        "--clusters", "3", model_dir=shapes_model_dir)
    assert code == 0 and doc["count"] == 14
    view = map_tab.open_map(ctx, folder, "pca", map_tab.ColourChoice())
    state = view.state
    assert state.names == [p["name"] for p in doc["points"]] and doc["layout"]["method"] == state.method
    points = next(t for t in view.figure.data if t.meta == "map-points")
    assert list(points.text) == state.names
    np.testing.assert_allclose(np.stack([points.x, points.y], 1), [[p["x"], p["y"]] for p in doc["points"]],
                               atol=2e-4)  # both rounded to 4 decimals, the figure's in float32
    # the same k: the same clusters, named by the same words
    clustered, patch = map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3))
    assert clustered.clusters.as_dict() == doc["clusters"]
    assert [p["cluster"] for p in doc["points"]] == clustered.clusters.labels.tolist()
    assert len({p["cluster"] for p in doc["points"]}) == 3
    assert all(c["words"] for c in doc["clusters"]["clusters"])  # named by the shipped vocabulary
    legend = [e["name"] for e in json.loads(patch)["legend"]]
    assert [name.rsplit(" (", 1)[0] for name in legend] == clustered.colouring.categories
    assert [f"{c['cluster'] + 1}: {c['name']}" for c in doc["clusters"]["clusters"]] == \
        clustered.colouring.categories
    # the same labels and templates: the same zero-shot colours and scores
    zeroshot, _ = map_tab.recolour(ctx, clustered, map_tab.ColourChoice("zeroshot", labels, SINGLE))
    assert zeroshot.colouring.rule == doc["colouring"]["rule"]
    assert zeroshot.colouring.labels() == [p["colour"] for p in doc["points"]]
    np.testing.assert_allclose(zeroshot.colouring.scores, [p["score"] for p in doc["points"]], atol=1e-4)
    # the same lists, in the same order
    html, _ = map_tab.lists_view(ctx, state, SINGLE)
    lists, drawn = doc["lists"], _list_items(html)
    assert {title: [row for row, _ in items] for title, items in drawn.items()} == {
        "Likely mistakes": [m["row"] for m in lists["mistakes"]],
        "Cross-folder duplicates": [d["row_i"] for d in lists["duplicates"]],
        # the page lists the outliers that stand apart (map_tab.outliers_shown); the JSON ranks them all
        "Outliers": [o["row"] for o in map_tab.outliers_shown(lists["outliers"], len(state.names))[0]]}
    shown = drawn["Outliers"]
    assert [row for row, _ in shown] == [o["row"] for o in lists["outliers"][:len(shown)]]
    odd, copy = state.names.index("a_blue_square/odd.png"), state.names.index("a_green_triangle/copy.png")
    assert odd in [m["row"] for m in lists["mistakes"]]
    assert {copy, state.names.index("a_red_circle/0.png")} in [{d["row_i"], d["row_j"]}
                                                              for d in lists["duplicates"]]
    mistake = next(m for m in lists["mistakes"] if m["row"] == odd)
    said = dict(drawn["Likely mistakes"])[odd]
    assert said.startswith(f"filed as {mistake['given']}, looks like {mistake['predicted']}"), said


def test_handlers_explain_problems_instead_of_failing(ctx, tmp_path):
    ctx.slot.model = None
    ctx.slot.error = "could not load ViT-B-32"
    summary = classify_tab.classify(ctx, ["x.png"], "a, b", SINGLE, "", 3).summary
    assert "No model is loaded. Could not load ViT-B-32. Load one in the Model panel above." in summary
    assert "No model is loaded" in gap_tab.compute_gap(ctx, gap_tab.UPLOAD, [], "", None, gap_tab.LABELS, "",
                                                       SINGLE, None, PCA).measures


def test_patch_map_handler_and_blend(ctx, tmp_path):
    path = tmp_path / "two.png"
    draw_shape("red", "circle", size=64, rng=1).save(path)
    items = heatmaps_tab.upload_items([str(path)])
    info, state = heatmaps_tab.compute_patch_map(ctx, items, "two.png", "a red circle", "tokens",
                                                 "relative to the map's mean")
    assert state is not None and "hm-map-numbers" in info
    picture = heatmaps_tab.blend(state, 0.5, "min to max")
    assert picture.size == state.image.size
    outside = [heatmaps_tab.ImageItem("x", str(path), str(tmp_path / "elsewhere"))]
    info, state = heatmaps_tab.compute_patch_map(ctx, outside, "x", "a red circle", "tokens",
                                                 "relative to the map's mean")
    assert state is None and "outside its indexed folder" in info


def test_unpacking_an_upload_deletes_the_indexes_of_expired_uploads(ctx, shapes_model, tmp_path):
    import shutil

    from explorer.index.registry import list_indexes

    expired = ctx.uploads.base / "upload-expired"
    expired.mkdir(parents=True)
    draw_shape("red", "circle", size=32).save(expired / "0.png")
    build_index(shapes_model, expired, ctx.indexes.path_for(expired, shapes_model), workers=0)
    assert len(list_indexes(ctx.settings.index_dir)) == 1
    shutil.rmtree(expired)  # what UploadArea.prune does once it has expired
    upload = tmp_path / "new.png"
    draw_shape("blue", "square", size=32).save(upload)
    ctx.unpack([str(upload)])
    assert list_indexes(ctx.settings.index_dir) == []
