"""The folder map's core (explorer/science/folder_map.py): colours from the index's stored embeddings
(folder, zero-shot with "none of these", a taught classifier, a text or image query) read and encode no
image of the index; only texts are encoded, through the text cache, so a prompt edit recolours cheaply."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.embed import images as images_module
from explorer.index import build as index_build
from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.inputs import sources
from explorer.science import classifier_file, fewshot
from explorer.science import folder_map as fm
from explorer.science.prompts import PromptError
from explorer.science.zeroshot import build_classifier
from tests.shapes import caption, draw_shape, make_labelled_folder

CLASSES = [("red", "circle"), ("blue", "square"), ("green", "triangle")]


@pytest.fixture(autouse=True)
def word_cache(monkeypatch, tmp_path_factory):
    """Word vectors cached under the test run's folder, not the user's ~/.cache (vocabulary.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


@pytest.fixture(scope="module")
def shapes_index(shapes_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("folder_map")
    photos = base / "photos"
    make_labelled_folder(photos, CLASSES, 3, size=32, seed=3)   # 9 images in 3 class folders
    draw_shape("yellow", "cross", size=32, rng=np.random.default_rng(9)).save(photos / "loose.png")
    build_index(shapes_model, photos, base / "idx", workers=0)
    index = open_index(base / "idx")
    yield index
    index.close()


@pytest.fixture
def counted(monkeypatch, shapes_model):
    """Image decodes (wherever the decoder is imported) and image/text encodes from now on."""
    decodes: list[str] = []
    for module, name in ((images_module, "load_image"), (images_module, "prepare"), (sources, "prepare"),
                         (index_build, "prepare")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name, **k: decodes.append(name)
                            or real(*a, **k))
    start = (shapes_model.image_encodes, shapes_model.text_encodes)

    def now() -> dict:
        return {"decodes": len(decodes), "image_encodes": shapes_model.image_encodes - start[0],
                "text_encodes": shapes_model.text_encodes - start[1]}
    return now


def _stored(index):
    names, vectors = index.all_embeddings()
    return names, vectors


def test_folder_colours_follow_the_top_sub_folder(shapes_index):
    names, _ = _stored(shapes_index)
    colouring = fm.folder_colours(names)
    labels = colouring.labels()
    folders = {"a_red_circle", "a_blue_square", "a_green_triangle", fm.TOP_FOLDER}
    assert colouring.categories == sorted(folders)
    assert labels[names.index("loose.png")] == fm.TOP_FOLDER
    assert all(lab == n.split("/")[0] for lab, n in zip(labels, names) if "/" in n)


def test_zero_shot_colours_read_no_image_and_an_edit_encodes_only_its_new_text(shapes_model, shapes_index,
                                                                               counted):
    names, vectors = _stored(shapes_index)
    labels = ", ".join(caption(*c) for c in CLASSES)
    first = fm.zeroshot_colours(shapes_model, vectors, labels, ["a photo of {}.", "{}"], none_threshold=0.0)
    truth = {n: n.split("/")[0].replace("_", " ") for n in names if "/" in n}
    got = dict(zip(names, first.labels()))
    assert sum(got[n] == t for n, t in truth.items()) >= 8  # the tiny model knows its shapes
    assert counted()["decodes"] == 0 and counted()["image_encodes"] == 0
    texts = counted()["text_encodes"]
    again = fm.zeroshot_colours(shapes_model, vectors, labels, ["a photo of {}.", "{}"], none_threshold=0.0)
    assert counted()["text_encodes"] == texts  # every prompt in the text cache
    assert np.array_equal(again.codes, first.codes) and np.allclose(again.scores, first.scores)
    fm.zeroshot_colours(shapes_model, vectors, labels + ", a purple cross", ["{}"])
    assert counted()["text_encodes"] <= texts + 1 and counted()["image_encodes"] == 0
    assert counted()["decodes"] == 0


def test_none_of_these_threshold_and_its_default(shapes_model, shapes_index):
    _, vectors = _stored(shapes_index)
    labels = "a red circle, a blue square"
    everything = fm.zeroshot_colours(shapes_model, vectors, labels, None, none_threshold=1.01)
    assert (everything.codes == -1).all() and set(everything.labels()) == {fm.NONE_LABEL}
    default = fm.zeroshot_colours(shapes_model, vectors, labels)
    assert default.threshold == pytest.approx(0.75)  # softmax over 2 labels: half-way from 50% to 100%
    cosines = vectors @ build_classifier(shapes_model, ["a red circle", "a blue square"],
                                         ["a photo of a {}."]).T
    assert np.array_equal(default.codes == -1, (default.scores < 0.75) | (cosines.max(axis=1) < 0.2))
    with pytest.raises(PromptError, match="at least two"):
        fm.zeroshot_colours(shapes_model, vectors, "a red circle")


def test_query_colours_are_cosines_with_the_query_and_an_indexed_image_is_not_encoded(shapes_model,
                                                                                      shapes_index, counted):
    names, vectors = _stored(shapes_index)
    text = fm.query_colours(shapes_model, names, vectors, fm.MapRequest(colour_by="query",
                                                                         query_text="a blue square"))
    assert text.codes is None and names[int(np.argmax(text.scores))].startswith("a_blue_square/")
    query = shapes_model.encode_texts(["a blue square"])[0]
    assert np.allclose(text.scores, vectors @ query, atol=1e-5)
    picked = names[0]
    image = fm.query_colours(shapes_model, names, vectors, fm.MapRequest(colour_by="query",
                                                                          query_names=[picked]))
    assert image.scores[0] == pytest.approx(1.0, abs=1e-4) and np.argmax(image.scores) == 0
    assert counted()["decodes"] == 0 and counted()["image_encodes"] == 0
    with pytest.raises(ValueError, match="not on this map"):
        fm.query_vector(shapes_model, names, vectors, query_names=["gone.png"])


def test_taught_colours_from_a_saved_classifier(shapes_model, shapes_index, tmp_path, counted):
    names, vectors = _stored(shapes_index)
    rows = [i for i, n in enumerate(names) if "/" in n]
    folders = sorted({names[i].split("/")[0] for i in rows})
    classes = [f.replace("_", " ") for f in folders]
    labels = np.array([folders.index(names[i].split("/")[0]) for i in rows])
    text = build_classifier(shapes_model, classes, ["a photo of {}."])
    classifier = fewshot.fit("prototype", vectors[rows], labels, classes, text, 100.0)
    path, _ = classifier_file.save(classifier, tmp_path / "taught", shapes_model.identity.as_dict(), {})
    request = fm.MapRequest(colour_by="taught", classifier=str(path), none_threshold=0.0)
    colouring = fm.colours(shapes_model, names, vectors, request)
    assert colouring.categories == classes
    assert [colouring.labels()[i] for i in rows] == [classes[k] for k in labels]  # fitted on these
    expected = fewshot.softmax(classifier.logits(vectors).astype(np.float64))
    assert np.allclose(colouring.probabilities, expected)
    assert counted()["image_encodes"] == 0 and counted()["decodes"] == 0


def test_a_bad_request_is_refused():
    with pytest.raises(ValueError, match="colour by"):
        fm.MapRequest(colour_by="rainbow").check()
    with pytest.raises(ValueError, match="at least 2"):
        fm.MapRequest(clusters=1).check()
    with pytest.raises(ValueError, match="taught classifier"):
        fm.MapRequest(colour_by="taught").check()
    with pytest.raises(ValueError, match="a text or an image"):
        fm.MapRequest(colour_by="query", query_text="  ").check()


def test_folder_labels_as_embed_index_labels_them():
    rows, classes, labels = fm.folder_labels(["a/1.png", "b/2.png", "top.png", "a/3.png"])
    assert rows.tolist() == [0, 1, 3] and classes == ["a", "b"] and labels.tolist() == [0, 1, 0]
    assert fm.folder_labels(["a/1.png", "top.png"])[1] == []


# ---- the whole map (layout, clusters, lists) ---------------------------------------------------------------
WORDS = "red\nblue\ngreen\nyellow\ncircle\nsquare\ntriangle\ncross\n"


@pytest.fixture(scope="module")
def planted(shapes_model, tmp_path_factory):
    """An index of three class folders with one blue square filed under a_red_circle, and a words file."""
    base = tmp_path_factory.mktemp("planted")
    photos = base / "photos"
    make_labelled_folder(photos, CLASSES, 4, size=32, seed=7)
    odd = draw_shape("blue", "square", size=32, rng=np.random.default_rng(70))
    odd.save(photos / "a_red_circle" / "odd.png")
    build_index(shapes_model, photos, base / "idx", workers=0)
    (base / "words.txt").write_text(WORDS)
    index = open_index(base / "idx")
    yield index, str(base / "words.txt")
    index.close()


def test_build_map_lays_out_clusters_lists_and_colours_reading_no_image(shapes_model, planted, counted):
    index, words = planted
    request = fm.MapRequest(method="pca", colour_by="zeroshot", labels="a red circle, a blue square, a green "
                            "triangle", clusters=3, vocabulary=words)
    steps = []
    found = fm.build_map(shapes_model, index, request, progress=lambda d, t: steps.append((d, t)))
    names, _ = index.all_embeddings()
    assert found.names == names and found.xy.shape == (13, 2) and steps[-1] == (100, 100)
    assert counted()["decodes"] == 0 and counted()["image_encodes"] == 0
    odd = names.index("a_red_circle/odd.png")
    top = found.lists["mistakes"][0]
    assert top["row"] == odd and top["name"] == "a_red_circle/odd.png" and top["predicted"] == "a blue square"
    assert found.colouring.labels()[odd] == "a blue square"
    clusters = found.clustering.labels
    assert clusters[odd] == clusters[names.index("a_blue_square/0.png")]  # the odd one clusters with its kind
    named = {found.clustering.name_of(int(clusters[names.index(f"{f}/0.png")])) for f in
             ("a_red_circle", "a_blue_square", "a_green_triangle")}
    assert len(named) == 3  # three clusters, three different names
    doc = found.as_dict()
    assert json.loads(json.dumps(doc)) == doc and doc["count"] == 13 and len(doc["points"]) == 13
    assert doc["points"][odd]["colour"] == "a blue square" and doc["layout"]["method"] == "pca"
    assert all(round(p["x"], 4) == p["x"] for p in doc["points"])


def test_recolour_reuses_the_map_and_encodes_no_image(shapes_model, planted, counted):
    index, words = planted
    found = fm.build_map(shapes_model, index, fm.MapRequest(method="pca", clusters=3, vocabulary=words,
                                                              lists=False))
    assert found.colouring.by == "folder" and found.lists == {}
    texts = counted()["text_encodes"]
    again = fm.recolour(shapes_model, found, fm.MapRequest(method="pca", colour_by="cluster", clusters=3))
    assert np.array_equal(again.codes, found.clustering.labels) and counted()["text_encodes"] == texts
    more = fm.recolour(shapes_model, found, fm.MapRequest(colour_by="cluster", clusters=4, vocabulary=words))
    assert len(more.categories) == 4
    query = fm.recolour(shapes_model, found, fm.MapRequest(colour_by="query", query_text="a green triangle"))
    assert found.names[int(np.argmax(query.scores))].startswith("a_green_triangle/")
    assert counted()["decodes"] == 0 and counted()["image_encodes"] == 0


def test_build_map_stops_when_asked(shapes_model, planted):
    index, words = planted
    with pytest.raises(fm.MapCancelled):
        fm.build_map(shapes_model, index, fm.MapRequest(method="pca", vocabulary=words),
                     should_stop=lambda: True)


def test_a_map_shown_before_its_words_are_named_later(shapes_model, planted):
    index, words = planted
    found = fm.build_map(shapes_model, index, fm.MapRequest(method="pca", colour_by="cluster", clusters=3,
                                                              name_clusters=False, lists=False))
    assert found.words is None
    assert all(c.split(": ")[1].startswith("cluster ") for c in found.colouring.categories)
    named = fm.name_clusters(shapes_model, found, words)
    assert np.array_equal(named.clustering.labels, found.clustering.labels)
    assert all(c.split(": ")[1] in {", ".join(w for w, _ in v) for v in named.clustering.names.values()}
               for c in named.colouring.categories)
    assert set(w for v in named.clustering.names.values() for w, _ in v) <= set(WORDS.split())


def test_a_quick_map_gets_the_same_clusters_and_lists_later(shapes_model, planted):
    index, words = planted
    full = fm.build_map(shapes_model, index, fm.MapRequest(method="pca", clusters=3, vocabulary=words))
    quick = fm.build_map(shapes_model, index, fm.MapRequest(method="pca", make_clusters=False, lists=False))
    assert quick.clustering is None and quick.lists == {} and np.array_equal(quick.xy, full.xy)
    later = fm.add_lists(shapes_model, fm.add_clusters(shapes_model, quick, fm.MapRequest(
        clusters=3, vocabulary=words)), fm.MapRequest())
    assert later.as_dict()["clusters"] == full.as_dict()["clusters"] and later.lists == full.lists


def test_the_lists_report_progress_and_stop_when_asked(shapes_model, planted):
    index, _ = planted
    names, vectors = index.all_embeddings()
    steps = []
    found = fm.map_lists(shapes_model, names, vectors, progress=lambda d, t: steps.append((d, t)))
    assert steps[-1] == (100, 100) and "images only" in found["how"]
    # the blue square filed under a_red_circle is nearly the picture of the blue squares in their folder
    assert found["duplicates"] and all({"a_red_circle/odd.png"} & {d["name_i"], d["name_j"]}
                                       for d in found["duplicates"])
    with pytest.raises(fm.MapCancelled):
        fm.map_lists(shapes_model, names, vectors, should_stop=lambda: True)


SHAPE_WORDS = "red, blue, green, yellow, purple, orange, circle, square, triangle, cross, dog, car, tree"


def test_explain_is_splice_over_the_folder_mean_and_names_colour_and_shape(shapes_model, shapes_index,
                                                                          tmp_path):
    from explorer.science import splice

    names, vectors = _stored(shapes_index)
    words = fm.load_words(shapes_model, text=SHAPE_WORDS, cache_dir=tmp_path / "cache")
    assert words.words[:3] == ["red", "blue", "green"] and words.source == "typed"
    row = names.index("a_blue_square/0.png")
    shown = fm.explain(words, vectors, row, name=names[row])
    # the same numbers as splice.decompose on the same inputs (the concepts kept on the words)
    concepts = splice.splice_concepts(words.vectors)
    weights = splice.decompose(vectors[row][None, :], concepts, splice.folder_mean(vectors))[0]
    assert shown.words == splice.top_concepts(weights, words.words, fm.SPLICE_WORDS)
    assert words.concepts() is words.concepts() and np.array_equal(words.concepts(), concepts)
    assert shown.active == int((weights > 0).sum()) and 0 < shown.cosine <= 1
    assert {w for w, _ in shown.words[:2]} == {"blue", "square"}, shown.words
    assert fm.explain(words, vectors, row, l1_penalty=5.0).active < shown.active   # sparser with more L1
    with pytest.raises(ValueError, match="no image at row"):
        fm.explain(words, vectors, len(names))


def test_typed_words_are_parsed_within_the_limits_then_encoded(shapes_model, tmp_path):
    from explorer.inputs.gate import TextLimits

    typed = fm.load_words(shapes_model, text="red\nred\nblue\ncircle", cache_dir=tmp_path / "cache",
                          limits=TextLimits(max_items=2, max_item_chars=50, max_bytes=1000))
    assert typed.words == ["red", "blue"] and typed.notes, typed   # repeats dropped, the third left out
    assert np.allclose(typed.vectors, shapes_model.encode_texts(["red", "blue"]), atol=1e-6)
    shipped = fm.load_words(shapes_model, text="  ")     # nothing typed: the shipped words
    assert len(shipped.words) > 5000 and shipped.key != typed.key


def test_outliers_stand_apart_beyond_a_robust_cut():
    scores = np.array([0.1, 0.11, 0.09, 0.1, 0.12, 0.1, 0.6])
    cut = fm.outlier_cut(scores)
    assert 0.12 < cut < 0.6 and fm.outlier_cut(np.zeros(0)) == 0.0
