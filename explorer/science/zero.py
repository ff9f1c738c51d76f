"""ZERO (Farina et al., NeurIPS 2024, "Frustratingly Easy Test-Time Adaptation of Vision-Language
Models"): classify an image by a vote of its augmented views.

As their code computes it (github.com/FarinaMatteo/zero, ttas/zero.py `Zero.zero`, ttas/base.py
`confidence_filter`, utils/tools.py `greedy_break`): of an image's V views (view 0 the original,
the rest random resized crops + horizontal flips, data/augs.py), keep the int(V * gamma) views whose
softmax has the lowest entropy (gamma = 0.3); each kept view votes for its argmax class (their
softmax at temperature "zero", float eps: a one-hot vote). The class with most votes wins. A tie is
broken greedily: the discarded views, in order of increasing entropy, and the first whose argmax is
a tied class decides; that class gets one more vote. Their default is 64 views (1 + 63).

Where ours differs: when no discarded view votes for a tied class, their fallback
(`break_sample_tie`) masks `logit[~ties]` with `~` on an integer tensor, which is a bitwise NOT
(it sets the classes at positions -1 - t to -inf, not the classes outside the ties) and can return a
class that was not tied at all. Here the fallback is the tied class with the highest logit in the
first discarded view, which is what the function's name and use intend. Their models run in fp16,
where the "zero temperature" (fp16 eps, about 1e-3) still splits near-tied votes; ours is float32.
"""
from __future__ import annotations

import numpy as np

from explorer.embed.probability import entropy
from explorer.embed.vectors import normalize

GAMMA = 0.3
DEFAULT_VIEWS = 64
SOURCE = ("Farina et al., NeurIPS 2024, Frustratingly Easy Test-Time Adaptation of Vision-Language Models, "
          "https://github.com/FarinaMatteo/zero ttas/zero.py")
DIFFERS = ("a tie no discarded view settles goes to the tied class the first discarded view scores highest "
           "(their break_sample_tie masks with a bitwise ~ and can pick an untied class); float32, not fp16")
ZERO = {"method": "ZERO", "source": SOURCE, "differs": DIFFERS}


def zero_votes(view_logits: np.ndarray, keep: float = GAMMA) -> np.ndarray:
    """[N, V, C] logits (view 0 the original image) -> [N, C] ZERO's vote counts (their `p_bar`): one
    vote from each of the int(V * keep) lowest-entropy views for its argmax class, plus one for the
    class a tie-break chose."""
    view_logits = np.asarray(view_logits, dtype=np.float64)
    return np.stack([_votes_of_one(row, keep) for row in view_logits]) if len(view_logits) else (
        np.zeros((0, view_logits.shape[-1])))


def zero_predict(view_logits: np.ndarray, keep: float = GAMMA) -> np.ndarray:
    """[N, V, C] logits -> [N] ZERO's predicted class index (see zero_votes)."""
    return zero_votes(view_logits, keep).argmax(axis=1)


def _votes_of_one(logits: np.ndarray, keep: float) -> np.ndarray:
    """One image's [V, C] logits -> [C] votes, as Zero.zero computes p_bar."""
    order = np.argsort(entropy(logits), kind="stable")  # most confident first
    kept = int(logits.shape[0] * keep)
    votes = np.zeros(logits.shape[1])
    np.add.at(votes, logits[order[:kept]].argmax(axis=1), 1.0)
    ties = np.flatnonzero(votes == votes.max())
    if len(ties) > 1:
        votes[_break_tie(ties, logits[order[kept:]])] += 1.0
    return votes


def _break_tie(ties: np.ndarray, discarded: np.ndarray) -> int:
    """greedy_break: the first discarded view (by increasing entropy) whose argmax is tied decides;
    else the tied class the first discarded view scores highest (see the module doc)."""
    if not len(discarded):  # keep = 1: nothing was discarded (their code would fail here)
        return int(ties[0])
    for choice in discarded.argmax(axis=1):
        if choice in ties:
            return int(choice)
    return int(ties[discarded[0, ties].argmax()])


def mean_view_features(view_features: np.ndarray) -> np.ndarray:
    """[N, V, D] unit view embeddings -> [N, D] their mean, unit-normalised (the averaged-views baseline)."""
    return normalize(np.asarray(view_features, dtype=np.float32).mean(axis=1))
