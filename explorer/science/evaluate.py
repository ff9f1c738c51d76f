"""Scoring prompt sets on embedded images: accuracy per class and per template, ZPE weights,
confusion matrix, and the open-set "none of these" scores.

Images are embedded once (sources.embed_folder); every prompt set and weighting is then scored on
the same embeddings (`evaluate`, `compare`), so changing prompts never touches an image again.

How the weighted prompts become one classifier (`class_embeddings`) follows each weighting's source:
equal and single weighting use open_clip's average of the unit prompt embeddings, renormalised per
class; ZPE scores as its authors do (Allingham et al. 2023, the uncertainty-baselines notebook's
`agg_logits`): the per-prompt logits averaged with the weights, i.e. the weighted mean of the unit
prompt embeddings not renormalised. Under ZPE the "cosines" (max_cosine, calibration) are therefore
weighted mean cosines over the prompts; `cosine_meaning` says so in words for the pages and the JSON.
(The notebook also averages logits for equal weighting, where open_clip renormalises; that convention
is kept here, as open_clip's.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from explorer.embed.probability import Scoring, as_scoring, label_probabilities

from .descriptions import PromptSet
from .zeroshot import ensemble
from .zpe import ZPEResult, zpe_weights

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
    max_cosine: np.ndarray           # [N] open-set score: best class cosine (cosine_meaning(weighting))
    max_probability: np.ndarray      # [N] open-set score: best class probability, by the model's rule
    zpe: ZPEResult | None
    cosines: np.ndarray | None = None  # [N, C] image-class cosines (cosine_meaning); calibration re-scores
    scoring: Scoring | None = None     # the rule behind max_probability (softmax or per-label sigmoid)
    alone_correct: np.ndarray | None = None  # [N, S] bool: image right with that prompt slot alone
    without_correct: np.ndarray | None = None  # [N, S] bool: image right with the ensemble minus that slot

    @property
    def mean_template_accuracy(self) -> float:
        """The average over prompt slots of each one's accuracy alone."""
        return float(np.mean([t.accuracy for t in self.per_template]))

    def as_dict(self) -> dict:
        """JSON-friendly; the confusion matrix carries its class order."""
        return {
            "weighting": self.weighting,
            "cosine": cosine_meaning(self.weighting),
            "top1": self.top1,
            "top5": self.top5,
            "top_k": self.top_k,
            "per_class": {
                name: {"accuracy": self.per_class[name], "images": self.class_counts[name]}
                for name in self.class_names
            },
            "per_template": [vars(t) for t in self.per_template],
            "zpe": None if self.zpe is None else self.zpe.as_dict(),
            "confusion": {
                "classes": list(self.class_names), "rows": "true class", "columns": "predicted class",
                "matrix": self.confusion.tolist()
            },
        }


# ---- evidence: paired differences over the same images -------------------------------------------
ALPHA = 0.05        # a difference is called only when McNemar's p is below this ...
RESAMPLES = 2000    # ... and the paired bootstrap interval (1 - ALPHA) excludes 0


@dataclass
class PairedDifference:
    """Accuracy of A minus accuracy of B on the same N images, with its uncertainty.

    a_only / b_only: the discordant images (right with A only / with B only); p_value: McNemar's
    exact test on them; low, high: the paired bootstrap interval of the difference. `verdict` is
    "better" or "worse" (A than B) only when both say the difference is real, else ""."""
    difference: float
    low: float
    high: float
    p_value: float
    a_only: int
    b_only: int
    n: int
    verdict: str

    def as_dict(self) -> dict:
        return dict(vars(self))

    def describe(self) -> str:
        """'+0.9 [-0.9, +2.6] p=1': the difference in percentage points, its interval, McNemar's p."""
        interval = f"[{100 * self.low:+.1f}, {100 * self.high:+.1f}]"
        return f"{100 * self.difference:+.1f} {interval} p={self.p_value:.2g}"


def mcnemar_p(a_only: int, b_only: int) -> float:
    """McNemar's exact test, two-sided: under "A and B are equally accurate" each discordant image
    is a fair coin, so p = min(1, 2 * P[Binomial(a_only + b_only, 1/2) <= min(a_only, b_only)]).
    Summed in log space (lgamma), so thousands of discordant images do not underflow."""
    n, k = int(a_only) + int(b_only), min(int(a_only), int(b_only))
    if n == 0:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(k + 1)
    ]
    top = max(logs)
    return min(1.0, 2.0 * math.exp(top) * sum(math.exp(v - top) for v in logs))


def bootstrap_interval(a_correct: np.ndarray, b_correct: np.ndarray, *, level: float = 1 - ALPHA,
                       resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b) under resampling the images with replacement.

    Each image contributes +1 (A only right), -1 (B only right) or 0, so a resample is fully
    described by how many of each it draws: a multinomial draw of N over the three observed
    proportions, exactly the image bootstrap's distribution, in one vectorised call (seeded)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    n = len(a)
    if n == 0:
        return 0.0, 0.0
    counts = np.array([(a & ~b).sum(), (~a & b).sum()], dtype=np.float64)
    p = np.append(counts / n, max(0.0, 1.0 - counts.sum() / n))
    draws = np.random.default_rng(seed).multinomial(n, p / p.sum(), size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(a_correct: np.ndarray, b_correct: np.ndarray, *, alpha: float = ALPHA,
                      seed: int = 0) -> PairedDifference:
    """A (per-image correct, [N] bool) against B on the same images; see PairedDifference."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    low, high = bootstrap_interval(a, b, level=1 - alpha, seed=seed)
    p = mcnemar_p(a_only, b_only)
    difference = (a_only - b_only) / max(len(a), 1)
    clear = p < alpha and (low > 0 or high < 0)
    verdict = ("better" if difference > 0 else "worse") if clear else ""
    return PairedDifference(difference, low, high, p, a_only, b_only, len(a), verdict)


def template_evidence(result: EvalResult) -> list[PairedDifference | None]:
    """Per prompt slot, what it contributes: the ensemble's accuracy minus the accuracy of the same
    ensemble without that slot (its weight dropped, the rest combined as `class_embeddings` combines
    them), paired over the images.
    A slot with weight 0 contributes nothing by construction; the only weighted slot has nothing to be
    compared with (None)."""
    if result.without_correct is None:
        raise ValueError("this result carries no per-image record of the ensemble without each prompt")
    ensemble_correct = result.predictions == result.true_idx
    weights = np.asarray(result.weights, dtype=np.float64)
    return [
        paired_difference(ensemble_correct, result.without_correct[:, s]) if weights.sum() -
        weights[s] > 0 else None for s in range(result.without_correct.shape[1])
    ]


def template_verdicts(result: EvalResult) -> list[str]:
    """Per prompt slot: "helps" when the ensemble is more accurate with the prompt than without it,
    "hurts" when it is more accurate without it, each only when the difference is beyond chance over
    these images (McNemar p < ALPHA and a paired bootstrap interval that excludes 0); "" otherwise.
    (A prompt that is weak alone can still help an ensemble, and a strong one can add nothing.)"""
    names = {"better": "helps", "worse": "hurts", "": ""}
    return [names[e.verdict] if e is not None else "" for e in template_evidence(result)]


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


def per_template_correct(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """[N, S] bool: whether each image is classified right by each prompt slot used alone (one
    chunked matmul over all slots). The per-image record is what the paired tests need."""
    classes, slots, dim = prompt_emb.shape
    flat = prompt_emb.reshape(classes * slots, dim).T
    correct = np.zeros((len(image_emb), slots), dtype=bool)
    for start in range(0, len(image_emb), _CHUNK):
        scores = (image_emb[start:start + _CHUNK] @ flat).reshape(-1, classes, slots)
        correct[start:start + _CHUNK] = scores.argmax(axis=1) == true_idx[start:start + _CHUNK, None]
    return correct


def leave_one_out_correct(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray,
                          weights: np.ndarray, *, renormalise: bool = True) -> np.ndarray:
    """[N, S] bool: whether each image is classified right by the weighted ensemble with slot s left
    out (zeroshot.ensemble of the other slots; `renormalise=False`: ZPE's weighted logit average of
    the other slots, see class_embeddings). Leaving out the only weighted slot leaves no classifier:
    every image counts as wrong then."""
    weights = np.asarray(weights, dtype=np.float64)
    x = prompt_emb / np.maximum(np.linalg.norm(prompt_emb, axis=-1, keepdims=True), 1e-12)
    total = np.einsum("ctd,t->cd", x, weights)
    out = np.zeros((len(image_emb), len(weights)), dtype=bool)
    for s in range(len(weights)):
        if weights.sum() - weights[s] <= 0:
            continue
        rest = total - weights[s] * x[:, s]
        if renormalise:
            rest /= np.maximum(np.linalg.norm(rest, axis=-1, keepdims=True), 1e-12)
        for start in range(0, len(image_emb), _CHUNK):
            chunk = image_emb[start:start + _CHUNK] @ rest.T.astype(np.float32)
            out[start:start + _CHUNK, s] = chunk.argmax(axis=1) == true_idx[start:start + _CHUNK]
    return out


def evaluate(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray, class_names: list[str],
             templates: list[str], logit_scale: float | Scoring, weighting: str = "mean", *,
             mean_weights: np.ndarray | None = None, template: int | None = None,
             reference_emb: np.ndarray | None = None, reference_name: str | None = None,
             mad_threshold: float | None = None) -> EvalResult:
    """Score one prompt set on labelled image embeddings.

    `logit_scale`: the model's Scoring (`model.scoring`: max_probability then follows its rule, softmax
    or per-label sigmoid), or a bare logit scale, read as a softmax model's.

    image_emb [N, D], true_idx [N], prompt_emb [C, S, D] with slot names `templates` [S].
    weighting: "mean" (`mean_weights`, default equal), "zpe" (ZPE weights from these images, with
    `reference_emb` standing in for pre-training images when given), or "single" (slot `template`).
    ZPE weights are always computed and reported per template, whichever weighting is used;
    `mad_threshold` turns on ZPE's MAD prompt selection (zpe.mad_select; None keeps all).
    """
    image_emb, true_idx, prompt_emb = _check_inputs(image_emb, true_idx, prompt_emb, class_names, templates)
    scoring = as_scoring(logit_scale)
    # ZPE takes the model's scale only: its scores are logits centred by a per-prompt mean, so a
    # sigmoid model's logit_bias (the same constant added to every logit) cancels out of them.
    zpe = zpe_weights(image_emb, prompt_emb, scoring.scale, reference_emb, reference_name, mad_threshold)
    weights = slot_weights(weighting, len(templates), mean_weights, template, zpe)
    class_emb = class_embeddings(prompt_emb, weights, weighting)
    cosines = image_emb @ class_emb.T
    probabilities = label_probabilities(scoring, cosines)
    predictions = cosines.argmax(axis=1)
    k = min(5, len(class_names))
    top_k = np.argpartition(-cosines, k - 1, axis=1)[:, :k] if k < len(class_names) else None
    top5 = 1.0 if top_k is None else float((top_k == true_idx[:, None]).any(axis=1).mean())
    C = len(class_names)
    confusion = np.bincount(true_idx * C + predictions, minlength=C * C).reshape(C, C)
    counts = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / counts[i]) if counts[i] else None)
                 for i, name in enumerate(class_names)}
    alone_correct = per_template_correct(image_emb, true_idx, prompt_emb)
    alone = alone_correct.mean(axis=0)
    per_template = [TemplateScore(t, float(alone[s]), float(weights[s]), float(zpe.weights[s]),
                                  float(zpe.scores[s])) for s, t in enumerate(templates)]
    return EvalResult(list(class_names), weighting, float((predictions == true_idx).mean()), top5, k,
                      per_class, {name: int(counts[i])
                                  for i, name in enumerate(class_names)},
                      per_template, weights, confusion, predictions, true_idx, cosines.max(axis=1),
                      probabilities.max(axis=1), zpe, cosines, scoring, alone_correct,
                      leave_one_out_correct(image_emb, true_idx, prompt_emb, weights,
                                            renormalise=weighting != "zpe"))


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


def class_embeddings(prompt_emb: np.ndarray, weights: np.ndarray, weighting: str) -> np.ndarray:
    """[C, D] class embeddings from [C, S, D] prompt slots and their weights [S], combined as the
    weighting's authors combine them. "mean" and "single": open_clip's renormalised (weighted) average.
    "zpe": the ZPE-weighted mean of the unit prompt embeddings, not renormalised, so that an image's
    logit scale * <x, class_c> is sum_s w_s * scale * <x, z_cs>, the authors' weighted logit average
    (their notebook's agg_logits; see zpe.py for where this differs from it)."""
    return ensemble(prompt_emb, weights, renormalise=weighting != "zpe")


COSINE = "the cosine between the image and the class embedding (its prompts averaged, then renormalised)"
ZPE_COSINE = ("the ZPE-weighted mean of the image's cosines with the class's prompts (the authors' "
              "weighted logit average divided by the logit scale; not renormalised, so it runs lower than "
              "the cosine to a unit class embedding)")


def cosine_meaning(weighting: str) -> str:
    """What an image-class "cosine" (max cosine, calibration input) is under `weighting`, in words."""
    return ZPE_COSINE if weighting == "zpe" else COSINE


def cosine_name(weighting: str) -> str:
    """The short name of that number for a column head: "weighted mean cosine" under ZPE, else "cosine"."""
    return "weighted mean cosine" if weighting == "zpe" else "cosine"


def evaluate_prompt_set(labelled, prompts: PromptSet, logit_scale: float | Scoring, weighting: str = "mean",
                        **kwargs) -> EvalResult:
    """`evaluate` with labelled embeddings (sources.Embedded) and a PromptSet (its slots and equal
    weights)."""
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
            prompt_sets: dict[str, PromptSet], logit_scale: float | Scoring,
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
def open_set_scores(image_emb: np.ndarray, class_emb: np.ndarray,
                    logit_scale: float | Scoring) -> tuple[np.ndarray, np.ndarray]:
    """Per image, (max cosine over the classes, max probability over the classes by the model's rule:
    `logit_scale` is its Scoring, softmax or per-label sigmoid, or a bare softmax logit scale).
    Low values mean no class fits well: the image may show something not in the label list."""
    cosines = np.asarray(image_emb, dtype=np.float32) @ np.asarray(class_emb, dtype=np.float32).T
    return cosines.max(axis=1), label_probabilities(logit_scale, cosines).max(axis=1)


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
