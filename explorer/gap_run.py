"""One run of the modality-gap explorer, the same for the Modality gap tab and `explorer gap`:
the texts that go with the images (class labels with templates, or captions), then the measures
and the shift curve (gap.py holds the statistics themselves).

With labels, the texts are the labels' zero-shot class embeddings and each image matches its own
class: its class folder, or else the label its folder or file name names (captions.labels_of_images).
Without labels, a labelled source's sub-folder names are the labels. With captions, text i is the
caption of the i-th image that has one (captions.match_csv_captions / sidecar_captions).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .captions import Captions, labels_of_images, match_csv_captions, sidecar_captions
from .gap import GapMeasures, ShiftPoint, evaluate_shift, gap_measures
from .prompts import PromptError
from .sources import Embedded
from .zeroshot import build_classifier

SHIFT_STEPS = tuple(float(v) for v in np.round(np.linspace(0.0, 1.0, 11), 2))


@dataclass
class GapTexts:
    """The texts, their embeddings [M, D], and matches [N] (each image's text index, or -1)."""
    kind: str                       # "labels" or "captions"
    texts: list[str]
    embeddings: np.ndarray
    matches: np.ndarray
    problems: list[str] = field(default_factory=list)   # data that could not be paired
    notes: list[str] = field(default_factory=list)      # how the texts were chosen


def label_texts(model, images: Embedded, labels: list[str] | None, templates: list[str]) -> GapTexts:
    """Class embeddings of `labels` (templates averaged), each image matched to its label. With no
    labels, a labelled source's class names are used (and said so); otherwise PromptError."""
    problems, notes = [], []
    if labels:
        matches = np.asarray(labels_of_images(images.paths, labels), dtype=np.int64).reshape(-1)
    elif images.labelled:
        labels, matches = list(images.class_names), images.labels
        notes.append(f"labels taken from the {len(labels)} sub-folder names")
    else:
        raise PromptError("give at least two labels, or images in class sub-folders (one folder per label)")
    if len(labels) < 2:
        raise PromptError("give at least two distinct labels, e.g. 'cat, dog'")
    unlabelled = int((matches < 0).sum())
    if unlabelled:
        problems.append(f"{unlabelled} of {len(matches)} images have no label: neither their folder's name nor "
                        "the start of their file name is one of the labels")
    return GapTexts("labels", list(labels), build_classifier(model, labels, templates), matches, problems, notes)


def captions_for(images: Embedded, csv_path=None) -> Captions:
    """The images' captions from a path,caption CSV, or (without one) from the .txt beside each image."""
    if csv_path:
        return match_csv_captions(csv_path, images.paths, images.root)
    return sidecar_captions(images.paths)


def caption_texts(model, images: Embedded, captions: Captions) -> GapTexts:
    """Text i is the caption of the i-th image that has one; images without one match nothing.
    ValueError when no image has a caption."""
    found = [captions.caption_of(p) for p in images.paths]
    have = [i for i, c in enumerate(found) if c is not None]
    if not have:
        raise ValueError("no image has a caption: check the CSV's paths (relative to the CSV's folder or "
                         "the image folder, or bare file names) or the .txt files beside the images")
    problems = list(captions.problems)
    if len(have) < len(found):
        problems.append(f"{len(found) - len(have)} of {len(found)} images have no caption in {captions.source}")
    texts = [found[i] for i in have]
    matches = np.full(len(found), -1, dtype=np.int64)
    matches[have] = np.arange(len(have))
    return GapTexts("captions", texts, model.encode_texts(texts), matches, problems)


@dataclass
class GapRun:
    """One computed run: everything the figures and the slider need, without the model."""
    images: Embedded
    texts: GapTexts
    measures: GapMeasures
    curve: list[ShiftPoint]

    @property
    def metric(self) -> str:
        return "zero-shot accuracy" if self.texts.kind == "labels" else "matched-caption retrieval"

    @property
    def notes(self) -> list[str]:
        return self.images.notes + self.texts.notes + self.texts.problems

    def at(self, lam: float) -> ShiftPoint:
        """The readout at one shift, from the run's embeddings (no encoding)."""
        return evaluate_shift(self.images.embeddings, self.texts.embeddings, [float(lam)], self.texts.matches)[0]

    def as_dict(self) -> dict:
        return {"texts": self.texts.kind, "n_texts": len(self.texts.texts), "measures": self.measures.as_dict(),
                "shift": [p.as_dict() for p in self.curve], "shift_readout": self.metric,
                "problems": self.texts.problems, "notes": self.images.notes + self.texts.notes,
                "failures": [{"path": f.path, "error": f.reason} for f in self.images.failures]}


def run_gap(images: Embedded, texts: GapTexts, shifts=SHIFT_STEPS) -> GapRun:
    """Measures and the shift curve for embedded images and their texts."""
    if len(images) == 0:
        raise ValueError("none of the images could be read")
    measures = gap_measures(images.embeddings, texts.embeddings, texts.matches)
    curve = evaluate_shift(images.embeddings, texts.embeddings, list(shifts), texts.matches)
    return GapRun(images, texts, measures, curve)
