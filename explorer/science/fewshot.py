"""Training-free few-shot adaptation: a few labelled images per class correct the zero-shot classifier.

All three methods start from the zero-shot classifier of the current prompt set (class embeddings
T [C, D]) and add what the labelled "shots" (normalised image embeddings F [N, D], labels y) say.
The papers tuned their hyper-parameters with CLIP's logit scale 100; here every method's logits are
the paper's logits times s/100 for a model whose learned scale is s, so the chosen hyper-parameters
keep their meaning (the arg-max is unchanged) and probabilities come out at the model's own scale.

- prototype: the classic nearest-class-mean baseline, mixed with zero-shot:
      logits = s * ((1 - w) * f T^T + w * f P^T),  P = normalised class means of the shots.
  w = 1 is pure nearest class mean (cosine), w = 0 is zero-shot. (The mixing is this project's.)
- tip-adapter (Zhang et al., ECCV 2022; gaopengcuhk/Tip-Adapter, utils.py `search_hp`), training-free:
      logits = s * f T^T + (s/100) * alpha * exp(-beta * (1 - f K^T)) L
  with the cache keys K = the shots' embeddings and L their one-hot labels.
- gda (Wang et al., ICLR 2024, "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation";
  mrflogs/ICLR24, main_few_shots.py): class means mu, one shared precision from the shots centred on
  their class means X [N, D] with their shrinkage estimator
      Sigma^-1 = D * pinv((N - 1) * cov(X) + trace(cov(X)) * I)
  and W = mu Sigma^-1, b = log(1/C) - 1/2 diag(mu Sigma^-1 mu^T);
      logits = s * f T^T + (s/100) * alpha * (f W^T + b).

Hyper-parameters are never chosen on test images: they are chosen by stratified k-fold
cross-validation over the shots (`choose`), on the papers' grids. The authors used a separate
validation split; with a handful of shots there is none, so the folds stand in for it.
Adapted classifiers score with a softmax over the classes whatever the model's training rule: the
adapters' logits have no per-label meaning a sigmoid could read. `sort_embeddings` applies a fitted
classifier to new images, with a "none of these" bin for those no class fits (`none_threshold`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explorer.embed.model import normalize
from explorer.embed.probability import SOFTMAX, Scoring, default_none_threshold, softmax

PAPER_SCALE = 100.0
METHODS = ("zero-shot", "prototype", "tip-adapter", "gda")
GDA_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)        # mrflogs/ICLR24 main_few_shots.py
# Tip-Adapter's search grid with its ImageNet config (search_scale [7, 3], search_step [200, 20]).
TIP_BETAS = tuple(i * (7 - 0.1) / 200 + 0.1 for i in range(200))
TIP_ALPHAS = tuple(i * (3 - 0.1) / 20 + 0.1 for i in range(20))
TIP_DEFAULT = {"alpha": 1.17, "beta": 1.0}                     # its ImageNet init_alpha, init_beta
GDA_DEFAULT = {"alpha": 1.0}
PROTOTYPE_WEIGHTS = tuple(round(float(w), 2) for w in np.linspace(0.0, 1.0, 11))
PROTOTYPE_DEFAULT = {"weight": 0.5}
MAX_FOLDS = 5
_SEARCH_BUDGET = 2e8  # exp() evaluations the Tip-Adapter beta search may spend (beta grid thinned above it)


def _check(embeddings, labels, classes: int) -> tuple[np.ndarray, np.ndarray]:
    embeddings = normalize(np.asarray(embeddings, dtype=np.float32))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(
            f"need one label per embedding (got {len(embeddings)} embeddings, {len(labels)} labels)")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must be class indices from 0 to {classes - 1}")
    missing = sorted(set(range(classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"every class needs at least one labelled image; none for class number(s) {missing}")
    return embeddings, labels


def class_means(embeddings: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """[C, D] mean embedding of each class (float64)."""
    sums = np.zeros((classes, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings.astype(np.float64))
    return sums / np.bincount(labels, minlength=classes)[:, None]


def prototypes(embeddings, labels, classes: int) -> np.ndarray:
    """[C, D] normalised class means."""
    embeddings, labels = _check(embeddings, labels, classes)
    return normalize(class_means(embeddings, labels, classes))


def gda_fit(embeddings, labels, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [C, D], b [C]) of Gaussian discriminant analysis with one shared covariance, estimated as
    in mrflogs/ICLR24 (see the module docstring). With one shot per class the covariance is zero and
    so are W and the class-dependent part of b: GDA then adds nothing to zero-shot."""
    embeddings, labels = _check(embeddings, labels, classes)
    mus = class_means(embeddings, labels, classes)
    centred = embeddings.astype(np.float64) - mus[labels]
    n, dim = centred.shape
    cov = np.cov(centred, rowvar=False) if n > 1 else np.zeros((dim, dim))
    precision = dim * np.linalg.pinv((n - 1) * cov + np.trace(cov) * np.eye(dim), hermitian=True)
    weights = mus @ precision
    bias = np.log(1.0 / classes) - 0.5 * np.einsum("cd,cd->c", weights, mus)
    return weights.astype(np.float32), bias.astype(np.float32)


def tip_cache_logits(features: np.ndarray, keys: np.ndarray, key_labels: np.ndarray, classes: int,
                     beta: float) -> np.ndarray:
    """Tip-Adapter's cache term exp(-beta (1 - f K^T)) L as [N, C] (L: one-hot labels of the keys)."""
    affinity = np.asarray(features, np.float32) @ np.asarray(keys, np.float32).T
    one_hot = np.zeros((len(key_labels), classes), dtype=np.float32)
    one_hot[np.arange(len(key_labels)), key_labels] = 1.0
    return np.exp(-beta * (1.0 - affinity)) @ one_hot


@dataclass
class FewShotClassifier:
    """One fitted method: logits for new image embeddings from the zero-shot class embeddings
    `text` [C, D] plus what the shots taught (see the module docstring for each formula)."""
    method: str
    class_names: list[str]
    text: np.ndarray
    logit_scale: float
    params: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(A [C, D], c [C]) with logits = f A^T + c, for the methods that are linear in f (all but
        Tip-Adapter): one matmul scores any number of stored embeddings."""
        s, a, classes = self.logit_scale, self.arrays, len(self.class_names)
        if self.method == "zero-shot":
            return s * self.text, np.zeros(classes, np.float32)
        if self.method == "prototype":
            w = self.params["weight"]
            return s * ((1.0 - w) * self.text + w * a["prototypes"]), np.zeros(classes, np.float32)
        if self.method == "gda":
            k = (s / PAPER_SCALE) * self.params["alpha"]
            return s * self.text + k * a["W"], k * a["b"]
        return None

    def logits(self, features, chunk: int = 16384) -> np.ndarray:
        f = normalize(np.asarray(features, dtype=np.float32))
        linear = self.linear()
        if linear is not None:
            weights, bias = (np.ascontiguousarray(x, dtype=np.float32) for x in linear)
            return np.concatenate([f[i:i + chunk] @ weights.T + bias for i in range(0, len(f), chunk)]
                                  or [np.zeros((0, len(bias)), np.float32)])
        if self.method != "tip-adapter":
            raise ValueError(f"unknown method {self.method!r}")
        a, s = self.arrays, self.logit_scale
        cache = tip_cache_logits(f, a["keys"], a["key_labels"], len(self.class_names), self.params["beta"])
        return s * (f @ self.text.T) + (s / PAPER_SCALE) * self.params["alpha"] * cache

    def predict(self, features) -> np.ndarray:
        return self.logits(features).argmax(axis=1)


def fit(method: str, embeddings, labels, class_names: list[str], text: np.ndarray, logit_scale: float,
        params: dict | None = None) -> FewShotClassifier:
    """Fit `method` on the shots with the given hyper-parameters (default: the papers' defaults)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    classes = len(class_names)
    embeddings, labels = _check(embeddings, labels, classes)
    text = normalize(text)
    defaults = {"prototype": PROTOTYPE_DEFAULT, "tip-adapter": TIP_DEFAULT,
                "gda": GDA_DEFAULT}.get(method, {})
    params = dict(defaults, **(params or {}))
    return FewShotClassifier(method, list(class_names), text, float(logit_scale), params,
                             _learn(method, embeddings, labels, classes))


def _learn(method: str, embeddings: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    """What `method` learns from checked shots (the FewShotClassifier's arrays); the hyper-parameters
    only weigh these, so cross-validation learns them once per fold and tries the whole grid."""
    if method == "prototype":
        return {"prototypes": prototypes(embeddings, labels, classes)}
    if method == "tip-adapter":
        return {"keys": embeddings, "key_labels": labels}
    if method == "gda":
        weights, bias = gda_fit(embeddings, labels, classes)
        return {"W": weights, "b": bias}
    return {}


# ---- choosing hyper-parameters without the test images -----------------------------------------
def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """[N] fold number of each shot: each class's shots are shuffled and dealt round the folds."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        out[members] = np.arange(len(members)) % folds
    return out


@dataclass
class Choice:
    """The hyper-parameters picked for one method, and how."""
    params: dict
    how: str                       # for people: "5-fold cross-validation over the shots ..." or why defaults
    accuracy: float | None = None  # cross-validated accuracy of the chosen values


def _grid(method: str, train_size: int, val_size: int) -> list[dict]:
    if method == "prototype":
        return [{"weight": w} for w in PROTOTYPE_WEIGHTS]
    if method == "gda":
        return [{"alpha": a} for a in GDA_ALPHAS]
    betas = TIP_BETAS
    stride = int(np.ceil(len(betas) * train_size * val_size / _SEARCH_BUDGET))
    return [{"beta": b, "alpha": a} for b in betas[::max(stride, 1)] for a in TIP_ALPHAS]


def _fold_correct(method, grid, train, val, class_names, text, scale) -> np.ndarray:
    """Correct predictions on one held-out fold for every grid point: what the method learns from the
    fold's training part is computed once (`_learn`), then the grid only rescales terms already computed."""
    (f_tr, y_tr), (f_va, y_va) = train, val
    zero_shot = scale * (f_va @ text.T)
    learned = _learn(method, *_check(f_tr, y_tr, len(class_names)), len(class_names))
    correct = np.zeros(len(grid))
    cache = {}
    for g, params in enumerate(grid):
        if method == "prototype":
            extra = scale * params["weight"] * (f_va @ learned["prototypes"].T - f_va @ text.T)
        elif method == "gda":
            extra = (scale / PAPER_SCALE) * params["alpha"] * (f_va @ learned["W"].T + learned["b"])
        else:
            beta = params["beta"]
            if beta not in cache:
                cache[beta] = tip_cache_logits(f_va, f_tr, y_tr, len(class_names), beta)
            extra = (scale / PAPER_SCALE) * params["alpha"] * cache[beta]
        correct[g] = ((zero_shot + extra).argmax(axis=1) == y_va).sum()
    return correct


def choose(method: str, embeddings, labels, class_names: list[str], text: np.ndarray, logit_scale: float,
           *, folds: int = MAX_FOLDS, seed: int = 0) -> Choice:
    """Hyper-parameters for `method` by stratified k-fold cross-validation over the shots, on the
    paper's grid (the first best in grid order wins, as in the authors' loops). Needs two shots in
    every class; with fewer, the papers' defaults are used and `how` says so."""
    defaults = {"prototype": PROTOTYPE_DEFAULT, "tip-adapter": TIP_DEFAULT, "gda": GDA_DEFAULT}
    if method == "zero-shot":
        return Choice({}, "nothing to choose")
    classes = len(class_names)
    embeddings, labels = _check(embeddings, labels, classes)
    text = normalize(text)
    smallest = int(np.bincount(labels, minlength=classes).min())
    if smallest < 2:
        return Choice(dict(defaults[method]), "the paper's defaults: cross-validation needs at least two "
                                               "labelled images in every class")
    k = min(folds, smallest)
    fold_of = stratified_folds(labels, k, seed)
    per_fold = max(1, len(labels) // k)
    grid = _grid(method, len(labels) - per_fold, per_fold)
    correct = np.zeros(len(grid))
    for fold in range(k):
        held = fold_of == fold
        correct += _fold_correct(method, grid, (embeddings[~held], labels[~held]),
                                 (embeddings[held], labels[held]), class_names, text, logit_scale)
    best = int(np.argmax(correct))
    return Choice(dict(grid[best]), f"{k}-fold cross-validation over the shots ({len(grid)} grid points)",
                  float(correct[best] / len(labels)))


# ---- sorting new images with a fitted classifier -----------------------------------------------------
@dataclass
class Sorted:
    classes: dict[str, list[tuple[str, float]]]   # class -> [(image name, probability)], best first
    none: list[tuple[str, float, str]]            # [(image name, best probability, best class)], best first
    threshold: float
    why: str


def none_threshold(classes: int, logit_scale: float) -> tuple[float, str]:
    """The default "none of these" threshold of an adapted classifier and why: its probabilities are
    a softmax over the classes, so the app's softmax default applies (probability.default_none_rule):
    half-way from chance (1/C) to certainty, (1 + 1/C) / 2."""
    value = default_none_threshold(Scoring(SOFTMAX, float(logit_scale)), classes)
    return value, (
        f"best probability below {value:.0%}: half-way from chance ({1 / max(classes, 1):.0%} for "
        f"{classes} classes) to certainty, since the adapted classifier's probabilities are a softmax "
        "over the classes and always sum to 100%, even when no class fits")


def sort_embeddings(classifier: FewShotClassifier, embeddings, names: list[str],
                    none_threshold_value: float | None = None) -> Sorted:
    """Each image into its most probable class (softmax of the classifier's logits), best first,
    except those whose best probability is below the threshold: they go to "none of these".
    None takes the default (none_threshold)."""
    classes = classifier.class_names
    default, why = none_threshold(len(classes), classifier.logit_scale)
    threshold = default if none_threshold_value is None else float(none_threshold_value)
    if none_threshold_value is not None:
        why = f"best probability below {threshold:.0%} (chosen; the default is {default:.0%})"
    embeddings = np.asarray(embeddings, dtype=np.float32)
    probs = (softmax(classifier.logits(embeddings).astype(np.float64)) if len(embeddings)
             else np.zeros((0, len(classes))))
    best, top = probs.argmax(axis=1), probs.max(axis=1)
    out = Sorted({c: [] for c in classes}, [], threshold, why)
    for i in np.argsort(-top, kind="stable"):
        if top[i] < threshold:
            out.none.append((names[i], float(top[i]), classes[best[i]]))
        else:
            out.classes[classes[best[i]]].append((names[i], float(top[i])))
    return out
