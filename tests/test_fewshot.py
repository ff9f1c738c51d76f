"""Few-shot adaptation (explorer/fewshot.py) against direct transcriptions of the authors' code."""
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
        assert choice.how.startswith("5-fold")
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
