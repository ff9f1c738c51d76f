"""TDA (Karmanov et al., CVPR 2024, "Efficient Test-Time Adaptation of Vision-Language Models"): a
training-free dynamic adapter over a stream of test images.

As their code computes it (github.com/kdiAAA/TDA, tda_runner.py `run_test_tda`, `update_cache`,
`compute_cache_logits`; utils.py `get_clip_logits`, `get_entropy`), for each image in turn:
- clip logits = scale * cosines; pseudo-label = their argmax; loss = the softmax's entropy (nats);
- the positive cache keeps, per pseudo-label, up to 3 (feature, loss) pairs of lowest loss: a new
  pair is appended while there is room, else replaces the class's worst when its loss is lower;
- the negative cache does the same (2 per class, with the softmax as well) but only for images whose
  loss / log2(C) lies strictly between 0.2 and 0.5 (their natural-log entropy over a base-2 maximum);
- the image's final logits = clip logits + alpha * exp(-beta (1 - f.k)) @ one_hot(pseudo-labels)
  over the positive cache - alpha' * exp(-beta' (1 - f.k)) @ mask over the negative cache, where
  the mask marks each cached image's classes with probability in (0.03, 1.0). Both caches are
  updated with the image before its own logits are computed.
Defaults: configs/imagenet.yaml (positive alpha 2, beta 5; negative alpha 0.117, beta 1).

With several views of an image ([N, V, D]), as their get_clip_logits does with its 64 AugMix
views: the int(V * 0.1) views of lowest entropy are kept, their features and logits averaged (the
feature not renormalised), the loss is the entropy of their mean softmax.

Where ours differs: their OOD runs encode 63 AugMix views + the original per image; here the image
is its own feature, or the views switch's crop-and-flip views when both switches are on, and at
least one view is kept (int(V * 0.1) is 0 below 10 views, where theirs would average nothing). The
scale is the model's own (theirs: 100, OpenAI CLIP's); float64, not their fp16 caches. Their images
come in a shuffled order; here in the order given, and the outcome depends on that order.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from explorer.embed.probability import entropy, softmax

SOURCE = ("Karmanov et al., CVPR 2024, Efficient Test-Time Adaptation of Vision-Language Models, "
          "https://github.com/kdiAAA/TDA tda_runner.py")
DIFFERS = ("no AugMix views (theirs: 63 per image on the OOD benchmark): the image's own feature, or the "
           "views switch's crop-and-flip views; images in the order given, not shuffled; the model's own "
           "logit scale; at least one view kept")


@dataclass(frozen=True)
class TDAParams:
    """TDA's hyper-parameters; the defaults are their configs/imagenet.yaml."""
    positive_shots: int = 3
    positive_alpha: float = 2.0
    positive_beta: float = 5.0
    negative_shots: int = 2
    negative_alpha: float = 0.117
    negative_beta: float = 1.0
    entropy_lower: float = 0.2
    entropy_upper: float = 0.5
    mask_lower: float = 0.03
    mask_upper: float = 1.0
    view_share: float = 0.1   # get_clip_logits: the share of lowest-entropy views kept

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Step:
    feature: np.ndarray   # [D]
    logits: np.ndarray    # [C] clip logits
    loss: float           # entropy, nats
    probabilities: np.ndarray  # [C]
    label: int


def tda_logits(image_features: np.ndarray, class_embeddings: np.ndarray, logit_scale: float,
               params: TDAParams = TDAParams()) -> np.ndarray:
    """[N, D] (or [N, V, D] views) image features, [C, D] class embeddings -> [N, C] the final logits
    TDA gives each image at its step, the images taken as a stream in the order given."""
    classes = np.asarray(class_embeddings, dtype=np.float64)
    features = np.asarray(image_features, dtype=np.float64)
    positive: dict[int, list] = {}
    negative: dict[int, list] = {}
    out = np.zeros((len(features), len(classes)))
    for i, feature in enumerate(features):
        step = _clip_step(feature.reshape(-1, classes.shape[1]), classes, logit_scale, params.view_share)
        _update(positive, step, params.positive_shots)
        share = step.loss / math.log2(len(classes))
        if params.entropy_lower < share < params.entropy_upper:
            _update(negative, step, params.negative_shots)
        out[i] = step.logits + _cache_logits(step.feature, positive, len(classes), params.positive_alpha,
                                             params.positive_beta)
        if negative:
            out[i] -= _cache_logits(step.feature, negative, len(classes), params.negative_alpha,
                                    params.negative_beta, (params.mask_lower, params.mask_upper))
    return out


def _clip_step(views: np.ndarray, classes: np.ndarray, scale: float, view_share: float) -> _Step:
    """get_clip_logits for one image: [V, D] -> its feature, logits, loss, softmax and pseudo-label."""
    logits = scale * views @ classes.T
    if len(views) > 1:
        kept = np.argsort(entropy(logits), kind="stable")[:max(1, int(len(views) * view_share))]
        views, logits = views[kept], logits[kept]
    p = softmax(logits)
    mean_p = p.mean(axis=0)
    loss = float(-(mean_p * np.log(mean_p)).sum()) if len(views) > 1 else float(entropy(logits)[0])
    mean_logits = logits.mean(axis=0)
    return _Step(views.mean(axis=0), mean_logits, loss, mean_p, int(mean_logits.argmax()))


def _update(cache: dict[int, list], step: _Step, shots: int) -> None:
    """update_cache: keep the `shots` lowest-loss items per pseudo-label, sorted by loss."""
    item = (step.feature, step.loss, step.probabilities)
    entries = cache.get(step.label)
    if entries is None:
        cache[step.label] = [item]
        return
    if len(entries) < shots:
        entries.append(item)
    elif step.loss < entries[-1][1]:
        entries[-1] = item
    entries.sort(key=lambda entry: entry[1])


def _cache_logits(feature: np.ndarray, cache: dict[int, list], n_classes: int, alpha: float, beta: float,
                  mask: tuple[float, float] | None = None) -> np.ndarray:
    """compute_cache_logits: alpha * exp(-beta (1 - affinity)) @ values, keys in class order."""
    if not cache:
        return np.zeros(n_classes)
    items = [(label, entry) for label in sorted(cache) for entry in cache[label]]
    keys = np.stack([entry[0] for _, entry in items])
    if mask is None:
        values = np.eye(n_classes)[[label for label, _ in items]]
    else:
        probabilities = np.stack([entry[2] for _, entry in items])
        values = ((probabilities > mask[0]) & (probabilities < mask[1])).astype(np.float64)
    affinity = keys @ feature
    return alpha * np.exp(-(beta - beta * affinity)) @ values
