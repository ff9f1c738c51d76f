"""The Map tab's words (explorer/app/ui/map_words.py): a vocabulary typed into the tab names the
clusters, the selection and single images (SpLiCE), is never written to the disk cache, and an image's
words are found on a click, then shown at once on hover; the outliers list shows the few that stand
apart, not every image of a small folder."""
from __future__ import annotations

import pytest

from explorer.app import words as kept
from explorer.app.ui import map_tab, map_words
from explorer.embed.cache import LRU
from explorer.science import folder_map
from tests.test_map_tab import _folder, ctx, photos  # noqa: F401  (fixtures)

WORDS = "red, blue, green, yellow, circle, square, triangle, cross, dog, tree"


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """The disk cache of word vectors in a fresh folder, and no vocabulary kept in memory yet."""
    folder = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.setattr(kept, "_WORDS", LRU(kept.KEPT_WORDS))
    return folder


def test_typed_words_name_clusters_selection_and_images_and_stay_off_the_disk(ctx, xdg):  # noqa: F811
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    state, _ = map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3, vocabulary=WORDS))
    named = state.colouring.categories               # the folder's three shapes, all red: named by shape
    assert all(sum(shape in n for n in named) == 1 for shape in ("circle", "square", "triangle")), named
    circles = [n for n in state.names if n.startswith("a_red_circle")]
    html = map_tab.words_view(ctx, state, circles, WORDS)
    assert "circle" in html and "(from the words typed)" in html
    embeddings = ctx.open_index(state.index).all_embeddings()[1]
    row = state.names.index(circles[0])
    value = f"{state.seq}:{row}"
    hovered = map_words.hovered_view(ctx, state, value, WORDS)            # no SpLiCE on hover
    assert hovered == (None, f"Explain {circles[0]} in words (SpLiCE)")
    shown = map_words.explain_view(ctx, state, value, WORDS, embeddings)
    words = kept.vocabulary_words(ctx, WORDS)
    direct = folder_map.explain(words, embeddings, row, name=circles[0])
    assert f"{direct.words[0][0]} {direct.words[0][1]:.2f}" in shown and "in words (SpLiCE)" in shown
    assert direct.words[0][0] == "circle", direct.words   # all are red: the folder's mean took red away
    assert f"cosine {direct.cosine:.2f}" in shown
    assert map_words.hovered_view(ctx, state, value, WORDS)[0] == shown    # found before: shown on hover
    assert map_words.hovered_view(ctx, state, value, "")[0] is None        # another vocabulary: not these
    for bad in ("", f"{state.seq}:99", f"{state.seq + 1}:0", f"{state.seq}:0,1", "/etc/passwd", None):
        assert map_words.explain_view(ctx, state, bad, WORDS, embeddings) is None
    assert not list(xdg.rglob("*.npy"))          # a typed vocabulary is never written to the disk cache
    map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3))   # the shipped one: cached on disk
    assert list(xdg.rglob("*.npy"))


def test_clusters_are_named_again_when_the_words_change(ctx):  # noqa: F811
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    first, _ = map_tab.recolour(ctx, state, map_tab.ColourChoice("cluster", k=3, vocabulary="circle, dog"))
    again, _ = map_tab.recolour(ctx, first, map_tab.ColourChoice("cluster", k=3, vocabulary=WORDS))
    assert again.clusters is not first.clusters and again.clusters.words_key != first.clusters.words_key
    assert (again.clusters.labels == first.clusters.labels).all()


def test_the_outliers_listed_are_the_few_that_stand_apart(ctx):  # noqa: F811
    entries = [{"row": i, "score": s, "beyond": s > 0.5} for i, s in enumerate([0.9, 0.8] + [0.1] * 20)]
    shown, about = map_tab.outliers_shown(entries, 22)
    assert [e["row"] for e in shown] == [0, 1] and "the 2 of 22 images that stand clearly apart" in about
    calm = [{**e, "beyond": False} for e in entries]
    shown, about = map_tab.outliers_shown(calm, 22)
    assert len(shown) == map_tab.OUTLIERS_AT_LEAST and "none of the 22 stands clearly apart" in about
    many = [{**e, "beyond": True} for e in entries]
    assert len(map_tab.outliers_shown(many, 22)[0]) == map_tab.OUTLIERS_SHOWN
    state = map_tab.open_map(ctx, _folder(ctx), "pca", map_tab.ColourChoice()).state
    html, _ = map_tab.lists_view(ctx, state, next(iter(map_tab.TEMPLATE_CHOICES)))
    section = html.split("<h4>Outliers")[1]
    assert section.count("map-list-item") <= map_tab.OUTLIERS_SHOWN < 12 and "most isolated first" in section
