"""Calibration (explorer/calibration.py) against the authors' own code: Guo et al. 2017, "On
Calibration of Modern Neural Networks", github.com/gpleiss/temperature_scaling, temperature_scaling.py
(`_ECELoss` with n_bins=15, and `set_temperature`: LBFGS on the NLL of logits / T)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn, optim

from explorer.app.ui import calibration_view
from explorer.app.ui.prompt_lab_html import CalibrationData, LabFlags
from explorer.embed.probability import Scoring, default_none_rule
from explorer.science.calibration import (
    N_BINS,
    calibrate,
    fit_temperature,
    nll,
    reliability,
    top_confidence,
)


def guo_ece(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """_ECELoss.forward, transcribed from gpleiss/temperature_scaling."""
    bin_boundaries = torch.linspace(0, 1, n_bins + 1)
    bin_lowers, bin_uppers = bin_boundaries[:-1], bin_boundaries[1:]
    softmaxes = torch.softmax(logits, dim=1)
    confidences, predictions = torch.max(softmaxes, 1)
    accuracies = predictions.eq(labels)
    ece = torch.zeros(1)
    for bin_lower, bin_upper in zip(bin_lowers, bin_uppers):
        in_bin = confidences.gt(bin_lower.item()) * confidences.le(bin_upper.item())
        prop_in_bin = in_bin.float().mean()
        if prop_in_bin.item() > 0:
            accuracy_in_bin = accuracies[in_bin].float().mean()
            avg_confidence_in_bin = confidences[in_bin].mean()
            ece += torch.abs(avg_confidence_in_bin - accuracy_in_bin) * prop_in_bin
    return float(ece)


def guo_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """ModelWithTemperature.set_temperature, transcribed (CPU): T starts at 1.5, LBFGS on the NLL of
    logits / T. Their lr=0.01, max_iter=50 stops short of the minimum on these logits (T 1.81 where
    the minimum is near 4), so the step length comes from a strong-Wolfe line search instead."""
    temperature = nn.Parameter(torch.ones(1) * 1.5)
    nll_criterion = nn.CrossEntropyLoss()
    optimizer = optim.LBFGS([temperature], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def eval():
        optimizer.zero_grad()
        loss = nll_criterion(logits / temperature.unsqueeze(1).expand(logits.size(0), logits.size(1)), labels)
        loss.backward()
        return loss
    optimizer.step(eval)
    return float(temperature.item())


def overconfident(seed=0, n=600, c=10, scale=40.0, noise=0.12):
    """Synthetic cosines whose top label is right about 70% of the time, at a large logit scale: the
    classic over-confident zero-shot classifier."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, size=n)
    cos = rng.normal(0.2, noise, size=(n, c))
    cos[np.arange(n), true] += 0.15
    return cos, true, Scoring("softmax", scale)


def test_ece_matches_the_authors_code():
    for seed in range(4):
        cos, true, rule = overconfident(seed)
        logits = torch.tensor(rule.logits(cos), dtype=torch.float64)
        conf, correct = top_confidence(cos, true, rule)
        ours = reliability(conf, correct).ece
        assert ours == pytest.approx(guo_ece(logits, torch.tensor(true)), abs=1e-6)  # theirs sums in float32
        assert ours > 0.05  # over-confident: a real gap, not a vacuous zero


def test_ece_is_the_weighted_gap_per_bin():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False, True, False])
    rel = reliability(conf, correct)
    # Guo et al.'s formula, by hand: (4/6)|0.75 - 0.95| + (2/6)|0.5 - 0.55|
    assert rel.ece == pytest.approx(4 / 6 * 0.20 + 2 / 6 * 0.05)
    assert rel.counts.sum() == 6 and len(rel.counts) == N_BINS == 15
    assert rel.counts[14] == 4 and rel.counts[8] == 2          # 0.55 lies in (8/15, 9/15]
    assert rel.accuracy[14] == 0.75 and np.isnan(rel.accuracy[0])


def test_fitted_temperature_matches_lbfgs_and_helps():
    cos, true, rule = overconfident(1)
    ours = fit_temperature(cos, true, rule)
    theirs = guo_temperature(torch.tensor(rule.logits(cos), dtype=torch.float32), torch.tensor(true))
    assert ours == pytest.approx(theirs, rel=0.02)
    assert ours > 1.5  # over-confident logits are softened
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2001))
    best = grid[np.argmin([nll(cos, true, rule, t) for t in grid])]
    assert ours == pytest.approx(best, rel=0.01)
    report = calibrate(cos, true, rule)
    assert report.fitted.ece < report.model.ece / 2 and report.nll_fitted < report.nll_model


def test_temperature_rescales_confidence_but_never_the_ranking():
    cos, true, rule = overconfident(2)
    base_conf, base_correct = top_confidence(cos, true, rule, 1.0)
    for t in (0.3, 2.0, 7.0):
        conf, correct = top_confidence(cos, true, rule, t)
        assert np.array_equal(correct, base_correct)
        assert (conf < base_conf).all() if t > 1 else (conf > base_conf).all()
    report = calibrate(cos, true, rule, temperature=3.0)
    assert report.temperature == 3.0 and report.scaled.ece != report.model.ece


def test_sigmoid_models_calibrate_the_top_label_probability():
    cos, true, _ = overconfident(3)
    rule = Scoring("sigmoid", 40.0, -12.0)
    conf, correct = top_confidence(cos, true, rule, 2.0)
    top = cos.argmax(axis=1)
    by_hand = 1 / (1 + np.exp(-(40.0 * cos[np.arange(len(top)), top] - 12.0) / 2.0))
    np.testing.assert_allclose(conf, by_hand, rtol=1e-9)
    assert np.array_equal(correct, top == true)
    # Fitted on the binary NLL of that same event (is the top label right?).
    p = 1 / (1 + np.exp(-(40.0 * cos[np.arange(len(top)), top] - 12.0) / 1.7))
    direct = -np.mean(np.where(correct, np.log(p), np.log(1 - p)))
    assert nll(cos, true, rule, 1.7) == pytest.approx(direct, rel=1e-9)
    report = calibrate(cos, true, rule)
    assert report.kind == "sigmoid" and "top label's own sigmoid probability" in report.confidence_is
    doc = report.as_dict()
    assert doc["probability"] == "sigmoid" and "same images" in doc["fitted_on"]


def lab_flags(cos, true, rule, labelled=True) -> LabFlags:
    """The Prompt lab's state after a run on these cosines (what the calibration view is handed)."""
    names = [f"class {c}" for c in range(cos.shape[1])]
    return LabFlags(names=[f"img_{i}.png" for i in range(len(cos))],
                    predicted=[names[c] for c in cos.argmax(axis=1)],
                    true=[names[c] for c in true] if labelled else None, max_cosine=cos.max(axis=1),
                    max_probability=rule.probabilities(cos).max(axis=1),
                    rule=default_none_rule(rule, cos.shape[1]), probability=rule.kind,
                    calibration=CalibrationData(cos, true, rule) if labelled else None)


def test_calibration_view_handler_draws_both_diagrams_and_states_the_limits():
    cos, true, rule = overconfident(4)
    flags = lab_flags(cos, true, rule)
    text_1, figure_1 = calibration_view.calibration_view(flags, 1.0)
    text_2, figure_2 = calibration_view.calibration_view(flags, 2.5)
    assert "T = 1" in figure_1.layout.annotations[0].text
    assert "T = 2.50" in figure_2.layout.annotations[1].text
    assert text_1 != text_2 and "overlap" in text_1 and "optimistic" in text_1
    bars = [t for t in figure_1.data if t.type == "bar"]
    assert len(bars) == 2 and all(t.text[0].startswith("n=") for t in bars)
    assert sum(int(s[2:]) for s in bars[0].text) == len(true)
    assert calibration_view.fitted_temperature(flags, 1.0) == pytest.approx(calibrate(cos, true, rule)
                                                                             .fitted_temperature, abs=0.005)
    unlabelled, none = calibration_view.calibration_view(lab_flags(cos, true, rule, labelled=False), 1.0)
    assert none is None and "labelled" in unlabelled


def test_a_fit_that_runs_into_the_search_range_says_so():
    cos, true, rule = overconfident(5)
    perfect = cos.argmax(axis=1)  # every top label right: sharper is always better
    report = calibrate(cos, perfect, rule)
    assert report.fitted_at_bound and report.fitted_temperature == pytest.approx(0.05, rel=1e-3)
    assert not calibrate(cos, true, rule).fitted_at_bound
    text, _ = calibration_view.calibration_view(lab_flags(cos, perfect, rule), 1)
    assert "a bound, not a minimum" in text


def guo_bin(confidence: float, n_bins: int, dtype=torch.float64) -> int | None:
    """The bin _ECELoss.forward puts one confidence in, transcribed: `confidences.gt(bin_lower.item()) *
    confidences.le(bin_upper.item())` over torch.linspace's edges (None: in no bin)."""
    bin_boundaries = torch.linspace(0, 1, n_bins + 1)
    confidences = torch.tensor([confidence], dtype=dtype)
    found = [k for k, (bin_lower, bin_upper) in enumerate(zip(bin_boundaries[:-1], bin_boundaries[1:]))
             if bool((confidences.gt(bin_lower.item()) * confidences.le(bin_upper.item()))[0])]
    assert len(found) <= 1
    return found[0] if found else None


def _edge_confidences(n_bins: int) -> list[float]:
    """Confidences on and beside every edge: k / n in float64 and float32, the float32 edge itself and
    its neighbours, and the values ties give (1/m: m labels tied; 2/3 ...)."""
    theirs = torch.linspace(0, 1, n_bins + 1).numpy().astype(np.float64)
    values = {m / k for k in range(1, 31) for m in range(1, k + 1)}
    for k in range(n_bins + 1):
        values |= {k / n_bins, float(np.float32(k / n_bins)), theirs[k],
                   float(np.nextafter(theirs[k], 2.0)), float(np.nextafter(theirs[k], -1.0))}
    return sorted(v for v in values if 0.0 < v <= 1.0)


@pytest.mark.parametrize("n_bins", [N_BINS, 10, 20, 7])
def test_a_confidence_on_a_bin_edge_lands_where_the_authors_put_it(n_bins):
    """A confidence exactly on an edge goes to the bin _ECELoss puts it in: their edges are float32
    (0.6 is 0.59999996 at 15 bins, so 0.6 is in (0.6, 0.667], not (0.533, 0.6]); float32 and float64
    confidences alike."""
    for value in _edge_confidences(n_bins):
        for dtype in (torch.float64, torch.float32):
            conf = float(np.float32(value)) if dtype == torch.float32 else value
            if conf <= 0.0:
                continue  # 0 is the named departure (see below)
            ours = reliability(np.array([conf]), np.array([True]), n_bins).counts
            assert ours.sum() == 1
            assert int(np.argmax(ours)) == guo_bin(conf, n_bins, dtype), (n_bins, repr(conf))
    if n_bins == N_BINS:  # the cases that slipped before: k/15 in float64 against float32 edges
        assert guo_bin(0.6, 15) == 9 and guo_bin(2 / 3, 15) == 10 and guo_bin(1 / 3, 15) == 4
        assert int(np.argmax(reliability(np.array([0.6]), np.array([True])).counts)) == 9
    # the one named departure: exactly 0 (a sigmoid's underflow) is in no bin of theirs, in the first here
    assert guo_bin(0.0, n_bins) is None
    assert reliability(np.array([0.0]), np.array([False]), n_bins).counts[0] == 1


def test_ece_on_tied_confidences_matches_the_authors_code():
    """Logits that tie (confidence 1/m exactly, and 2/3) put many images on edges at once; the ECE
    still equals _ECELoss's."""
    logits = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -50.0], [np.log(2.0), 0.0, -50.0], [0.0] * 3,
                       [3.0, 0.0, 0.0], [np.log(4.0), 0.0, 0.0], [np.log(1.5), 0.0, -np.inf]])
    labels = np.array([0, 1, 0, 2, 0, 1, 1])
    for n_bins in (15, 10, 6, 3):
        cos = np.where(np.isfinite(logits), logits, -1e3) / 10.0
        conf, correct = top_confidence(cos, labels, Scoring("softmax", 10.0))
        theirs = guo_ece(torch.tensor(np.where(np.isfinite(logits), logits, -1e3)), torch.tensor(labels),
                         n_bins)
        assert reliability(conf, correct, n_bins).ece == pytest.approx(theirs, abs=1e-6)
