"""The folder map's layout: PCA exact, UMAP seeded, the disk cache beside the index, new points placed
into a stored map (old points keep their coordinates, new ones land by their neighbours), refits when
too much is new, and the background job that can be cancelled for real."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from explorer.science import map_layout as ml
from explorer.science.gap import fit_pca
from explorer.science.map_layout import (
    Layout,
    LayoutCancelled,
    LayoutJob,
    cached_layout,
    fit_layout,
    map_of_index,
    map_path,
    place_points,
)

N_CLUSTERS = 4


def clusters(n: int, seed: int = 0, dim: int = 32, centres_seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors in N_CLUSTERS tight, well-separated cones, and their cluster labels."""
    centres = np.random.default_rng(centres_seed).normal(size=(N_CLUSTERS, dim))
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLUSTERS
    x = centres[labels] + 0.25 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def fake_index(folder: Path, digest: str = "w1") -> SimpleNamespace:
    return SimpleNamespace(folder=folder, identity={"name": "test", "embed_dim": 32}, weights_digest=digest)


def names_of(n: int, start: int = 0) -> list[str]:
    return [f"img/{i:04d}.jpg" for i in range(start, start + n)]


class Counted:
    """fit_layout, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return fit_layout(*args, **kwargs)


def test_pca_is_exact_and_signed_like_the_gap_maps():
    x, _ = clusters(300, dim=16)
    xy = fit_layout(x, "pca")
    expected = fit_pca(x)(x)  # gap.py's float64 PCA, same sign rule
    assert xy.dtype == np.float32 and xy.shape == (300, 2)
    np.testing.assert_allclose(xy, expected, atol=1e-4)


def test_umap_is_seeded_and_keeps_clusters_apart():
    pytest.importorskip("umap")
    x, labels = clusters(200)
    epochs = []
    first = fit_layout(x, "umap", progress=lambda done, total: epochs.append((done, total)))
    assert np.array_equal(first, fit_layout(x, "umap"))           # same inputs, same coordinates
    assert epochs and epochs[-1][0] == epochs[-1][1]                # epochs reported to the end
    d = np.linalg.norm(first[:, None] - first[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95            # 2-D neighbours share a cluster


def test_umap_stops_between_epochs_when_asked(tmp_path):
    pytest.importorskip("umap")
    x, _ = clusters(200)
    seen = []
    with pytest.raises(LayoutCancelled):
        map_of_index(fake_index(tmp_path), names_of(200), x, "umap",
                     progress=lambda done, total: seen.append(done), should_stop=lambda: bool(seen))
    assert seen and seen[-1] < 500
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())  # nothing written


def test_tiny_umap_falls_back_to_pca():
    x, _ = clusters(3)
    np.testing.assert_allclose(fit_layout(x, "umap"), fit_layout(x, "pca"))
    assert fit_layout(x[:0], "pca").shape == (0, 2)


def test_map_is_cached_on_disk_per_model_and_settings(tmp_path):
    x, _ = clusters(120)
    names = names_of(120)
    index, fitter = fake_index(tmp_path), Counted()
    first = map_of_index(index, names, x, "umap", fitter=fitter)
    assert first.source == "fitted" and first.fitted == 120 and first.placed == 0 and fitter.calls == 1
    assert map_path(index, "umap", ml.layout_settings("umap")).is_file()
    again = map_of_index(index, names, x, "umap", fitter=fitter)
    assert fitter.calls == 1 and again.source == "cache" and np.array_equal(again.xy, first.xy)
    shown = cached_layout(index, "umap")
    assert shown.names == names and np.array_equal(shown.xy, first.xy)
    assert cached_layout(index, "umap", n_neighbors=5) is None            # other settings: no map yet
    assert cached_layout(fake_index(tmp_path, digest="w2"), "umap") is None  # other weights: no map yet
    reordered = map_of_index(index, names[::-1], x[::-1], "umap", fitter=fitter)
    assert fitter.calls == 1 and np.array_equal(reordered.xy, first.xy[::-1])   # rows follow the names
    doc = first.as_dict()
    assert doc["xy"][0] == [round(float(v), 4) for v in first.xy[0]] and doc["method"] == "umap"


def test_new_points_are_placed_by_their_neighbours_and_old_ones_stay(tmp_path):
    x, labels = clusters(200)
    index, fitter = fake_index(tmp_path), Counted()
    base = map_of_index(index, names_of(200), x, "umap", fitter=fitter)
    extra, extra_labels = clusters(20, seed=1)              # the same four clusters, new points
    grown = map_of_index(index, names_of(200) + names_of(20, start=500), np.concatenate([x, extra]),
                         "umap", fitter=fitter)
    assert fitter.calls == 1 and grown.source == "placed" and grown.placed == 20 and grown.fitted == 200
    assert np.array_equal(grown.xy[:200], base.xy)                      # old points keep their places
    new_xy = grown.xy[200:]
    nearest_old = np.linalg.norm(new_xy[:, None] - base.xy[None], axis=2).argmin(1)
    assert (labels[nearest_old] == extra_labels).all()                   # each lands in its own cluster
    spread = np.linalg.norm(base.xy - base.xy.mean(0), axis=1).mean()
    own_centres = np.stack([base.xy[labels == c].mean(0) for c in extra_labels])
    assert np.linalg.norm(new_xy - own_centres, axis=1).max() < spread   # near its cluster's points
    # one removed, one re-embedded with other content: dropped, and placed again
    names = names_of(200)[1:] + names_of(20, start=500)
    changed = np.concatenate([x[1:], extra])
    changed[0] = x[150]
    shrunk = map_of_index(index, names, changed, "umap", fitter=fitter)
    assert fitter.calls == 1 and len(shrunk.names) == 219 and shrunk.placed == 21
    assert np.array_equal(shrunk.xy[1:199], base.xy[2:])
    assert np.linalg.norm(shrunk.xy[0] - base.xy[150]) < 0.2 * spread   # placed where its twin is


def test_refit_when_too_much_is_new(tmp_path):
    x, _ = clusters(160)
    index, fitter = fake_index(tmp_path), Counted()
    map_of_index(index, names_of(100), x[:100], "umap", fitter=fitter)
    grown = map_of_index(index, names_of(160), x, "umap", fitter=fitter)  # 60 of 160 new: over 20%
    assert fitter.calls == 2 and grown.source == "fitted" and grown.fitted == 160 and grown.placed == 0


def test_pca_places_new_points_on_its_stored_axes(tmp_path):
    x, _ = clusters(110)
    index = fake_index(tmp_path)
    base = map_of_index(index, names_of(100), x[:100], "pca")
    grown = map_of_index(index, names_of(110), x, "pca")
    assert grown.source == "placed" and np.array_equal(grown.xy[:100], base.xy)
    np.testing.assert_allclose(grown.xy[100:], fit_pca(x[:100])(x[100:]), atol=1e-4)


def test_a_damaged_map_file_is_refitted(tmp_path):
    x, _ = clusters(50)
    index = fake_index(tmp_path)
    first = map_of_index(index, names_of(50), x, "pca")
    path = map_path(index, "pca", {})
    path.write_bytes(b"not a map")
    assert cached_layout(index, "pca") is None
    again = map_of_index(index, names_of(50), x, "pca")
    assert again.source == "fitted" and np.allclose(again.xy, first.xy)
    assert [p.name for p in path.parent.iterdir()] == [path.name]        # no temp files left


def test_place_points_is_umap_transforms_initialisation():
    """Transcription check against umap-learn itself: its transform's graph (transform_mode="graph")
    through its init_graph_transform gives the same coordinates as place_points."""
    umap = pytest.importorskip("umap")
    from umap.umap_ import init_graph_transform
    anchors, _ = clusters(60)
    new, _ = clusters(12, seed=3)
    new[0] = anchors[5]                                   # a duplicate: strength 1, sits on its anchor
    model = umap.UMAP(n_neighbors=8, metric="cosine", random_state=0).fit(anchors)
    model.transform_mode = "graph"                        # transform stops at the graph
    graph = model.transform(new).tocsr()
    graph.eliminate_zeros()
    theirs = init_graph_transform(graph, model.embedding_)
    ours = place_points(anchors, model.embedding_, new, k=8)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    np.testing.assert_allclose(ours[0], model.embedding_[5], atol=1e-6)


def test_layout_job_in_a_worker_runs_and_cancels(tmp_path):
    pytest.importorskip("umap")
    x, _ = clusters(200)
    index = fake_index(tmp_path)
    job = LayoutJob(index, names_of(200), x, "umap").start()
    job.wait(timeout=1.5)
    job.cancel()
    stopped_at = time.monotonic()
    assert job.wait(timeout=10) and time.monotonic() - stopped_at < 5
    assert job.cancelled and job.result is None and job.status() == (0.0, "cancelled")
    assert not (tmp_path / "maps").exists()
    job = LayoutJob(index, names_of(200), x, "umap").start()
    fractions = []
    while not job.wait(timeout=0.2):
        fractions.append(job.status()[0])
    assert job.error is None and isinstance(job.result, Layout), job.error
    assert job.status()[0] == 1.0 and any(0.3 < f < 1.0 for f in fractions)
    here = map_of_index(fake_index(tmp_path / "here"), names_of(200), x, "umap")
    assert np.array_equal(job.result.xy, here.xy)                        # the worker fits as in process
    assert cached_layout(index, "umap") is not None
