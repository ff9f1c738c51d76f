"""Modality-gap measures, the shift along the gap, 2-D projections, caption sources and the gap CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.inputs.captions import CaptionError, labels_of_images, match_csv_captions, sidecar_captions
from explorer.science.gap import (
    ProjectionError,
    evaluate_shift,
    gap_measures,
    gap_vector,
    matched_ranks,
    project_2d,
    shift_along_gap,
)
from tests.shapes import CLASSES, caption, make_labelled_folder


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def two_cones(n=40, m=30, d=16, seed=0):
    """Images and texts in two separated cones, like CLIP's; text j matches images with matches == j."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(m, d))
    img_offset, txt_offset = rng.normal(size=d) * 2, rng.normal(size=d) * 2
    matches = rng.integers(0, m, size=n)
    matches[::7] = -1
    img = unit(shared[np.maximum(matches, 0)] + 0.5 * rng.normal(size=(n, d)) + img_offset)
    txt = unit(shared + txt_offset)
    return img, txt, matches


def test_measures_equal_direct_numpy_computation():
    img, txt, matches = two_cones()
    g = gap_measures(img, txt, matches)
    x, y = img.astype(np.float64), txt.astype(np.float64)
    gap = x.mean(0) - y.mean(0)
    np.testing.assert_allclose(g.gap_vector, gap, atol=1e-6)
    assert g.gap_length == pytest.approx(np.linalg.norm(gap), abs=1e-6)
    ii, tt = x @ x.T, y @ y.T
    assert g.mean_cos_image_image == pytest.approx(ii[~np.eye(len(x), dtype=bool)].mean(), abs=1e-6)
    assert g.mean_cos_text_text == pytest.approx(tt[~np.eye(len(y), dtype=bool)].mean(), abs=1e-6)
    cross = x @ y.T
    matched = np.zeros_like(cross, dtype=bool)
    rows = np.nonzero(matches >= 0)[0]
    matched[rows, matches[rows]] = True
    assert g.n_matched == len(rows)
    assert g.mean_cos_matched == pytest.approx(cross[matched].mean(), abs=1e-6)
    assert g.mean_cos_unmatched == pytest.approx(cross[~matched].mean(), abs=1e-6)
    # Wang & Isola: alignment E||f(x)-g(y)||^2 over pairs, uniformity log E exp(-2||u-v||^2) over i<j.
    assert g.alignment == pytest.approx(np.mean(np.sum((x[rows] - y[matches[rows]]) ** 2, axis=1)), abs=1e-6)
    iu = np.triu_indices(len(x), k=1)
    sq = np.sum((x[:, None] - x[None]) ** 2, axis=-1)[iu]
    assert g.uniformity_image == pytest.approx(np.log(np.mean(np.exp(-2 * sq))), abs=1e-5)
    sq_t = np.sum((y[:, None] - y[None]) ** 2, axis=-1)[np.triu_indices(len(y), k=1)]
    assert g.uniformity_text == pytest.approx(np.log(np.mean(np.exp(-2 * sq_t))), abs=1e-5)
    # Histograms count every pair once.
    assert g.histograms["image-image"].counts.sum() == len(x) * (len(x) - 1) // 2
    assert g.histograms["matched"].counts.sum() == len(rows)
    assert g.histograms["unmatched"].counts.sum() == (~matched).sum()
    assert g.mean_cos_matched > g.mean_cos_unmatched  # how the data was built


def test_gap_is_zero_when_both_sides_are_the_same_set():
    img, _, _ = two_cones()
    g = gap_measures(img, img.copy())
    assert g.gap_length == pytest.approx(0.0, abs=1e-7)
    assert g.mean_cos_image_image == pytest.approx(g.mean_cos_text_text, abs=1e-6)
    shifted_img, shifted_txt = shift_along_gap(img, img, 0.7)
    np.testing.assert_allclose(shifted_img, img, atol=1e-6)  # nothing to close


def test_means_stay_exact_when_pairwise_statistics_are_sampled():
    img, txt, matches = two_cones(n=300, m=250, d=8, seed=1)
    g = gap_measures(img, txt, matches, max_pair_points=100)
    assert g.pair_sample == {"images": 100, "texts": 100}
    assert g.histograms["image-image"].n == 100 * 99 // 2
    x = img.astype(np.float64)
    ii = x @ x.T
    assert g.mean_cos_image_image == pytest.approx(ii[~np.eye(len(x), dtype=bool)].mean(), abs=1e-6)
    assert json.loads(json.dumps(g.as_dict()))["pair_sample"]["images"] == 100


def test_shift_follows_the_formula_and_closes_the_gap():
    img, txt, matches = two_cones(seed=2)
    gap = gap_vector(img, txt)
    lengths = []
    for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
        a, b = shift_along_gap(img, txt, lam)
        np.testing.assert_allclose(a, unit(img - lam / 2 * gap), atol=1e-6)
        np.testing.assert_allclose(b, unit(txt + lam / 2 * gap), atol=1e-6)
        # Before renormalising, the centroids are |1 - lam| * |gap| apart.
        before = (img - lam / 2 * gap).mean(0) - (txt + lam / 2 * gap).mean(0)
        assert np.linalg.norm(before) == pytest.approx(abs(1 - lam) * np.linalg.norm(gap), rel=1e-5, abs=1e-6)
        lengths.append(gap_measures(a, b).gap_length)
    assert lengths[0] == pytest.approx(np.linalg.norm(gap), abs=1e-6)
    assert all(later < earlier for earlier, later in zip(lengths, lengths[1:]))
    points = evaluate_shift(img, txt, [0.0, 0.5, 1.0], matches)
    assert [p.gap_length for p in points] == pytest.approx([lengths[0], lengths[2], lengths[4]], abs=1e-6)
    assert points[0].queries == int((matches >= 0).sum())


def test_matched_ranks_count_texts_scoring_higher():
    rng = np.random.default_rng(3)
    img, txt = unit(rng.normal(size=(20, 6))), unit(rng.normal(size=(9, 6)))
    matches = rng.integers(-1, 9, size=20)
    ranks = matched_ranks(img, txt, matches)
    sims = img @ txt.T
    expected = [1 + int((sims[i] > sims[i, matches[i]]).sum()) for i in range(20) if matches[i] >= 0]
    assert ranks.tolist() == expected
    point = evaluate_shift(img, txt, [0.0], matches)[0]
    assert point.mean_rank == pytest.approx(np.mean(expected))
    assert point.recall_at_1 == pytest.approx(np.mean(np.array(expected) == 1))


def test_pca_projection_equals_numpy_svd():
    img, txt, _ = two_cones(n=50, m=20, d=10, seed=4)
    p = project_2d(img, txt, "pca")
    joint = np.concatenate([img, txt]).astype(np.float64)
    centred = joint - joint.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    ref = centred @ vt[:2].T
    got = np.concatenate([p.xy_image, p.xy_text])
    for axis in range(2):  # PCA axes are defined up to sign
        assert min(np.abs(got[:, axis] - ref[:, axis]).max(),
                   np.abs(got[:, axis] + ref[:, axis]).max()) < 1e-4
    np.testing.assert_allclose(p.explained_variance, (s[:2] ** 2 / (s ** 2).sum()), atol=1e-5)
    np.testing.assert_allclose(p.centroid_image, p.xy_image.mean(0), atol=1e-6)
    assert not p.sampled and p.sample_size == 70
    # Deterministic: same data, same picture.
    np.testing.assert_array_equal(project_2d(img, txt, "pca").xy_image, p.xy_image)


def test_projection_samples_large_sets_and_keeps_pairs():
    rng = np.random.default_rng(5)
    img, classes = unit(rng.normal(size=(8000, 8))), unit(rng.normal(size=(24, 8)))
    p = project_2d(img, classes, max_points=1000)
    assert p.sampled and p.sample_size == 1000 and p.total_points == 8024
    assert len(p.text_indices) == 24  # a few class texts are always all drawn
    caps = unit(rng.normal(size=(3000, 8)))
    pairs = np.arange(3000)
    p = project_2d(img[:3000], caps, matches=pairs, max_points=1000)
    a, b = p.pair_lines(pairs)
    assert len(p.image_indices) == 500 and len(a) == 500  # every drawn image has its caption drawn
    np.testing.assert_array_equal(p.text_indices, p.image_indices)


def test_bad_inputs_get_clear_errors():
    img, txt, matches = two_cones()
    with pytest.raises(ValueError, match="differ in size"):
        gap_measures(img, txt[:, :8])
    with pytest.raises(ValueError, match="matches has"):
        gap_measures(img, txt, matches[:-1])
    with pytest.raises(ValueError, match="text indices"):
        gap_measures(img, txt, np.full(len(img), len(txt)))
    with pytest.raises(ProjectionError, match="unknown projection"):
        project_2d(img, txt, "tsne")


def test_umap_missing_is_a_clear_error(monkeypatch):
    import sys

    from explorer.science import gap

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    monkeypatch.setattr(gap, "_UMAP_CACHE", type(gap._UMAP_CACHE)(4))
    img, txt, _ = two_cones()
    with pytest.raises(ProjectionError, match="umap-learn"):
        project_2d(img, txt, "umap")


@pytest.mark.timeout(300)
def test_umap_projection_separates_the_cones_and_is_cached():
    pytest.importorskip("umap")
    import time

    img, txt, _ = two_cones()
    start = time.perf_counter()
    first = project_2d(img, txt, "umap")
    cold = time.perf_counter() - start
    assert first.xy_image.shape == (len(img), 2) and np.isfinite(first.xy_image).all()
    # two cones far apart on the sphere stay apart in the map: centroid distance beats the spread
    spread = np.linalg.norm(first.xy_image - first.xy_image.mean(0), axis=1).mean()
    assert np.linalg.norm(first.xy_image.mean(0) - first.xy_text.mean(0)) > spread
    start = time.perf_counter()
    again = project_2d(img, txt, "umap")
    assert time.perf_counter() - start < cold / 5  # served from the cache
    np.testing.assert_array_equal(again.xy_image, first.xy_image)
    fewer = project_2d(img[:25], txt, "umap")  # other data: a map of its own, never the cached one
    assert fewer.xy_image.shape == (25, 2) and not np.array_equal(fewer.xy_text, first.xy_text)


def test_gap_figures_build_from_measures():
    from explorer.app import plots

    img, txt, matches = two_cones()
    g = gap_measures(img, txt, matches)
    fig = plots.gap_histograms(g.histograms)
    assert len(fig.data) == 4
    p = project_2d(img, txt, matches=matches, max_points=50)
    fig = plots.gap_projection(p, [f"img{i}" for i in range(len(img))], [f"txt{j}" for j in range(len(txt))],
                               p.pair_lines(matches))
    assert "sample of 50 of 70" in fig.layout.title.text
    fig = plots.shift_curve(evaluate_shift(img, txt, [0, 0.5, 1], matches), current=0.5)
    assert len(fig.data) == 2


# ---- caption sources --------------------------------------------------------------------------
def test_caption_csv_matches_every_way_a_row_can_name_an_image(tmp_path):
    for sub in ("sub", "deep", "other"):
        (tmp_path / "imgs" / sub).mkdir(parents=True)
    images = [tmp_path / "imgs" / n for n in ("a.png", "b.png", "c.png", "sub/d.png", "deep/e.png")]
    for image in images:
        image.write_bytes(b"x")
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("caption,path\n"
                        "a red  circle,imgs/a.png\n"          # relative to the CSV's folder
                        ",imgs/b.png\n"                        # empty caption
                        "a ghost,imgs/missing.png\n"           # no such image
                        "again,imgs/a.png\n"                   # listed twice
                        f"absolute one,{images[2]}\n"          # absolute
                        "in a folder,sub/d.png\n"              # relative to the image folder
                        "by name,e.png\n", encoding="utf-8")   # a bare, unique file name
    caps = match_csv_captions(csv_file, images, root=tmp_path / "imgs")
    assert [caps.caption_of(i)
            for i in images] == ["a red circle", None, "absolute one", "in a folder", "by name"]
    assert any("line 3" in p and "empty caption" in p for p in caps.problems)
    assert any("line 4" in p and "matches none of the images" in p for p in caps.problems)
    assert any("line 5" in p and "first caption is kept" in p for p in caps.problems)
    # A bare name shared by two images is ambiguous: neither gets the caption.
    twin = tmp_path / "imgs" / "other" / "e.png"
    twin.write_bytes(b"x")
    assert match_csv_captions(csv_file, images + [twin], root=tmp_path / "imgs").caption_of(images[4]) is None


def test_caption_csv_without_header_or_file_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,a cat\n")
    with pytest.raises(CaptionError, match="path,caption"):
        match_csv_captions(bad, [])
    with pytest.raises(CaptionError, match="not found"):
        match_csv_captions(tmp_path / "nope.csv", [])


def test_sidecar_captions_and_folder_labels(tmp_path):
    for name, text in (("one", "a blue square\n"), ("two", "   "), ("three", None)):
        (tmp_path / f"{name}.png").write_bytes(b"x")
        if text is not None:
            (tmp_path / f"{name}.txt").write_text(text)
    images = [tmp_path / f"{n}.png" for n in ("one", "two", "three")]
    caps = sidecar_captions(images)
    assert caps.caption_of(images[0]) == "a blue square"
    assert len(caps) == 1 and len(caps.problems) == 2
    assert labels_of_images(
        ["x/a_red_circle/0.png", "x/Blue-Square/1.png", "x/other/2.png", "x/red_circle_3.png"],
        ["red circle", "blue square"]) == [0, 1, -1, 0]


# ---- with the project's shapes model ------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    classes = CLASSES[::3]  # 8 classes
    make_labelled_folder(root, classes, n_per_class=4, size=32, seed=7)
    return root, classes


def test_shapes_model_matched_pairs_beat_unmatched_and_shift_obeys_formula(shapes_model, shapes_folder):
    from explorer.inputs.sources import embed_folder

    root, classes = shapes_folder
    found = embed_folder(shapes_model, root, labelled=False)
    assert not found.failures
    img = found.embeddings
    texts = [caption(c, s) for c, s in classes]
    txt = shapes_model.encode_texts(texts)
    matches = np.array(labels_of_images(found.paths, texts))
    assert (matches >= 0).all()
    g = gap_measures(img, txt, matches)
    assert g.mean_cos_matched > g.mean_cos_unmatched
    assert g.gap_length > 0.05  # a trained CLIP has a gap
    gap = gap_vector(img, txt)
    for lam in (0.5, 1.0):
        a, b = shift_along_gap(img, txt, lam)
        expected = np.linalg.norm(unit(img - lam / 2 * gap).mean(0) - unit(txt + lam / 2 * gap).mean(0))
        assert gap_measures(a, b, matches).gap_length == pytest.approx(expected, abs=1e-5)
        assert gap_measures(a, b, matches).gap_length < g.gap_length


def test_gap_cli_prints_measures_as_json(shapes_model_dir, shapes_folder, capsys):
    from explorer.cli import main

    root, classes = shapes_folder
    labels = ",".join(f"{c} {s}" for c, s in classes)
    code = main(["gap", "--images", str(root), "--labels", labels, "--templates", str(_plain_template(root)),
                 "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    m = out["measures"]
    assert m["n_images"] == 32 and m["n_texts"] == 8 and m["n_matched"] == 32
    assert m["mean_cos_matched"] > m["mean_cos_unmatched"]
    assert [p["lam"] for p in out["shift"]] == [0, 0.25, 0.5, 0.75, 1]
    assert out["shift"][0]["gap_length"] == pytest.approx(m["gap_length"], abs=1e-5)
    assert out["projection"]["sample_size"] == 40


def test_gap_cli_with_captions_csv_reports_missing_rows(shapes_model_dir, shapes_folder, tmp_path, capsys):
    from explorer.cli import main

    root, classes = shapes_folder
    rows = ["path,caption"]
    for color, shape in classes:
        rows.append(f"{root}/{caption(color, shape).replace(' ', '_')}/0.png,{caption(color, shape)}")
    rows.append("nowhere.png,a lost caption")
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    code = main(["gap", "--images", str(root), "--captions", str(csv_file), "--projection", "none",
                 "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # some rows and images had no caption: partial
    assert out["measures"]["n_texts"] == 8 and out["measures"]["n_matched"] == 8
    assert any("matches none of the images" in p for p in out["problems"])
    assert any("24 of 32 images have no caption" in p for p in out["problems"])
    assert out["shift_readout"] == "matched-caption retrieval"


def test_gap_cli_refuses_bad_input_before_loading(tmp_path, capsys):
    from explorer.cli import main

    code = main(["gap", "--images", str(tmp_path), "--captions", str(tmp_path / "none.csv")])
    assert code == 2
    assert "caption file not found" in capsys.readouterr().err


def _plain_template(root):
    path = root.parent / "plain_template.txt"
    path.write_text("a {}\n")
    return path


def test_gap_cli_reads_embeddings_from_an_index(shapes_model, shapes_model_dir, shapes_folder, tmp_path,
                                                capsys):
    pytest.importorskip("faiss")
    from explorer.cli import main
    from explorer.index.build import build_index

    root, classes = shapes_folder
    build_index(shapes_model, root, tmp_path / "idx", workers=0)
    labels = ",".join(f"{c} {s}" for c, s in classes)
    args = ["gap", "--labels", labels, "--templates", str(_plain_template(root)), "--projection", "none",
            "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"]
    assert main(args[:1] + ["--images", str(root)] + args[1:]) == 0
    from_folder = json.loads(capsys.readouterr().out)["measures"]
    assert main(args[:1] + ["--index", str(tmp_path / "idx")] + args[1:]) == 0
    from_index = json.loads(capsys.readouterr().out)["measures"]
    assert from_index["n_images"] == from_folder["n_images"] == 32
    for key in ("gap_length", "mean_cos_matched", "mean_cos_unmatched", "uniformity_image"):
        assert from_index[key] == pytest.approx(from_folder[key], abs=1e-4)


def test_umap_cache_is_keyed_by_the_data(monkeypatch):
    """Same shape, other data (here the same images in another order): a new map, never the cached one.
    A stand-in for umap-learn keeps this fast; the real one is exercised above."""
    import sys
    import types

    from explorer.science import gap

    runs = []

    class StandIn:
        def __init__(self, **kwargs):
            pass

        def fit_transform(self, x):
            runs.append(len(x))
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=StandIn))
    monkeypatch.setattr(gap, "_UMAP_CACHE", type(gap._UMAP_CACHE)(4))
    img, txt, _ = two_cones()
    first = project_2d(img, txt, "umap")
    again = project_2d(img, txt, "umap")
    assert len(runs) == 1 and np.array_equal(again.xy_image, first.xy_image)  # served from the cache
    reordered = project_2d(img[::-1].copy(), txt, "umap")
    assert len(runs) == 2
    np.testing.assert_allclose(reordered.xy_image, first.xy_image[::-1], atol=1e-6)


def test_a_bare_name_that_two_rows_share_names_no_image(tmp_path):
    """Uploaded files keep their names, not their folders: a CSV written for cats/1.png and dogs/1.png
    cannot say which of them an uploaded 1.png is."""
    upload = tmp_path / "upload"
    upload.mkdir()
    one, two = upload / "1.png", upload / "2.png"
    for image in (one, two):
        image.write_bytes(b"x")
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("path,caption\ncats/1.png,a cat\ndogs/1.png,a dog\ncats/2.png,another cat\n")
    caps = match_csv_captions(csv_file, [one, two], root=upload)
    assert caps.caption_of(one) is None and caps.caption_of(two) == "another cat"
    assert sum("matches none of the images" in p for p in caps.problems) == 2


def test_file_name_labels_prefer_the_longest_matching_label():
    labels = ["red", "red circle", "circle"]
    paths = ["x/red_circle_3.png", "x/red_7.png", "x/circle.png", "x/red_square_1.png", "x/Red-Circle.png"]
    assert labels_of_images(paths, labels) == [1, 0, 2, 0, 1]


class _UmapStandIn:
    """umap.UMAP as far as _umap_2d uses it, recording every map it is asked to make."""
    made: list = []

    def __init__(self, **settings):
        self.settings = settings

    def fit_transform(self, x):
        _UmapStandIn.made.append(dict(self.settings))
        shift = 0.01 * self.settings["random_state"] + 0.001 * self.settings["n_neighbors"]
        return np.asarray(x, dtype=np.float64)[:, :2] + shift


@pytest.fixture
def umap_stand_in(monkeypatch):
    import sys
    import types

    from explorer.science import gap

    _UmapStandIn.made = []
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_UmapStandIn))
    monkeypatch.setattr(gap, "_UMAP_CACHE", type(gap._UMAP_CACHE)(16))
    return _UmapStandIn.made


def test_umap_cache_is_keyed_by_every_setting(umap_stand_in):
    """Same data, another seed or another neighbour count: a map of its own; the same settings: the
    cached one. A neighbour count that UMAP would cut to the same value is the same map."""
    from explorer.science.gap import _umap_2d

    img, txt, _ = two_cones()
    first = project_2d(img, txt, "umap")
    assert np.array_equal(project_2d(img, txt, "umap").xy_image, first.xy_image) and len(umap_stand_in) == 1
    by_seed = project_2d(img, txt, "umap", seed=1)
    by_neighbours = project_2d(img, txt, "umap", n_neighbors=5)
    assert len(umap_stand_in) == 3
    assert not np.array_equal(by_seed.xy_image, first.xy_image)
    assert not np.array_equal(by_neighbours.xy_image, first.xy_image)
    assert [m["random_state"] for m in umap_stand_in] == [0, 1, 0]
    assert [m["n_neighbors"] for m in umap_stand_in] == [15, 15, 5]
    total = len(img) + len(txt)
    project_2d(img, txt, "umap", n_neighbors=total + 5)
    project_2d(img, txt, "umap", n_neighbors=total + 50)   # both cut to total - 1: one map
    assert len(umap_stand_in) == 4 and umap_stand_in[-1]["n_neighbors"] == total - 1
    x = np.ascontiguousarray(np.concatenate([img, txt]))
    _umap_2d(x, 0, 15)
    _umap_2d(x, 0, 15)
    _umap_2d(x.view(np.int32), 0, 15)   # the same bytes and shape read as another dtype: other data
    assert len(umap_stand_in) == 6


def test_gap_run_keeps_a_map_per_projection_setting(umap_stand_in):
    """GapRun.projection's kept maps are keyed by method, max_points, seed and (UMAP) n_neighbors, and
    each equals project_2d called with those settings; shifted maps sample what their base sampled."""
    from explorer.inputs.sources import Embedded
    from explorer.science.gap_run import GapTexts, run_gap

    img, txt, matches = two_cones(n=40, m=30)
    names = [f"{i}.png" for i in range(len(img))]
    run = run_gap(Embedded(names, names, img), GapTexts("labels", [f"t{i}" for i in range(len(txt))], txt,
                                                        matches))
    maps = {seed: run.projection("pca", max_points=20, seed=seed) for seed in (0, 1)}
    assert not np.array_equal(maps[0].image_indices, maps[1].image_indices)
    for seed, proj in maps.items():
        direct = project_2d(img, txt, "pca", matches=matches, max_points=20, seed=seed)
        assert np.array_equal(proj.image_indices, direct.image_indices)
        np.testing.assert_allclose(proj.xy_image, direct.xy_image, atol=1e-6)
        moved = run.projection("pca", 0.5, max_points=20, seed=seed)
        assert np.array_equal(moved.image_indices, proj.image_indices)
    assert run.projection("pca", max_points=20, seed=1) is maps[1]
    assert run.projection("pca", max_points=30, seed=1) is not maps[1]
    umaps = [run.projection("umap"), run.projection("umap", n_neighbors=5), run.projection("umap", seed=2)]
    assert len(umap_stand_in) == 3 and run.projection("umap", n_neighbors=5) is umaps[1]
    assert not np.array_equal(umaps[0].xy_image, umaps[1].xy_image)
    assert not np.array_equal(umaps[0].xy_image, umaps[2].xy_image)
