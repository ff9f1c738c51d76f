"""Zero-shot counting: can the model tell "three dogs" from "four dogs"? (Paiss et al., ICCV 2023.)

"Teaching CLIP to Count to Ten" (Paiss, Ephrat, Tov, Zada, Mosseri, Irani, Dekel; arXiv 2302.12066) tests
a CLIP's counting zero-shot on CountBench: each image's caption is rewritten with every number in turn
("a photo of {number} {objects}") and the number whose caption the image matches best is the model's
count. The authors released no code (the benchmark's image list only); this follows the paper's text:

    prompts_n = template(n, object)            n = 1 .. 10, the number spelled ("three") or as a digit
    cosine[i, n] = <image_i, text(prompts_n)>  (unit vectors)
    predicted_i = argmax_n  p[i, n]            p: the model's own rule over the 10 counts (softmax at
                                               its learned scale, or a sigmoid per count)

Both forms are scored (number words, as the paper's captions spell them, and digits), each with its own
accuracy, confusion matrix and "off by one" share of the errors, and, on the same images, the paired
difference words minus digits (McNemar's exact test with a bootstrap interval). Baselines printed beside
them: chance (1 in 10) and always answering the commonest true count.

Where this differs from the paper (also in the JSON's "differs"): CountBench's counts are 2 to 10 (nine
captions per image); here 1 to 10, so a picture of one object can be asked about too (for n = 1 the
singular is used: "a photo of one dog."). The paper's captions are the images' own captions with the
number swapped; here one template the user can change.

Labelled images: a folder whose class sub-folders are each a count ("3", "three", "3 apples",
"three_dogs") gives each image its true count. Otherwise only the per-image curves (the probability of
each count) are reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import Embedded

from .evaluate import PairedDifference, paired_difference
from .prompts import PromptError

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COUNTS = tuple(range(1, 11))
FORMS = ("words", "digits")
TEMPLATE = "a photo of {n} {object}."
SOURCE = ("Paiss et al. 2023, Teaching CLIP to Count to Ten (ICCV), arXiv 2302.12066; CountBench: "
          "https://teaching-clip-to-count.github.io (no evaluation code released: the paper's text is "
          "followed)")
DIFFERS = ("counts 1 to 10 (CountBench asks 2 to 10); one template with the number swapped instead of each "
           "image's own caption")


def split_object(object_name: str) -> tuple[str, str]:
    """"dog" -> ("dog", "dogs"); "mouse|mice" -> ("mouse", "mice"): singular | plural, else plural + s."""
    name = " ".join((object_name or "").split())
    if not name:
        raise PromptError("counting needs the name of the objects to count, e.g. 'dog' or 'mouse|mice'")
    singular, _, plural = (part.strip() for part in name.partition("|"))
    if not singular:
        raise PromptError(f"object {name!r}: give the singular before the |, e.g. 'mouse|mice'")
    return singular, plural or f"{singular}s"


def count_prompts(object_name: str, form: str = "words", template: str = TEMPLATE) -> list[str]:
    """The ten prompts, n = 1 .. 10: template with {n} the number (a word or digits, `form`) and {object}
    the object's singular for n = 1, its plural otherwise."""
    if form not in FORMS:
        raise PromptError(f"number form {form!r}: choose words or digits")
    if "{n}" not in template or "{object}" not in template:
        raise PromptError(f"counting template {template!r} needs both {{n}} and {{object}}")
    singular, plural = split_object(object_name)
    numbers = NUMBER_WORDS if form == "words" else [str(n) for n in COUNTS]
    return [template.replace("{n}", number).replace("{object}", singular if n == 1 else plural)
            for n, number in zip(COUNTS, numbers)]


def count_of_folder(name: str) -> int | None:
    """A class folder's count: "3", "three", "3 apples", "three_dogs", "03-cats" -> 3; None when the name
    does not start with a count from 1 to 10."""
    first = re.split(r"[\s_\-.]+", (name or "").strip().lower(), maxsplit=1)[0]
    if first.isdigit():
        return int(first) if 1 <= int(first) <= 10 else None
    return NUMBER_WORDS.index(first) + 1 if first in NUMBER_WORDS else None


@dataclass
class CountingReport:
    names: list[str]
    object_name: str
    counts: list[int]                     # 1 .. 10
    forms: list[str]
    prompts: dict[str, list[str]]         # form -> its 10 prompts
    cosines: dict[str, np.ndarray]        # form -> [N, 10]
    probabilities: dict[str, np.ndarray]  # form -> [N, 10] by the model's rule over the 10 counts
    predicted: dict[str, np.ndarray]      # form -> [N] counts
    template: str = TEMPLATE
    true: np.ndarray | None = None        # [N] counts (labelled folders)
    accuracy: dict[str, float] = field(default_factory=dict)
    chance: float = 0.1
    majority: float | None = None         # always answering the commonest true count
    neighbour_confusion: dict[str, float | None] = field(default_factory=dict)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)   # form -> [10, 10], rows true
    words_vs_digits: PairedDifference | None = None
    scoring: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.true is not None

    def as_dict(self) -> dict:
        labelled = self.labelled
        return {
            "method": "zero-shot counting", "source": SOURCE, "differs": DIFFERS,
            "params": {"object": self.object_name, "template": self.template, "counts": self.counts,
                       "forms": self.forms},
            **self.scoring, "labelled": labelled, "names": self.names, "prompts": self.prompts,
            "cosines": {f: v.tolist() for f, v in self.cosines.items()},
            "probabilities": {f: v.tolist() for f, v in self.probabilities.items()},
            "predicted": {f: v.tolist() for f, v in self.predicted.items()},
            "true": self.true.tolist() if labelled else None,
            "accuracy": self.accuracy if labelled else None, "chance": self.chance, "majority": self.majority,
            "neighbour_confusion": self.neighbour_confusion if labelled else None,
            "confusion": {f: v.tolist() for f, v in self.confusion.items()} if labelled else None,
            "words_vs_digits": self.words_vs_digits.as_dict() if self.words_vs_digits else None,
            "notes": self.notes}


def true_counts(images: Embedded) -> tuple[np.ndarray | None, list[str]]:
    """([N] true counts, notes): from the class folders when every one of them names a count."""
    if not images.labelled:
        return None, []
    folders = images.class_folders or images.class_names or []
    counts = [count_of_folder(folder) for folder in folders]
    if any(c is None for c in counts):
        bad = [f for f, c in zip(folders, counts) if c is None]
        return None, [f"class folders that name no count from 1 to 10 ({gate.listed(bad)}): the images are "
                      "scored without true counts"]
    return np.asarray(counts, dtype=np.int64)[images.labels], []


def score_counts(probabilities: dict[str, np.ndarray], true: np.ndarray) -> tuple[dict, dict, dict]:
    """(accuracy, neighbour_confusion, confusion) per form from the probabilities and the true counts."""
    accuracy, neighbour, confusion = {}, {}, {}
    for form, probs in probabilities.items():
        predicted = np.asarray(COUNTS)[probs.argmax(axis=1)]
        wrong = predicted != true
        accuracy[form] = float(np.mean(~wrong)) if len(true) else 0.0
        neighbour[form] = float(np.mean(np.abs(predicted - true)[wrong] == 1)) if wrong.any() else None
        matrix = np.zeros((len(COUNTS), len(COUNTS)), dtype=np.int64)
        np.add.at(matrix, (true - 1, predicted - 1), 1)
        confusion[form] = matrix
    return accuracy, neighbour, confusion


def counting_probe(model, images: Embedded, object_name: str, *, template: str = TEMPLATE,
                   limits: TextLimits = DEFAULT_TEXT_LIMITS) -> CountingReport:
    """Score `images` against the 10 count prompts of `object_name` in both forms (see the module)."""
    gate.text(object_name, "Object to count", limits)
    gate.text(template, "Counting template", limits)
    prompts = {form: count_prompts(object_name, form, template) for form in FORMS}
    gate.prompts(sum(len(p) for p in prompts.values()), "Counting prompts", limits)
    gate.within([*prompts["words"], *prompts["digits"]], "Counting prompts", limits, noun="prompt")
    cosines, probabilities, predicted = {}, {}, {}
    for form, texts in prompts.items():
        cosines[form] = images.embeddings @ model.encode_texts(texts).T
        probabilities[form] = model.scoring.probabilities(cosines[form])
        predicted[form] = np.asarray(COUNTS)[probabilities[form].argmax(axis=1)]
    true, notes = true_counts(images)
    report = CountingReport(list(images.names), " ".join(object_name.split()), list(COUNTS), list(FORMS),
                            prompts, cosines, probabilities, predicted, template, true,
                            scoring=model.scoring.as_dict(), notes=notes)
    if true is not None and len(true):
        report.accuracy, report.neighbour_confusion, report.confusion = score_counts(
            probabilities, true)
        report.majority = float(np.bincount(true).max() / len(true))
        report.words_vs_digits = paired_difference(predicted["words"] == true, predicted["digits"] == true)
    return report
