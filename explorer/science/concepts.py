"""Groups of images and the words that tell them apart.

- `cluster`: k-means (scikit-learn, seeded, a fixed n_init) or HDBSCAN (scikit-learn's; -1 = noise) on
  the leading principal components of the unit image embeddings (Euclidean distance between unit
  vectors orders pairs as cosine does). Costs on 2 busy CPUs, 512-d: k-means k=20 of 10,000 points
  took 44 s on the full vectors and ~5 s (PCA included) on 50 components; HDBSCAN of 50,000 points on
  32 components took 250 s, hence the sample (10,000: ~10 s) and nearest-neighbour labels for the rest.
- `best_words`: the words whose embeddings point most the way a group's centroid points away from the
  folder's mean image. Both sides are mean-centred as SpLiCE builds its concept dictionary
  (splice.py): the word vectors normalised, minus the vocabulary's mean, renormalised; the centroid
  minus the folder's mean image, renormalised; then ranked by cosine. Without the centring every group
  of one folder would be named by the same words (those nearest to what the whole folder has in
  common, and text and image vectors sit in separate cones: the modality gap), so the centring is what
  makes names tell groups apart.
- `cluster_names`: `best_words` for each cluster's centroid, centred on the folder's mean.
- `selection_words`: the same for a hand-picked selection.
- `compare_selections`: the direction from selection A to selection B, the difference of their mean
  embeddings (as a concept-activation-style direction: RAVE and TCAV-like "what changes from A to B"),
  with the words and the images of the folder furthest along it, both ways.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorer.embed.vectors import normalize

CLUSTER_METHODS = ("kmeans", "hdbscan")
KMEANS_N_INIT = 10          # k-means restarts (fixed so a seed gives the same labels)
KMEANS_DIMS = 50            # k-means runs on this many principal components (10x less work than 512-d)
HDBSCAN_DIMS = 32           # HDBSCAN runs on this many principal components (its trees are slow in 512-d)
HDBSCAN_SAMPLE = 10_000     # HDBSCAN fits at most this many points (50,000 took minutes on 2 CPUs)

Word = tuple[str, float]


def concept_matrix(word_vectors: np.ndarray) -> np.ndarray:
    """Word vectors as SpLiCE's dictionary: normalised, minus their mean, renormalised [W, D]."""
    from .splice import splice_concepts
    return splice_concepts(word_vectors)


def _centred(vectors: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if centre is not None:
        vectors = vectors - np.asarray(centre, dtype=np.float32)[None, :]
    return normalize(vectors)


def _ranked(scores: np.ndarray, words: Sequence[str], k: int) -> list[Word]:
    k = max(0, min(int(k), len(words)))
    if k == 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((top, -scores[top]))]   # best first; ties by position in the vocabulary
    return [(words[i], float(scores[i])) for i in top]


def best_words(direction_or_centroids: np.ndarray, word_vectors: np.ndarray, words: Sequence[str], k: int = 3,
               centre: np.ndarray | None = None, concepts: np.ndarray | None = None
               ) -> list[Word] | list[list[Word]]:
    """The k words (word, cosine) nearest each row of `direction_or_centroids` ([D] -> one list, [G, D]
    -> one list per row), after the rows are centred on `centre` (the folder's mean image; None: a
    direction, used as it is) and the words as SpLiCE centres them. `concepts` may pass
    concept_matrix(word_vectors) computed once."""
    if len(words) != len(word_vectors):
        raise ValueError(f"{len(words)} words but {len(word_vectors)} word vectors")
    single = np.asarray(direction_or_centroids).ndim == 1
    rows = _centred(direction_or_centroids, centre)
    dictionary = concept_matrix(word_vectors) if concepts is None else concepts
    scores = rows @ dictionary.T
    named = [_ranked(row, words, k) for row in scores]
    return named[0] if single else named


def cluster(embeddings: np.ndarray, method: str = "kmeans", k: int = 8, seed: int = 0,
            min_cluster_size: int | None = None) -> np.ndarray:
    """Cluster labels [N] int. k-means: k groups (k-means++ starts, KMEANS_N_INIT restarts, `seed`) on
    the first KMEANS_DIMS principal components. HDBSCAN: no k; groups of at least `min_cluster_size`
    (default max(5, N // 100)), -1 = noise; on the first HDBSCAN_DIMS principal components of at most
    HDBSCAN_SAMPLE points (a seeded sample; every other point takes the label of its nearest sampled
    point). The same inputs give the same labels."""
    x = normalize(embeddings)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if method == "kmeans":
        from sklearn.cluster import KMeans
        k = max(1, min(int(k), n))
        model = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed)
        return model.fit_predict(_reduced(x, KMEANS_DIMS, seed)).astype(np.int64)
    if method == "hdbscan":
        return _hdbscan_labels(x, min_cluster_size, seed)
    raise ValueError(f"unknown cluster method {method!r}: use one of {', '.join(CLUSTER_METHODS)}")


def _hdbscan_labels(x: np.ndarray, min_cluster_size: int | None, seed: int) -> np.ndarray:
    n = len(x)
    sample = np.arange(n)
    if n > HDBSCAN_SAMPLE:
        sample = np.sort(np.random.default_rng(seed).choice(n, HDBSCAN_SAMPLE, replace=False))
    size = int(min_cluster_size or max(5, n // 100))
    size = max(2, round(size * len(sample) / n))   # the same share of the sample
    if len(sample) < size:
        return np.full(n, -1, dtype=np.int64)
    fitted = _hdbscan(size).fit_predict(_reduced(x[sample], HDBSCAN_DIMS, seed)).astype(np.int64)
    if len(sample) == n:
        return fitted
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):   # nearest sampled point by cosine, a block at a time
        labels[start:start + 4096] = fitted[np.argmax(x[start:start + 4096] @ x[sample].T, axis=1)]
    labels[sample] = fitted
    return labels


def _hdbscan(size: int):
    from sklearn.cluster import HDBSCAN
    try:
        return HDBSCAN(min_cluster_size=size, copy=True)   # said, so scikit-learn 1.9 does not warn
    except TypeError:   # a scikit-learn before `copy`
        return HDBSCAN(min_cluster_size=size)


def _reduced(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """The first `dims` principal components (randomised SVD, seeded); x itself when not wider."""
    if x.shape[1] <= dims or len(x) <= dims:
        return x
    from sklearn.decomposition import PCA
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed)
    return pca.fit_transform(x).astype(np.float32)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """label -> mean embedding of its members (noise, -1, left out)."""
    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    return {int(g): x[labels == g].mean(axis=0) for g in np.unique(labels) if g >= 0}


def cluster_names(embeddings: np.ndarray, labels: np.ndarray, word_vectors: np.ndarray, words: Sequence[str],
                  k: int = 3) -> dict[int, list[Word]]:
    """label -> its k best words (best_words of its centroid, centred on the mean of all `embeddings`)."""
    means = centroids(embeddings, labels)
    if not means:
        return {}
    centre = np.asarray(embeddings, dtype=np.float32).mean(axis=0)
    names = best_words(np.stack(list(means.values())), word_vectors, words, k=k, centre=centre)
    return dict(zip(means, names))


def selection_words(embeddings: np.ndarray, picked_idx: Sequence[int], word_vectors: np.ndarray,
                    words: Sequence[str], k: int = 5) -> list[Word]:
    """The k words that best tell the picked images from the whole folder (their mean, centred on the
    folder's mean). An empty selection has no words."""
    picked = np.asarray(picked_idx, dtype=np.int64)
    if picked.size == 0:
        return []
    x = np.asarray(embeddings, dtype=np.float32)
    return best_words(x[picked].mean(axis=0), word_vectors, words, k=k, centre=x.mean(axis=0))


@dataclass
class Direction:
    """From selection A to selection B: `vector` the unit direction mean(B) - mean(A); `length` the
    distance between the two means; words and folder images furthest along it each way, with their
    cosine (words: the centred word vector's; images: the projection of the unit embedding on the
    direction)."""
    vector: np.ndarray
    length: float
    words_b: list[Word]
    words_a: list[Word]
    images_b: list[tuple[int, float]]
    images_a: list[tuple[int, float]]
    size_a: int
    size_b: int

    def as_dict(self) -> dict:
        return {"length": round(self.length, 6), "size_a": self.size_a, "size_b": self.size_b,
                "words_b": [[w, round(s, 6)] for w, s in self.words_b],
                "words_a": [[w, round(s, 6)] for w, s in self.words_a],
                "images_b": [[i, round(s, 6)] for i, s in self.images_b],
                "images_a": [[i, round(s, 6)] for i, s in self.images_a]}


def compare_selections(embeddings: np.ndarray, a_idx: Sequence[int], b_idx: Sequence[int],
                       word_vectors: np.ndarray, words: Sequence[str], k: int = 10) -> Direction:
    """What changes from A to B: the direction mean(B) - mean(A) of the unit image embeddings, the
    k words most along it (towards B) and against it (towards A), and the k images of the whole folder
    furthest each way. ValueError when either selection is empty."""
    x = normalize(embeddings)
    a = np.asarray(a_idx, dtype=np.int64)
    b = np.asarray(b_idx, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        raise ValueError("compare needs two selections, A and B, each with at least one image")
    gap = x[b].mean(axis=0) - x[a].mean(axis=0)
    length = float(np.linalg.norm(gap))
    unit = normalize(gap)
    scores = concept_matrix(word_vectors) @ unit
    along = x @ unit
    positions = [str(i) for i in range(len(x))]
    images_b = [(int(i), s) for i, s in _ranked(along, positions, k)]
    images_a = [(int(i), s) for i, s in _ranked(-along, positions, k)]
    return Direction(unit, length, _ranked(scores, words, k), _ranked(-scores, words, k), images_b, images_a,
                     int(a.size), int(b.size))
