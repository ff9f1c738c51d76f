"""SpLiCE (explorer/science/splice.py) against a line-by-line transcription of the authors' code
(AI4LIFE-GROUP/SpLiCE: splice/splice.py `load`, splice/model.py `SPLICE`), and on the shapes model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import linear_model

from explorer.science import splice
from tests.helpers import encode_pil
from tests.shapes import COLORS, SHAPES, draw_shape


# ---- their code, transcribed (torch, as in the repository) ----------------------------------------------
def their_concepts(concepts: torch.Tensor) -> torch.Tensor:
    """splice/splice.py load(): the dictionary from the stacked word embeddings."""
    concepts = torch.nn.functional.normalize(concepts, dim=1)
    concepts = torch.nn.functional.normalize(concepts - torch.mean(concepts, dim=0), dim=1)
    return concepts


class TheirSplice:
    """splice/model.py SPLICE with solver='skl', return_weights=True, clip=None (inputs are embeddings)."""

    def __init__(self, image_mean, dictionary, l1_penalty=0.01):
        self.image_mean = image_mean
        self.dictionary = dictionary
        self.l1_penalty = l1_penalty / (2 * self.image_mean.shape[0])

    def decompose(self, embedding):
        clf = linear_model.Lasso(alpha=self.l1_penalty, fit_intercept=False, positive=True, max_iter=10000,
                                 tol=1e-6)
        skl_weights = []
        for i in range(embedding.shape[0]):
            clf.fit(self.dictionary.T.cpu().numpy(), embedding[i, :].cpu().numpy())
            skl_weights.append(torch.tensor(clf.coef_))
        weights = torch.stack(skl_weights, dim=0)
        return weights

    def recompose_image(self, weights):
        recon_image = weights @ self.dictionary
        recon_image = torch.nn.functional.normalize(recon_image, dim=1)
        recon_image = torch.nn.functional.normalize(recon_image + self.image_mean, dim=1)
        return recon_image

    def encode_image(self, image):
        image = torch.nn.functional.normalize(image, dim=1)
        centered_image = torch.nn.functional.normalize(image - self.image_mean, dim=1)
        weights = self.decompose(centered_image)
        return weights


# ---- transcription checks --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_case():
    rng = np.random.default_rng(0)
    words = rng.normal(size=(40, 24)).astype(np.float32) + 0.5    # an offset, as text embeddings have
    images = rng.normal(size=(5, 24)).astype(np.float32) + 0.3
    image_mean = splice.folder_mean(rng.normal(size=(30, 24)).astype(np.float32) + 0.3)
    return words, images, image_mean


def test_dictionary_matches_their_load(random_case):
    words, _, _ = random_case
    theirs = their_concepts(torch.from_numpy(words)).numpy()
    np.testing.assert_allclose(splice.splice_concepts(words), theirs, atol=1e-6)


@pytest.mark.parametrize("l1_penalty", [0.01, 0.25])
def test_weights_and_reconstruction_match_theirs(random_case, l1_penalty):
    words, images, image_mean = random_case
    dictionary = their_concepts(torch.from_numpy(words))
    theirs = TheirSplice(torch.from_numpy(image_mean), dictionary, l1_penalty=l1_penalty)
    their_weights = theirs.encode_image(torch.from_numpy(images))
    ours = splice.decompose(images, splice.splice_concepts(words), image_mean, l1_penalty=l1_penalty)
    assert ours.shape == (5, 40)
    np.testing.assert_allclose(ours, their_weights.numpy(), atol=1e-5)
    assert (ours > 0).any() and (ours >= 0).all()
    their_recon = theirs.recompose_image(their_weights.float()).numpy()
    np.testing.assert_allclose(splice.recompose(ours, splice.splice_concepts(words), image_mean), their_recon,
                               atol=1e-5)
    # a larger penalty keeps fewer concepts
    if l1_penalty == 0.25:
        looser = splice.decompose(images, splice.splice_concepts(words), image_mean, l1_penalty=0.01)
        assert (ours > 0).sum() < (looser > 0).sum()


def test_a_planted_combination_is_recovered():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(60)]
    concepts = splice.splice_concepts(rng.normal(size=(60, 64)).astype(np.float32))
    image_mean = splice.folder_mean(rng.normal(size=(20, 64)).astype(np.float32) + 1.0)
    planted = concepts[7] + 0.5 * concepts[31]
    image = image_mean + 0.8 * planted / np.linalg.norm(planted)
    weights = splice.decompose(image[None, :], concepts, image_mean)
    top = splice.top_concepts(weights[0], words, k=5)
    assert [w for w, _ in top[:2]] == ["w7", "w31"]
    assert top[0][1] > top[1][1] > 0
    assert splice.cosines(image[None, :], weights, concepts, image_mean)[0] > 0.9


def test_top_concepts_lists_only_nonzero_weights_largest_first():
    row = np.array([0.0, 0.3, 0.0, 0.7, 0.1], dtype=np.float32)
    expected = [("d", pytest.approx(0.7)), ("b", pytest.approx(0.3)), ("e", pytest.approx(0.1))]
    assert splice.top_concepts(row, list("abcde"), k=10) == expected
    assert splice.top_concepts(row, list("abcde"), k=1) == [("d", pytest.approx(0.7))]


def test_progress_and_cancel(random_case):
    words, images, image_mean = random_case
    concepts = splice.splice_concepts(words)
    seen = []
    splice.decompose(images, concepts, image_mean, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]
    asked = []
    with pytest.raises(splice.SpliceCancelled, match="after 2 of 5"):
        splice.decompose(images, concepts, image_mean, should_stop=lambda: asked.append(1) or len(asked) > 2)


def test_shapes_images_decompose_into_their_colour_and_shape(shapes_model):
    """On the shapes model, with a small vocabulary of colours, shapes and distractors, a folder's
    images are made mostly of their own colour and shape words."""
    classes = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")]
    rng = np.random.default_rng(3)
    images = [draw_shape(c, s, rng=rng) for c, s in classes for _ in range(3)]
    embeddings = encode_pil(shapes_model, images)
    words = list(COLORS) + list(SHAPES) + ["dog", "car", "tree", "house", "book"]
    concepts = splice.splice_concepts(shapes_model.encode_texts(words))
    weights = splice.decompose(embeddings, concepts, splice.folder_mean(embeddings))
    for row, (colour, shape) in zip(weights[::3], classes):
        top = [w for w, _ in splice.top_concepts(row, words, k=2)]
        assert set(top) == {colour, shape}, (colour, shape, splice.top_concepts(row, words, k=5))
