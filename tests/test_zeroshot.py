"""Zero-shot maths against hand computations, and accuracy with the project's shapes model."""
from __future__ import annotations

import numpy as np
import pytest

from explorer.inputs.sources import EmbeddingCache
from explorer.science.zeroshot import build_classifier, classify_files, ensemble, predict
from tests import shapes


def test_ensemble_equals_hand_computation():
    rng = np.random.default_rng(0)
    prompts = rng.normal(size=(3, 4, 8)).astype(np.float32)  # deliberately not normalised
    ours = ensemble(prompts)
    for c in range(3):
        unit = [p / np.linalg.norm(p) for p in prompts[c]]
        mean = sum(unit) / len(unit)
        np.testing.assert_allclose(ours[c], mean / np.linalg.norm(mean), atol=1e-6)
    weights = np.array([1.0, 0.0, 0.0, 3.0])
    weighted = ensemble(prompts, weights)
    for c in range(3):
        u = [p / np.linalg.norm(p) for p in prompts[c]]
        mix = 0.25 * u[0] + 0.75 * u[3]
        np.testing.assert_allclose(weighted[c], mix / np.linalg.norm(mix), atol=1e-6)
    # not renormalised (ZPE's authors' combination): scoring with it averages the per-prompt cosines
    kept = ensemble(prompts, weights, renormalise=False)
    image = rng.normal(size=8).astype(np.float32)
    for c in range(3):
        u = [p / np.linalg.norm(p) for p in prompts[c]]
        np.testing.assert_allclose(kept[c], 0.25 * u[0] + 0.75 * u[3], atol=1e-6)
        assert float(image @ kept[c]) == pytest.approx(0.25 * image @ u[0] + 0.75 * image @ u[3], abs=1e-5)
    assert kept.dtype == np.float32 and (np.linalg.norm(kept, axis=1) < 1).all()


def test_predict_uses_logit_scale_softmax_and_ranks():
    images = np.eye(3, dtype=np.float32)[:2]
    classes = np.eye(3, dtype=np.float32)
    result = predict(images, classes, ["a", "b", "c"], logit_scale=10.0)
    expected = np.exp([10.0, 0, 0]) / np.exp([10.0, 0, 0]).sum()
    np.testing.assert_allclose(result.probabilities[0], expected, rtol=1e-5)
    assert result.top1() == ["a", "b"]
    label, prob, cos = result.ranked(1, 2)[0]
    assert (label, cos) == ("b", 1.0) and prob == pytest.approx(expected[0], rel=1e-5)
    assert len(result.ranked(0, 2)) == 2


def test_classifier_matches_manual_prompt_encoding(random_vit):
    labels, templates = ["cat", "dog"], ["a photo of a {}.", "art of the {}."]
    ours = build_classifier(random_vit, labels, templates)
    for row, label in enumerate(labels):
        emb = random_vit.encode_texts([t.replace("{}", label) for t in templates])
        mean = emb.mean(axis=0)
        np.testing.assert_allclose(ours[row], mean / np.linalg.norm(mean), atol=1e-5)


def test_shapes_model_picks_the_right_label(shapes_model, tmp_path):
    rng = np.random.default_rng(1234)
    chosen = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross"),
              ("purple", "circle"), ("orange", "square"), ("red", "triangle"), ("blue", "cross")]
    labels = [shapes.caption(*c) for c in chosen]
    paths, truth = [], []
    for i in range(48):
        color, shape = chosen[i % len(chosen)]
        path = tmp_path / f"{i}.png"
        shapes.draw_shape(color, shape, size=int(rng.choice([48, 64, 128])), rng=rng).save(path)
        paths.append(str(path))
        truth.append(shapes.caption(color, shape))
    cache = EmbeddingCache()
    before = shapes_model.image_encodes
    report = classify_files(shapes_model, paths, labels, ["{}"], cache=cache)
    accuracy = np.mean([p == t for p, t in zip(report.predictions.top1(), truth)])
    assert accuracy >= 0.9, accuracy
    assert shapes_model.image_encodes == before + 48
    # Changing the labels re-uses the cached image embeddings: no image is encoded twice.
    again = classify_files(shapes_model, paths, labels[:4], ["{}"], cache=cache)
    assert shapes_model.image_encodes == before + 48
    assert again.predictions.probabilities.shape == (48, 4)
    np.testing.assert_allclose(again.predictions.cosines, report.predictions.cosines[:, :4], atol=1e-6)
