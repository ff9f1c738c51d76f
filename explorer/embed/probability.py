"""How a model turns image-text cosines into probabilities: the one rule every page and command uses.

Contrastive CLIPs (OpenAI CLIP, most open_clip checkpoints) are trained with a softmax over the
batch: a probability is softmax(logit_scale * cosine) over the labels shown, so the labels compete
and sum to 100%. Sigmoid-trained models (SigLIP, Zhai et al. ICCV 2023; open_clip models with a
`logit_bias`) are trained to score each image-text pair on its own: p = sigmoid(logit_scale *
cosine + logit_bias), so several labels can be likely at once, or none.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOFTMAX, SIGMOID = "softmax", "sigmoid"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def entropy(logits: np.ndarray) -> np.ndarray:
    """The entropy (nats) of the softmax of `logits` along the last axis, from the log-softmax, so a
    near-certain row gives 0, not 0 * log 0."""
    logits = np.asarray(logits, dtype=np.float64)
    log_p = logits - logits.max(axis=-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=-1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow warnings at large |logits|.
    logits = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True)
class Scoring:
    """The model's own rule: logits = scale * cosine (+ bias), then softmax or sigmoid."""
    kind: str              # SOFTMAX or SIGMOID
    scale: float           # the learned logit scale (already exponentiated)
    bias: float = 0.0      # the learned logit bias (sigmoid models); 0 for softmax models

    def logits(self, cosines: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(cosines, dtype=np.float64) + self.bias

    def probabilities(self, cosines: np.ndarray) -> np.ndarray:
        """[..., C] probabilities of each label, by the model's rule (float32)."""
        logits = self.logits(cosines)
        return (softmax(logits) if self.kind == SOFTMAX else sigmoid(logits)).astype(np.float32)

    @property
    def sums_to_one(self) -> bool:
        return self.kind == SOFTMAX

    def explain(self) -> str:
        """One sentence for people: what the probabilities are and why."""
        if self.kind == SIGMOID:
            return (
                f"Probabilities are per label: sigmoid({self.scale:.1f} × cosine {self.bias:+.2f}), the rule "
                "this sigmoid-trained model (SigLIP-style, it has a learned bias) was trained with. Each "
                "label is judged on its own, so several can be likely at once, or none.")
        return (
            f"Probabilities are a softmax over your labels at the model's learned scale ×{self.scale:.1f}, "
            "the rule this contrastive model was trained with: the labels compete and always sum to 100%, "
            "even when none fits.")

    def as_dict(self) -> dict:
        return {"probability": self.kind, "logit_scale": self.scale, "logit_bias": self.bias}


def scoring_of(model) -> Scoring:
    """The rule of a loaded model (a ClipModel, or anything with logit_scale and logit_bias)."""
    bias = getattr(model, "logit_bias", None)
    if bias is None:
        return Scoring(SOFTMAX, float(model.logit_scale))
    return Scoring(SIGMOID, float(model.logit_scale), float(bias))


def as_scoring(rule) -> Scoring:
    """A Scoring from what older callers pass: a Scoring as it is, a model (its own rule), or a bare
    number, read as the logit scale of a softmax model (how every caller passed it before sigmoid
    models were told apart)."""
    if isinstance(rule, Scoring):
        return rule
    if hasattr(rule, "logit_scale"):
        return scoring_of(rule)
    return Scoring(SOFTMAX, float(rule))


# ---- "none of these": the default thresholds, on the model's own scale ---------------------------
# contrastive models: no cosine means "fits" by itself; the app's long-standing default
SOFTMAX_MIN_COSINE = 0.2


@dataclass(frozen=True)
class NoneRule:
    """The default "none of these" thresholds for a model and a number of labels: an image is flagged
    when its best cosine is below `min_cosine` or its best probability below `min_probability`."""
    min_cosine: float
    min_probability: float
    text: str              # the rule, in words, for the page

    def as_dict(self) -> dict:
        return {"min_cosine": self.min_cosine, "min_probability": self.min_probability, "rule": self.text}


def default_none_rule(scoring: Scoring, n_labels: int) -> NoneRule:
    """The default "none of these" thresholds, on the scale the model's probabilities live on.

    Sigmoid models judge each label on its own, so 50% has a meaning: the best label is flagged when
    it is not more likely than not. The cosine where the model's own probability crosses 50% is
    -bias / scale (logit 0), so the cosine threshold says the same thing on the cosine scale.
    Softmax models share 100% among the labels, so a fixed 50% means different things for 2 labels
    (never flagged: the best of two always has at least 50%) and for 100. The default is half-way
    from chance (1/C) to certainty: (1 + 1/C) / 2, i.e. 75% for 2 labels, 55% for 10, about 50% for
    many; the cosine threshold stays the app's 0.2.
    """
    n = max(int(n_labels), 1)
    if scoring.kind == SIGMOID:
        cosine = -scoring.bias / scoring.scale
        return NoneRule(
            round(cosine, 2), 0.5,
            "per-label sigmoid: flagged when no label is more likely than not (best probability "
            f"< 50%, i.e. best cosine < {cosine:.2f}, where the model's own probability crosses 50%)")
    probability = (1.0 + 1.0 / n) / 2.0
    return NoneRule(SOFTMAX_MIN_COSINE, round(probability, 2),
                    f"softmax over {n} labels: flagged when the best label is less than half-way from chance "
                    f"({1 / n:.0%}) to certainty (best probability < {probability:.0%}) or its cosine < "
                    f"{SOFTMAX_MIN_COSINE:.2f}")


def default_none_threshold(scoring: Scoring, n_labels: int) -> float:
    """The default minimum best-label probability for "none of these" (see default_none_rule)."""
    return default_none_rule(scoring, n_labels).min_probability


def label_probabilities(rule, cosines: np.ndarray) -> np.ndarray:
    """[..., C] probabilities of each label by `rule` (a Scoring, a model, or a softmax logit scale).
    The softmax path is computed exactly as the app always computed it (softmax of scale * cosine in
    the cosines' own precision), so contrastive models' numbers do not move by a bit."""
    scoring = as_scoring(rule)
    if scoring.kind == SOFTMAX:
        return softmax(scoring.scale * np.asarray(cosines))
    return scoring.probabilities(cosines)
