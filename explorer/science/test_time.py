"""Test-time switches: ZERO's augmented-view vote (or the views' mean feature) and TDA's cache, applied
to images already classified the plain way, with what they changed and what they cost.

`apply_switches` re-opens each image, encodes its views (view 0 = the plain preprocessing), and
times two things on the same pass: the plain path (decode + the model's preprocessing + encoding
view 0 of every image, in batches, + the plain prediction) and the switched path (all of it: the
plain path, the augmented views' making and encoding, the vote or mean, TDA). With TDA alone there
are no views to encode, so the plain path is timed by encoding up to PLAIN_SAMPLE of the images
once more and scaling by N / sample; the switched path is that plus TDA's own time.

A `ViewCache` keeps each image's view features with the seconds they took, so a re-run on the same
files (a label edit with the switches on) encodes nothing again and still reports the cost measured
when the views were made.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.embed.cache import LRU
from explorer.embed.images import DEFAULT_LIMITS, ImageError, Limits, file_key, fit_of, load_image
from explorer.embed.probability import softmax
from explorer.embed.views import AUGMENTATION, crop_and_flip_views, view_seed
from explorer.inputs import gate

from . import tda, zero
from .evaluate import PairedDifference, paired_difference
from .zeroshot import Predictions, predict

SWITCHES = ("views", "tda")
COMBINES = ("zero", "mean")
VIEW_BATCH = 64      # views encoded per forward pass
PLAIN_SAMPLE = 16    # TDA alone: images re-encoded to time the plain path
MEAN_SOURCE = ("the views of ZERO (Farina et al., NeurIPS 2024), https://github.com/FarinaMatteo/zero "
               "data/augs.py, averaged as unit features")


@dataclass
class SwitchSettings:
    views: int = 0          # 0 or 1: off; else the number of views, the original included
    combine: str = "zero"   # "zero": ZERO's vote; "mean": the views' mean feature
    tda: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, not {self.combine!r}")
        if self.views < 0:
            raise ValueError(f"views must be 0 or more, not {self.views}")

    @property
    def uses_views(self) -> bool:
        return self.views > 1

    def on(self) -> bool:
        return self.uses_views or self.tda

    def describe(self) -> str:
        """'ZERO over 8 views + TDA (stream: order given)', or 'off'."""
        parts = []
        if self.uses_views and self.tda:
            parts.append(f"{self.views} views filtered as TDA filters them")
        elif self.uses_views:
            parts.append(f"ZERO over {self.views} views" if self.combine == "zero"
                         else f"mean of {self.views} views")
        if self.tda:
            parts.append("TDA (stream: order given)")
        return " + ".join(parts) or "off"

    def as_dicts(self) -> list[dict]:
        """{"method", "params", "source", "differs"} of each switch that is on."""
        out = []
        if self.uses_views:
            out.append(self._views_dict())
        if self.tda:
            out.append({"method": "TDA", "params": {**tda.TDAParams().as_dict(), "stream": "order given"},
                        "source": tda.SOURCE, "differs": tda.DIFFERS})
        return out

    def _views_dict(self) -> dict:
        params = {"views": self.views, "seed": self.seed, "augmentation": AUGMENTATION}
        if self.tda:
            return {"method": "Augmented views, combined by TDA", "params": {
                **params, "kept": "the 10% of lowest entropy (at least one), averaged"},
                "source": tda.SOURCE, "differs": "ZERO's crop-and-flip views, not TDA's AugMix ones"}
        if self.combine == "zero":
            return {"method": "ZERO", "params": {**params, "keep": zero.GAMMA}, "source": zero.SOURCE,
                    "differs": zero.DIFFERS}
        return {"method": "Mean of augmented views", "params": params, "source": MEAN_SOURCE}


@dataclass
class SwitchOutcome:
    settings: SwitchSettings
    before: Predictions
    after: Predictions
    seconds_plain: float
    seconds_switched: float
    cost_ratio: float
    changed: list[int]
    evidence: PairedDifference | None = None
    before_accuracy: float | None = None
    after_accuracy: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"switches": self.settings.as_dicts(), "describe": self.settings.describe(),
                "cost_ratio": self.cost_ratio, "seconds_plain": self.seconds_plain,
                "seconds_switched": self.seconds_switched, "changed": list(self.changed),
                "accuracy_before": self.before_accuracy, "accuracy_after": self.after_accuracy,
                "evidence": self.evidence.as_dict() if self.evidence is not None else None,
                "after_probabilities": after_meaning(self.settings),
                "notes": list(self.notes)}


class ViewCache:
    """Per image file and model: its views' features [V, D] and the seconds its plain part and the rest
    took when they were encoded, by (model instance, file path, size and mtime, views, seed); a file
    changed on disk is a new key. Bounded in entries and bytes (cache.LRU)."""

    def __init__(self, capacity: int = 4096, max_bytes: int = 256 << 20):
        self._lru = LRU(capacity, max_bytes, size=lambda entry: entry[0].nbytes)

    @staticmethod
    def key(model, path, settings: SwitchSettings, row: int) -> tuple | None:
        found = file_key(path)
        if found is None:
            return None
        return model.instance, found, settings.views, view_seed(settings.seed, row)

    def get(self, key):
        return None if key is None else self._lru.get(key)

    def put(self, key, features: np.ndarray, plain: float, extra: float) -> None:
        if key is not None:
            self._lru.put(key, (features, plain, extra))

    def __len__(self) -> int:
        return len(self._lru)


AFTER_PROBABILITIES = {
    "zero": "ZERO's vote shares per class (the tie-break winner has one extra vote, as in their code)",
    "mean": "the model's own rule on the views' mean feature",
    "tda": "softmax of TDA's final logits",
}


def after_meaning(settings: SwitchSettings) -> str:
    """What `after.probabilities` are under these switches."""
    if settings.tda:
        return AFTER_PROBABILITIES["tda"]
    return AFTER_PROBABILITIES[settings.combine] if settings.uses_views else "the plain ones"


def apply_switches(model, paths: list, base_features: np.ndarray, class_embeddings: np.ndarray,
                   labels: list[str], settings: SwitchSettings, *, true_idx: np.ndarray | None = None,
                   limits: Limits = DEFAULT_LIMITS, max_encodes: int = 0, progress=None,
                   cache: ViewCache | None = None) -> SwitchOutcome:
    """The plain predictions of `base_features` ([N, D], one per path, by the model's rule) and the
    switched ones (see the module doc and after_meaning). gate.Refused, before anything is encoded,
    when N x views is over `max_encodes` (0: no limit). A file that cannot be re-opened keeps its
    plain prediction (TDA: its plain feature, in its place in the stream), said in `notes`.
    `progress(done, total)` after each batch of views. `cache`: view features of files seen before are
    taken from it (with the seconds they took then), new ones put in it."""
    base = np.asarray(base_features, dtype=np.float32)
    if len(paths) != len(base):
        raise ValueError(f"{len(paths)} paths but {len(base)} feature rows")
    if settings.uses_views:
        gate.check_count("Image views to encode", len(paths) * settings.views, max_encodes,
                         "max_view_encodes")
    start = time.perf_counter()
    before = predict(base, class_embeddings, labels, model.scoring)
    predicting = time.perf_counter() - start
    if not settings.on():
        return _outcome(settings, before, before, (0.0, 0.0), true_idx, [])
    notes: list[str] = []
    if settings.uses_views:
        views, failed, plain, extra = _encode_views(model, paths, base, settings, limits, notes, progress,
                                                    cache)
    else:
        views, failed, extra = base[:, None, :], [], 0.0
        plain = _time_plain(model, paths, limits, cache)
    start = time.perf_counter()
    after = _switched(views, np.asarray(class_embeddings, dtype=np.float32), labels, model.scoring, settings)
    if failed and not settings.tda:
        after.probabilities[failed] = before.probabilities[failed]
    switching = time.perf_counter() - start
    return _outcome(settings, before, after, (plain + predicting, plain + extra + switching), true_idx, notes)


def _switched(views: np.ndarray, classes: np.ndarray, labels: list[str], scoring, settings) -> Predictions:
    """The switched predictions from [N, V, D] view features (V = 1: the plain features)."""
    mean = zero.mean_view_features(views)
    if settings.tda:
        logits = tda.tda_logits(views if settings.uses_views else views[:, 0], classes, scoring.scale)
        return Predictions(list(labels), mean @ classes.T, softmax(logits).astype(np.float32), None, logits)
    if settings.combine == "mean":
        return predict(mean, classes, labels, scoring)
    votes = zero.zero_votes(scoring.scale * (views @ classes.T), zero.GAMMA)
    shares = (votes / votes.sum(axis=1, keepdims=True)).astype(np.float32)
    return Predictions(list(labels), mean @ classes.T, shares, None)


def _outcome(settings, before, after, seconds, true_idx, notes) -> SwitchOutcome:
    plain, switched = seconds
    top_before, top_after = before.probabilities.argmax(axis=1), after.probabilities.argmax(axis=1)
    outcome = SwitchOutcome(settings, before, after, plain, switched,
                            switched / plain if plain > 0 else 1.0,
                            [int(i) for i in np.flatnonzero(top_before != top_after)], notes=notes)
    if true_idx is not None and len(top_before):
        truth = np.asarray(true_idx)
        before_correct, after_correct = top_before == truth, top_after == truth
        outcome.before_accuracy = float(before_correct.mean())
        outcome.after_accuracy = float(after_correct.mean())
        outcome.evidence = paired_difference(after_correct, before_correct)
    return outcome


def _open(model, path, limits: Limits, notes: list[str]):
    """(decoded image, its plain pixels) or None, with a note, when it cannot be re-opened."""
    name = Path(path).name  # never the server path
    kept = "its plain feature and prediction are kept"
    try:
        image = load_image(path, limits, name=name, fit=fit_of(model.preprocess))
        return image, model.preprocess(image)
    except ImageError as exc:
        notes.append(f"{name}: could not be re-opened ({exc.reason}); {kept}")
    except Exception as exc:  # an odd image must not end the run
        notes.append(f"{name}: preprocessing failed ({type(exc).__name__}); {kept}")
    return None


def _encode_views(model, paths, base, settings, limits, notes, progress, cache: ViewCache | None = None):
    """[N, V, D] view features (a row that cannot be re-opened: its base feature V times), the failed
    rows, and the seconds of the plain part (decode, preprocess, encode view 0) and of the rest. Rows
    in `cache` are taken from it, with the seconds they took when encoded."""
    n, count = len(paths), settings.views
    views = np.repeat(base[:, None, :], count, axis=1)
    keys = [None] * n if cache is None else [ViewCache.key(model, path, settings, row)
                                             for row, path in enumerate(paths)]
    failed, plain, extra, todo = [], 0.0, 0.0, []
    for row, key in enumerate(keys):
        hit = cache.get(key) if cache is not None else None
        if hit is None:
            todo.append(row)
        else:
            views[row], plain, extra = hit[0], plain + hit[1], extra + hit[2]
    per_batch = max(1, VIEW_BATCH // count)
    for first in range(0, len(todo), per_batch):
        batch = todo[first:first + per_batch]
        seconds = _encode_batch(model, paths, batch, views, settings, limits, notes, failed)
        plain, extra = plain + seconds[0], extra + seconds[1]
        for row in batch:
            if row not in failed and cache is not None:
                cache.put(keys[row], views[row].copy(), seconds[0] / len(batch), seconds[1] / len(batch))
        if progress is not None:
            progress(n - len(todo) + min(first + per_batch, len(todo)), n)
    return views, failed, plain, extra


def _encode_batch(model, paths, batch: list[int], views: np.ndarray, settings, limits, notes,
                  failed: list[int]) -> tuple[float, float]:
    """Encode the views of the images at rows `batch` into `views`; the seconds of the plain part and
    of the rest. A file that cannot be opened is added to `failed`."""
    import torch

    start = time.perf_counter()
    rows, opened = [], []
    for row in batch:
        got = _open(model, paths[row], limits, notes)
        if got is None:
            failed.append(row)
        else:
            rows.append(row)
            opened.append(got)
    if rows:
        views[rows, 0] = model.encode_pixels(torch.stack([pixels for _, pixels in opened]))
    middle = time.perf_counter()
    if rows:
        extra_pixels = [crop_and_flip_views(image, settings.views - 1, tuple(pixels.shape[-2:]),
                                            model.preprocess, view_seed(settings.seed, row))
                        for row, (image, pixels) in zip(rows, opened)]
        encoded = model.encode_pixels(torch.cat(extra_pixels))
        views[rows, 1:] = encoded.reshape(len(rows), settings.views - 1, -1)
    return middle - start, time.perf_counter() - middle


def _time_plain(model, paths, limits, cache: ViewCache | None = None) -> float:
    """Seconds the plain path takes for all the images, from PLAIN_SAMPLE of them decoded,
    preprocessed and encoded once more (the rest scaled by count). With a `cache`, a sample timed before
    (the same files, this model) is not encoded again: its seconds are taken from it."""
    import torch

    sample = list(paths[:PLAIN_SAMPLE])
    key = ("plain", tuple(ViewCache.key(model, path, SwitchSettings(), 0) for path in sample))
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit[1] * len(paths) / max(len(sample), 1)
    start = time.perf_counter()
    opened = [got for got in (_open(model, path, limits, []) for path in sample) if got is not None]
    if opened:
        model.encode_pixels(torch.stack([pixels for _, pixels in opened]))
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.put(key, np.empty(0, dtype=np.float32), seconds, 0.0)
    return seconds * len(paths) / max(len(sample), 1)
