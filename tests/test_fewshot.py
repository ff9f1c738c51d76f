"""Few-shot adaptation (explorer/science/fewshot.py) against direct transcriptions of the authors' code,
and its hyper-parameter search: leave-one-out over the shots, equal to refitting, honest about ties."""
from __future__ import annotations

import numpy as np
import pytest

from explorer.science import fewshot


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(classes=4, shots=6, dim=16, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(classes, dim)))
    labels = np.repeat(np.arange(classes), shots)
    features = _unit(centres[labels] + spread * rng.normal(size=(len(labels), dim)) / np.sqrt(dim))
    return features.astype(np.float32), labels, centres


def test_prototypes_are_normalised_class_means():
    f, y, _ = _clusters()
    expected = np.stack([f[y == c].mean(0) for c in range(4)])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fewshot.prototypes(f, y, 4), expected, atol=1e-6)


def test_gda_weights_equal_the_papers_estimator():
    """mrflogs/ICLR24 main_few_shots.py, transcribed in numpy (torch's X.T.cov() is
    np.cov(X, rowvar=False))."""
    f, y, _ = _clusters(classes=5, shots=8, dim=12)
    f64 = f.astype(np.float64)
    mus = np.concatenate([f64[y == i].mean(axis=0, keepdims=True) for i in range(5)])
    center_vecs = np.concatenate([f64[y == i] - mus[i][None] for i in range(5)])
    cov = np.cov(center_vecs, rowvar=False)
    cov_inv = center_vecs.shape[1] * np.linalg.pinv((center_vecs.shape[0] - 1) * cov
                                                    + np.trace(cov) * np.eye(center_vecs.shape[1]))
    ps = np.ones(5) / 5
    W = np.einsum("nd,dc->cn", mus, cov_inv)                       # [D, C] in their code
    b = np.log(ps) - np.einsum("nd,dc,nc->n", mus, cov_inv, mus) / 2
    got_w, got_b = fewshot.gda_fit(f, y, 5)
    np.testing.assert_allclose(got_w, W.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_b, b, rtol=1e-4, atol=1e-4)


def test_gda_logits_follow_the_paper_at_any_logit_scale():
    f, y, centres = _clusters(classes=3, shots=6, dim=8)
    text = _unit(centres + 0.3)
    clf = fewshot.fit("gda", f, y, ["a", "b", "c"], text, logit_scale=50.0, params={"alpha": 10.0})
    W, b = fewshot.gda_fit(f, y, 3)
    paper = 100.0 * f @ text.T + 10.0 * (f @ W.T + b)               # their test_logits, at scale 100
    np.testing.assert_allclose(clf.logits(f), paper * 50.0 / 100.0, rtol=1e-4, atol=1e-4)


def test_tip_adapter_logits_equal_its_formula():
    f, y, centres = _clusters(classes=3, shots=5, dim=8)
    queries = _unit(np.random.default_rng(1).normal(size=(7, 8))).astype(np.float32)
    text = _unit(centres)
    clf = fewshot.fit("tip-adapter", f, y, ["a", "b", "c"], text, logit_scale=100.0,
                      params={"alpha": 2.0, "beta": 5.5})
    affinity = queries @ f.T                                         # features @ cache_keys
    cache_values = np.eye(3)[y]                                      # F.one_hot
    cache_logits = np.exp((-1) * (5.5 - 5.5 * affinity)) @ cache_values
    tip_logits = 100.0 * queries @ text.T + cache_logits * 2.0
    np.testing.assert_allclose(clf.logits(queries), tip_logits, rtol=1e-4, atol=1e-4)


def test_prototype_weight_one_is_nearest_class_mean_and_zero_is_zero_shot():
    f, y, centres = _clusters()
    text = _unit(np.random.default_rng(3).normal(size=(4, 16)))      # a useless text classifier
    names = list("abcd")
    pure = fewshot.fit("prototype", f, y, names, text, 100.0, {"weight": 1.0})
    np.testing.assert_array_equal(pure.predict(f), (f @ fewshot.prototypes(f, y, 4).T).argmax(1))
    none = fewshot.fit("prototype", f, y, names, text, 100.0, {"weight": 0.0})
    np.testing.assert_array_equal(none.predict(f), (f @ text.T).argmax(1))


def test_cross_validation_picks_the_shots_over_a_useless_text_classifier():
    f, y, _ = _clusters(classes=4, shots=10, spread=0.8)
    text = _unit(np.random.default_rng(5).normal(size=(4, 16))).astype(np.float32)
    zero_shot = float(((f @ text.T).argmax(1) == y).mean())
    for method in ("prototype", "gda"):
        choice = fewshot.choose(method, f, y, list("abcd"), text, 100.0)
        assert choice.how.startswith("leave-one-out cross-validation over the 40 shots")
        assert choice.informative and choice.left_out == 40
        assert choice.accuracy > 0.8 > zero_shot + 0.3, (method, choice)
    # Tip-Adapter's grid (alpha <= 3 at scale 100) cannot overrule a confident text classifier,
    # but the search still never does worse than zero-shot on the held-out shots.
    assert fewshot.choose("tip-adapter", f, y, list("abcd"), text, 100.0).accuracy >= zero_shot
    assert fewshot.choose("prototype", f, y, list("abcd"), text, 100.0).params["weight"] >= 0.5


def test_one_shot_falls_back_to_the_papers_defaults_and_says_so():
    f, y, centres = _clusters(classes=3, shots=1)
    choice = fewshot.choose("tip-adapter", f, y, list("abc"), _unit(centres), 100.0)
    assert choice.params == fewshot.TIP_DEFAULT and "defaults" in choice.how
    w, b = fewshot.gda_fit(f, y, 3)                                 # one shot: no covariance to learn
    assert np.allclose(w, 0) and np.allclose(b, np.log(1 / 3))


def test_a_class_without_shots_is_refused_by_number():
    f, y, centres = _clusters(classes=3, shots=2)
    with pytest.raises(ValueError, match=r"class number\(s\) \[3\]"):
        fewshot.fit("gda", f, y, list("abcd"), _unit(np.vstack([centres, centres[:1]])), 100.0)


# ---- the scoring of each method at a logit scale other than 100 ---------------------------------------
def test_tip_adapter_at_another_logit_scale_is_the_papers_logits_times_s_over_100():
    """At scale s the cache term is weighed by s/100 like the zero-shot term (a slip would add it whole,
    which only scale 100 hides)."""
    f, y, centres = _clusters(classes=3, shots=5, dim=8)
    queries = _unit(np.random.default_rng(2).normal(size=(9, 8))).astype(np.float32)
    text = _unit(centres + 0.2)
    clf = fewshot.fit("tip-adapter", f, y, ["a", "b", "c"], text, logit_scale=37.0,
                      params={"alpha": 2.5, "beta": 4.0})
    paper = 100.0 * queries @ text.T + 2.5 * (np.exp(-(4.0 - 4.0 * (queries @ f.T))) @ np.eye(3)[y])
    np.testing.assert_allclose(clf.logits(queries), paper * 37.0 / 100.0, rtol=1e-4, atol=1e-4)


def test_prototype_at_another_logit_scale_mixes_cosines_then_scales():
    f, y, centres = _clusters(classes=3, shots=4, dim=8)
    queries = _unit(np.random.default_rng(4).normal(size=(6, 8))).astype(np.float32)
    text = _unit(centres - 0.1)
    clf = fewshot.fit("prototype", f, y, ["a", "b", "c"], text, logit_scale=23.0, params={"weight": 0.3})
    means = np.stack([f[y == c].mean(0) for c in range(3)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    expected = 23.0 * (0.7 * queries @ text.T + 0.3 * queries @ means.T)
    np.testing.assert_allclose(clf.logits(queries), expected, rtol=1e-4, atol=1e-4)


# ---- leave-one-out: the fast scores equal fitting and predicting at each grid value -------------------
def _refit_correct(method, f, y, names, text, scale, axes) -> np.ndarray:
    """The direct, slow transcription: for every grid value and every shot, `fit` on the other shots
    and predict the one left out."""
    out = []
    for params in fewshot.grid_points(axes):
        right = 0
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            clf = fewshot.fit(method, f[keep], y[keep], names, text, scale, params)
            right += int(clf.predict(f[i:i + 1])[0] == y[i])
        out.append(right)
    return np.array(out)


def _uneven(seed=0, dim=24):
    """4 classes of 2, 2, 3 and 5 shots in more dimensions than shots (the covariance is singular), and
    a text classifier that is half right and unsure (its classes' cosines differ by a few hundredths,
    so that Tip-Adapter's cache can overrule it)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(4, dim)))
    y = np.repeat(np.arange(4), [2, 2, 3, 5])
    f = _unit(centres[y] + 0.9 * rng.normal(size=(len(y), dim)) / np.sqrt(dim)).astype(np.float32)
    guess = np.vstack([centres[:2], _unit(rng.normal(size=(2, dim)))])
    text = _unit(centres.mean(0) + 0.05 * guess)
    return f, y, text.astype(np.float32)


@pytest.mark.parametrize("scale", [100.0, 37.0])
@pytest.mark.parametrize("method", ["prototype", "gda", "tip-adapter"])
def test_fast_cross_validation_scores_equal_fitting_and_predicting_at_each_grid_value(method, scale):
    f, y, text = _uneven()
    names = list("abcd")
    axes = fewshot.grid_axes(method, len(y), len(y))
    if method == "tip-adapter":      # every 20th beta: the slow loop fits 240 x 12 times
        axes = {"beta": axes["beta"][::20], "alpha": axes["alpha"]}
    fast = fewshot.loo_correct(method, *fewshot._check(f, y, 4), 4, text, scale, axes, np.arange(len(y)))
    slow = _refit_correct(method, f, y, names, text, scale, axes)
    np.testing.assert_array_equal(fast.ravel(), slow)
    assert len(set(slow.tolist())) > 1, "the check needs a grid whose values score differently"


def test_gda_leave_one_out_logits_equal_the_refitted_estimator():
    """The closed form (eigenbasis + Sherman-Morrison) against gda_fit on the other shots, logit by logit,
    with 2 shots in some classes (leaving one out empties that class's scatter)."""
    f, y, _ = _uneven(seed=3)
    checked, labels = fewshot._check(f, y, 4)
    extra = fewshot._gda_loo(checked.astype(np.float64), labels, 4, np.arange(len(y)))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w, b = fewshot.gda_fit(checked[keep], labels[keep], 4)
        np.testing.assert_allclose(extra[i], checked[i] @ w.T + b, rtol=1e-4, atol=1e-3 * np.abs(b).max())


def test_choose_reports_the_grid_every_score_and_uses_the_first_best():
    f, y, text = _uneven()
    choice = fewshot.choose("gda", f, y, list("abcd"), text, 100.0)
    assert choice.grid == {"alpha": list(fewshot.GDA_ALPHAS)} and choice.left_out == len(y)
    assert len(choice.correct) == len(fewshot.GDA_ALPHAS) and choice.informative
    best = int(np.argmax(choice.correct))
    assert choice.params == {"alpha": fewshot.GDA_ALPHAS[best]}
    assert choice.accuracy == pytest.approx(choice.correct[best] / len(y))
    doc = choice.as_dict()
    assert doc["grid"] == choice.grid and doc["correct"] == choice.correct and doc["informative"] is True


def test_a_grid_where_every_value_ties_is_not_chosen_and_the_default_is_used():
    """Shots far apart and a text classifier that already names them: every alpha scores 100%, so the
    search chose nothing, and says so; the params are the authors' default, not the grid's first value."""
    f, y, centres = _clusters(classes=4, shots=3, spread=0.1)
    for method in ("gda", "tip-adapter", "prototype"):
        choice = fewshot.choose(method, f, y, list("abcd"), centres.astype(np.float32), 100.0)
        assert not choice.informative, (method, choice.correct)
        assert choice.params == fewshot.DEFAULTS[method] == choice.default
        assert choice.how.startswith("not chosen: all values tie, using the default "), choice.how
    assert fewshot.DEFAULTS["gda"] != {"alpha": fewshot.GDA_ALPHAS[0]}


def test_a_shot_in_a_class_alone_means_defaults_and_a_large_problem_a_sample_said():
    f, y, centres = _clusters(classes=3, shots=4)
    y = y.copy()
    y[:3] = 1                                                    # class 0 keeps a single shot
    choice = fewshot.choose("gda", f, y, list("abc"), _unit(centres), 100.0)
    assert choice.params == fewshot.GDA_DEFAULT and "two labelled images" in choice.how
    assert "a has one" in choice.how and not choice.informative
    f, y, _ = _clusters(classes=3, shots=10)
    sample = fewshot.choose("prototype", f, y, list("abc"), _unit(centres), 100.0, max_left_out=12, seed=4)
    assert sample.left_out == 12 and "seeded sample of 12 of the 30 shots" in sample.how
    assert any("sample of 12" in n for n in sample.notes)


def test_tip_adapter_thins_its_beta_grid_within_the_budget_and_says_how_many_remain(monkeypatch):
    f, y, centres = _clusters(classes=3, shots=4)
    monkeypatch.setattr(fewshot, "SEARCH_BUDGET", 200 * 12 * 12 / 10)     # every 10th beta
    choice = fewshot.choose("tip-adapter", f, y, list("abc"), _unit(centres), 100.0)
    assert len(choice.grid["beta"]) == 20 and choice.grid["beta"] == list(fewshot.TIP_BETAS[::10])
    assert any("beta grid thinned to 20 of 200 values" in n for n in choice.notes)
    assert any("thinned to 20 of 200" in d for d in fewshot.departures("tip-adapter", choice))


def test_every_method_names_its_departures_from_the_paper():
    tip, gda = fewshot.departures("tip-adapter"), fewshot.departures("gda")
    assert any("without the authors' 10 augmented views" in d for d in tip)
    assert any("leave-one-out over the shots, where the authors" in d for d in tip + gda)
    assert any("s/100" in d for d in gda) and fewshot.departures("zero-shot") == []
