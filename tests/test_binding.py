"""Attribute binding on the shapes model: pictures of two coloured shapes (tests/shapes.draw_pair) scored
against their caption and the caption with the colours swapped (ARO's VG-Attribution test), and the
attribute x object grid. The truth is the test's own encoding of the same prompts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from explorer.embed.probability import softmax
from explorer.inputs.gate import Refused, TextLimits
from explorer.inputs.sources import embed_files, embed_folder
from explorer.science import binding
from explorer.science.binding import Binding, parse_binding
from explorer.science.prompts import PromptError
from tests.shapes import draw_pair, draw_shape

FOLDERS = ("red_circle_and_blue_square", "green_triangle_and_yellow_cross", "blue_circle_and_red_square")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test against 1/2, written out: 2 * P[Binomial(n, 1/2) <= min], capped at 1."""
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return 1.0 if n == 0 else min(1.0, 2 * tail / 2 ** n)


def aro_accuracy(true_scores: np.ndarray, false_scores: np.ndarray) -> float:
    """ARO's VG_Attribution.evaluate_scores (dataset_zoo/aro_datasets.py): scores [N, 1, 2] with the
    perturbed caption first; argmax == 1 is correct (a tie picks index 0: wrong)."""
    scores = np.stack([false_scores, true_scores], axis=-1)[:, None, :]
    return float(np.mean(np.argmax(np.squeeze(scores, axis=1), axis=-1) == 1))


@pytest.fixture(scope="module")
def pairs(shapes_model, tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("binding"), np.random.default_rng(7)
    for folder in FOLDERS:
        b = parse_binding(folder)
        (root / folder).mkdir()
        for i in range(4):
            draw_pair((b.a1, b.o1), (b.a2, b.o2), rng=rng)[0].save(root / folder / f"{i}.png")
    return embed_folder(shapes_model, root)


def test_parse_binding():
    assert parse_binding("red circle and blue square") == Binding("red", "circle", "blue", "square")
    assert parse_binding(" a red circle and a blue square ") == Binding("red", "circle", "blue", "square")
    assert parse_binding("red_circle_and_blue_square").swapped() == Binding("blue", "circle", "red", "square")
    for bad in ("red circle", "red circle or blue square", "red circle and red square",
                "red circle and blue circle", ""):
        with pytest.raises(PromptError):
            parse_binding(bad)


def test_folder_bindings_wins_equal_the_tests_own_encoding(shapes_model, pairs):
    report = binding.binding_test(shapes_model, pairs, None)
    folders = [pairs.class_folders[k] for k in pairs.labels]
    assert [str(b) for b in report.bindings] == [f.replace("_", " ") for f in folders]
    true_texts = [f"a photo of a {b.a1} {b.o1} and a {b.a2} {b.o2}." for b in map(parse_binding, folders)]
    swapped_texts = [f"a photo of a {b.a2} {b.o1} and a {b.a1} {b.o2}." for b in map(parse_binding, folders)]
    true = np.sum(pairs.embeddings * shapes_model.encode_texts(true_texts), axis=1)
    swapped = np.sum(pairs.embeddings * shapes_model.encode_texts(swapped_texts), axis=1)
    np.testing.assert_allclose(report.true_cosine, true, atol=1e-6)
    np.testing.assert_allclose(report.swapped_cosine, swapped, atol=1e-6)
    np.testing.assert_array_equal(report.wins, true > swapped)
    assert report.win_rate == pytest.approx(aro_accuracy(true, swapped))
    wins, losses = int(np.sum(true > swapped)), int(np.sum(true < swapped))
    assert report.ties == len(true) - wins - losses and report.losses == losses
    assert report.p_value == pytest.approx(sign_test(wins, losses))
    doc = report.as_dict()
    assert doc["swapped_captions"][0] == swapped_texts[0] and "mertyg" in doc["source"] and doc["differs"]
    print(f"binding on shapes: {wins} won, {losses} lost, p = {report.p_value:.3g}")


def test_one_binding_for_plain_files_and_refusals(shapes_model, pairs):
    plain = embed_files(shapes_model, pairs.paths[:4])    # the first folder's images, unlabelled
    given = parse_binding("blue circle and red square")
    report = binding.binding_test(shapes_model, plain, given)
    assert all(b == given for b in report.bindings) and len(report.wins) == 4
    with pytest.raises(PromptError, match="give the binding"):
        binding.binding_test(shapes_model, plain, None)
    with pytest.raises(PromptError, match="needs"):
        binding.binding_test(shapes_model, plain, given, template="a photo of {a1} {o1}")


def test_grid_is_the_models_rule_over_every_cell(shapes_model, tmp_path):
    rng = np.random.default_rng(3)
    shown = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("red", "square")]
    for i, (c, s) in enumerate(shown):
        draw_shape(c, s, rng=rng).save(tmp_path / f"{i}.png")
    images = embed_files(shapes_model, sorted(tmp_path.glob("*.png")))
    attributes, objects = ["red", "blue", "green"], ["circle", "square", "triangle"]
    grid = binding.attribute_grid(shapes_model, images, attributes, objects)
    texts = [f"a photo of a {a} {o}." for a in attributes for o in objects]
    cosines = images.embeddings @ shapes_model.encode_texts(texts).T
    np.testing.assert_allclose(grid.cosines.reshape(4, -1), cosines, atol=1e-6)
    probs = softmax(shapes_model.logit_scale * cosines.astype(np.float64))
    np.testing.assert_allclose(grid.probabilities.reshape(4, -1), probs, atol=1e-5)
    assert grid.probabilities.sum(axis=(1, 2)) == pytest.approx(np.ones(4), abs=1e-5)
    best = [divmod(int(j), 3) for j in probs.argmax(axis=1)]
    print("grid best cells:", [(attributes[a], objects[o]) for a, o in best])
    doc = grid.as_dict()
    assert doc["params"]["attributes"] == attributes and np.asarray(doc["probabilities"]).shape == (4, 3, 3)
    with pytest.raises(Refused, match="max-prompts"):
        binding.attribute_grid(shapes_model, images, attributes, objects, limits=TextLimits(max_prompts=8))
