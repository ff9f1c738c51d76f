"""One few-shot experiment, the same for `explorer fewshot` and the Teach by example tab: labelled
training embeddings (the shots), labelled test embeddings, the zero-shot class embeddings of the
current prompt set, and every method scored on the test images with hyper-parameters chosen on the
shots alone (fewshot.choose). Images are embedded once by the caller; nothing here encodes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import fewshot


@dataclass
class MethodScore:
    """One method on the test images (means over seeds; `spread` is the standard deviation)."""
    method: str
    top1: float
    top5: float
    top_k: int
    top1_spread: float
    per_class: dict[str, float | None]
    params: list[dict]            # chosen hyper-parameters, one per seed
    how: str
    fit_seconds: float            # choosing and fitting, per seed
    score_seconds: float          # scoring the test images, per seed
    predictions: np.ndarray       # [N] test predictions of the last seed

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "top_k": self.top_k, "top1_spread": self.top1_spread,
                "per_class": self.per_class, "chosen": self.params, "how_chosen": self.how,
                "fit_seconds": round(self.fit_seconds, 4), "score_seconds": round(self.score_seconds, 4)}


@dataclass
class FewShotReport:
    class_names: list[str]
    shots: int | None               # per class; None: every training image
    seeds: int
    train_images: int               # shots used per seed (all classes)
    test_images: int
    methods: dict[str, MethodScore]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "classes": self.class_names, "shots": self.shots, "seeds": self.seeds,
            "train_images": self.train_images, "test_images": self.test_images,
            "methods": {name: score.as_dict()
                        for name, score in self.methods.items()}, "notes": self.notes
        }


def sample_shots(labels: np.ndarray, shots: int | None, seed: int) -> np.ndarray:
    """Indices of `shots` images per class drawn with `seed` (all of a class that has fewer, sorted);
    None takes every image."""
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.nonzero(labels == c)[0])[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def split_held_out(labels: np.ndarray, fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: `fraction` of each class held out for testing (at least one image of a
    class with two or more; a class with one image stays in training)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        k = int(round(fraction * len(members))) if len(members) > 1 else 0
        k = max(k, 1) if len(members) > 1 else 0
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _topk(logits: np.ndarray, truth: np.ndarray, k: int) -> float:
    if k >= logits.shape[1]:
        return 1.0
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())


def _per_class(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float | None]:
    return {name: (float((pred[truth == c] == c).mean()) if (truth == c).any() else None)
            for c, name in enumerate(names)}


def run_fewshot(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                class_names: list[str], text: np.ndarray, logit_scale: float, *,
                methods=fewshot.METHODS, shots: int | None = None, seeds: int = 1) -> FewShotReport:
    """Every method in `methods`, fitted on `shots` training images per class (repeated over
    `seeds` draws; all training images once when shots is None) and scored on the test images."""
    (f_train, y_train), (f_test, y_test) = train, test
    if len(f_test) == 0:
        raise ValueError("no test images to score the methods on")
    seeds = 1 if shots is None else max(1, int(seeds))
    k = min(5, len(class_names))
    notes, scores = [], {}
    for method in methods:
        runs = []
        for seed in range(seeds):
            idx = sample_shots(y_train, shots, seed)
            start = time.perf_counter()
            choice = fewshot.choose(method, f_train[idx], y_train[idx], class_names, text, logit_scale,
                                    seed=seed)
            clf = fewshot.fit(method, f_train[idx], y_train[idx], class_names, text, logit_scale,
                              choice.params)
            fitted = time.perf_counter()
            logits = clf.logits(f_test)
            runs.append((choice, logits, fitted - start, time.perf_counter() - fitted))
        top1 = [float((r[1].argmax(1) == y_test).mean()) for r in runs]
        pred = runs[-1][1].argmax(1)
        scores[method] = MethodScore(method, float(np.mean(top1)),
                                     float(np.mean([_topk(r[1], y_test, k) for r in runs])), k,
                                     float(np.std(top1)), _per_class(pred, y_test, class_names),
                                     [r[0].params for r in runs], runs[0][0].how,
                                     float(np.mean([r[2] for r in runs])),
                                     float(np.mean([r[3] for r in runs])), pred)
    used = len(sample_shots(y_train, shots, 0))
    if shots is not None and used < shots * len(class_names):
        notes.append(f"some classes have fewer than {shots} training images: all of theirs were used")
    return FewShotReport(list(class_names), shots, seeds, used, len(f_test), scores, notes)
