"""Likely mistakes in a labelled folder (explorer/science/label_issues.py): confident learning equal to
cleanlab's own find_label_issues, out-of-fold probabilities, planted mistakes found on the shapes
model, kNN outliers and cross-folder duplicates."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from explorer.embed.probability import softmax
from explorer.embed.vectors import normalize
from explorer.science import label_issues as li
from explorer.science.fewshot import prototypes
from tests.helpers import encode_pil
from tests.shapes import caption, draw_shape

# Confusable on purpose: two colours near each other (red, orange) times three shapes.
CLASSES = [("red", "circle"), ("red", "square"), ("red", "triangle"),
           ("orange", "circle"), ("orange", "square"), ("orange", "triangle")]
PER_CLASS = 12
PLANTED = 4
PLANTINGS = 10
# Mean precision at 4 over the 10 seeded plantings below, measured: GDA 1.0 (every planting),
# prototype 0.925 (two plantings found 2 and 3 of 4). Over 30 other plantings: GDA 1.00, prototype 0.83;
# with zero-shot mixed in, GDA 0.88 and prototype 0.82 (label_issues.py's docstring has the table).
PRECISION_FLOOR = {"gda": 1.0, "prototype": 0.9}


def _cleanlab_issues(labels, probs):
    filt = pytest.importorskip("cleanlab.filter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return filt.find_label_issues(labels, probs, filter_by="prune_by_noise_rate",
                                      return_indices_ranked_by="self_confidence", n_jobs=1)


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(6, 160)), int(rng.integers(2, 9))
    labels = rng.integers(0, c, n)
    labels[:2] = [0, 1]                               # at least two classes
    if seed % 5 == 0:
        labels[labels == c - 1] = 0                   # a class nobody has
    if seed % 7 == 0:
        labels[2] = c - 1                             # a class of possibly one image
    logits = rng.normal(size=(n, c)) * rng.uniform(0.3, 6.0)
    logits[np.arange(n), labels] += rng.uniform(0.0, 4.0)
    probs = softmax(logits)
    return labels, (probs.astype(np.float32) if seed % 3 == 0 else probs)


# ---- confident learning equals cleanlab -------------------------------------------------------------
def test_confident_learning_equals_cleanlab_on_random_probabilities():
    for seed in range(60):
        labels, probs = _random_case(seed)
        ours = li.confident_learning(labels, probs).issues
        theirs = _cleanlab_issues(labels, probs)
        assert np.array_equal(ours, theirs), f"seed {seed}: {ours[:8]} vs {theirs[:8]}"


def test_confident_joint_equals_cleanlabs_including_a_rounding_tie():
    count = pytest.importorskip("cleanlab.count")
    # seed 166 of this generator has calibrated counts ending in exact halves, where the order np.sum
    # adds in decides which one rounds up; it found a layout bug once
    for seed in (1, 2, 166):
        rng = np.random.default_rng(seed)
        n, c = rng.integers(5, 200), rng.integers(2, 8)
        labels = rng.integers(0, c, n)
        logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 5)
        logits[np.arange(n), labels] += rng.uniform(0, 4)
        probs = softmax(logits)
        ranking = li.confident_learning(labels, probs)
        assert np.array_equal(ranking.joint, count.compute_confident_joint(labels, probs))
        assert np.array_equal(ranking.issues, _cleanlab_issues(labels, probs))


def test_confident_learning_flags_the_obvious_and_orders_by_self_confidence():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.85, 0.15], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7],
                      [0.05, 0.95], [0.75, 0.25]])
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])      # 6 and 7 look filed in the wrong class
    ranking = li.confident_learning(labels, probs)
    assert ranking.issues.tolist() == [6, 7]          # p(given) 0.05 before 0.25
    assert ranking.issues.tolist() == _cleanlab_issues(labels, probs).tolist()
    with pytest.raises(ValueError, match="two classes"):
        li.confident_learning(np.zeros(3, int), probs[:3])


# ---- out-of-fold probabilities ---------------------------------------------------------------------
def test_stratified_folds_spread_every_class_evenly():
    labels = np.repeat(np.arange(3), [7, 5, 4])
    fold = li.stratified_folds(labels, 4, seed=1)
    assert np.bincount(fold).max() - np.bincount(fold).min() <= 1
    for k in range(3):
        per = np.bincount(fold[labels == k], minlength=4)
        assert per.max() - per.min() <= 1
    assert np.array_equal(fold, li.stratified_folds(labels, 4, seed=1))
    assert not np.array_equal(fold, li.stratified_folds(labels, 4, seed=2))


def test_out_of_fold_prototype_is_fitted_without_the_held_out_fold():
    rng = np.random.default_rng(0)
    f = normalize(rng.normal(size=(30, 8)).astype(np.float32))
    labels = np.repeat(np.arange(3), 10)
    probs = li.out_of_fold_probabilities(f, labels, ["a", "b", "c"], method="prototype", folds=3, seed=4,
                                         logit_scale=50.0)
    fold = li.stratified_folds(labels, 3, seed=4)
    for held in range(3):
        test = fold == held
        expected = softmax(50.0 * (f[test] @ prototypes(f[~test], labels[~test], 3).T).astype(np.float64))
        np.testing.assert_allclose(probs[test], expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_a_class_of_one_image_gets_zero_for_that_image_and_text_must_fit():
    rng = np.random.default_rng(1)
    f = normalize(rng.normal(size=(9, 8)).astype(np.float32))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    for method in li.OOF_METHODS:
        probs = li.out_of_fold_probabilities(f, labels, 3, method=method, folds=4)
        assert probs[8, 2] == 0.0 and np.isfinite(probs).all()
    with pytest.raises(ValueError, match="class text"):
        li.out_of_fold_probabilities(f, labels, 3, zeroshot=np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="unknown method"):
        li.out_of_fold_probabilities(f, labels, 3, method="tip-adapter")


# ---- the shapes model: planted mistakes, an outlier, a duplicate across folders -----------------------
def _reencoded(image: Image.Image) -> Image.Image:
    """The same picture, resized and saved as a JPEG."""
    buffer = io.BytesIO()
    image.resize((56, 56), Image.BILINEAR).save(buffer, "JPEG", quality=80)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def shapes_folder(shapes_model):
    """Embeddings of 6 x 12 shapes, then a noise image, then a re-encoded copy of image 0, once."""
    rng = np.random.default_rng(0)
    images = [draw_shape(color, shape, rng=rng) for color, shape in CLASSES for _ in range(PER_CLASS)]
    noise = Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    embeddings = encode_pil(shapes_model, images + [noise, _reencoded(images[0])])
    labels = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    names = [caption(*c) for c in CLASSES]
    text = normalize(shapes_model.encode_texts(names).astype(np.float32))
    return embeddings, labels, names, text, float(shapes_model.logit_scale)


def _plant(labels: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    planted = rng.choice(len(labels), PLANTED, replace=False)
    noisy = labels.copy()
    noisy[planted] = (labels[planted] + rng.integers(1, len(CLASSES), PLANTED)) % len(CLASSES)
    return noisy, planted


@pytest.mark.parametrize("method", li.OOF_METHODS)
def test_planted_mistakes_rank_at_the_top(shapes_folder, method):
    embeddings, labels, names, _text, scale = shapes_folder
    f = embeddings[:len(labels)]
    precisions = []
    for seed in range(PLANTINGS):
        noisy, planted = _plant(labels, seed)
        probs = li.out_of_fold_probabilities(f, noisy, names, method=method, logit_scale=scale)
        top = li.confident_learning(noisy, probs).issues[:PLANTED]
        precisions.append(len(set(top.tolist()) & set(planted.tolist())) / PLANTED)
    assert np.mean(precisions) >= PRECISION_FLOOR[method], precisions


def test_issues_carry_their_evidence(shapes_folder):
    embeddings, labels, names, _text, scale = shapes_folder
    f = embeddings[:len(labels)]
    noisy, planted = _plant(labels, 1)
    probs = li.out_of_fold_probabilities(f, noisy, names, logit_scale=scale)     # GDA, the default
    issues = li.label_issues(noisy, probs, names, names=[f"img{i}" for i in range(len(f))])
    assert {x.index for x in issues[:PLANTED]} == set(planted.tolist())
    first = issues[0]
    assert first.rank == 1 and first.given == noisy[first.index] and first.predicted == labels[first.index]
    assert first.given_name == names[first.given] and first.name == f"img{first.index}"
    assert first.self_confidence == pytest.approx(probs[first.index, first.given])
    assert first.predicted_probability == pytest.approx(probs[first.index].max())
    assert first.top[0] == (names[first.predicted], pytest.approx(first.predicted_probability))
    assert [x.self_confidence for x in issues] == sorted(x.self_confidence for x in issues)
    assert [x.rank for x in issues] == list(range(1, len(issues) + 1))
    row = json.loads(json.dumps(first.as_dict()))
    assert row["given"] == names[first.given] and row["predicted"] == names[first.predicted]
    assert len(li.label_issues(noisy, probs, names, limit=2)) == 2
    # the same probabilities through cleanlab: the same issues in the same order
    assert [x.index for x in issues] == _cleanlab_issues(noisy, probs).tolist()


def test_zero_shot_joins_as_fewshot_mixes_it(shapes_folder):
    embeddings, labels, names, text, scale = shapes_folder
    f = normalize(embeddings[:len(labels)])
    mixed = li.out_of_fold_logits(f, labels, names, method="prototype", zeroshot=text, logit_scale=scale,
                                  folds=3, seed=2)
    fold = li.stratified_folds(labels, 3, seed=2)
    test = fold == 0
    protos = prototypes(f[~test], labels[~test], len(names))
    expected = scale * (0.5 * f[test] @ text.T + 0.5 * f[test] @ protos.T)     # w = 0.5
    np.testing.assert_allclose(mixed[test], expected, rtol=1e-4, atol=1e-3)
    alone = li.out_of_fold_probabilities(f, labels, names, logit_scale=scale)
    with_text = li.out_of_fold_probabilities(f, labels, names, zeroshot=text, logit_scale=scale)
    assert not np.allclose(alone, with_text)
    assert (alone.argmax(axis=1) == labels).mean() >= 0.9    # GDA reads these classes out of fold
    assert "zero-shot" in li.out_of_fold_note(zeroshot=True)


def test_noise_image_is_the_first_outlier(shapes_folder):
    embeddings, labels, _names, _text, _scale = shapes_folder
    f = embeddings[:len(labels) + 1]                  # the shapes and the noise image
    outliers = li.knn_outliers(f, k=10)
    assert outliers.ranked[0] == len(labels)
    top = outliers.top(3, names=[str(i) for i in range(len(f))])
    assert top[0]["index"] == len(labels) and len(top[0]["nearest"]) == 10
    json.dumps(outliers.as_dict(3))


def test_knn_outliers_rank_as_cleanlab_out_of_distribution():
    outlier = pytest.importorskip("cleanlab.outlier")
    x = normalize(np.random.default_rng(3).normal(size=(80, 8)).astype(np.float32))
    ours = li.knn_outliers(x, k=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = outlier.OutOfDistribution().fit_score(features=x)   # k 10, cosine, exp(-d / median)
    np.testing.assert_allclose(theirs, np.exp(-ours.scores / np.median(ours.scores)), atol=1e-6)
    assert np.array_equal(np.argsort(theirs, kind="stable"), ours.ranked)


def test_cross_folder_duplicate_is_found(shapes_folder):
    embeddings, labels, names, _text, _scale = shapes_folder
    f = np.concatenate([embeddings[:len(labels)], embeddings[-1:]])   # the copy of image 0, last
    moved = np.append(labels, 3)                      # filed under another class
    pairs = li.cross_folder_duplicates(f, moved, threshold=0.95)
    assert pairs and pairs[0][:2] == (0, len(labels)) and pairs[0].cosine >= 0.95
    assert all(moved[p.i] != moved[p.j] for p in pairs)
    assert pairs[0].as_dict(moved, names)["label_j"] == names[3]
    same = li.cross_folder_duplicates(f, np.append(labels, labels[0]), threshold=0.95)
    assert (0, len(labels)) not in [(p.i, p.j) for p in same]


def test_knn_and_duplicates_blocks_progress_and_cancel():
    x = normalize(np.random.default_rng(4).normal(size=(23, 6)).astype(np.float32))
    x[7] = x[3]                                      # an exact duplicate: each still skips itself
    labels = np.arange(23) % 3
    labels[7] = (labels[3] + 1) % 3
    whole, blocks = li.knn_outliers(x, k=4), li.knn_outliers(x, k=4, chunk=5)
    assert np.array_equal(whole.neighbours, blocks.neighbours)
    assert whole.neighbours[3, 0] == 7 and whole.neighbours[7, 0] == 3
    assert not (whole.neighbours == np.arange(23)[:, None]).any()
    seen = []
    pairs = li.cross_folder_duplicates(x, labels, 0.5, chunk=5, progress=lambda d, t: seen.append((d, t)))
    assert pairs == li.cross_folder_duplicates(x, labels, 0.5)
    assert pairs[0][:2] == (3, 7) and seen[-1] == (23, 23) and len(seen) == 5
    with pytest.raises(li.Cancelled):
        li.knn_outliers(x, k=4, chunk=5, should_stop=lambda: True)
