"""Teach by example: what the page of that name shows around one few-shot experiment (fewshot_run.py).

From one labelled source (a class folder, an uploaded zip, an index of class folders) already
embedded: a seeded held-out part of each class for testing, every chosen method against zero-shot,
a shots curve (1, 2, 4, 8, 16 shots per class over several seeds, mean and spread), the confusion
matrix and the test images each method fixes or breaks, the fitted classifiers to apply to new
images ("sort my folder", with a "none of these" bin) and to download. Nothing here decodes or
encodes an image: the caller passes embeddings (sources.py embeds each file once).
"""
from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.embed.probability import SOFTMAX, Scoring, default_none_threshold, softmax
from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

from . import classifier_file, fewshot
from .descriptions import prompt_set
from .fewshot_experiment import FewShotReport, run_fewshot, sample_shots, split_held_out
from .zeroshot import ensemble

CURVE_SHOTS = (1, 2, 4, 8, 16)
CURVE_SEEDS = 3
HELD_OUT = 0.3


# ---- small pieces --------------------------------------------------------------------------------
def confusion(truth, pred, classes: int) -> np.ndarray:
    """[C, C] counts: rows are the true class, columns the predicted one."""
    out = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(out, (np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return out


def fixes_and_breaks(truth, zero_shot_pred, method_pred) -> tuple[np.ndarray, np.ndarray]:
    """(fixed, broken) indices: images zero-shot got wrong and the method right, and the reverse."""
    truth, zs, method = (np.asarray(a) for a in (truth, zero_shot_pred, method_pred))
    return np.nonzero((zs != truth) & (method == truth))[0], np.nonzero((zs == truth) & (method != truth))[0]


def zero_shot_text(model, class_names: list[str], templates: list[str],
                   limits: TextLimits = DEFAULT_TEXT_LIMITS) -> np.ndarray:
    """[C, D] zero-shot class embeddings of the templates (open_clip's equal-weight ensembling);
    gate.Refused past `limits` (max_texts classes, max_prompts prompts) before anything is encoded."""
    gate.check_count("Classes", len(class_names), limits.max_items, "max_texts")
    prompts = prompt_set(model, class_names, templates, None, "templates", limits)
    return ensemble(prompts.embeddings, prompts.mean_weights)


# ---- the shots curve -----------------------------------------------------------------------------
@dataclass
class ShotsCurve:
    shots: list[int]                             # shot counts run (per class)
    mean: dict[str, list[float]]                 # method -> top-1 per shot count (mean over seeds)
    std: dict[str, list[float]]                  # method -> standard deviation over seeds
    seeds: int
    skipped: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def shots_curve(train, test, class_names: list[str], text: np.ndarray, scale: float, methods=fewshot.METHODS,
                shots=CURVE_SHOTS, seeds: int = CURVE_SEEDS) -> ShotsCurve:
    """Top-1 on the test images of each method for each shot count (mean and spread over `seeds`
    draws of the shots). Counts above the smallest class's training images are skipped and said:
    there, every draw would be the same images and the point would repeat the one before."""
    labels = np.asarray(train[1])
    sizes = np.bincount(labels, minlength=len(class_names))
    smallest = int(sizes.min())
    run = [k for k in sorted(set(int(s) for s in shots)) if 1 <= k <= smallest]
    skipped = [k for k in sorted(set(int(s) for s in shots)) if k > smallest]
    curve = ShotsCurve(run, {m: [] for m in methods}, {m: [] for m in methods}, max(1, int(seeds)), skipped)
    if skipped:
        who = class_names[int(sizes.argmin())]
        curve.notes.append(
            f"shots curve: {', '.join(map(str, skipped))} shot(s) per class skipped: the smallest "
            f"class ({who}) has only {smallest} training image(s)")
    for k in run:
        report = run_fewshot(train, test, class_names, text, scale, methods=methods, shots=k, seeds=seeds)
        for m in methods:
            curve.mean[m].append(report.methods[m].top1)
            curve.std[m].append(report.methods[m].top1_spread)
    return curve


# ---- one run of the page -------------------------------------------------------------------------
@dataclass
class TeachResult:
    class_names: list[str]
    report: FewShotReport                         # top-1 vs zero-shot, chosen hyper-parameters and how
    curve: ShotsCurve
    test_names: list[str]
    test_paths: list[Path]
    truth: np.ndarray                             # [N test] true class
    predictions: dict[str, np.ndarray]            # method -> [N test], by the classifier below
    classifiers: dict[str, fewshot.FewShotClassifier]   # fitted on the shots drawn with seed 0
    confusions: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def changes(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(fixed, broken) test indices of `method` against zero-shot."""
        return fixes_and_breaks(self.truth, self.predictions["zero-shot"], self.predictions[method])

    def best(self) -> str:
        """The adapted method with the best top-1 (zero-shot when none was run)."""
        scores = self.report.methods
        adapted = [m for m in scores if m != "zero-shot"] or ["zero-shot"]
        return max(adapted, key=lambda m: scores[m].top1)


def teach(images, text: np.ndarray, logit_scale: float, methods, shots: int | None, *,
          seeds: int = CURVE_SEEDS, curve_shots=CURVE_SHOTS, held_out: float = HELD_OUT) -> TeachResult:
    """One run on a labelled `images` (sources.Embedded): `held_out` of each class (seed 0) for
    testing, never for fitting or choosing; zero-shot plus `methods` fitted on `shots` per class
    (None: every training image); the shots curve; each method's classifier (the shots of seed 0,
    its hyper-parameters chosen on them) with its test predictions and confusion matrix."""
    if not images.labelled:
        raise ValueError("Teach by example needs labelled images: one sub-folder per class")
    names = list(images.class_names)
    methods = ("zero-shot",) + tuple(m for m in methods if m != "zero-shot")
    tr, te = split_held_out(images.labels, held_out, seed=0)
    if len(te) == 0:
        raise ValueError("every class needs at least two images: one to learn from and one to test on")
    train = (images.embeddings[tr], images.labels[tr])
    test = (images.embeddings[te], images.labels[te])
    report = run_fewshot(train, test, names, text, logit_scale, methods=methods, shots=shots, seeds=seeds)
    report.notes.insert(
        0, f"{len(te)} of {len(images)} images ({held_out:.0%} of each class, seed 0) were held out "
        "for testing and never used for fitting or choosing hyper-parameters")
    curve = shots_curve(train, test, names, text, logit_scale, methods, curve_shots, seeds)
    idx = sample_shots(train[1], shots, 0)
    classifiers, predictions = {}, {}
    for m in methods:
        classifiers[m] = fewshot.fit(m, train[0][idx], train[1][idx], names, text, logit_scale,
                                     report.methods[m].params[0])
        predictions[m] = classifiers[m].predict(test[0])
    return TeachResult(names, report, curve, [images.names[i] for i in te], [images.paths[i] for i in te],
                       test[1], predictions, classifiers,
                       {m: confusion(test[1], p, len(names))
                        for m, p in predictions.items()},
                       list(images.notes) + report.notes + curve.notes)


# ---- sorting new images --------------------------------------------------------------------------
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


def sort_embeddings(classifier: fewshot.FewShotClassifier, embeddings, names: list[str],
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


def export_zip(classifier: fewshot.FewShotClassifier, folder, model_identity: dict, prompts: dict,
               stem: str = "classifier") -> Path:
    """The classifier pair (NAME.json + NAME.safetensors, classifier_file.save) zipped into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{classifier.method}"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        pair = classifier_file.save(classifier, Path(scratch) / name, model_identity, prompts)
        target = folder / f"{name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for path in pair:
                z.write(path, path.name)
    return target
