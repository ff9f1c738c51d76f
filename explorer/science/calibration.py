"""Calibration of the probabilities the app shows, on labelled images: a reliability diagram, the
expected calibration error, and temperature scaling.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017); the
authors' code is github.com/gpleiss/temperature_scaling (temperature_scaling.py, `_ECELoss` and
`ModelWithTemperature.set_temperature`), which this module follows:

- Confidence: what the page shows for an image's top label. Softmax (contrastive) models: the top
  probability of softmax(logits / T) over the labels, as in Guo et al. Sigmoid-trained models
  (SigLIP-style, a learned logit_bias) judge every label on its own, so there is no distribution to
  take a maximum of; what is calibrated here is the top label's own probability
  sigmoid((scale * cosine + bias) / T) against whether that top label is the true class. (Other
  labels' probabilities are not checked by this diagram.)
- Reliability bins: `n_bins` equal-width confidence intervals (lo, hi] over [0, 1], 15 by default
  as in the authors' code, with their edges exactly (`bin_edges`: torch.linspace's float32 values,
  which sit up to one float32 step off k / n_bins, e.g. 0.59999996 for 9/15), so a confidence on an
  edge lands in the bin theirs does (0.6 in (0.59999996, 0.6666666], 2/3 in (0.6, 0.6666666]).
  Departure: a confidence of exactly 0 (possible only for a sigmoid) joins the first bin here; in
  theirs it is in no bin but still counts in the denominator.
- ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|: per bin, the gap between the share of correct top
  labels and the mean confidence, weighted by the share of images in the bin.
- Temperature scaling: logits / T for one scalar T > 0 (T = 1 is the model as shipped; T > 1 softens,
  T < 1 sharpens). The fitted T minimises the negative log-likelihood on the labelled images (Guo et
  al. fit it by LBFGS on a validation set): for softmax models the cross-entropy of the true class,
  for sigmoid models the binary cross-entropy of the top label's probability against its being right
  (the event the diagram shows). Both are convex in 1/T, so a bounded golden-section search on log T
  finds the minimum. It is fitted on the same images it is scored on, so the ECE at the fitted T is
  optimistic: to use a temperature, fit it on one labelled set and check it on another.

Known limits: temperature scaling rescales confidence only. It never changes which label wins (top-1
accuracy and the ranking are the same at every T), so it cannot fix confusions; and one global T
cannot fit images whose classes overlap (near-synonym labels, ambiguous pictures) and clean ones at
once: the more the classes overlap, the less a single temperature can do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.embed.probability import SIGMOID, Scoring, sigmoid, softmax

N_BINS = 15                    # Guo et al.'s code: _ECELoss(n_bins=15)
T_RANGE = (0.05, 20.0)         # the temperatures the fit and the slider may take
_SEARCH_STEPS = 80


@dataclass
class Reliability:
    """A reliability diagram: per equal-width confidence bin, how many images, their mean confidence
    and the share whose top label is right; and the expected calibration error they add up to."""
    edges: np.ndarray       # [B + 1] bin edges over [0, 1], the authors' float32 ones (bin_edges)
    counts: np.ndarray      # [B] images per bin
    confidence: np.ndarray  # [B] mean confidence per bin (NaN where the bin is empty)
    accuracy: np.ndarray    # [B] share of correct top labels per bin (NaN where empty)
    ece: float
    n: int

    def as_dict(self) -> dict:
        def clean(values):
            return [None if np.isnan(v) else float(v) for v in values]
        return {"ece": self.ece, "images": self.n, "bins": [
            {"lo": float(lo), "hi": float(hi), "count": int(c), "confidence": conf, "accuracy": acc}
            for lo, hi, c, conf, acc in zip(self.edges[:-1], self.edges[1:], self.counts,
                                            clean(self.confidence), clean(self.accuracy))]}


def bin_edges(n_bins: int = N_BINS) -> np.ndarray:
    """The authors' bin edges exactly ([n_bins + 1], float64 holding float32 values): _ECELoss's
    `torch.linspace(0, 1, n_bins + 1)` as PyTorch's CPU kernel makes it, step = float32(1 / n_bins),
    the lower half step * i and the upper half 1 - step * (n_bins - i), each rounded once to float32
    (checked equal to torch for n_bins 1..999)."""
    if n_bins < 1:
        raise ValueError("calibration needs at least one bin")
    step = np.float64(np.float32(1.0) / np.float32(n_bins))
    i = np.arange(n_bins + 1)
    edges = np.where(i < (n_bins + 1) // 2, step * i, 1.0 - step * (n_bins - i))
    return edges.astype(np.float32).astype(np.float64)


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    """Bin `confidence` [N] (in [0, 1]) into `n_bins` equal-width bins (lo, hi] (the authors' edges,
    `bin_edges`) and compare each bin's mean confidence with the share of `correct` [N] (bool) in it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError("confidence and correctness must be one value per image")
    if len(confidence) == 0:
        raise ValueError("no images to calibrate on")
    edges = bin_edges(n_bins)
    # (lo, hi] as in _ECELoss: the first upper edge >= the confidence; 0 joins the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / len(confidence) * np.abs(accuracy[filled] - mean_conf[filled])))
    return Reliability(edges, counts, mean_conf, accuracy, ece, len(confidence))


def top_confidence(cosines: np.ndarray, true_idx: np.ndarray, scoring: Scoring,
                   temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per image, (the top label's probability with the logits divided by `temperature`, whether the
    top label is the true class). The top label is the same at every temperature."""
    logits = scoring.logits(cosines) / float(temperature)
    top = np.argmax(logits, axis=1)
    rows = np.arange(len(top))
    if scoring.kind == SIGMOID:
        confidence = sigmoid(logits[rows, top])
    else:
        confidence = softmax(logits)[rows, top]
    return confidence, top == np.asarray(true_idx)


def nll(cosines: np.ndarray, true_idx: np.ndarray, scoring: Scoring, temperature: float = 1.0) -> float:
    """The mean negative log-likelihood the temperature is fitted on: softmax models, the
    cross-entropy of the true class; sigmoid models, the binary cross-entropy of the top label's
    probability against its being right."""
    logits = scoring.logits(cosines) / float(temperature)
    true_idx = np.asarray(true_idx)
    rows = np.arange(len(true_idx))
    if scoring.kind == SIGMOID:
        top = np.argmax(logits, axis=1)
        z = logits[rows, top]
        sign = np.where(top == true_idx, 1.0, -1.0)
        return float(np.mean(np.logaddexp(0.0, -sign * z)))          # -log sigmoid(+-z)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[rows, true_idx]))


def fit_temperature(cosines: np.ndarray, true_idx: np.ndarray, scoring: Scoring) -> float:
    """The T in T_RANGE minimising `nll` on these images (golden-section search on log T; the NLL is
    convex in 1/T, so it has one minimum). Fitted on the images it is then scored on: optimistic."""
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (nll(cosines, true_idx, scoring, np.exp(x)) for x in (a, b))
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(cosines, true_idx, scoring, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(cosines, true_idx, scoring, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


@dataclass
class CalibrationReport:
    """What the calibration view and `clip-explorer eval --json` show."""
    kind: str                  # "softmax" or "sigmoid": which probabilities are calibrated
    temperature: float         # the temperature asked for (1 = the model as shipped)
    fitted_temperature: float  # minimises the NLL on these same images (optimistic)
    model: Reliability         # at T = 1
    scaled: Reliability        # at `temperature`
    fitted: Reliability        # at the fitted temperature
    nll_model: float
    nll_scaled: float
    nll_fitted: float
    accuracy: float            # top-1, the same at every temperature

    @property
    def fitted_at_bound(self) -> bool:
        """True when the fit ran into the end of T_RANGE: the NLL keeps falling that way (with every top
        label right, sharper is always better), so the fitted T is a bound, not a minimum."""
        return bool(np.isclose(self.fitted_temperature, T_RANGE, rtol=1e-3).any())

    @property
    def confidence_is(self) -> str:
        if self.kind == SIGMOID:
            return ("the top label's own sigmoid probability, checked against whether that label is right "
                    "(each label is judged on its own; the others are not in this diagram)")
        return "the top label's softmax probability over the labels, checked against whether it is right"

    def as_dict(self) -> dict:
        return {
            "probability": self.kind, "confidence": self.confidence_is, "n_bins": len(self.model.counts),
            "ece": self.model.ece, "nll": self.nll_model, "accuracy": self.accuracy,
            "bins": self.model.as_dict()["bins"], "temperature": self.temperature,
            "ece_at_temperature": self.scaled.ece, "fitted_temperature": self.fitted_temperature,
            "ece_at_fitted_temperature": self.fitted.ece, "fitted_at_search_bound": self.fitted_at_bound,
            "search_range": list(T_RANGE), "nll_at_fitted_temperature": self.nll_fitted,
            "fitted_on": "the same images it is scored on (optimistic: check it on other labelled images)",
            "method": ("Guo et al. 2017, On Calibration of Modern Neural Networks "
                       "(gpleiss/temperature_scaling)")
        }


def calibrate(cosines: np.ndarray, true_idx: np.ndarray, scoring: Scoring, temperature: float = 1.0,
              n_bins: int = N_BINS) -> CalibrationReport:
    """Reliability and ECE of the model's own probabilities (T = 1), at `temperature`, and at the
    temperature fitted on these images. cosines [N, C] image-class cosines, true_idx [N]."""
    cosines = np.asarray(cosines, dtype=np.float64)
    true_idx = np.asarray(true_idx)
    if cosines.ndim != 2 or len(cosines) != len(true_idx) or len(cosines) == 0:
        raise ValueError("calibration needs labelled images: cosines [N, C] and one true class per image")
    temperature = float(np.clip(temperature, *T_RANGE))
    fitted = fit_temperature(cosines, true_idx, scoring)

    def at(t):
        return reliability(*top_confidence(cosines, true_idx, scoring, t), n_bins=n_bins)

    model, scaled, best = at(1.0), at(temperature), at(fitted)
    accuracy = float(np.mean(np.argmax(cosines, axis=1) == true_idx))
    return CalibrationReport(scoring.kind, temperature, fitted, model, scaled, best,
                             nll(cosines, true_idx, scoring), nll(cosines, true_idx, scoring, temperature),
                             nll(cosines, true_idx, scoring, fitted), accuracy)
