"""Training-free few-shot adaptation: a few labelled images per class correct the zero-shot classifier.

All three methods start from the zero-shot classifier of the current prompt set (class embeddings
T [C, D], used as given: unit vectors for open_clip's renormalised average, the weighted mean of unit
prompt embeddings where a weighting averages logits, as ZPE's authors do) and add what the labelled
"shots" (normalised image embeddings F [N, D], labels y) say.
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

Hyper-parameters are never chosen on test images: they are chosen by leave-one-out over the shots
(`choose`), on the papers' grids: each shot is predicted by the method fitted on all the other shots,
in closed form (`loo_correct`; the same numbers as refitting), so the values are chosen for N - 1
shots and used with N. The authors searched on a separate validation split; with a handful of shots
there is none. A search whose values all tie chooses nothing: the authors' default is used and said.
`departures` names, for each method, every place where it differs from its paper's code.
Adapted classifiers score with a softmax over the classes whatever the model's training rule: the
adapters' logits have no per-label meaning a sigmoid could read. `sort_embeddings` applies a fitted
classifier to new images, with a "none of these" bin for those no class fits (`none_threshold`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from explorer.embed.probability import SOFTMAX, Scoring, default_none_threshold, softmax
from explorer.embed.vectors import normalize

PAPER_SCALE = 100.0
METHODS = ("zero-shot", "prototype", "tip-adapter", "gda")
GDA_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)        # mrflogs/ICLR24 main_few_shots.py
# Tip-Adapter's search grid with its ImageNet config (search_scale [7, 3], search_step [200, 20]).
TIP_BETAS = tuple(i * (7 - 0.1) / 200 + 0.1 for i in range(200))
TIP_ALPHAS = tuple(i * (3 - 0.1) / 20 + 0.1 for i in range(20))
TIP_DEFAULT = {"alpha": 1.17, "beta": 1.0}                     # its ImageNet init_alpha, init_beta
GDA_DEFAULT = {"alpha": 0.1}                                   # main_few_shots.py: best_alpha at first
PROTOTYPE_WEIGHTS = tuple(round(float(w), 2) for w in np.linspace(0.0, 1.0, 11))
PROTOTYPE_DEFAULT = {"weight": 0.5}
MAX_LEFT_OUT = 2000     # shots left out one at a time (a seeded sample above it)
SEARCH_BUDGET = 2e8     # exp() evaluations the Tip-Adapter beta search may spend (beta grid thinned above it)


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
    text = np.ascontiguousarray(text, dtype=np.float32)
    defaults = {"prototype": PROTOTYPE_DEFAULT, "tip-adapter": TIP_DEFAULT,
                "gda": GDA_DEFAULT}.get(method, {})
    params = dict(defaults, **(params or {}))
    return FewShotClassifier(method, list(class_names), text, float(logit_scale), params,
                             _learn(method, embeddings, labels, classes))


def _learn(method: str, embeddings: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    """What `method` learns from checked shots (the FewShotClassifier's arrays); the hyper-parameters
    only weigh these."""
    if method == "prototype":
        return {"prototypes": prototypes(embeddings, labels, classes)}
    if method == "tip-adapter":
        return {"keys": embeddings, "key_labels": labels}
    if method == "gda":
        weights, bias = gda_fit(embeddings, labels, classes)
        return {"W": weights, "b": bias}
    return {}


# ---- choosing hyper-parameters without the test images: leave-one-out over the shots ------------------
DEFAULTS = {"prototype": PROTOTYPE_DEFAULT, "tip-adapter": TIP_DEFAULT, "gda": GDA_DEFAULT}
LOO_NOTE = ("hyper-parameters chosen by leave-one-out over the shots, where the authors search on a separate "
            "validation split (for ImageNet, its test split)")


@dataclass
class Choice:
    """The hyper-parameters picked for one method and how, with the whole search (as scikit-learn's
    GridSearchCV reports it): the grid's axes, each value's score, and whether the scores differed
    at all. An uninformative search (every value ties) chooses nothing: the authors' default is used
    and `how` says so."""
    params: dict
    how: str                       # for people: "leave-one-out cross-validation over the 16 shots: ..."
    accuracy: float | None = None  # leave-one-out accuracy of the values used
    grid: dict[str, list[float]] = field(default_factory=dict)  # axis -> values; the outer loop first
    correct: list = field(default_factory=list)  # left-out shots predicted right, nested as the axes
    left_out: int = 0              # shots left out, each predicted by the method fitted on all the others
    informative: bool = False      # the values' scores differ: the search chose something
    default: dict = field(default_factory=dict)   # the authors' default values
    notes: list[str] = field(default_factory=list)  # what this search did that the papers' does not

    def as_dict(self) -> dict:
        """The search as plain data: `correct` / `left_out` is each value's leave-one-out accuracy."""
        return {"params": self.params, "how": self.how, "informative": self.informative,
                "accuracy": self.accuracy, "default": self.default, "grid": self.grid,
                "correct": self.correct, "left_out": self.left_out, "notes": self.notes}


def _describe(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def grid_axes(method: str, left_out: int, keys: int, budget: float | None = None) -> dict[str, list[float]]:
    """The papers' grid for `method` as {axis: values}, the outer loop first (Tip-Adapter: beta, then
    alpha, as in its search_hp). Tip-Adapter's beta grid is thinned to every k-th value when scoring
    `left_out` shots against `keys` cache entries for every beta would pass `budget` exp() evaluations
    (None: SEARCH_BUDGET)."""
    if method == "prototype":
        return {"weight": list(PROTOTYPE_WEIGHTS)}
    if method == "gda":
        return {"alpha": list(GDA_ALPHAS)}
    if method != "tip-adapter":
        raise ValueError(f"nothing to choose for {method!r}")
    budget = SEARCH_BUDGET if budget is None else budget
    stride = max(1, int(np.ceil(len(TIP_BETAS) * left_out * keys / budget)))
    return {"beta": list(TIP_BETAS[::stride]), "alpha": list(TIP_ALPHAS)}


def grid_points(axes: dict[str, list[float]]) -> list[dict]:
    """Every combination of the axes' values, in the authors' loop order (the last axis innermost)."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def left_out_shots(n: int, most: int = MAX_LEFT_OUT, seed: int = 0) -> np.ndarray:
    """Sorted indices of the shots to leave out one at a time: all of them, or a seeded sample of `most`."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))


def _prototype_loo(f: np.ndarray, y: np.ndarray, classes: int, left: np.ndarray) -> np.ndarray:
    """[L, C] cosines of each left-out shot to the prototypes fitted without it: the other classes'
    normalised means as they are, its own class's mean recomputed without it."""
    counts = np.bincount(y, minlength=classes)
    means = class_means(f, y, classes)
    x, c = f[left], y[left]
    out = x @ normalize(means).T
    own = normalize((counts[c, None] * means[c] - x) / (counts[c] - 1)[:, None])
    out[np.arange(len(left)), c] = np.einsum("ld,ld->l", x, own)
    return out


def _gda_loo(f: np.ndarray, y: np.ndarray, classes: int, left: np.ndarray) -> np.ndarray:
    """[L, C] GDA's x W'^T + b' for each left-out shot x, (W', b') = gda_fit on all the shots but x.

    With S the within-class scatter ((N - 1) cov of the class-centred shots) and A = S + tr(S)/(N - 1) I,
    leaving out shot x of class c (n_c shots, mean mu_c) gives S' = S - n_c/(n_c - 1) u u^T with
    u = x - mu_c, mu_c' = (n_c mu_c - x)/(n_c - 1), N' = N - 1 and A' = S' + lambda' I, lambda' =
    tr(S')/(N' - 1). S is eigendecomposed once; (S + lambda' I)^-1 is diagonal in its eigenbasis and
    Sherman-Morrison removes the rank-one term: O(C D) per shot instead of a D x D inverse. With
    lambda' > 0, A' has full rank and pinv is its inverse; lambda' = 0 means S' = 0, where pinv(0) = 0
    and GDA adds only the constant log(1/C)."""
    n, dim = f.shape
    counts = np.bincount(y, minlength=classes)
    means = class_means(f, y, classes)
    centred = f - means[y]
    scatter = centred.T @ centred
    values, vectors = np.linalg.eigh(scatter)
    values = np.clip(values, 0.0, None)
    x, m, c = f[left] @ vectors, means @ vectors, y[left]
    k = counts[c] / (counts[c] - 1.0)
    u = x - m[c]
    trace = np.trace(scatter) - k * np.einsum("ld,ld->l", u, u)
    lam = trace / (n - 2) if n > 2 else np.zeros(len(left))
    alive = lam > 1e-12 * max(float(np.trace(scatter)), 1e-300)
    inv = 1.0 / (values[None, :] + np.where(alive, lam, 1.0)[:, None])      # (S + lambda' I)^-1, diagonal
    w = inv * u                                                               # (S + lambda' I)^-1 u
    denom = 1.0 - k * np.einsum("ld,ld->l", u, w)
    xw, wm = np.einsum("ld,ld->l", x, w), w @ m.T
    x_a_m = (x * inv) @ m.T + (k * xw / denom)[:, None] * wm                 # x A'^-1 mu_j
    m_a_m = inv @ (m * m).T + (k / denom)[:, None] * wm ** 2                  # mu_j A'^-1 mu_j
    own = (counts[c, None] * m[c] - x) / (counts[c] - 1.0)[:, None]           # mu_c' (eigenbasis)
    w_own = np.einsum("ld,ld->l", w, own)
    rows = np.arange(len(left))
    x_a_m[rows, c] = np.einsum("ld,ld->l", x * inv, own) + k * xw * w_own / denom
    m_a_m[rows, c] = np.einsum("ld,ld->l", inv * own, own) + k * w_own ** 2 / denom
    extra = dim * (x_a_m - 0.5 * m_a_m)
    extra[~alive] = 0.0
    return extra + np.log(1.0 / classes)


def _count(logits: np.ndarray, truth: np.ndarray) -> int:
    return int((logits.argmax(axis=1) == truth).sum())


def _tip_loo_correct(f, y, classes, text, scale, axes, left, chunk: int = 1 << 22) -> np.ndarray:
    """[betas, alphas] left-out shots Tip-Adapter predicts right with its cache holding all the other
    shots: the affinity of the shots with each other, exp(-beta (1 - A)) with each shot's own entry
    zeroed, summed per class (= times the one-hot labels)."""
    order = np.argsort(y, kind="stable")
    keys = f[order].astype(np.float32)
    starts = np.searchsorted(y[order], np.arange(classes))
    position = np.empty(len(y), dtype=np.int64)
    position[order] = np.arange(len(y))
    betas, alphas = axes["beta"], axes["alpha"]
    correct = np.zeros((len(betas), len(alphas)), dtype=np.int64)
    rows = max(1, chunk // len(y))
    for begin in range(0, len(left), rows):
        block = left[begin:begin + rows]
        zero = scale * (f[block] @ text.T)
        truth = y[block]
        affinity = f[block].astype(np.float32) @ keys.T
        for b, beta in enumerate(betas):
            weights = np.exp(-beta * (1.0 - affinity))
            weights[np.arange(len(block)), position[block]] = 0.0
            cache = np.add.reduceat(weights, starts, axis=1).astype(np.float64)
            for a, alpha in enumerate(alphas):
                correct[b, a] += _count(zero + (scale / PAPER_SCALE) * alpha * cache, truth)
    return correct


def loo_correct(method: str, embeddings: np.ndarray, labels: np.ndarray, classes: int, text: np.ndarray,
                logit_scale: float, axes: dict[str, list[float]], left: np.ndarray) -> np.ndarray:
    """Leave-one-out over checked shots: for each grid value (axes as `grid_axes`), how many of the
    shots `left` the method predicts right when fitted on all the shots but that one, each class
    keeping at least one. Computed in closed form (see _prototype_loo, _gda_loo, _tip_loo_correct),
    equal to fitting and predicting at every value; returned shaped as the axes."""
    f, y = embeddings.astype(np.float64), np.asarray(labels)
    text = np.asarray(text, dtype=np.float64)
    if method == "tip-adapter":
        return _tip_loo_correct(f, y, classes, text, logit_scale, axes, left)
    zero, truth = logit_scale * (f[left] @ text.T), y[left]
    if method == "prototype":
        near = logit_scale * _prototype_loo(f, y, classes, left)
        return np.array([_count((1.0 - w) * zero + w * near, truth) for w in axes["weight"]])
    if method == "gda":
        extra = (logit_scale / PAPER_SCALE) * _gda_loo(f, y, classes, left)
        return np.array([_count(zero + alpha * extra, truth) for alpha in axes["alpha"]])
    raise ValueError(f"nothing to choose for {method!r}")


def _over(left: int, total: int) -> str:
    return (f"the {total} shots" if left == total
            else f"a seeded sample of {left:,} of the {total:,} shots")


def _decide(axes: dict, correct: np.ndarray, left: int, total: int, default: dict,
            notes: list[str]) -> Choice:
    """The first best value in the authors' loop order (their searches keep the first of equals), or,
    when every value ties, none: the default, said."""
    flat, points = correct.ravel(), grid_points(axes)
    search = dict(grid=axes, correct=correct.tolist(), left_out=left, default=dict(default), notes=notes)
    over = f"leave-one-out cross-validation over {_over(left, total)}"
    if flat.min() == flat.max():
        return Choice(dict(default), f"not chosen: all values tie, using the default {_describe(default)} "
                                     f"({over} scored each of the {len(flat)} values {flat[0] / left:.1%})",
                      float(flat[0] / left), informative=False, **search)
    best = int(np.argmax(flat))
    ties = int((flat == flat[best]).sum())
    tied = f"; {ties} values tie for best: the first in grid order is kept, as the authors' loops do" \
        if ties > 1 else ""
    return Choice(dict(points[best]), f"{over}: {_describe(points[best])}, the best of {len(flat)} values "
                                      f"({flat[best] / left:.1%} of the left-out shots right{tied})",
                  float(flat[best] / left), informative=True, **search)


def choose(method: str, embeddings, labels, class_names: list[str], text: np.ndarray, logit_scale: float,
           *, seed: int = 0, max_left_out: int = MAX_LEFT_OUT) -> Choice:
    """Hyper-parameters for `method` on the paper's grid, by leave-one-out over the shots: each shot
    is predicted by the method fitted on all the others (in closed form: `loo_correct`), so the values
    are chosen for a problem of N - 1 shots and used with N. Above `max_left_out` shots a sample of
    them (drawn with `seed`) is left out, against all the others. The first best value in the
    authors' loop order wins; when every value ties, or when a class has a single shot (nothing to
    leave out), the authors' defaults are used, and `how` says which and why."""
    if method == "zero-shot":
        return Choice({}, "nothing to choose")
    classes = len(class_names)
    embeddings, labels = _check(embeddings, labels, classes)
    default = dict(DEFAULTS[method])
    counts = np.bincount(labels, minlength=classes)
    if counts.min() < 2:
        who = class_names[int(counts.argmin())]
        whose = "this project's" if method == "prototype" else "the authors'"
        return Choice(default, f"not chosen: {whose} defaults ({_describe(default)}): leave-one-out needs "
                               f"two labelled images in every class, and {who} has one", default=default,
                      notes=[f"{whose} default hyper-parameters, not searched: a class has a single shot"])
    left = left_out_shots(len(labels), max_left_out, seed)
    axes = grid_axes(method, len(left), len(labels))
    notes = []
    if len(left) < len(labels):
        notes.append(f"leave-one-out over a seeded sample of {len(left):,} of the {len(labels):,} shots")
    if method == "tip-adapter" and len(axes["beta"]) < len(TIP_BETAS):
        stride = TIP_BETAS.index(axes["beta"][1]) if len(axes["beta"]) > 1 else len(TIP_BETAS)
        notes.append(f"beta grid thinned to {len(axes['beta'])} of {len(TIP_BETAS)} values (one in {stride}) "
                     f"to stay within {SEARCH_BUDGET:.0e} exp() evaluations")
    correct = loo_correct(method, embeddings, labels, classes, text, logit_scale, axes, left)
    return _decide(axes, correct, len(left), len(labels), default, notes)


def departures(method: str, choice: Choice | None = None) -> list[str]:
    """Each place where `method` as run here differs from its paper's code, one sentence each (the
    method's JSON carries them): what is always so, then what `choice`'s search did."""
    scale = "logits scaled by s/100 for a model whose logit scale is s (the papers fix CLIP's 100; the " \
            "arg-max is unchanged)"
    fixed = {
        "prototype": ["not a paper's method: nearest class mean mixed with zero-shot by a weight, this "
                      "project's baseline", "hyper-parameters chosen by leave-one-out over the shots"],
        "tip-adapter": ["Tip-Adapter's cache holds the shots' own embeddings, without the authors' 10 "
                        "augmented views (random resized crops and flips, averaged per shot)",
                        "the search grid is the authors' ImageNet config (beta 200 steps to 7, alpha 20 "
                        "steps to 3) for every dataset", LOO_NOTE, scale],
        "gda": ["GDA's means and covariance come from the shots' own embeddings, without the authors' 10 "
                "augmented views of each shot (random resized crops and flips)",
                LOO_NOTE + "; the authors' fallback alpha 0.1 is the default", scale],
    }.get(method, [])
    return fixed + (list(choice.notes) if choice is not None else [])


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
