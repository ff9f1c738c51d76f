"""Box and lasso selection on the Modality gap tab's joint map: every drawn point carries an id into the
run's images ("i3") or texts ("t0"); the ids a selection sends back are listed as the run's images and
texts, and ids from anyone else (the hosted API) cannot reach past the run or flood the page."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from explorer.app import plots
from explorer.app.ui import gap_tab
from explorer.inputs.sources import Embedded
from explorer.science.gap_run import GapTexts, run_gap


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def small_run(n=6, m=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"img_{i}.png" for i in range(n)]
    images = Embedded(names, [Path("/nowhere") / name for name in names], unit(rng.normal(size=(n, d)) + 2))
    matches = np.arange(n) % m
    texts = GapTexts("labels", ["red <circle>", "blue square", "green triangle"][:m],
                     unit(rng.normal(size=(m, d)) - 2), matches)
    return run_gap(images, texts)


class FakeContext:
    """Only what selection_view uses: which paths may be read, and their previews (counted)."""

    def __init__(self, servable=True):
        self.made = []
        self.thumbnails = SimpleNamespace(
            data_uri=lambda p: self.made.append(p) or f"data:image/jpeg;base64,{p.name}")
        self._servable = servable

    def servable(self, path):
        return self._servable


def test_every_drawn_point_carries_its_id_and_the_map_offers_box_and_lasso():
    run = small_run()
    fig, _ = gap_tab.projection_view(run, next(iter(gap_tab.PROJECTIONS)))
    traces = {t.name.split(" (")[0]: t for t in fig.data}
    assert list(traces["images"].ids) == [f"i{i}" for i in range(6)]
    assert list(traces["texts"].ids) == ["t0", "t1", "t2"]
    assert traces["image centroid"].ids is None and traces["matched pairs"].ids is None
    assert {"select2d", "lasso2d"} <= set(fig.layout.modebar.add)


def test_sampled_maps_name_the_full_arrays():
    """With a sample drawn, the ids still index the run's arrays, not the sample."""
    run = small_run(n=40)
    proj = run.projection("pca", max_points=12)
    assert proj.sampled
    fig = plots.gap_projection(proj, run.images.names, run.texts.texts)
    images = next(t for t in fig.data if t.name.startswith("images"))
    assert list(images.ids) == [f"i{int(i)}" for i in proj.image_indices]
    assert list(images.text) == [run.images.names[int(i)] for i in proj.image_indices]


def test_selected_ids_map_to_the_runs_images_and_texts():
    run = small_run()
    assert gap_tab.selected_items(run, "i4,t1,i0,i4,t1, i2") == ([4, 0, 2], [1])
    ctx = FakeContext()
    thumbnails = ["data:image/jpeg;base64,AAA", None]   # the run's hover previews: reused, not remade
    html = gap_tab.selection_view(ctx, run, "i1,i4,t0,t2", thumbnails)
    assert "2 images and 2 texts selected" in html
    assert html.index("img_1.png") < html.index("img_4.png")
    assert "data:image/jpeg;base64,AAA" not in html                      # image 0 was not selected
    assert "base64,img_4.png" in html and ctx.made == [run.images.paths[4]]
    assert "red &lt;circle&gt;" in html and "green triangle" in html and "blue square" not in html
    assert "1 image and 1 text selected" in gap_tab.selection_view(ctx, run, "i3,t1")


def test_hostile_ids_are_ignored_and_counts_capped(monkeypatch):
    run = small_run()
    ctx = FakeContext(servable=False)
    hint = gap_tab.selection_view(ctx, run, "")
    for junk in ("i6", "t3", "i-1", "x1", "i", "i1e3", "i٣", "i99999999999999999999", "t1.0", "<script>",
                 None, 7, ["i1"], ",,,"):
        assert gap_tab.selected_items(run, junk) == ([], []), junk
        assert gap_tab.selection_view(ctx, run, junk) == hint
    assert gap_tab.selection_view(ctx, None, "i1") == hint            # no run yet
    assert gap_tab.selected_items(run, "i6,i5,t9,t2") == ([5], [2])
    assert "1 image and 1 text selected" in gap_tab.selection_view(ctx, run, "i6,i5,t9,t2")
    assert ctx.made == []  # a path this app may not read: no preview

    big = small_run(n=300)
    monkeypatch.setattr(gap_tab, "SHOWN_IMAGES", 10)
    huge = ",".join(f"i{i % 300}" for i in range(200_000)) + ",t0"
    images, texts = gap_tab.selected_items(big, huge)
    assert images == list(range(300)) and texts == []                 # read up to MAX_SELECTED ids, no more
    html = gap_tab.selection_view(ctx, big, huge)
    assert "300 images and 0 texts selected (showing the first 10 images)" in html
    assert html.count("<figure") == 10
