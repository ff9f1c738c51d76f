"""The Map tab's handlers without a browser (issue 26): an index's map drawn at once (PCA) while its
UMAP layout runs as a background job that is polled and can be cancelled; colours from the stored
embeddings (a prompt edit recolours with no image decoded or encoded, and only the new prompts
encoded), sent as a small patch; a hovered point's thumbnail written once into gradio's cache; a
selection read from the page's ids (bounded, from anyone) into a gallery and the names H6's actions
use. tests/browser/test_map_page.py drives the same through the page."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest

from explorer.app.ui import map_tab
from explorer.embed import images as images_module
from tests.helpers import local_context
from tests.shapes import CLASSES, make_labelled_folder

THREE = CLASSES[:3]
LABELS = ", ".join(f"{c} {s}" for c, s in THREE)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("map") / "photos"
    make_labelled_folder(root, THREE, 4, size=48, seed=3)  # 12 images in 3 class folders
    return root


@pytest.fixture
def ctx(shapes_model, tmp_path, photos):
    context = local_context(shapes_model, tmp_path, photos.parent).scoped(None)
    context.index_choice(folder=str(photos), workers=0)
    return context


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "gradio-cache"
    monkeypatch.setattr(map_tab, "get_upload_folder", lambda: str(folder))
    return folder


class FakeJob:
    """A LayoutJob that finishes when told to."""
    made: list = []

    def __init__(self, index, names, embeddings, method="umap", **kwargs):
        self.index, self.names, self.method = index, list(names), method
        self.done, self.result, self.error, self.started, self.cancelled = False, None, None, False, False
        FakeJob.made.append(self)

    def start(self):
        self.started = True
        return self

    def status(self):
        return 0.4, "epoch 80 of 200"

    def cancel(self):
        self.cancelled, self.done, self.error = True, True, "cancelled"

    def finish(self):
        from explorer.science.map_layout import map_of_index

        pca = map_of_index(self.index, self.names, self.index.all_embeddings()[1], "pca")
        self.result = type(pca)(pca.names[::-1], pca.xy[::-1] * 2, "umap", {}, len(pca.names), 0, 0.5,
                                note="fitted to 12 points")
        self.done = True


def _folder(ctx) -> str:
    [(label, folder)] = map_tab.index_choices(ctx)
    return folder


def _points(figure) -> dict:
    return next(t for t in figure.data if t.meta == "map-points")


def test_an_index_is_mapped_at_once_by_pca_coloured_by_its_folders(ctx):
    view = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice())
    state = view.state
    assert not view.running and view.progress == "" and len(state.names) == 12
    assert state.names == ctx.open_index(state.index).all_embeddings()[0]
    points = _points(view.figure)
    assert len(points.x) == 12 and list(points.text) == state.names
    assert state.colouring.by == "folder" and list(state.colouring.categories) == sorted(
        f"a_{c}_{s}" for c, s in THREE)
    legend = [t.name for t in view.figure.data if t.meta == "map-legend"]
    assert len(legend) == 3 and all("(4)" in name for name in legend)   # each folder with its count
    assert view.figure.layout.meta["seq"] == state.seq and "PCA map of 12 images" in view.note


def test_umap_runs_as_a_job_polled_until_its_map_replaces_the_pca_one(ctx, monkeypatch):
    monkeypatch.setattr(map_tab.map_layout, "LayoutJob", FakeJob)
    jobs = map_tab.LayoutJobs()
    view = map_tab.open_map(ctx, _folder(ctx), "umap", map_tab.ColourChoice())
    assert view.running and view.state.method == "pca" and view.state.waiting == "umap"
    assert "UMAP layout is being computed" in view.note
    made = len(FakeJob.made)
    assert map_tab.start_layout(ctx, view.state, session="s1", jobs=jobs)
    assert map_tab.start_layout(ctx, view.state, session="s1", jobs=jobs)   # once per map
    job = FakeJob.made[-1]
    assert len(FakeJob.made) == made + 1 and job.started
    polled = map_tab.poll_job(view.state, jobs.get("s1", view.state.seq))
    assert polled.running and polled.figure is None and 'data-fraction="0.400"' in polled.progress
    job.finish()
    done = map_tab.poll_job(view.state, job)
    assert not done.running and done.state.method == "umap" and done.state.waiting == ""
    assert done.state.seq == view.state.seq            # the same points: hovers and selections stay valid
    # the job's rows came reversed: the map follows the state's order of names
    xy = _points(done.figure)
    first = job.result.names.index(view.state.names[0])
    assert xy.x[0] == pytest.approx(float(job.result.xy[first, 0]), abs=1e-3)


def test_cancel_stops_the_job_and_the_pca_map_stays(ctx, monkeypatch):
    monkeypatch.setattr(map_tab.map_layout, "LayoutJob", FakeJob)
    jobs = map_tab.LayoutJobs()
    view = map_tab.open_map(ctx, _folder(ctx), "umap", map_tab.ColourChoice())
    map_tab.start_layout(ctx, view.state, session="s1", jobs=jobs)
    assert jobs.cancel("s1") and FakeJob.made[-1].cancelled
    stopped = map_tab.poll_job(view.state, jobs.get("s1", view.state.seq))
    assert not stopped.running and stopped.figure is None and "stopped: cancelled" in stopped.progress
    # a new map for the same session cancels the job still running for the last one
    for _ in range(2):
        again = map_tab.open_map(ctx, _folder(ctx), "umap", map_tab.ColourChoice())
        map_tab.start_layout(ctx, again.state, session="s2", jobs=jobs)
    first, second = FakeJob.made[-2:]
    assert first.cancelled and not second.cancelled
    pca = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    assert not map_tab.start_layout(ctx, pca, session="s2", jobs=jobs)   # PCA: nothing to wait for
    # at most `most` jobs run at once across sessions: the next session is told, nothing is started
    jobs.most = 1
    with pytest.raises(map_tab.Busy, match="other map layouts are running"):
        map_tab.start_layout(ctx, again.state, session="s3", jobs=jobs)
    assert jobs.get("s3", again.state.seq) is None


def test_a_prompt_edit_recolours_without_touching_an_image(ctx, shapes_model, monkeypatch):
    view = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice())
    decoded = []
    real_prepare = images_module.prepare
    monkeypatch.setattr(images_module, "prepare", lambda *a, **k: decoded.append(a) or real_prepare(*a, **k))
    images = shapes_model.image_encodes
    state, patch = map_tab.recolour(ctx, view.state, map_tab.ColourChoice("zeroshot", LABELS))
    sent = json.loads(patch)
    assert sent["seq"] == view.state.seq and len(sent["marker"]["color"]) == 12
    assert [e["name"].rsplit(" (", 1)[0] for e in sent["legend"]][:3] == [f"{c} {s}" for c, s in THREE]
    # the shapes model files each folder's images under one label of their own
    codes = state.colouring.codes.tolist()
    folders = [n.split("/")[0] for n in state.names]
    assert len(set(zip(folders, codes))) == 3 and len(set(codes)) == 3
    texts = shapes_model.text_encodes
    state, _ = map_tab.recolour(ctx, state, map_tab.ColourChoice("zeroshot", LABELS + ", yellow cross"))
    assert shapes_model.text_encodes - texts <= 1   # the new prompt only (0: cached by an earlier test)
    assert decoded == [] and shapes_model.image_encodes == images
    assert "Coloured by zero-shot" in map_tab.colour_note(state.colouring)


def test_a_query_colours_by_score_and_a_bad_choice_is_a_problem(ctx):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    state, patch = map_tab.recolour(ctx, state, map_tab.ColourChoice("query", query="a red circle"))
    marker = json.loads(patch)["marker"]
    assert marker["showscale"] and len(marker["color"]) == 12 and json.loads(patch)["legend"] == []
    assert all(round(c, 3) == c for c in marker["color"])   # 3 decimals: a few bytes a point, not ~20
    assert len(patch) < 12 * 8 + 2000
    best = max(range(12), key=lambda i: marker["color"][i])
    assert state.names[best].startswith(f"a_{THREE[0][0]}_{THREE[0][1]}/")
    with pytest.raises(ValueError):
        map_tab.recolour(ctx, state, map_tab.ColourChoice("zeroshot", "only-one-label"))
    with pytest.raises(map_tab.Problem):
        map_tab.recolour(ctx, None, map_tab.ColourChoice())
    with pytest.raises(map_tab.Problem):
        map_tab.open_map(ctx, _folder(ctx), "tsne", map_tab.ColourChoice())


def test_an_image_query_lights_up_its_kind_and_is_encoded_once(ctx, shapes_model, tmp_path):
    from tests.shapes import draw_shape

    colour, shape = THREE[1]
    query = tmp_path / "uploaded-query.png"
    draw_shape(colour, shape, size=48, rng=99).save(query)             # not one of the map's images
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    images = shapes_model.image_encodes
    choice = map_tab.ColourChoice("query", query_image=str(query))
    state, patch = map_tab.recolour(ctx, state, choice)
    scores = json.loads(patch)["marker"]["color"]
    top = sorted(range(12), key=lambda i: -scores[i])[:4]
    assert {state.names[i].split("/")[0] for i in top} == {f"a_{colour}_{shape}"}
    note = map_tab.colour_note(state.colouring)
    assert "uploaded-query.png" in note and str(tmp_path) not in note     # its name, never its server path
    assert shapes_model.image_encodes - images == 1                        # the query image, once
    map_tab.recolour(ctx, state, replace(choice, query="a red circle"))    # a text beside it: no image again
    assert shapes_model.image_encodes - images == 1


def test_hovering_a_point_gives_its_thumbnail_once_in_gradios_cache(ctx, cache):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    thumb, caption = map_tab.hover_view(ctx, state, f"{state.seq}:5")
    assert Path(thumb).is_file() and Path(thumb).is_relative_to(cache) and state.names[5] in caption
    assert "folder:" in caption
    again, _ = map_tab.hover_view(ctx, state, f"{state.seq}:5")
    assert again == thumb                                       # written once, handed out again
    seq = state.seq
    for stale in (f"{seq + 1}:5", f"{seq}:12", f"{seq}:-1", "5", "", None, f"{seq}:x", f"{seq}:5,6"):
        assert map_tab.hover_view(ctx, state, stale) is None, stale


def test_a_selection_fills_the_gallery_and_the_names_kept_for_the_actions(ctx, cache, monkeypatch):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    html, items, names = map_tab.selection_view(ctx, state, f"{state.seq}|3|0,4,4,11,99,abc,-2")
    assert names == [state.names[i] for i in (0, 4, 11)] and len(items) == 3
    assert all(Path(path).is_relative_to(cache) for path, _ in items)
    assert "3 images selected" in html
    html, items, names = map_tab.selection_view(ctx, state, f"{state.seq}|0|")
    assert names == [] and items == [] and "Lasso" in html
    _, _, names = map_tab.selection_view(ctx, state, f"{state.seq + 1}|2|0,1")   # another map's points
    assert names == []
    monkeypatch.setattr(map_tab, "MAX_SELECTED", 4)
    html, _, names = map_tab.selection_view(ctx, state, f"{state.seq}|12|" + ",".join(map(str, range(12))))
    assert len(names) == 4 and "12 images selected (the first 4 are kept)" in html


def test_the_tab_refuses_an_index_that_is_not_the_sessions(ctx, tmp_path):
    with pytest.raises(map_tab.Problem, match="cannot be opened"):
        map_tab.open_map(ctx, str(tmp_path / "elsewhere"), "pca", map_tab.ColourChoice())
    assert map_tab.open_map(ctx, "", "pca", map_tab.ColourChoice()).state.index == _folder(ctx)  # the first


def test_the_built_tab_returns_what_the_actions_need(shapes_model, tmp_path, photos):
    from explorer.app.ui import build_app

    context = local_context(shapes_model, tmp_path, photos.parent)
    app = build_app(context)
    ids = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    assert isinstance(ids["map-actions"], gr.Column) and isinstance(ids["map-plot"], gr.Plot)
    names = {f.api_name for f in app.fns.values()}
    assert {"map", "map_colours", "map_lists"} <= names
    for channel in ("map-hover-id", "map-selection-ids", "map-colour-patch", "map-explain-id"):
        assert ids[channel].visible == "hidden"       # in the page (map.js reaches it), not shown


def test_a_selection_is_named_by_its_best_words_and_clusters_by_theirs(ctx):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    reds = [n for n in state.names if n.startswith("a_red_")]
    html = map_tab.words_view(ctx, state, reds)
    assert "Best words" in html and ("red" in html or "circle" in html), html
    assert map_tab.words_view(ctx, state, []) == ""
    state, patch = map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3))
    assert state.colouring.by == "cluster" and len(state.colouring.categories) == 3
    codes = state.colouring.codes.tolist()
    folders = [n.split("/")[0] for n in state.names]
    assert len(set(zip(folders, codes))) == 3                          # the three folders, one cluster each
    kept = state.clusters
    state, _ = map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3))
    assert state.clusters is kept                                      # the same k: not clustered again


def test_the_lists_give_each_image_its_evidence_and_its_point(ctx):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    html, evidence = map_tab.lists_view(ctx, state, next(iter(map_tab.TEMPLATE_CHOICES)))
    assert "Outliers" in html and "Likely mistakes" in html and "Cross-folder duplicates" in html
    assert evidence and all(0 <= row < 12 and text for row, text in evidence.items())
    assert f'data-map-point="{next(iter(evidence))}"' in html
    _, caption = map_tab.hover_view(ctx, state, f"{state.seq}:{next(iter(evidence))}", evidence)
    assert evidence[next(iter(evidence))] in caption
    with pytest.raises(map_tab.Problem):
        map_tab.lists_view(ctx, None, "")


def test_an_image_in_two_lists_keeps_both_pieces_of_evidence(ctx, monkeypatch):
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    found = {"mistakes": [{"row": 2, "given": "a_red_circle", "predicted": "a_red_square",
                           "self_confidence": 0.1}],
             "duplicates": None, "outliers": [{"row": 2, "score": 0.7, "beyond": True}], "how": ""}
    monkeypatch.setattr(map_tab.folder_map, "map_lists", lambda *args, **kwargs: found)
    _, evidence = map_tab.lists_view(ctx, state, next(iter(map_tab.TEMPLATE_CHOICES)))
    assert "looks like a_red_square" in evidence[2] and "outlier" in evidence[2]


def test_many_points_get_a_density_underlay_and_travel_in_few_bytes():
    import numpy as np

    from explorer.app import plots

    rng = np.random.default_rng(0)
    few, many = rng.normal(size=(50, 2)), rng.normal(size=(30_000, 2))
    codes = rng.integers(-1, 5, size=len(many))
    colours = plots.map_point_colours(codes, "category", 5)
    figure = plots.map_figure(many, [f"{i}.png" for i in range(len(many))], colours,
                              plots.map_legend([str(i) for i in range(5)], plots.map_counts(codes, 5)),
                              method="umap", seq=7)
    kinds = [t.meta for t in figure.data]
    assert kinds[:2] == ["map-points", "map-density"] and kinds.count("map-legend") == 6   # 5 and "none"
    points = figure.data[0]
    assert points.marker.size < 5 and points.text is None                # small markers, no names to send
    assert len(figure.to_json()) < 40 * len(many)                          # coordinates and colours only
    small = plots.map_figure(few, [str(i) for i in range(50)], plots.map_point_colours([0] * 50), [],
                             method="pca")
    assert [t.meta for t in small.data] == ["map-points"] and len(small.data[0].text) == 50
    # a category's colour band holds its number; "none" (-1) is drawn in MAP_NONE
    scale, lo, hi = colours["colorscale"], colours["cmin"], colours["cmax"]
    def colour_of(value):
        at = (value - lo) / (hi - lo)
        return next(c for (a, c), (b, _) in zip(scale[::2], scale[1::2]) if a <= at <= b)
    assert colour_of(0) == plots.MAP_PALETTE[0] and colour_of(4) == plots.MAP_PALETTE[4]
    assert colour_of(int(colours["color"][list(codes).index(-1)])) == plots.MAP_NONE
