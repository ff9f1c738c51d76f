"""Loki (explorer/science/loki.py) against direct transcriptions of SprocketLab/loki's code."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.embed.probability import SIGMOID, Scoring
from explorer.embed.vectors import normalize
from explorer.inputs import gate
from explorer.inputs.gate import TextLimits
from explorer.inputs.sources import Embedded, embed_folder
from explorer.science.loki import (
    EMBEDDING_METRIC,
    TREE_METRIC,
    _distribution,
    embedding_distances,
    frechet_predict,
    loki_probe,
    tree_distances,
)
from explorer.science.prompts import PromptError
from explorer.science.zeroshot import build_classifier
from tests.shapes import CLASSES, make_labelled_folder

TEMPLATES = ["a photo of a {}.", "a {}."]


# ---- transcriptions of their code -----------------------------------------------------------------
def their_pubmed_predict(pred_prob, d_unsquared, sampled_classes_index):
    """pubmed/exp.py: `d = d ** 2` then `np.argmin(np.dot(pred_prob, d[sampled_classes_index]), axis=1)`."""
    d = d_unsquared ** 2
    return np.argmin(np.dot(pred_prob, d[sampled_classes_index]), axis=1)


def their_loki_exact_predict(probs, dists):
    """simclr_exps/loki.py loki_exact_predict: s = -probs @ (dists ** 2); the prediction is its arg-max."""
    s = -probs @ (dists ** 2)
    return s.argmax(axis=1)


def their_calc_one_row_matrix(label_embeddings):
    """pubmed/build_dist_matrix.py LabelEmbeddingDistanceCalculator.calc_one_row, all rows."""
    n = label_embeddings.shape[0]
    dist_matrix = np.zeros((n, n))
    for row_i in range(n):
        for row_j in range(n):
            if row_j != row_i:
                dist_matrix[row_i, row_j] = np.linalg.norm(label_embeddings[row_i] - label_embeddings[row_j])
    return dist_matrix


def their_calc_clip_sq_dist_matrix(labels_emb):
    """clip_exp/run_cifar.py calc_clip_sq_dist_matrix (labels_emb is [D, K], columns are labels)."""
    dist_matrix = np.zeros((labels_emb.shape[1], labels_emb.shape[1]))
    for i in range(labels_emb.shape[1]):
        for j in range(labels_emb.shape[1]):
            if i != j:
                dist_matrix[i, j] = np.square(np.linalg.norm(labels_emb[:, i] - labels_emb[:, j], ord=2))
    return dist_matrix


def their_calc_clip_tree_metric(dist_matrix, y_pred, y_true):
    """clip_exp/run_cifar.py calc_clip_tree_metric (dist_matrix already squared)."""
    return np.mean([dist_matrix[int(p), int(g)] for p, g in zip(y_pred, y_true)])


def their_compute_sq_dist_matrix(edges, labels):
    """clip_exp/libs/tree_metrics.py compute_sq_dist_matrix on the graph get_hierarchy_graph builds
    (top-level nodes joined to 'root')."""
    nx = pytest.importorskip("networkx")
    tree = nx.Graph()
    tree.add_node("root")
    children = {c for _, c in edges}
    for parent, child in edges:
        if parent not in children:
            tree.add_edge("root", parent)
        tree.add_edge(parent, child)
    d = np.zeros((len(labels), len(labels)))
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d[i, j] = nx.shortest_path_length(tree, labels[i], labels[j])
            d[j, i] = d[i, j]
    return np.square(d)


# ---- the maths --------------------------------------------------------------------------------------
def test_prediction_equals_their_code_with_unobserved_candidates():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 4))
    full = their_calc_one_row_matrix(points)
    observed = [0, 1, 2, 3]                       # our candidates put the scored classes first, as here
    probs = rng.dirichlet(np.full(4, 0.4), size=200)
    ours = frechet_predict(probs, full[:, observed])
    assert np.array_equal(ours, their_pubmed_predict(probs, full, observed))
    assert (ours >= 4).any(), "some predictions should be labels no classifier scored"
    square = full[np.ix_(observed, observed)]
    assert np.array_equal(frechet_predict(probs, square), their_loki_exact_predict(probs, square))


def test_embedding_distances_are_their_euclidean_metric():
    emb = normalize(np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32))
    d = embedding_distances(emb, emb[:3])
    np.testing.assert_allclose(d ** 2, their_calc_clip_sq_dist_matrix(emb.T)[:, :3], atol=1e-6)
    np.testing.assert_allclose(d, their_calc_one_row_matrix(emb)[:, :3], atol=1e-6)


def test_tree_distances_are_their_path_lengths():
    text = "animal: mammal, bird\nmammal: cat, dog\nbird: sparrow, eagle\nvehicle: car, bus"
    edges = [("animal", "mammal"), ("animal", "bird"), ("mammal", "cat"), ("mammal", "dog"),
             ("bird", "sparrow"), ("bird", "eagle"), ("vehicle", "car"), ("vehicle", "bus")]
    names, d = tree_distances(text, ["Cat", "car", "mammal"])
    assert names == ["Cat", "car", "mammal", "dog", "sparrow", "eagle", "bus"]   # then the other leaves
    labels = ["cat", "car", "mammal", "dog", "sparrow", "eagle", "bus"]
    np.testing.assert_array_equal(d ** 2, their_compute_sq_dist_matrix(edges, labels))


def test_loki_picks_the_label_between_two_likely_classes():
    # planted geometry: "middle" sits between the two scored classes, far from neither
    a, b = normalize(np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.2]], dtype=np.float32))
    middle = normalize((a + b)[None])[0]
    distances = embedding_distances(np.stack([a, b, middle]), np.stack([a, b]))
    probs = np.array([[0.5, 0.5], [0.55, 0.45], [0.95, 0.05]])
    assert frechet_predict(probs, distances).tolist() == [2, 2, 0]


@pytest.mark.parametrize("text, message", [
    ("a: b\nb: c\nc: a", "cycle"), ("a: b\nc: b", "one parent"), ("just words", "parent: child"),
    ("a:", "parent: child"), ("a: a", "own parent"), ("x: y, z", "not in the tree")])
def test_bad_trees_are_clear_errors(text, message):
    with pytest.raises(PromptError, match=message):
        tree_distances(text, ["b"] if "x" not in text else ["red circle"])


def test_a_tree_past_the_limits_is_refused():
    with pytest.raises(gate.Refused, match="Tree"):
        tree_distances("a: " + ", ".join(f"n{i}" for i in range(10)), ["n1"], TextLimits(max_items=5))
    with pytest.raises(gate.Refused, match="Tree"):
        tree_distances("a: b\n" * 200, ["b"], TextLimits(max_bytes=100))


def test_sigmoid_probabilities_become_a_distribution():
    p = _distribution(Scoring(SIGMOID, 10.0, -5.0), np.array([[0.9, 0.1, 0.5]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p.argmax() == 0


# ---- the probe on the shapes model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled(shapes_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("loki")
    make_labelled_folder(root, CLASSES[:3], 3, size=24)
    return embed_folder(shapes_model, root)


def test_probe_equals_a_direct_computation(shapes_model, labelled):
    report = loki_probe(shapes_model, labelled, [], ["a green circle"], TEMPLATES)
    names = list(labelled.class_names) + ["a green circle"]
    emb = build_classifier(shapes_model, names, TEMPLATES)
    probs = shapes_model.scoring.probabilities(labelled.embeddings @ emb[:3].T).astype(np.float64)
    sq = their_calc_clip_sq_dist_matrix(emb.T)
    loki = their_pubmed_predict(probs, np.sqrt(sq), [0, 1, 2])
    assert report.candidates == names and report.metric == EMBEDDING_METRIC
    assert np.array_equal(report.loki, loki) and np.array_equal(report.argmax, probs.argmax(axis=1))
    assert np.array_equal(report.true, labelled.labels)
    assert report.accuracy_loki == pytest.approx(float((loki == labelled.labels).mean()))
    assert report.mean_squared_distance_loki == pytest.approx(
        their_calc_clip_tree_metric(sq, loki, labelled.labels), abs=1e-5)
    assert report.mean_squared_distance_argmax == pytest.approx(
        their_calc_clip_tree_metric(sq, probs.argmax(axis=1), labelled.labels), abs=1e-5)
    doc = report.as_dict()
    assert doc["method"] == "Loki" and "SprocketLab/loki" in doc["source"] and doc["differs"]
    assert doc["evidence"]["n"] == len(labelled) and len(doc["distances"]) == 4
    assert json.loads(json.dumps(doc))["candidates"] == names


def test_probe_with_a_tree_predicts_a_label_nobody_typed(shapes_model):
    # images planted halfway between the two typed classes' text embeddings; the tree puts
    # "a purple circle" between them, so Loki names it though no classifier scored it
    typed = ["a red circle", "a blue circle"]
    text = build_classifier(shapes_model, typed, TEMPLATES)
    halfway = normalize((text[0] + text[1])[None].repeat(2, axis=0))
    images = Embedded(["x.png", "y.png"], [], halfway, class_names=["a purple circle"],
                      labels=np.array([0, 0]))
    tree = "a red circle: a purple circle\na purple circle: a blue circle\nshapes: a red circle, a square"
    report = loki_probe(shapes_model, images, typed, ["a purple circle"], TEMPLATES, tree=tree)
    assert report.candidates == typed + ["a purple circle"] and report.metric == TREE_METRIC
    assert [report.candidates[j] for j in report.loki] == ["a purple circle"] * 2
    assert report.accuracy_loki == 1.0 and report.accuracy_argmax == 0.0 and report.outside == 2
    assert report.mean_squared_distance_loki == 0.0 and report.mean_squared_distance_argmax == 1.0
    assert report.as_dict()["images"][0]["outside"] is True


def test_probe_refuses_over_the_limits_and_missing_classes(shapes_model, labelled):
    with pytest.raises(gate.Refused, match="max-texts|MAX_TEXTS"):
        loki_probe(shapes_model, labelled, ["a", "b"], ["c", "d"], TEMPLATES, limits=TextLimits(max_items=3))
    with pytest.raises(PromptError, match="not in the tree"):
        loki_probe(shapes_model, labelled, [], [], TEMPLATES, tree="shapes: a red circle")
    unlabelled = Embedded(["x.png"], [], labelled.embeddings[:1])
    with pytest.raises(ValueError):
        loki_probe(shapes_model, unlabelled, [], [], TEMPLATES)
