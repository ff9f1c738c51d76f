"""The gap-aligned map (axis 1 along the gap vector, axis 2 the main direction of the rest) and the
views that follow the shift slider: GapRun.at (measures and histograms of the shifted embeddings)
and GapRun.projection (the map moved on fixed axes), the Modality gap tab's handlers and the CLI.

The gap vector and the shift are Liang et al.'s (NeurIPS 2022; github.com/Weixin-Liang/Modality-Gap,
Table_1_Implications_CLIP_Zero_Shot/shifting): gap = mean image - mean text, images moved by -λ/2 gap
and texts by +λ/2 gap, then renormalised. The gap-aligned axes are this project's construction and
are checked against a direct numpy transcription written here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.inputs.sources import Embedded
from explorer.science.gap import DEFAULT_PROJECTION, gap_measures, project_2d
from explorer.science.gap_run import GapTexts, run_gap


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def hidden_gap(n=60, m=12, d=24, seed=0):
    """Two cones whose offset is small next to a large spread shared by both modalities: PCA's first
    two axes follow the spread, not the gap (as on the shapes model)."""
    rng = np.random.default_rng(seed)
    spread = np.zeros(d)
    spread[:2] = 1.0
    classes = rng.normal(size=(m, d)) * np.r_[4.0, 4.0, np.full(d - 2, 0.3)]
    offset = np.zeros(d)
    offset[5] = 0.6
    matches = rng.integers(0, m, size=n)
    img = unit(classes[matches] + 0.3 * rng.normal(size=(n, d)) + offset + 3.0)
    txt = unit(classes - offset + 3.0)
    return img, txt, matches


def direct_gap_axes(img, txt):
    """A transcription of the construction: u = (mean image - mean text) / |.|; the joint points
    centred on their mean; v = first right-singular vector of the centred points minus their
    component along u."""
    img, txt = img.astype(np.float64), txt.astype(np.float64)
    gap = img.mean(0) - txt.mean(0)
    u = gap / np.linalg.norm(gap)
    joint = np.concatenate([img, txt])
    centre = joint.mean(0)
    centred = joint - centre
    residual = centred - np.outer(centred @ u, u)
    v = np.linalg.svd(residual, full_matrices=False)[2][0]
    return u, v, centre, centred


def test_gap_axes_equal_a_direct_transcription():
    img, txt, matches = hidden_gap()
    p = project_2d(img, txt, "gap", matches=matches)
    u, v, centre, centred = direct_gap_axes(img, txt)
    got = np.concatenate([p.xy_image, p.xy_text]).astype(np.float64)
    np.testing.assert_allclose(got[:, 0], centred @ u, atol=1e-5)
    ref_y = centred @ v  # a principal axis is defined up to sign
    assert min(np.abs(got[:, 1] - ref_y).max(), np.abs(got[:, 1] + ref_y).max()) < 1e-5
    total = (centred ** 2).sum() / (len(centred) - 1)
    np.testing.assert_allclose(p.explained_variance, [np.var(centred @ u, ddof=1) / total,
                                                      np.var(ref_y, ddof=1) / total], atol=1e-6)
    assert abs(p.fit.axes[:, 0] @ p.fit.axes[:, 1]) < 1e-12  # orthonormal


def test_centroids_sit_the_measured_gap_apart_on_axis_one_where_pca_hides_it():
    img, txt, matches = hidden_gap()
    measured = gap_measures(img, txt, matches).gap_length
    gap_map = project_2d(img, txt, matches=matches)            # the default
    assert gap_map.method == DEFAULT_PROJECTION == "gap"
    # exactly |gap| apart along axis 1 (unit axes: the scale is 1), not at all along axis 2
    assert gap_map.centroid_offset[0] == pytest.approx(measured, rel=1e-6)
    assert abs(gap_map.centroid_offset[1]) < 1e-6
    pca = project_2d(img, txt, "pca", matches=matches)
    assert np.linalg.norm(pca.centroid_offset) < 0.5 * measured  # PCA's map all but hides the gap
    # sampled: the axes come from the sample, the gap and the centroids from every point
    sampled = project_2d(img, txt, matches=matches, max_points=30)
    assert sampled.sampled and sampled.centroid_offset[0] == pytest.approx(measured, rel=1e-6)


def test_no_gap_falls_back_to_pca_and_says_so():
    img, _, _ = hidden_gap()
    p = project_2d(img, img.copy())
    assert p.fit.kind == "pca" and "no gap direction" in p.fit.note
    assert np.allclose(p.centroid_offset, 0, atol=1e-6)


def synthetic_run(seed=0):
    img, txt, matches = hidden_gap(seed=seed)
    images = Embedded([f"img{i}.png" for i in range(len(img))],
                      [Path(f"/nowhere/img{i}.png") for i in range(len(img))], img, source="synthetic")
    texts = GapTexts("labels", [f"class {j}" for j in range(len(txt))], txt, matches)
    return run_gap(images, texts), img, txt, matches


def test_the_map_moves_on_fixed_axes_as_lambda_changes():
    run, img, txt, matches = synthetic_run()
    at0, at8 = run.projection("gap", 0.0), run.projection("gap", 0.8)
    assert at8.fit is at0.fit and at8.fixed_axes and at8.lam == 0.8
    # a direct transcription: shift (Liang et al.), renormalise, then the λ=0 axes
    gap = img.astype(np.float64).mean(0) - txt.astype(np.float64).mean(0)
    img_s = unit(img - 0.4 * gap)
    expected = (img_s - at0.fit.centre) @ at0.fit.axes
    np.testing.assert_allclose(at8.xy_image, expected, atol=1e-5)
    moved = np.abs(at8.xy_image[:, 0] - at0.xy_image[:, 0])
    assert moved.min() > 0.3 * run.measures.gap_length                  # every image moved along the gap
    shifted = run.at(0.8)
    # the centroids close in: along axis 1 by the shifted gap's component on the fixed gap axis
    assert at8.centroid_offset[0] < 0.5 * at0.centroid_offset[0]
    assert at8.centroid_offset[0] == pytest.approx(shifted.measures.gap_vector @ at0.fit.axes[:, 0], abs=1e-5)
    # one frame for every λ in 0..1, so the movement is seen
    assert at8.frame == at0.frame and run.projection("gap", 0.4).frame == at0.frame
    pca0, pca8 = run.projection("pca", 0.0), run.projection("pca", 0.8)
    assert pca8.fit is pca0.fit and not np.allclose(pca8.xy_text, pca0.xy_text)


def test_measures_and_histograms_follow_the_shift():
    run, img, txt, matches = synthetic_run()
    shifted = run.at(0.8)
    assert shifted.point.lam == 0.8
    assert shifted.measures.gap_length == pytest.approx(shifted.point.gap_length, abs=1e-6)
    assert shifted.measures.gap_length < 0.5 * run.measures.gap_length
    direct = gap_measures(*[unit(x) for x in (img - 0.4 * run.measures.gap_vector,
                                              txt + 0.4 * run.measures.gap_vector)], matches)
    assert shifted.measures.mean_cos_matched == pytest.approx(direct.mean_cos_matched, abs=1e-5)
    before, after = run.measures.histograms["matched"], shifted.measures.histograms["matched"]
    assert not np.array_equal(before.edges, after.edges) or not np.array_equal(before.counts, after.counts)
    assert run.at(0).measures is run.measures


def test_umap_is_not_recomputed_per_slider_step(monkeypatch):
    from explorer.science import gap

    calls = []
    monkeypatch.setattr(gap, "_umap_2d", lambda x, seed, n: calls.append(len(x)) or x[:, :2].copy())
    run, *_ = synthetic_run(seed=1)
    maps = [run.projection("umap", lam) for lam in (0.0, 0.3, 0.6, 1.0)]
    assert len(calls) == 1 and all(m is maps[0] for m in maps) and maps[-1].lam == 0


def test_gap_tab_slider_moves_map_histograms_and_table(monkeypatch):
    from explorer.app.ui import gap_tab
    from explorer.science import gap

    monkeypatch.setattr(gap, "_umap_2d", lambda x, seed, n: x[:, :2].copy())
    run, *_ = synthetic_run()
    default = next(iter(gap_tab.PROJECTIONS))
    assert gap_tab.PROJECTIONS[default] == "gap"
    readout0, _, table0, hist0, fig0, note0 = gap_tab.shift_view(run, 0.0, default)
    readout8, _, table8, hist8, fig8, note8 = gap_tab.shift_view(run, 0.8, default)

    def trace(fig, prefix):
        return next(t for t in fig.data if (t.name or "").startswith(prefix))
    assert not np.allclose(np.asarray(trace(fig0, "images").x), np.asarray(trace(fig8, "images").x))
    c0, c8 = trace(fig0, "image centroid").x[0] - trace(fig0, "text centroid").x[0], \
        trace(fig8, "image centroid").x[0] - trace(fig8, "text centroid").x[0]
    assert c0 == pytest.approx(run.measures.gap_length, rel=1e-5) and c8 < 0.5 * c0
    assert tuple(fig0.layout.xaxis.range) == tuple(fig8.layout.xaxis.range)   # the frame stays
    assert "λ = 0.80" in fig8.layout.title.text and "along the gap" in fig8.layout.xaxis.title.text
    assert "Measures at λ = 0.80" in table8 and "Measures at λ" not in table0
    assert f"{run.at(0.8).measures.gap_length:.3f}" in table8
    assert [t.y.tolist() if hasattr(t.y, "tolist") else list(t.y) for t in hist0.data] != \
        [t.y.tolist() if hasattr(t.y, "tolist") else list(t.y) for t in hist8.data]
    assert "slider moves the points" in note0
    umap_note = gap_tab.projection_view(run, "UMAP (slower, cached)", 0.8)[1]
    assert "does not redraw UMAP" in umap_note


def test_gap_cli_defaults_to_the_gap_aligned_map(shapes_model_dir, tmp_path, capsys):
    from explorer.cli import main
    from tests.shapes import CLASSES, make_labelled_folder

    make_labelled_folder(tmp_path / "data", CLASSES[::6], 3, size=32, seed=2)
    args = [
        "gap", "--images",
        str(tmp_path / "data"), "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu"
    ]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = out["projection"]
    assert p["method"] == "gap"
    assert p["centroid_offset"][0] == pytest.approx(out["measures"]["gap_length"], abs=2e-6)
    assert abs(p["centroid_offset"][1]) < 1e-5 and len(p["explained_variance"]) == 2
    assert main(args + ["--max-points", "5"]) == 0
    text = capsys.readouterr().out
    assert "projection gap-aligned: centroids" in text and "showing a sample of 5 of 16 points" in text


def test_a_shift_change_encodes_nothing_and_sends_only_what_it_changes(shapes_model, tmp_path, monkeypatch):
    """Issue 29: a move of the shift slider after a run answers from the run's embeddings (no image
    decoded or encoded, no text encoded); the readout, curve, measures and histograms are sent, the
    gap-aligned map too, but not a map note the page already shows, nor the UMAP map (unshifted
    whatever λ) and its note."""
    import gradio as gr

    from explorer.app.ui import gap_tab
    from explorer.embed import images as images_module
    from explorer.inputs import sources
    from tests.helpers import local_context
    from tests.shapes import CLASSES, make_labelled_folder

    make_labelled_folder(tmp_path / "data", CLASSES[:3], 3, size=32, seed=2)
    ctx = local_context(shapes_model, tmp_path, tmp_path)
    default = next(iter(gap_tab.PROJECTIONS))
    view = gap_tab.compute_gap(ctx, gap_tab.FOLDER, None, str(tmp_path / "data"), None, gap_tab.LABELS, "",
                               "Single: a photo of a {}.", None, default)
    assert view.run is not None, view.measures
    decodes = []
    for module in (images_module, sources):
        monkeypatch.setattr(module, "prepare", lambda *a, **k: decodes.append(a) or pytest.fail("decoded"))
    monkeypatch.setattr(images_module, "load_image",
                        lambda *a, **k: decodes.append(a) or pytest.fail("decoded"))
    counts = shapes_model.image_encodes, shapes_model.text_encodes
    parts = gap_tab.shift_update(view.run, 0.6, default, view.thumbnails, view.projection_note)
    assert decodes == [] and (shapes_model.image_encodes, shapes_model.text_encodes) == counts
    readout, curve, table, hist, figure, note = parts
    assert "λ = 0.60" in readout and "Measures at λ = 0.60" in table and None not in (curve, hist)
    assert "λ = 0.60" in figure.layout.title.text
    assert note == gr.skip()                                 # the same note: not sent again
    assert gap_tab.shift_view(view.run, 0.6, default, view.thumbnails)[5] == view.projection_note
    changed = gap_tab.shift_update(view.run, 0.6, default, view.thumbnails, "another note")
    assert changed[5] == view.projection_note                # a note the page does not show is sent
    monkeypatch.setattr(gap_tab, "projection_view", lambda *a, **k: pytest.fail("the UMAP map was redrawn"))
    umap = gap_tab.shift_update(view.run, 0.8, "UMAP (slower, cached)", view.thumbnails, "")
    assert "λ = 0.80" in umap[0] and umap[4:] == (gr.skip(), gr.skip()) and umap[2] != gr.skip()


def test_a_shift_redraws_the_figures_in_place_not_through_gr_plot():
    """Issue 29: a move of the slider sends the curve, histograms and map as a patch the page applies
    with Plotly.react on the plots already drawn (gr.Plot would re-mount each and draw it twice): the
    three gr.Plot outputs are gr.skip(); the map travels without its hover previews (the drawn points
    keep theirs); the UMAP map (unshifted whatever λ) is left out of the patch."""
    import json

    import gradio as gr

    from explorer.app.ui import gap_tab

    run, *_ = synthetic_run()
    default = next(iter(gap_tab.PROJECTIONS))
    readout, curve, table, hist, figure, note, patch = gap_tab.shift_in_place(run, 0.6, default)
    assert (curve, hist, figure) == (gr.skip(),) * 3
    assert "λ = 0.60" in readout and "Measures at λ = 0.60" in table
    sent = json.loads(patch)
    assert set(sent["figures"]) == set(gap_tab.PATCHED) and sent["keep"] == ["customdata"]
    assert "λ = 0.60" in sent["figures"]["gap-projection"]["layout"]["title"]["text"]
    images = next(t for t in sent["figures"]["gap-projection"]["data"] if t["name"].startswith("images"))
    assert "customdata" not in images and images["ids"][0] == "i0"
    assert len(sent["figures"]["gap-hist"]["data"]) == len(run.at(0.6).measures.histograms)
    assert json.loads(gap_tab.shift_in_place(run, 0.6, default)[6])["seq"] != sent["seq"]  # each applied
    umap = json.loads(gap_tab.shift_in_place(run, 0.6, "UMAP (slower, cached)")[6])
    assert set(umap["figures"]) == {"gap-curve", "gap-hist"}


def test_the_shift_patch_is_applied_in_the_page_without_a_server_call(shapes_model, tmp_path):
    """The slider's event writes the patch into the hidden #gap-plot-patch box, whose change runs
    assets/plot_patch.js in the browser only (no Python function); a Compute clears it."""
    from explorer.app.ui import build_app, gap_tab
    from tests.test_hosted import hosted_context

    app = build_app(hosted_context(tmp_path, shapes_model))
    ids = {getattr(b, "elem_id", None): i for i, b in app.blocks.items()}
    patch, shift = ids["gap-plot-patch"], ids["gap-shift"]
    [edit] = [f for f in app.fns.values() if (shift, "input") in f.targets]
    assert patch in [o._id for o in edit.outputs]
    assert not {ids["gap-curve"], ids["gap-hist"], ids["gap-projection"]} - {o._id for o in edit.outputs}
    [apply] = [f for f in app.fns.values() if (patch, "change") in f.targets]
    assert apply.fn is None and apply.js == gap_tab.PLOT_PATCH_JS and "Plotly.react" in apply.js
    [run] = [f for f in app.fns.values() if f.api_name == "gap"]
    assert patch in [o._id for o in run.outputs]
