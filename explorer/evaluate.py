"""Scoring prompt sets on embedded images: accuracy per class and per template, ZPE weights,
confusion matrix, and the open-set "none of these" scores.

Images are embedded once (sources.embed_folder); every prompt set and weighting is then scored on
the same embeddings (`evaluate`, `compare`), so changing prompts never touches an image again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .descriptions import PromptSet
from .weighting import ZPEResult, zpe_weights
from .zeroshot import ensemble, softmax

WEIGHTINGS = ("mean", "zpe", "single")
_CHUNK = 2048


# ---- scoring ------------------------------------------------------------------------------------
@dataclass
class TemplateScore:
    """One prompt slot: its accuracy when used alone, its weight in this result, its ZPE score."""
    template: str
    accuracy: float
    weight: float
    zpe_weight: float | None
    zpe_score: float | None


@dataclass
class EvalResult:
    """The outcome of one (prompt set, weighting) on labelled embeddings."""
    class_names: list[str]
    weighting: str
    top1: float
    top5: float
    top_k: int                       # the k of "top5" (fewer when there are fewer than 5 classes)
    per_class: dict[str, float | None]   # accuracy (recall) per class; None: no images of it
    class_counts: dict[str, int]
    per_template: list[TemplateScore]
    weights: np.ndarray              # [S] the slot weights used
    confusion: np.ndarray            # [C, C] counts, rows = true class, columns = predicted
    predictions: np.ndarray          # [N] predicted class index
    true_idx: np.ndarray             # [N]
    max_cosine: np.ndarray           # [N] open-set score: best class cosine
    max_probability: np.ndarray      # [N] open-set score: best class softmax probability
    zpe: ZPEResult | None

    @property
    def mean_template_accuracy(self) -> float:
        """The average over prompt slots of each one's accuracy alone."""
        return float(np.mean([t.accuracy for t in self.per_template]))

    def as_dict(self) -> dict:
        """JSON-friendly; the confusion matrix carries its class order."""
        return {
            "weighting": self.weighting, "top1": self.top1, "top5": self.top5, "top_k": self.top_k,
            "per_class": {name: {"accuracy": self.per_class[name], "images": self.class_counts[name]}
                          for name in self.class_names},
            "per_template": [vars(t) for t in self.per_template],
            "zpe": None if self.zpe is None else self.zpe.as_dict(),
            "confusion": {"classes": list(self.class_names), "rows": "true class", "columns": "predicted class",
                          "matrix": self.confusion.tolist()},
        }


def template_verdicts(result: EvalResult, margin: float = 0.05) -> list[str]:
    """Per prompt slot: "helps" when the prompt alone is at least as accurate as the whole
    ensemble, "hurts" when it is more than `margin` below the average prompt, "" otherwise."""
    accuracies = [t.accuracy for t in result.per_template]
    average = float(np.mean(accuracies))
    return ["helps" if a >= result.top1 else "hurts" if a < average - margin else "" for a in accuracies]


def _check_inputs(image_emb, true_idx, prompt_emb, class_names, slots):
    image_emb = np.asarray(image_emb, dtype=np.float32)
    true_idx = np.asarray(true_idx, dtype=np.int64)
    prompt_emb = np.asarray(prompt_emb, dtype=np.float32)
    if len(image_emb) == 0:
        raise ValueError("no images to evaluate")
    if prompt_emb.ndim != 3 or prompt_emb.shape[0] != len(class_names) or prompt_emb.shape[1] != len(slots):
        raise ValueError(f"prompt embeddings {prompt_emb.shape} do not match {len(class_names)} classes "
                         f"x {len(slots)} templates")
    if true_idx.shape != (len(image_emb),) or true_idx.min() < 0 or true_idx.max() >= len(class_names):
        raise ValueError("true labels must be one class index per image")
    return image_emb, true_idx, prompt_emb


def per_template_accuracy(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """[S] top-1 accuracy of each prompt slot used alone (one matmul over all slots)."""
    classes, slots, dim = prompt_emb.shape
    flat = prompt_emb.reshape(classes * slots, dim).T
    correct = np.zeros(slots)
    for start in range(0, len(image_emb), _CHUNK):
        scores = (image_emb[start:start + _CHUNK] @ flat).reshape(-1, classes, slots)
        correct += (scores.argmax(axis=1) == true_idx[start:start + _CHUNK, None]).sum(axis=0)
    return correct / len(image_emb)


def evaluate(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray, class_names: list[str],
             templates: list[str], logit_scale: float, weighting: str = "mean", *,
             mean_weights: np.ndarray | None = None, template: int | None = None,
             reference_emb: np.ndarray | None = None, reference_name: str | None = None) -> EvalResult:
    """Score one prompt set on labelled image embeddings.

    image_emb [N, D], true_idx [N], prompt_emb [C, S, D] with slot names `templates` [S].
    weighting: "mean" (`mean_weights`, default equal), "zpe" (ZPE weights from these images, with
    `reference_emb` standing in for pre-training images when given), or "single" (slot `template`).
    ZPE weights are always computed and reported per template, whichever weighting is used.
    """
    image_emb, true_idx, prompt_emb = _check_inputs(image_emb, true_idx, prompt_emb, class_names, templates)
    zpe = zpe_weights(image_emb, prompt_emb, logit_scale, reference_emb, reference_name)
    weights = slot_weights(weighting, len(templates), mean_weights, template, zpe)
    class_emb = ensemble(prompt_emb, weights)
    cosines = image_emb @ class_emb.T
    probabilities = softmax(logit_scale * cosines)
    predictions = cosines.argmax(axis=1)
    k = min(5, len(class_names))
    top_k = np.argpartition(-cosines, k - 1, axis=1)[:, :k] if k < len(class_names) else None
    top5 = 1.0 if top_k is None else float((top_k == true_idx[:, None]).any(axis=1).mean())
    C = len(class_names)
    confusion = np.bincount(true_idx * C + predictions, minlength=C * C).reshape(C, C)
    counts = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / counts[i]) if counts[i] else None)
                 for i, name in enumerate(class_names)}
    alone = per_template_accuracy(image_emb, true_idx, prompt_emb)
    per_template = [TemplateScore(t, float(alone[s]), float(weights[s]), float(zpe.weights[s]),
                                  float(zpe.scores[s])) for s, t in enumerate(templates)]
    return EvalResult(list(class_names), weighting, float((predictions == true_idx).mean()), top5, k,
                      per_class, {name: int(counts[i]) for i, name in enumerate(class_names)}, per_template,
                      weights, confusion, predictions, true_idx, cosines.max(axis=1), probabilities.max(axis=1), zpe)


def slot_weights(weighting: str, slots: int, mean_weights, template, zpe: ZPEResult) -> np.ndarray:
    """The weights of the prompt slots under `weighting`: mean (`mean_weights`, default equal),
    zpe (`zpe.weights`) or single (a one-hot on slot `template`)."""
    if weighting == "mean":
        if mean_weights is None:
            return np.full(slots, 1.0 / slots, dtype=np.float32)
        return np.asarray(mean_weights, dtype=np.float32)
    if weighting == "zpe":
        return zpe.weights
    if weighting == "single":
        if template is None or not 0 <= template < slots:
            raise ValueError(f"single-template weighting needs a template number from 0 to {slots - 1}")
        weights = np.zeros(slots, dtype=np.float32)
        weights[template] = 1.0
        return weights
    raise ValueError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")


def evaluate_prompt_set(labelled, prompts: PromptSet, logit_scale: float, weighting: str = "mean",
                        **kwargs) -> EvalResult:
    """`evaluate` with labelled embeddings (sources.Embedded) and a PromptSet (its slots and equal weights)."""
    return evaluate(labelled.embeddings, labelled.labels, prompts.embeddings, labelled.class_names,
                    prompts.slots, logit_scale, weighting, mean_weights=prompts.mean_weights, **kwargs)


@dataclass
class Comparison:
    """One row of a comparison table, with the full result behind it."""
    prompt_set: str
    weighting: str
    top1: float
    top5: float
    result: EvalResult


def compare(image_emb: np.ndarray, true_idx: np.ndarray, class_names: list[str],
            prompt_sets: dict[str, PromptSet], logit_scale: float,
            weightings: tuple[str, ...] = ("mean", "zpe"), **kwargs) -> list[Comparison]:
    """Evaluate every prompt set under every weighting on the same image embeddings (never
    re-encoded); rows in the order given."""
    rows = []
    for name, prompts in prompt_sets.items():
        for weighting in weightings:
            result = evaluate(image_emb, true_idx, prompts.embeddings, class_names, prompts.slots,
                              logit_scale, weighting, mean_weights=prompts.mean_weights, **kwargs)
            rows.append(Comparison(name, weighting, result.top1, result.top5, result))
    return rows


# ---- open set: "none of these" --------------------------------------------------------------------
def open_set_scores(image_emb: np.ndarray, class_emb: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image, (max cosine over the classes, max softmax probability over the classes).
    Low values mean no class fits well: the image may show something not in the label list."""
    cosines = np.asarray(image_emb, dtype=np.float32) @ np.asarray(class_emb, dtype=np.float32).T
    return cosines.max(axis=1), softmax(logit_scale * cosines).max(axis=1)


def none_of_these(max_cosine: np.ndarray, max_probability: np.ndarray, *, min_cosine: float | None = None,
                  min_probability: float | None = None) -> np.ndarray:
    """[N] bool: True where an image is flagged "none of these", i.e. its best cosine is below
    `min_cosine` or its best probability below `min_probability` (a None threshold is not used)."""
    flagged = np.zeros(len(max_cosine), dtype=bool)
    if min_cosine is not None:
        flagged |= np.asarray(max_cosine) < min_cosine
    if min_probability is not None:
        flagged |= np.asarray(max_probability) < min_probability
    return flagged
