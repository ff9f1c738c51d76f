"""Likely mistakes in a labelled folder: images filed under the wrong class, outliers, and the same
picture filed under two classes.

- Out-of-fold probabilities (`out_of_fold_probabilities`): the images are split into K stratified
  folds (seeded); each fold's images are scored by a classifier fitted on the other folds only, so no
  image's probabilities come from a classifier that saw its own label. The classifier is one of
  explorer.science.fewshot's, fitted as fewshot fits it:
    prototype, no class text:  p = softmax(s * f P^T), P the normalised class means (nearest class
                               mean, cosine, at the model's logit scale s);
    gda, no class text:        p = softmax(f W^T + b), GDA's own logits (shared shrunk covariance,
                               mrflogs/ICLR24's estimator; fewshot's formula with alpha = 100/s);
    with class text T [C, D] (`zeroshot`): fewshot's combination with zero-shot at its defaults,
      prototype: s * ((1 - w) f T^T + w f P^T), w = 0.5;  gda: s f T^T + (s/100) alpha (f W^T + b),
      alpha = 0.1 (`params` overrides both).
  A class with no image in the other folds (a class of one image) gets probability 0 for that fold.
  The default is GDA on the images alone. Measured on the shapes model (6 classes x 12 images, 4
  labels moved to another class, 30 seeded plantings, tests/test_label_issues.py's setup), mean
  precision at 4 of confident learning's ranking: GDA 1.00 (red/orange x 3 shapes, confusable) and
  1.00 (6 distinct classes); prototype 0.83 / 0.87; with zero-shot mixed in, GDA 0.88 / 0.94 and
  prototype 0.82 / 0.85. With 8 moved: GDA 0.98 / 1.00, prototype 0.89 / 0.93. Class text is
  therefore off unless asked for: here it softens the probabilities (zero-shot dominates at the
  papers' weights), and confident learning then counts fewer images as confidently in another class.
  Temperature scaling the out-of-fold logits to the given labels (Guo et al.) lowered precision too
  (it softens them further), so it is not done.
- Confident learning (`confident_learning`): Northcutt, Jiang & Chuang, JAIR 2021, exactly as
  cleanlab 2.x computes `filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate",
  return_indices_ranked_by="self_confidence")` with its defaults (frac_noise 1, min_examples_per_class
  1): per-class thresholds t_k = mean p_k over the images labelled k (clipped below at 2e-6); the
  confident joint C[given, true] counts each image whose p_j >= t_j - 1e-6 for some j under the
  confident class (the arg-max among several), every diagonal at least 1, then calibrated to the
  given-label counts and rounded preserving row totals (count.compute_confident_joint,
  calibrate_confident_joint); prune by noise rate: for each given class k and each other class j,
  the C'[k, j] images labelled k with the largest margin p_j - p_k are issues (C' = the joint after
  `_keep_at_least_n_per_class`, which also truncates to integers as cleanlab does); issues whose
  given label is the arg-max (within 1e-6) are dropped; the rest are ranked by self-confidence
  p_given, lowest first. cleanlab's multiprocessing changes nothing in the result (one class per
  task), so this runs in one process. Classes with a single image are never pruned (cleanlab
  likewise). tests/test_label_issues.py checks equality with cleanlab itself.
- kNN outliers (`knn_outliers`): the mean cosine distance (1 - cosine) to the k nearest other images,
  the score cleanlab's OutOfDistribution ranks by for features (its exp(-d / median) transform keeps
  the order); highest first.
- Cross-folder duplicates (`cross_folder_duplicates`): pairs with cosine >= threshold whose labels
  differ, by exact all-pairs cosines (chunked), most similar first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from explorer.embed.probability import as_scoring, softmax
from explorer.embed.vectors import normalize

from .fewshot import PAPER_SCALE, fit

OOF_METHODS = ("prototype", "gda")
# cleanlab.internal.constants
FLOATING_POINT_COMPARISON = 1e-6
CONFIDENT_THRESHOLDS_LOWER_BOUND = 2 * FLOATING_POINT_COMPARISON
TINY_VALUE = 1e-100


# ---- out-of-fold probabilities ---------------------------------------------------------------------
def stratified_folds(labels, folds: int = 5, seed: int = 0) -> np.ndarray:
    """[N] fold number of each image: each class's images shuffled (seeded) and dealt round-robin,
    the deal carrying on from one class to the next so the folds' sizes differ by at most one."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    start = 0
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        out[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return out


def _class_count(classes) -> int:
    return int(classes) if isinstance(classes, (int, np.integer)) else len(classes)


def _fold_logits(method: str, train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, classes: int,
                 text: np.ndarray | None, scale: float, params: dict | None) -> np.ndarray:
    """[T, C] logits of the held-out images by `method` fitted on the training images; classes absent
    from the training images get -inf."""
    present = np.unique(train_y)
    remap = np.full(classes, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    dim = train_f.shape[1]
    if text is None:
        own = {"prototype": {"weight": 1.0}, "gda": {"alpha": PAPER_SCALE / scale}}[method]
        class_text = np.zeros((len(present), dim), np.float32)
    else:
        own, class_text = {}, text[present]
    model = fit(method, train_f, remap[train_y], [str(k) for k in present], class_text, scale,
                dict(own, **(params or {})))
    out = np.full((len(test_f), classes), -np.inf)
    out[:, present] = model.logits(test_f)
    return out


def out_of_fold_logits(embeddings, labels, classes, *, method: str = "gda", folds: int = 5,
                       seed: int = 0, zeroshot=None, logit_scale=100.0,
                       params: dict | None = None) -> np.ndarray:
    """[N, C] logits of each image, each from a classifier fitted on the other folds (see
    out_of_fold_probabilities); -inf for a class absent from the other folds."""
    if method not in OOF_METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(OOF_METHODS)}")
    count = _class_count(classes)
    f = normalize(np.asarray(embeddings, dtype=np.float32))
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"need one label per embedding (got {len(f)} embeddings, {len(y)} labels)")
    if len(y) and (y.min() < 0 or y.max() >= count):
        raise ValueError(f"labels must be class indices from 0 to {count - 1}")
    if len(y) < 2:
        raise ValueError("need at least two labelled images")
    text = None if zeroshot is None else np.asarray(zeroshot, dtype=np.float32)
    if text is not None and text.shape != (count, f.shape[1]):
        raise ValueError(f"class text must be [{count}, {f.shape[1]}], got {list(text.shape)}")
    scale = as_scoring(logit_scale).scale
    k = max(2, min(int(folds), int(np.bincount(y).max())))
    fold = stratified_folds(y, k, seed)
    logits = np.full((len(y), count), -np.inf)
    for held in range(k):
        test = fold == held
        if test.any() and not test.all():
            logits[test] = _fold_logits(method, f[~test], y[~test], f[test], count, text, scale, params)
    return logits


def out_of_fold_probabilities(embeddings, labels, classes, *, method: str = "gda", folds: int = 5,
                              seed: int = 0, zeroshot=None, logit_scale=100.0,
                              params: dict | None = None) -> np.ndarray:
    """[N, C] probabilities of each image's class, each from a classifier fitted on the other folds
    (see the module docstring for the classifiers and how class text joins them). `classes`: the class
    names, or their number; `labels`: class indices; `logit_scale`: the model's scale (a number, a
    Scoring or a model; adapted classifiers always use a softmax); `zeroshot`: class text embeddings
    [C, D] or None. K is at most the largest class's size, and at least 2."""
    logits = out_of_fold_logits(embeddings, labels, classes, method=method, folds=folds, seed=seed,
                                zeroshot=zeroshot, logit_scale=logit_scale, params=params)
    return softmax(logits)


def out_of_fold_note(method: str = "gda", folds: int = 5, seed: int = 0, zeroshot: bool = False) -> str:
    """One sentence for the page and the JSON: where the probabilities came from."""
    how = {"prototype": "nearest class mean (cosine, at the model's logit scale)",
           "gda": "Gaussian discriminant analysis (shared covariance, as Wang et al. ICLR 2024)"}[method]
    text = (" mixed with zero-shot on the class names as the Teach tab mixes them" if zeroshot
            else ", images only (no class text)")
    return (f"out-of-fold probabilities: {folds} stratified folds (seed {seed}); each image scored by a "
            f"{how}{text}, fitted on the other folds")


# ---- confident learning, as cleanlab computes it ---------------------------------------------------
def _check_probabilities(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"need [N, C] probabilities for N labels (got {list(p.shape)} for {len(y)})")
    if len(y) == 0 or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class indices from 0 to {p.shape[1] - 1}")
    if len(np.unique(y)) < 2:
        raise ValueError("confident learning needs at least two classes among the labels")
    return y, p


def confident_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """[C] t_k = mean p_k over the images labelled k (2 for a class nobody has: never confident),
    clipped below at 2e-6 (cleanlab count.get_confident_thresholds)."""
    present = set(np.unique(labels).tolist())
    t = [np.mean(probabilities[:, k][labels == k]) if k in present else 2
         for k in range(probabilities.shape[1])]
    return np.clip(t, a_min=CONFIDENT_THRESHOLDS_LOWER_BOUND, a_max=None)


def round_preserving_sum(values) -> np.ndarray:
    """Round to integers keeping the (rounded) sum (cleanlab.internal.util.round_preserving_sum)."""
    floats = np.asarray(values, dtype=float)
    ints = floats.round()
    orig_sum = np.sum(floats).round()
    int_sum = np.sum(ints).round()
    while abs(int_sum - orig_sum) > FLOATING_POINT_COMPARISON:
        diff = np.round(orig_sum - int_sum)
        increment = -1 if int(diff < 0.0) else 1
        changes = min(int(abs(diff)), len(values))
        for i in np.argsort(floats - ints)[::-increment][:changes]:
            ints[i] = ints[i] + increment
        int_sum = np.sum(ints).round()
    return ints.astype(int)


def round_preserving_row_totals(matrix: np.ndarray) -> np.ndarray:
    return np.apply_along_axis(round_preserving_sum, 1, matrix).astype(int)


def calibrate_confident_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows rescaled to the given labels' counts, the whole to N, rounded keeping row totals."""
    counts = np.bincount(labels, minlength=len(joint))
    calibrated = (joint.T / np.clip(joint.sum(axis=1), a_min=TINY_VALUE, a_max=None) * counts).T
    calibrated = calibrated / np.clip(np.sum(calibrated), a_min=TINY_VALUE, a_max=None) * sum(counts)
    return round_preserving_row_totals(calibrated)


def confident_joint(labels: np.ndarray, probabilities: np.ndarray,
                    thresholds: np.ndarray) -> np.ndarray:
    """[C, C] calibrated confident joint, rows the given label, columns the confident true label
    (cleanlab count.compute_confident_joint with calibrate=True)."""
    classes = probabilities.shape[1]
    confident = probabilities >= thresholds - 1e-6
    bins = confident.sum(axis=1)
    guess = np.where(bins > 1, probabilities.argmax(axis=1), confident.argmax(axis=1))
    some = bins > 0
    # counted as [true, given] and transposed, as cleanlab's confusion_matrix(...).T: the layout decides
    # the order np.sum adds the calibrated counts in, so the last bits, so which of two halves rounds up
    joint = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(joint, (guess[some], labels[some]), 1)
    joint = joint.T
    np.fill_diagonal(joint, joint.diagonal().clip(min=1))
    return calibrate_confident_joint(joint, labels)


def keep_at_least_n_per_class(prune_counts: np.ndarray, n: int = 1) -> np.ndarray:
    """cleanlab filter._keep_at_least_n_per_class with frac_noise 1 (prune_counts = joint transposed):
    each diagonal raised to n, the rise taken evenly from the column's non-zero off-diagonals."""
    diagonal = np.diagonal(prune_counts)
    new_diagonal = np.maximum(diagonal, n)
    per_col = np.maximum(np.count_nonzero(prune_counts, axis=0) - 1.0, 1.0)
    new = prune_counts - (new_diagonal - diagonal) / per_col
    new[new < 0] = 0
    np.fill_diagonal(new, new_diagonal)
    reduced = new * 1.0                                   # _reduce_prune_counts, frac_noise 1
    np.fill_diagonal(reduced, new.diagonal() + np.sum(new - reduced, axis=0))
    return round_preserving_row_totals(reduced.astype(int)).astype(int)


def prune_by_noise_rate(labels: np.ndarray, probabilities: np.ndarray, prune_counts: np.ndarray,
                        min_examples_per_class: int = 1) -> np.ndarray:
    """[N] bool: for each given class k and other class j, the prune_counts[j, k] images labelled k
    whose margin p_j - p_k is largest (cleanlab filter._prune_by_count)."""
    mask = np.zeros(len(labels), dtype=bool)
    for k in range(probabilities.shape[1]):
        rows = labels == k
        p = probabilities[rows]
        if len(p) <= min_examples_per_class:
            continue
        own = np.zeros(len(p), dtype=bool)
        for j in range(probabilities.shape[1]):
            count = prune_counts[j, k]
            if j != k and count > 0:
                own[np.argsort(-(p[:, j] - p[:, k]))[:count]] = True
        mask[rows] = own
    return mask


@dataclass
class Ranking:
    """Confident learning's result: `issues` (image indices, the most likely mistake first) and what
    made them."""
    issues: np.ndarray            # [M] indices ranked by self-confidence, lowest first
    self_confidence: np.ndarray   # [N] p(given label)
    predicted: np.ndarray         # [N] arg-max class
    thresholds: np.ndarray        # [C] per-class confident thresholds
    joint: np.ndarray             # [C, C] calibrated confident joint (rows given, columns true)
    prune_counts: np.ndarray      # [C, C] images to prune, [true j, given k] (cleanlab's layout)
    method: str = ("confident learning (Northcutt et al. 2021) as cleanlab find_label_issues computes it: "
                   "prune by noise rate, ranked by self-confidence")

    def as_dict(self) -> dict:
        return {"method": self.method, "issues": self.issues.tolist(),
                "thresholds": [round(float(t), 6) for t in self.thresholds],
                "confident_joint": self.joint.tolist(), "prune_counts": self.prune_counts.tolist()}


def confident_learning(labels, probabilities, *, min_examples_per_class: int = 1) -> Ranking:
    """Northcutt et al.'s label issues, exactly as cleanlab's find_label_issues(labels, pred_probs,
    filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence") (module docstring)."""
    y, p = _check_probabilities(labels, probabilities)
    thresholds = confident_thresholds(y, p)
    joint = confident_joint(y, p, thresholds)
    prune_counts = keep_at_least_n_per_class(joint.T, min_examples_per_class)
    mask = prune_by_noise_rate(y, p, prune_counts, min_examples_per_class)
    nudged = np.copy(p)
    nudged[np.arange(len(y)), y] += FLOATING_POINT_COMPARISON
    mask[nudged.argmax(axis=1) == y] = False
    confidence = p[np.arange(len(y)), y]
    found = np.arange(len(y))[mask]
    issues = found[np.argsort(confidence[mask])]
    return Ranking(issues, confidence, p.argmax(axis=1), thresholds, joint, prune_counts)


@dataclass
class Issue:
    """One likely mistake with its evidence; rank 1 is the most likely."""
    index: int
    given: int
    predicted: int
    given_probability: float       # = self-confidence, the score the ranking sorts by
    predicted_probability: float
    rank: int
    given_name: str = ""
    predicted_name: str = ""
    name: str = ""                 # the image (e.g. its path in the index), when known
    top: list = field(default_factory=list)  # [(class name, probability)] best first, up to 3

    @property
    def self_confidence(self) -> float:
        return self.given_probability

    def as_dict(self) -> dict:
        return {"rank": self.rank, "index": self.index, "name": self.name,
                "given": self.given_name, "given_index": self.given, "predicted": self.predicted_name,
                "predicted_index": self.predicted,
                "given_probability": round(self.given_probability, 6),
                "self_confidence": round(self.given_probability, 6),
                "predicted_probability": round(self.predicted_probability, 6),
                "top": [[c, round(v, 6)] for c, v in self.top]}


def label_issues(labels, probabilities, class_names=None, *, names=None, limit: int | None = None,
                 ranking: Ranking | None = None) -> list[Issue]:
    """Confident learning's issues as Issue records, the most likely mistake first (rank 1); `names`
    the images' names (optional), `limit` the most to return."""
    y, p = _check_probabilities(labels, probabilities)
    ranking = ranking or confident_learning(y, p)
    class_names = [str(k) for k in range(p.shape[1])] if class_names is None else list(class_names)
    out = []
    for rank, i in enumerate(ranking.issues[:limit], start=1):
        i, given, best = int(i), int(y[i]), int(ranking.predicted[i])
        order = np.argsort(-p[i], kind="stable")[:3]
        out.append(Issue(i, given, best, float(p[i, given]), float(p[i, best]), rank, class_names[given],
                         class_names[best], "" if names is None else str(names[i]),
                         [(class_names[j], float(p[i, j])) for j in order]))
    return out


# ---- outliers and duplicates across folders --------------------------------------------------------
@dataclass
class Outliers:
    """kNN outlier scores: the mean cosine distance to the k nearest other images."""
    scores: np.ndarray       # [N] higher = more isolated
    ranked: np.ndarray       # [N] indices, the most isolated first
    neighbours: np.ndarray   # [N, k] nearest other images, nearest first
    cosines: np.ndarray      # [N, k] their cosines
    k: int

    def top(self, count: int = 20, names=None) -> list[dict]:
        """The `count` most isolated images with their evidence (rank 1 first)."""
        def name(i):
            return "" if names is None else str(names[i])
        return [{"rank": r, "index": int(i), "name": name(i), "score": round(float(self.scores[i]), 6),
                 "nearest": [{"index": int(j), "name": name(j), "cosine": round(float(c), 6)}
                             for j, c in zip(self.neighbours[i], self.cosines[i])]}
                for r, i in enumerate(self.ranked[:count], start=1)]

    def as_dict(self, count: int = 20, names=None) -> dict:
        return {"k": self.k, "score": "mean cosine distance to the k nearest other images",
                "top": self.top(count, names)}


class Cancelled(RuntimeError):
    """should_stop() said stop."""


def _rows_per_chunk(n: int, chunk: int | None) -> int:
    """Query rows per block: `chunk`, or as many as keep a block's [rows, N] scores near 64 MB."""
    return max(1, int(chunk) if chunk else min(4096, (1 << 24) // max(n, 1)))


def _steps(n: int, rows: int, progress, should_stop):
    """The block starts, with progress(done, total) after each block and should_stop() before it."""
    for start in range(0, n, rows):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped")
        yield start
        if progress is not None:
            progress(min(start + rows, n), n)


def _nearest(f: np.ndarray, k: int, chunk: int | None, progress=None,
             should_stop=None) -> tuple[np.ndarray, np.ndarray]:
    """[N, k] indices and cosines of each row's k nearest other rows: exact inner-product search
    (faiss.knn, brute force) for k + 1, each row's own entry dropped (or the last one, when an exact
    duplicate pushed it out)."""
    import faiss

    n = len(f)
    idx = np.zeros((n, k), dtype=np.int64)
    cos = np.zeros((n, k), dtype=np.float32)
    rows = _rows_per_chunk(n, chunk)
    for start in _steps(n, rows, progress, should_stop):
        block = f[start:start + rows]
        scores, found = faiss.knn(block, f, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        own = found == np.arange(start, start + len(block))[:, None]
        own[~own.any(axis=1), -1] = True
        idx[start:start + len(block)] = found[~own].reshape(len(block), k)
        cos[start:start + len(block)] = scores[~own].reshape(len(block), k)
    return idx, cos


def knn_outliers(embeddings, k: int = 10, *, chunk: int | None = None, progress=None,
                 should_stop=None) -> Outliers:
    """Each image's mean cosine distance (1 - cosine) to its k nearest other images (k capped at N - 1),
    ranked highest first: the images nothing else in the folder looks like. Exact search: N^2 D work
    (seconds for 20k images of 512 numbers on a few cores); progress(done, total) per block of
    images, should_stop() -> raise Cancelled."""
    f = np.ascontiguousarray(normalize(np.asarray(embeddings, dtype=np.float32)))
    if len(f) < 2:
        raise ValueError("need at least two images to find outliers")
    k = max(1, min(int(k), len(f) - 1))
    idx, cos = _nearest(f, k, chunk, progress, should_stop)
    scores = (1.0 - cos.astype(np.float64)).mean(axis=1)
    return Outliers(scores, np.argsort(-scores, kind="stable"), idx, cos, k)


class CrossDuplicate(NamedTuple):
    """Two images with different labels and nearly the same embedding (i < j)."""
    i: int
    j: int
    cosine: float

    def as_dict(self, labels=None, class_names=None, names=None) -> dict:
        out = {"i": self.i, "j": self.j, "cosine": round(self.cosine, 6)}
        if names is not None:
            out.update(name_i=str(names[self.i]), name_j=str(names[self.j]))
        if labels is not None:
            a, b = int(labels[self.i]), int(labels[self.j])
            if class_names:
                a, b = class_names[a], class_names[b]
            out.update(label_i=a, label_j=b)
        return out


def cross_folder_duplicates(embeddings, labels, threshold: float = 0.95, *, chunk: int | None = None,
                            progress=None, should_stop=None) -> list[CrossDuplicate]:
    """Every pair (i, j, cosine), i < j, with cosine >= threshold and different labels, most similar
    first: the same picture filed under two classes (exact all-pairs cosines, in blocks of rows;
    progress and should_stop as knn_outliers)."""
    f = normalize(np.asarray(embeddings, dtype=np.float32))
    y = np.asarray(labels).reshape(-1)
    if len(f) != len(y):
        raise ValueError(f"need one label per embedding (got {len(f)} embeddings, {len(y)} labels)")
    pairs = []
    rows = _rows_per_chunk(len(f), chunk)
    for start in _steps(len(f), rows, progress, should_stop):
        sims = f[start:start + rows] @ f[start:].T        # pairs with j >= start only: i < j
        a, b = np.nonzero(sims >= threshold)
        i, j = a + start, b + start
        keep = (j > i) & (y[i] != y[j])
        pairs.extend(CrossDuplicate(int(p), int(q), float(sims[p - start, q - start]))
                     for p, q in zip(i[keep], j[keep]))
    return sorted(pairs, key=lambda p: (-p.cosine, p.i, p.j))
