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

from explorer.inputs import gate
from explorer.inputs.captions import Captions, labels_of_images, match_csv_captions, sidecar_captions
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits
from explorer.inputs.sources import Embedded, require_classes, require_images

from .gap import (
    DEFAULT_MAX_POINTS,
    DEFAULT_PROJECTION,
    GapMeasures,
    Projection,
    ShiftPoint,
    evaluate_shift,
    gap_measures,
    gap_vector,
    project_2d,
    shift_along_gap,
)
from .prompts import PromptError
from .zeroshot import build_classifier

SHIFT_STEPS = tuple(float(v) for v in np.round(np.linspace(0.0, 1.0, 11), 2))
FRAME_STEPS = (0.25, 0.5, 0.75, 1.0)  # the shifts whose maps set the frame the slider's maps share
FOR_LABELS = "or give at least two labels"  # what else an unlabelled source can do here


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
    require_images(images)
    if labels:
        matches = np.asarray(labels_of_images(images.paths, labels), dtype=np.int64).reshape(-1)
    elif images.labelled:
        labels, matches = list(images.class_names), images.labels
        notes.append(f"labels taken from the {len(labels)} sub-folder names")
    else:
        require_classes(images, FOR_LABELS)
    if len(labels) < 2:
        raise PromptError(f"one label given ({labels[0]!r}): give at least two distinct labels, "
                          "e.g. 'cat, dog'")
    unlabelled = int((matches < 0).sum())
    if unlabelled:
        problems.append(
            f"{unlabelled} of {len(matches)} images have no label: neither their folder's name nor "
            "the start of their file name is one of the labels")
    return GapTexts("labels", list(labels), build_classifier(model, labels, templates), matches, problems,
                    notes)


def captions_for(images: Embedded, csv_path=None, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Captions:
    """The images' captions from a path,caption CSV, or (without one) from the .txt beside each image,
    each within the request's text limits (gate.py)."""
    if csv_path:
        return match_csv_captions(csv_path, images.paths, images.root, limits)
    return sidecar_captions(images.paths, limits)


def caption_texts(model, images: Embedded, captions: Captions,
                  limits: TextLimits = DEFAULT_TEXT_LIMITS) -> GapTexts:
    """Text i is the caption of the i-th image that has one; images without one match nothing.
    ValueError when no image has a caption; gate.Refused when there are more than max_prompts."""
    require_images(images)
    found = [captions.caption_of(p) for p in images.paths]
    have = [i for i, c in enumerate(found) if c is not None]
    if not have:
        raise ValueError("no image has a caption: check the CSV's paths (relative to the CSV's folder or "
                         "the image folder, or bare file names) or the .txt files beside the images")
    problems = list(captions.problems)
    if len(have) < len(found):
        problems.append(
            f"{len(found) - len(have)} of {len(found)} images have no caption in {captions.source}")
    texts = [found[i] for i in have]
    gate.prompts(len(texts), "Captions to encode", limits)  # before any is encoded
    matches = np.full(len(found), -1, dtype=np.int64)
    matches[have] = np.arange(len(have))
    return GapTexts("captions", texts, model.encode_texts(texts), matches, problems)


@dataclass
class Shifted:
    """The run at one shift λ along the gap: the matching readout, and every measure (histograms
    included) recomputed on the shifted, renormalised embeddings."""
    lam: float
    point: ShiftPoint
    measures: GapMeasures


@dataclass
class GapRun:
    """One computed run: everything the figures and the slider need, without the model. The views at
    a shift (`at`, `projection`) are computed from the embeddings held here: nothing is encoded."""
    images: Embedded
    texts: GapTexts
    measures: GapMeasures
    curve: list[ShiftPoint]
    _maps: dict = field(default_factory=dict, repr=False, compare=False)  # map settings -> the λ=0 map

    @property
    def metric(self) -> str:
        return "zero-shot accuracy" if self.texts.kind == "labels" else "matched-caption retrieval"

    @property
    def notes(self) -> list[str]:
        return self.images.notes + self.texts.notes + self.texts.problems

    def shifted(self, lam: float):
        """(images, texts) moved by ∓λ/2 times the unshifted gap vector and renormalised."""
        img, txt = self.images.embeddings, self.texts.embeddings
        return shift_along_gap(img, txt, float(lam), gap_vector(img, txt))

    def at(self, lam: float) -> Shifted:
        """The readout and the measures at shift `lam`, from the run's embeddings (no encoding)."""
        lam = float(lam)
        point = evaluate_shift(self.images.embeddings, self.texts.embeddings, [lam], self.texts.matches)[0]
        if lam == 0:
            return Shifted(lam, point, self.measures)
        return Shifted(lam, point, gap_measures(*self.shifted(lam), self.texts.matches))

    def projection(self, method: str = DEFAULT_PROJECTION, lam: float = 0.0,
                   max_points: int = DEFAULT_MAX_POINTS, *, seed: int = 0,
                   n_neighbors: int = 15) -> Projection:
        """The joint 2-D map at shift `lam`. The linear maps (gap, pca) keep the axes fitted on the
        unshifted embeddings, so the points move within one frame as λ changes; UMAP is the map of the
        unshifted embeddings whatever λ (it takes seconds: never recomputed per step; `.lam` says 0).
        `seed` (the sample above `max_points`, UMAP's random state) and `n_neighbors` (UMAP's) are
        project_2d's; the unshifted map is kept per every setting that changes it."""
        key = (method, int(max_points), int(seed), int(n_neighbors) if method == "umap" else None)
        base = self._maps.get(key)
        if base is None:
            base = project_2d(self.images.embeddings, self.texts.embeddings, method,
                              matches=self.texts.matches, max_points=max_points, seed=seed,
                              n_neighbors=n_neighbors)
            self._maps[key] = base
        if base.fit is None:
            return base
        if base.frame is None:  # one frame for the slider's whole range: the points are seen to move
            base.frame = base.extent(*[self._shifted_map(base, v, max_points, seed) for v in FRAME_STEPS])
        if float(lam) == 0:
            return base
        moved = self._shifted_map(base, lam, max_points, seed)
        own = moved.extent(pad=0.0)  # the frame grows only if a point would leave it
        moved.frame = tuple((min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(base.frame, own))
        return moved

    def _shifted_map(self, base: Projection, lam: float, max_points: int, seed: int) -> Projection:
        img, txt = self.shifted(lam)
        return project_2d(img, txt, base.method, matches=self.texts.matches, max_points=max_points,
                          seed=seed, fit=base.fit, lam=float(lam))

    def as_dict(self) -> dict:
        return {
            "texts": self.texts.kind, "n_texts": len(self.texts.texts), "measures": self.measures.as_dict(),
            "shift": [p.as_dict() for p in self.curve], "shift_readout": self.metric,
            "problems": self.texts.problems, "notes": self.images.notes + self.texts.notes,
            "failures": [{"path": f.path, "error": f.reason} for f in self.images.failures]
        }


def run_gap(images: Embedded, texts: GapTexts, shifts=SHIFT_STEPS) -> GapRun:
    """Measures and the shift curve for embedded images and their texts."""
    require_images(images)
    measures = gap_measures(images.embeddings, texts.embeddings, texts.matches)
    curve = evaluate_shift(images.embeddings, texts.embeddings, list(shifts), texts.matches)
    return GapRun(images, texts, measures, curve)
