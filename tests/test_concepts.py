"""Clusters and their names (explorer/science/concepts.py) on the shapes model: 24 colour x shape
classes, 5 images each. Measured (seeds 0-2): k-means with k=4 recovers the shapes and with k=24 the
classes (adjusted Rand index 1.0), HDBSCAN the classes (1.0, no noise); k-means on the circles alone
recovers the colours (1.0). The floors below are 0.9."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from explorer.science import concepts
from tests.helpers import encode_pil, same_up_to_rounding
from tests.shapes import CLASSES, COLORS, SHAPES, draw_shape

ARI_FLOOR = 0.9
# The shapes vocabulary: the colour and shape words, and distractors (words the folder does not show;
# the shapes model never saw most of them in training, so they are noise for it).
DISTRACTORS = ["dog", "car", "tree", "house", "apple", "book", "water", "sky", "chair", "phone", "star",
               "pink", "white", "black"]
WORDS = list(COLORS) + list(SHAPES) + DISTRACTORS


@pytest.fixture(scope="module")
def folder(shapes_model):
    rng = np.random.default_rng(1)
    pairs = [(c, s) for c, s in CLASSES for _ in range(5)]
    embeddings = encode_pil(shapes_model, [draw_shape(c, s, rng=rng) for c, s in pairs])
    colours = np.array([c for c, _ in pairs])
    shapes = np.array([s for _, s in pairs])
    return embeddings, colours, shapes, np.char.add(np.char.add(colours, " "), shapes)


@pytest.fixture(scope="module")
def word_vectors(shapes_model):
    return shapes_model.encode_texts(WORDS)


def test_kmeans_recovers_shapes_and_classes(folder):
    embeddings, _, shapes, classes = folder
    by_shape = concepts.cluster(embeddings, "kmeans", k=4, seed=0)
    assert adjusted_rand_score(shapes, by_shape) >= ARI_FLOOR
    by_class = concepts.cluster(embeddings, "kmeans", k=24, seed=0)
    assert adjusted_rand_score(classes, by_class) >= ARI_FLOOR
    assert by_class.dtype == np.int64 and set(by_class) == set(range(24))
    np.testing.assert_array_equal(concepts.cluster(embeddings, "kmeans", k=24, seed=0), by_class)  # seeded


def test_hdbscan_recovers_classes_without_k(folder):
    embeddings, _, _, classes = folder
    labels = concepts.cluster(embeddings, "hdbscan", min_cluster_size=4)
    assert adjusted_rand_score(classes, labels) >= ARI_FLOOR
    # scattered points join no class: noise (-1) or groups of their own
    rng = np.random.default_rng(0)
    scattered = rng.normal(size=(30, embeddings.shape[1])).astype(np.float32)
    noisy = concepts.cluster(np.vstack([embeddings, scattered]), "hdbscan", min_cluster_size=4)
    assert adjusted_rand_score(classes, noisy[:-30]) >= ARI_FLOOR
    assert not set(noisy[-30:]) & set(noisy[:-30])
    assert (noisy[-30:] == -1).any()


def test_hdbscan_fits_a_sample_of_a_large_folder(folder, monkeypatch):
    """Above HDBSCAN_SAMPLE points HDBSCAN fits a seeded sample; the others take their nearest sampled
    point's label (here: 72 of 120 points fitted, min_cluster_size scaled to the sample)."""
    embeddings, _, _, classes = folder
    monkeypatch.setattr(concepts, "HDBSCAN_SAMPLE", 72)
    labels = concepts.cluster(embeddings, "hdbscan", min_cluster_size=4)
    assert labels.shape == (120,)
    assert adjusted_rand_score(classes, labels) >= ARI_FLOOR
    np.testing.assert_array_equal(concepts.cluster(embeddings, "hdbscan", min_cluster_size=4), labels)


def test_cluster_edge_cases(folder):
    embeddings = folder[0]
    assert concepts.cluster(embeddings[:0], "kmeans").shape == (0,)
    assert set(concepts.cluster(embeddings[:3], "kmeans", k=8)) == {0, 1, 2}   # k cut to the points there are
    assert (concepts.cluster(embeddings[:3], "hdbscan") == -1).all()
    with pytest.raises(ValueError, match="kmeans, hdbscan"):
        concepts.cluster(embeddings, "spectral")


def test_shape_clusters_are_named_by_their_shape(folder, word_vectors):
    embeddings, _, shapes, _ = folder
    labels = concepts.cluster(embeddings, "kmeans", k=4)
    names = concepts.cluster_names(embeddings, labels, word_vectors, WORDS, k=3)
    assert sorted(names) == [0, 1, 2, 3]
    for group, named in names.items():
        assert named[0][0] == shapes[labels == group][0], named
        assert named[0][1] > named[1][1] > named[2][1]


def test_colour_clusters_are_named_by_their_colour(folder, word_vectors):
    embeddings, colours, shapes, _ = folder
    circles = shapes == "circle"
    labels = concepts.cluster(embeddings[circles], "kmeans", k=6)
    assert adjusted_rand_score(colours[circles], labels) >= ARI_FLOOR
    names = concepts.cluster_names(embeddings[circles], labels, word_vectors, WORDS, k=2)
    for group, named in names.items():
        assert named[0][0] == colours[circles][labels == group][0], named


def test_class_clusters_are_named_by_colour_and_shape(folder, word_vectors):
    """Measured: 20 of the 24 class clusters have both their colour and shape among their 3 words (the
    other 4 have one of them and a distractor the shapes model never learned)."""
    embeddings, _, _, classes = folder
    labels = concepts.cluster(embeddings, "kmeans", k=24)
    names = concepts.cluster_names(embeddings, labels, word_vectors, WORDS, k=3)
    both = 0
    for group, named in names.items():
        colour, shape = classes[labels == group][0].split()
        words = [w for w, _ in named]
        assert colour in words or shape in words, (colour, shape, named)
        both += colour in words and shape in words
    assert both >= 18


def test_names_are_mean_centred(folder, word_vectors):
    """Among circles of six colours, the words nearest each group's raw centroid are mostly "circle"
    (what the whole folder shares; measured: 5 of 6 groups); centred on the folder's mean, each group
    is named by its own colour."""
    embeddings, colours, shapes, _ = folder
    circles = embeddings[shapes == "circle"]
    labels = concepts.cluster(circles, "kmeans", k=6)
    means = [circles[labels == g].mean(axis=0) for g in range(6)]
    raw = [concepts.best_words(mean, word_vectors, WORDS, k=1)[0][0] for mean in means]
    assert raw.count("circle") >= 3
    centred = concepts.cluster_names(circles, labels, word_vectors, WORDS, k=1)
    assert sorted(named[0][0] for named in centred.values()) == sorted(COLORS)
    again = concepts.best_words(means[0], word_vectors, WORDS, k=1, centre=circles.mean(axis=0))
    assert same_up_to_rounding(again, centred[0]), (again, centred[0])


def test_best_words_shapes_and_errors(word_vectors):
    rows = np.random.default_rng(0).normal(size=(3, word_vectors.shape[1])).astype(np.float32)
    named = concepts.best_words(rows, word_vectors, WORDS, k=4)
    assert len(named) == 3 and all(len(n) == 4 for n in named)
    assert len(concepts.best_words(rows[0], word_vectors, WORDS, k=100)) == len(WORDS)
    with pytest.raises(ValueError, match="words but"):
        concepts.best_words(rows, word_vectors, WORDS[:-1])


def test_selection_words(folder, word_vectors):
    embeddings, colours, shapes, _ = folder
    words = word_vectors
    triangles = concepts.selection_words(embeddings, np.flatnonzero(shapes == "triangle"), words, WORDS)
    assert triangles[0][0] == "triangle" and len(triangles) == 5
    greens = concepts.selection_words(embeddings, np.flatnonzero(colours == "green"), words, WORDS, k=2)
    assert [w for w, _ in greens][0] == "green" and len(greens) == 2
    assert concepts.selection_words(embeddings, [], word_vectors, WORDS) == []


def test_compare_selections_red_to_blue(folder, word_vectors):
    embeddings, colours, shapes, classes = folder
    a = np.flatnonzero(classes == "red circle")
    b = np.flatnonzero(classes == "blue circle")
    direction = concepts.compare_selections(embeddings, a, b, word_vectors, WORDS, k=5)
    assert direction.words_b[0][0] == "blue"
    assert direction.words_a[0][0] == "red"
    assert all(colours[i] == "blue" for i, _ in direction.images_b)
    assert all(colours[i] == "red" for i, _ in direction.images_a)
    assert direction.images_b[0][1] >= direction.images_b[-1][1] > 0
    assert direction.images_a[0][1] >= direction.images_a[-1][1] > 0
    assert np.linalg.norm(direction.vector) == pytest.approx(1.0, abs=1e-5)
    assert direction.length > 0 and (direction.size_a, direction.size_b) == (5, 5)
    swapped = concepts.compare_selections(embeddings, b, a, word_vectors, WORDS, k=5)
    assert swapped.words_b == direction.words_a and swapped.images_a == direction.images_b
    assert direction.as_dict()["words_b"][0][0] == "blue"
    with pytest.raises(ValueError, match="each with at least one image"):
        concepts.compare_selections(embeddings, [], b, word_vectors, WORDS)
