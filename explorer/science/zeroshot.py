"""Zero-shot classification: classifier weights from prompts, predictions from embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.embed import probability
from explorer.embed.images import DEFAULT_LIMITS, ImageFailure, Limits
from explorer.embed.probability import Scoring, as_scoring, label_probabilities
from explorer.embed.vectors import normalize
from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import EmbeddingCache, Progress, embed_files

from .prompts import PromptError, build_prompts

if TYPE_CHECKING:  # test_time imports this module: its names are taken at call time
    from .test_time import SwitchOutcome, SwitchSettings

softmax = probability.softmax  # the one softmax (explorer/embed/probability.py), still importable from here


def ensemble(prompt_embeddings: np.ndarray, weights: np.ndarray | None = None, *,
             renormalise: bool = True) -> np.ndarray:
    """[C, T, D] normalised prompt embeddings -> [C, D] class embeddings.

    open_clip's `build_zero_shot_classifier`: normalise each prompt, average per class, renormalise.
    `weights` ([T], summing to anything positive) turns the average into a weighted one (divided by
    their sum). `renormalise=False` keeps the weighted mean of the unit prompt embeddings as it is, so
    that an image's score <x, class_c> is the weighted mean over the prompts of its cosines
    sum_t w_t <x, z_ct>: the per-prompt logits averaged, as ZPE's authors combine prompts
    (`evaluate.class_embeddings` picks the combination of each weighting).
    """
    x = normalize(prompt_embeddings)
    if weights is None:
        mean = x.mean(axis=1)
    else:
        w = np.asarray(weights, dtype=np.float32)
        mean = np.einsum("ctd,t->cd", x, w / w.sum())
    return normalize(mean) if renormalise else np.ascontiguousarray(mean, dtype=np.float32)


def check_prompts(labels: list[str], templates: list[str], limits: TextLimits = DEFAULT_TEXT_LIMITS) -> None:
    """gate.Refused when labels x templates is more than one request may encode (max_prompts)."""
    gate.prompts(
        len(labels) * len(templates), f"Prompts ({len(labels):,} labels x {len(templates):,} templates)",
        limits)


def prompt_embeddings(model, labels: list[str], templates: list[str],
                      limits: TextLimits = DEFAULT_TEXT_LIMITS) -> np.ndarray:
    """Encode every label x template prompt (through the model's text cache) -> [C, T, D];
    gate.Refused, before anything is encoded, past `limits.max_prompts`."""
    check_prompts(labels, templates, limits)
    flat = model.encode_texts(build_prompts(labels, templates))
    return flat.reshape(len(labels), len(templates), -1)


def build_classifier(model, labels: list[str], templates: list[str],
                     limits: TextLimits = DEFAULT_TEXT_LIMITS) -> np.ndarray:
    """Class embeddings [C, D] for `labels`, ensembled over `templates` (at most max_prompts prompts)."""
    return ensemble(prompt_embeddings(model, labels, templates, limits))


@dataclass
class Predictions:
    labels: list[str]
    # [N, C] image-class cosines; with ZPE's class embeddings (not renormalised, see ensemble) each is
    # the ZPE-weighted mean over the class's prompts of the image-prompt cosines
    cosines: np.ndarray
    probabilities: np.ndarray  # [N, C] by the model's rule: softmax over the classes, or a sigmoid per class
    scoring: Scoring | None = None  # that rule (None: a softmax at an unknown scale, from older callers)
    logits: np.ndarray | None = None  # [N, C] a taught classifier's logits (probabilities: their softmax)

    def ranked(self, row: int, top_k: int | None = None) -> list[tuple[str, float, float]]:
        """(label, probability, cosine) for one image, best first."""
        order = np.argsort(-self.probabilities[row], kind="stable")[:top_k]
        return [(self.labels[j], float(self.probabilities[row, j]), float(self.cosines[row, j]))
                for j in order]

    def top1(self) -> list[str]:
        return [self.labels[j] for j in self.probabilities.argmax(axis=1)]

    def logit(self, row: int, label: str) -> float | None:
        return None if self.logits is None else float(self.logits[row, self.labels.index(label)])


def predict(image_embeddings: np.ndarray, class_embeddings: np.ndarray, labels: list[str],
            logit_scale: float | Scoring) -> Predictions:
    """Cosines and probabilities by the model's own rule (`model.scoring`): a softmax over the labels
    at the learned temperature, or per label sigmoid(scale * cosine + bias) for sigmoid-trained models.
    A bare number is read as a softmax model's logit scale (as callers passed it before)."""
    cosines = image_embeddings @ class_embeddings.T
    scoring = as_scoring(logit_scale)
    return Predictions(list(labels), cosines, label_probabilities(scoring, cosines), scoring)


def taught_predictions(image_embeddings: np.ndarray, classifier) -> Predictions:
    """Predictions of a taught classifier (fewshot.FewShotClassifier, e.g. from `fewshot --save`):
    the probabilities are the softmax of its logits (zero-shot plus what the shots taught), so they
    cannot be recomputed from the cosines, which are to each class's zero-shot text embedding (how
    well the class's prompts fit the image)."""
    logits = classifier.logits(image_embeddings).astype(np.float64)
    cosines = image_embeddings @ np.asarray(classifier.text, dtype=np.float32).T
    return Predictions(list(classifier.class_names), cosines, softmax(logits),
                       Scoring(probability.SOFTMAX, float(classifier.logit_scale)), logits)


@dataclass
class ClassifyReport:
    """The outcome of classifying a batch of files: the good ones ranked, the bad ones explained."""
    names: list[str]                  # unique display names, in input order (unreadable ones left out)
    paths: list[str]
    predictions: Predictions | None
    failures: list[ImageFailure]
    templates: list[str]
    scoring: Scoring | None = None    # how the probabilities were made (the model's rule)
    taught: dict | None = None        # the taught classifier that made them (classifier_file.summary)
    switches: SwitchOutcome | None = None  # test-time switches on: `predictions` are its `after`

    def as_dict(self, top_k: int | None = None) -> dict:
        """What both faces show: per image, its top-k (label, probability, cosine), and the failures;
        "probability" says which rule made the probabilities ("softmax" or "sigmoid"), with the
        model's logit_scale and logit_bias, so a reader can recompute them from the cosines."""
        results = [{"name": name, "path": path, "labels": [
            self._entry(row, label, prob, cos) for label, prob, cos in self.predictions.ranked(row, top_k)]}
            for row, (name, path) in enumerate(zip(self.names, self.paths))] if self.predictions else []
        rule = self.scoring.as_dict() if self.scoring is not None else {}
        if self.taught is not None:  # a softmax of the classifier's logits, not of scale * cosine
            rule = {"probability": "softmax of the taught classifier's logits", "classifier": self.taught}
        doc = {**rule, "templates": len(self.templates), "results": results,
               "errors": [{"path": f.path, "error": f.reason} for f in self.failures]}
        if self.switches is not None:  # "results" are the switched predictions; these say how they came
            doc["switches"] = self.switches.as_dict()
        return doc

    def _entry(self, row: int, label: str, prob: float, cos: float) -> dict:
        entry = {"label": label, "probability": prob, "cosine": cos}
        if self.predictions.logits is not None:
            entry["logit"] = self.predictions.logit(row, label)
        return entry


def check_views(images: int, switches: SwitchSettings | None, max_encodes: int) -> None:
    """gate.Refused when the switches' augmented views of `images` images are more image encodings than
    one request may make (`max_encodes`, the max_view_encodes setting; 0 = no limit): said before any
    image is read (test_time.apply_switches checks it again on the images that could be read)."""
    if switches is not None and switches.views > 1:
        gate.check_count("Image views to encode", images * switches.views, max_encodes, "max_view_encodes")


def classify_files(model, files: list, labels: list[str], templates: list[str], *,
                   cache: EmbeddingCache | None = None, limits: Limits = DEFAULT_LIMITS,
                   progress: Progress | None = None, names: list[str] | None = None,
                   taught=None, text_limits: TextLimits = DEFAULT_TEXT_LIMITS,
                   switches: SwitchSettings | None = None, max_encodes: int = 0,
                   view_cache=None) -> ClassifyReport:
    """Embed the files (through `cache`: a file seen before is not encoded again) and classify them
    against `labels`. `progress(done, total)` after each batch; one bad file never stops the others.
    `taught` = (classifier, its classifier_file.summary) classifies by a taught classifier instead:
    its classes replace `labels` and `templates` is unused. Too many prompts (`text_limits`):
    gate.Refused before any image is read.

    `switches` (test_time.SwitchSettings), when on: the predictions are test_time.apply_switches'
    `after` (augmented views re-read from the files, TDA over the images in the order given) and the
    report's `switches` is its outcome (the plain predictions are its `before`). More image views than
    `max_encodes` (the max_view_encodes setting; 0 = no limit): gate.Refused before any image is read.
    `view_cache` (test_time.ViewCache): views encoded before are not encoded again."""
    switched = switches is not None and switches.on()
    if taught is None:
        check_prompts(labels, templates, text_limits)
    elif switched:
        raise PromptError("the test-time switches work on zero-shot labels, not on a taught classifier: "
                          "turn them off, or classify by labels")
    if switched:
        check_views(len(files), switches, max_encodes)
    found = embed_files(model, files, names=names, cache=cache, limits=limits, progress=progress)
    predictions, scoring, about, outcome = None, model.scoring, None, None
    if taught is not None:
        classifier, about = taught
        labels, templates = list(classifier.class_names), []
        scoring = Scoring(probability.SOFTMAX, float(classifier.logit_scale))
        if len(found):
            predictions = taught_predictions(found.embeddings, classifier)
    elif len(found):
        classes = build_classifier(model, labels, templates, text_limits)
        predictions = predict(found.embeddings, classes, labels, model.scoring)
        if switched:
            from .test_time import apply_switches
            outcome = apply_switches(model, list(found.paths), found.embeddings, classes, labels, switches,
                                     limits=limits, max_encodes=max_encodes, progress=progress,
                                     cache=view_cache)
            predictions = outcome.after
    return ClassifyReport(found.names, [str(p) for p in found.paths], predictions, found.failures, templates,
                          scoring, about, outcome)
