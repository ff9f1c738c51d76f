"""SpLiCE (Bhalla et al., NeurIPS 2024, "Interpreting CLIP with Sparse Linear Concept Embeddings"):
each image embedding as a sparse, non-negative combination of word embeddings.

Computed as the authors' code computes it (AI4LIFE-GROUP/SpLiCE, Apache-2.0: splice/splice.py `load`
builds the dictionary, splice/model.py `SPLICE.encode_image` / `decompose` / `recompose_image`):

    concepts = normalize(normalize(T) - mean(normalize(T)))            # T: word embeddings [W, D]
    x        = normalize(normalize(image) - image_mean)
    weights  = argmin_{w >= 0} 1/(2D) |x - concepts^T w|^2 + alpha |w|_1,   alpha = l1_penalty / (2D)
               (sklearn Lasso(alpha, fit_intercept=False, positive=True, max_iter=10000, tol=1e-6),
               one image at a time, their 'skl' solver)
    recon    = normalize(normalize(weights @ concepts) + image_mean)   # the dense reconstruction

Where this differs from theirs, on purpose:
  - `image_mean` is the mean of the indexed folder's own image embeddings (the caller passes it;
    `folder_mean`), not their precomputed per-backbone mean of MSCOCO images, which exists for four
    backbones only and would be a download.
  - the vocabulary is the shipped offline one (vocabulary.py), not their LAION list fetched at run
    time; the words are encoded bare, as they encode theirs.
  - DEFAULT_L1_PENALTY is 0.25, the value of their README's examples and decompose_image.py's usage
    (SPLICE's constructor default is 0.01, which keeps hundreds of concepts; their helper functions
    default to 0.15); a caller may pass any value.
  - numpy in and out (their code is torch); the solver sees the same float32 arrays theirs does
    (scikit-learn's Lasso keeps float32), so the weights agree with theirs to float32 precision.
  - their optional ADMM solver (splice/admm.py: a batched solver for a GPU, factoring a W x W matrix)
    is not here: on a CPU it is slower than the Lasso; this module is the 'skl' path only.

Cost: the Lasso takes ~0.8 s per image against 10,000 words (512-d, 2 busy CPUs), so decompose single
images or a selection's mean, not whole folders.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from explorer.embed.vectors import normalize

DEFAULT_L1_PENALTY = 0.25


class SpliceCancelled(RuntimeError):
    """should_stop() said stop before every image was decomposed."""


def splice_concepts(word_vectors: np.ndarray) -> np.ndarray:
    """Their dictionary: word vectors normalised, minus their mean, renormalised [W, D]."""
    concepts = normalize(word_vectors)
    return normalize(concepts - concepts.mean(axis=0))


def folder_mean(image_embeddings: np.ndarray) -> np.ndarray:
    """The mean of the (normalised) image embeddings: the `image_mean` this project uses [D]."""
    return normalize(image_embeddings).mean(axis=0)


def centre_images(image_embeddings: np.ndarray, image_mean: np.ndarray) -> np.ndarray:
    """Their encode_image before the solver: normalised, minus the image mean, renormalised."""
    return normalize(normalize(image_embeddings) - np.asarray(image_mean, dtype=np.float32)[None, :])


def decompose(image_embeddings: np.ndarray, concepts: np.ndarray, image_mean: np.ndarray,
              l1_penalty: float = DEFAULT_L1_PENALTY, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Sparse non-negative weights [N, W] over `concepts` (splice_concepts of the word vectors) for each
    image embedding [N, D], by their 'skl' solver with their settings (see the module's docstring)."""
    from sklearn import linear_model

    x = centre_images(np.atleast_2d(image_embeddings), image_mean)
    dictionary = np.asarray(concepts, dtype=np.float32)
    alpha = l1_penalty / (2 * dictionary.shape[1])  # their correction for sklearn's 1/(2 n_samples) scaling
    clf = linear_model.Lasso(alpha=alpha, fit_intercept=False, positive=True, max_iter=10000, tol=1e-6)
    design = dictionary.T
    weights = np.zeros((len(x), len(dictionary)), dtype=np.float32)
    for i in range(len(x)):
        if should_stop is not None and should_stop():
            raise SpliceCancelled(f"stopped after {i} of {len(x)} images")
        clf.fit(design, x[i])
        weights[i] = clf.coef_
        if progress is not None:
            progress(i + 1, len(x))
    return weights


def recompose(weights: np.ndarray, concepts: np.ndarray, image_mean: np.ndarray) -> np.ndarray:
    """Their recompose_image: normalize(normalize(weights @ concepts) + image_mean) [N, D]."""
    dense = normalize(np.atleast_2d(weights).astype(np.float32) @ np.asarray(concepts, dtype=np.float32))
    return normalize(dense + np.asarray(image_mean, dtype=np.float32)[None, :])


def cosines(image_embeddings: np.ndarray, weights: np.ndarray, concepts: np.ndarray,
            image_mean: np.ndarray) -> np.ndarray:
    """Per image, the cosine between its embedding and its SpLiCE reconstruction (their return_cosine,
    one value per image instead of the batch's sum)."""
    return np.sum(normalize(image_embeddings) * recompose(weights, concepts, image_mean), axis=1)


def top_concepts(weights_row: np.ndarray, words: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """The non-zero weights of one image, largest first (at most k): [(word, weight), ...]."""
    row = np.asarray(weights_row, dtype=np.float32)
    order = np.argsort(-row, kind="stable")[:max(0, int(k))]
    return [(words[i], float(row[i])) for i in order if row[i] > 0]
