"""Zero-shot classification: classifier weights from prompts, predictions from embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import file_key, load_images
from .prompts import build_prompts


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def ensemble(prompt_embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """[C, T, D] normalised prompt embeddings -> [C, D] class embeddings.

    open_clip's `build_zero_shot_classifier`: normalise each prompt, average per class, renormalise.
    `weights` ([T], summing to anything positive) turns the average into a weighted one.
    """
    x = normalize(prompt_embeddings)
    if weights is None:
        mean = x.mean(axis=1)
    else:
        w = np.asarray(weights, dtype=np.float32)
        mean = np.einsum("ctd,t->cd", x, w / w.sum())
    return normalize(mean)


def prompt_embeddings(model, labels: list[str], templates: list[str]) -> np.ndarray:
    """Encode every label x template prompt (through the model's text cache) -> [C, T, D]."""
    flat = model.encode_texts(build_prompts(labels, templates))
    return flat.reshape(len(labels), len(templates), -1)


def build_classifier(model, labels: list[str], templates: list[str]) -> np.ndarray:
    """Class embeddings [C, D] for `labels`, ensembled over `templates`."""
    return ensemble(prompt_embeddings(model, labels, templates))


@dataclass
class Predictions:
    labels: list[str]
    cosines: np.ndarray        # [N, C] image-class cosine similarities
    probabilities: np.ndarray  # [N, C] softmax(logit_scale * cosine) over the classes

    def ranked(self, row: int, top_k: int | None = None) -> list[tuple[str, float, float]]:
        """(label, probability, cosine) for one image, best first."""
        order = np.argsort(-self.probabilities[row], kind="stable")[:top_k]
        return [(self.labels[j], float(self.probabilities[row, j]), float(self.cosines[row, j])) for j in order]

    def top1(self) -> list[str]:
        return [self.labels[j] for j in self.probabilities.argmax(axis=1)]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict(image_embeddings: np.ndarray, class_embeddings: np.ndarray, labels: list[str],
            logit_scale: float) -> Predictions:
    """Cosines and softmax probabilities with the model's own learned temperature."""
    cosines = image_embeddings @ class_embeddings.T
    return Predictions(list(labels), cosines, softmax(logit_scale * cosines))


def classify(model, images, labels: list[str], templates: list[str], keys=None) -> Predictions:
    """Classify PIL images against labels: the whole pipeline in one call (both encoders cached)."""
    image_embeddings = model.encode_images(images, keys=keys)
    return predict(image_embeddings, build_classifier(model, labels, templates), labels, model.logit_scale)


@dataclass
class ClassifyReport:
    """The outcome of classifying a batch of files: the good ones ranked, the bad ones explained."""
    paths: list[str]
    predictions: Predictions | None
    failures: list  # images.ImageFailure
    templates: list[str]


def classify_files(model, sources: list, labels: list[str], templates: list[str], *,
                   max_bytes: int, max_pixels: int, batch_size: int = 32, progress=None) -> ClassifyReport:
    """Decode, encode (re-using cached embeddings of files seen before) and classify.

    `progress(done, total)` is called after each batch. One bad file never stops the others.
    """
    loaded, failures = load_images(sources, max_bytes=max_bytes, max_pixels=max_pixels)
    chunks = []
    for start in range(0, len(loaded), batch_size):
        batch = loaded[start:start + batch_size]
        keys = [file_key(item.path) for item in batch]
        chunks.append(model.encode_images([item.image for item in batch], batch_size=batch_size, keys=keys))
        if progress is not None:
            progress(min(start + batch_size, len(loaded)), len(loaded))
    predictions = None
    if chunks:
        predictions = predict(np.concatenate(chunks), build_classifier(model, labels, templates), labels,
                              model.logit_scale)
    return ClassifyReport([item.path for item in loaded], predictions, failures, templates)

