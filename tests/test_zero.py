"""ZERO's vote against a direct transcription of the authors' code (github.com/FarinaMatteo/zero)."""
import numpy as np
import pytest

from explorer.science.zero import mean_view_features, zero_predict, zero_votes

SCALE = 100.0


def _their_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _their_zero(l, gamma=0.3):  # noqa: E741 (their name)
    """ttas/zero.py Zero.zero, with ttas/base.py confidence_filter and utils/tools.py greedy_break /
    break_sample_tie, line by line in numpy (float32 like their logits; l = unscaled cosines [V, C]).
    Returns (their p_bar, whether break_sample_tie was reached)."""
    l = l.astype(np.float32)  # noqa: E741
    p = _their_softmax(l / (1 / SCALE))                               # (l / self.model.temp).softmax(1)
    batch_entropy = -(p * np.log(p)).sum(1)                           # confidence_filter
    full_idx = np.argsort(batch_entropy, kind="stable")
    filt_idx = full_idx[:int(batch_entropy.shape[0] * gamma)]
    l_filt, sorted_idx = l[filt_idx], full_idx
    zero_temp = np.finfo(np.float32).eps
    p_bar = _their_softmax(l_filt / zero_temp).sum(0) if len(l_filt) else np.zeros(l.shape[1], np.float32)
    max_counts, scalar_pred = p_bar.max(), int(p_bar.argmax())
    ties = [scalar_pred] + [i for i in range(len(p_bar)) if i != scalar_pred and p_bar[i] == max_counts]
    fallback = False
    if len(ties) > 1:
        k = int(l.shape[0] * gamma)
        sorted_l = l[sorted_idx]
        logits = sorted_l[k:]
        scalar_pred = None
        for pred in logits.argmax(1):                                 # greedy_break
            if pred in ties:
                scalar_pred = int(pred)
                break
        if scalar_pred is None:                                       # break_sample_tie
            fallback = True
            logit = logits[0].copy()
            logit[~np.array(ties, dtype=np.int32)] = -np.inf          # their bitwise ~ on an int tensor
            scalar_pred = int(logit.argmax())
        p_bar[scalar_pred] += 1
    return p_bar, fallback


@pytest.mark.parametrize("views,classes", [(8, 3), (16, 5), (64, 10), (2, 4)])
def test_vote_and_tie_break_match_their_code(views, classes):
    rng = np.random.default_rng(views * 100 + classes)
    cosines = rng.normal(0.2, 0.05, size=(300, views, classes)).astype(np.float32)
    ours = zero_votes(SCALE * cosines.astype(np.float64))
    predicted = zero_predict(SCALE * cosines.astype(np.float64))
    theirs = [_their_zero(row) for row in cosines]
    compared = [i for i, (_, fallback) in enumerate(theirs) if not fallback]
    ties = sum(1 for i in compared if theirs[i][0].sum() > int(views * 0.3) + 0.5)  # a tie-break's extra vote
    assert len(compared) > 250 and ties > 5   # the greedy tie-break was exercised
    for i in compared:
        np.testing.assert_allclose(ours[i], theirs[i][0], atol=1e-5)
        assert predicted[i] == int(theirs[i][0].argmax())


def test_tie_no_discarded_view_settles_goes_to_the_tied_class_scored_highest():
    """Views 0 and 1 (most confident) vote classes 0 and 1; the five discarded all vote class 2 and
    score class 1 above class 0. Ours: class 1. Their break_sample_tie masks classes 4 and 3 (~0, ~1)
    and gives class 2 the extra vote, so their p_bar is a three-way tie read as class 0."""
    cosines = np.full((7, 5), 0.2, dtype=np.float32)
    cosines[0, 0], cosines[1, 1] = 0.5, 0.5
    cosines[2:, 2], cosines[2:, 1], cosines[2:, 0] = 0.24, 0.23, 0.22
    their_bar, fallback = _their_zero(cosines)
    assert fallback and int(their_bar.argmax()) == 0
    assert zero_predict(SCALE * cosines[None].astype(np.float64))[0] == 1
    assert zero_votes(SCALE * cosines[None].astype(np.float64))[0].tolist() == [1, 2, 0, 0, 0]


def test_mean_view_features_is_the_unit_mean():
    rng = np.random.default_rng(0)
    views = rng.normal(size=(3, 4, 6))
    mean = mean_view_features(views)
    expected = views.mean(axis=1)
    np.testing.assert_allclose(mean, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5)
