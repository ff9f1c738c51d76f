"""Evidence, not noise: paired differences over the same images, McNemar's exact test and a paired
bootstrap interval; "helps"/"hurts" only when the difference is beyond chance."""
from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from explorer.science.evaluate import (
    bootstrap_interval,
    evaluate,
    mcnemar_p,
    paired_difference,
    template_evidence,
    template_verdicts,
)


def _mcnemar_exact_by_hand(b: int, c: int) -> float:
    """McNemar's exact test (two-sided) written out: discordant pairs b and c, under H0 each is a
    fair coin, p = min(1, 2 * sum_{k=0}^{min(b,c)} C(b+c, k) / 2^(b+c)), in exact fractions."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(comb(n, k), 2 ** n) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


def _pairs(n: int, a_only: int, b_only: int, both: int, seed: int = 0):
    """[n] bool vectors with exactly these discordant and concordant counts, in a shuffled order."""
    a = np.zeros(n, dtype=bool)
    b = np.zeros(n, dtype=bool)
    a[:a_only] = True
    b[a_only:a_only + b_only] = True
    a[a_only + b_only:a_only + b_only + both] = True
    b[a_only + b_only:a_only + b_only + both] = True
    order = np.random.default_rng(seed).permutation(n)
    return a[order], b[order]


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (0, 1), (3, 9), (10, 10), (25, 4), (130, 170), (700, 820)])
def test_mcnemar_equals_the_binomial_sum(b, c):
    assert mcnemar_p(b, c) == pytest.approx(_mcnemar_exact_by_hand(b, c), rel=1e-9, abs=1e-300)


def test_one_image_of_114_is_not_called_helps():
    """The issue's case: +1 image out of 114 (+0.9 points) is noise, shown but not called."""
    alone, ensemble = _pairs(114, a_only=1, b_only=0, both=80)
    d = paired_difference(alone, ensemble)
    assert d.difference == pytest.approx(1 / 114)
    assert d.p_value == 1.0 and d.low <= 0 <= d.high
    assert d.verdict == ""
    assert d.describe().startswith("+0.9 [") and d.describe().endswith("p=1")


def test_a_large_clear_difference_is_called_both_ways():
    better, base = _pairs(114, a_only=30, b_only=2, both=60)
    d = paired_difference(better, base)
    assert d.p_value < 1e-5 and d.low > 0 and d.verdict == "better"
    assert paired_difference(base, better).verdict == "worse"


def test_bootstrap_is_the_image_bootstrap_seeded():
    """The multinomial shortcut has the image bootstrap's distribution: compare with resampling rows."""
    a, b = _pairs(200, a_only=25, b_only=12, both=100, seed=3)
    low, high = bootstrap_interval(a, b, resamples=4000, seed=1)
    rng = np.random.default_rng(7)
    rows = rng.integers(0, len(a), size=(4000, len(a)))
    direct = (a[rows].astype(int) - b[rows].astype(int)).mean(axis=1)
    ref_low, ref_high = np.percentile(direct, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=0.012) and high == pytest.approx(ref_high, abs=0.012)
    assert bootstrap_interval(a, b, seed=1) == bootstrap_interval(a, b, seed=1)  # seeded: same every run


def _clustered(rng, C=4, D=16, N=114, spread=0.35):
    centres = rng.normal(size=(C, D))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    true = np.arange(N) % C
    images = centres[true] + spread * rng.normal(size=(N, D))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    return centres, true, images.astype(np.float32)


def test_leave_one_out_equals_the_ensemble_of_the_other_prompts():
    from explorer.science.evaluate import leave_one_out_correct
    from explorer.science.zeroshot import ensemble
    rng = np.random.default_rng(1)
    centres, true, images = _clustered(rng)
    prompts = np.stack([centres, centres + 0.8 * rng.normal(size=centres.shape), np.roll(centres, 1, axis=0)],
                       axis=1).astype(np.float32)
    weights = np.array([0.5, 0.3, 0.2], dtype=np.float32)
    got = leave_one_out_correct(images, true, prompts, weights)
    for s in range(3):
        rest = weights.copy()
        rest[s] = 0
        direct = (images @ ensemble(prompts, rest).T).argmax(axis=1) == true
        np.testing.assert_array_equal(got[:, s], direct)


def test_template_verdicts_follow_each_prompts_contribution_with_evidence():
    """Two good prompts and one that points every class at the next one: leaving the misleading
    prompt out lifts the ensemble clearly ("hurts"); leaving a good one out leaves the ensemble torn
    between a good and a misleading prompt ("helps"). With "single" weighting, unweighted prompts
    contribute exactly nothing and are never called."""
    rng = np.random.default_rng(0)
    centres, true, images = _clustered(rng)
    misleading = np.roll(centres, 1, axis=0)
    prompts = np.stack([centres, centres, misleading], axis=1).astype(np.float32)   # [C, 3, D]
    names, slots = [f"c{i}" for i in range(4)], ["good", "good again", "misleading"]
    result = evaluate(images, true, prompts, names, slots, 50.0, "mean")
    evidence = template_evidence(result)
    assert evidence[2].difference < -0.1 and template_verdicts(result)[2] == "hurts"
    assert template_verdicts(result)[0] == "" or evidence[0].difference > 0   # never "hurts" for a good one
    single = evaluate(images, true, prompts, names, slots, 50.0, "single", template=0)
    only, *unweighted = template_evidence(single)
    assert only is None and [e.difference for e in unweighted] == [0, 0]
    assert template_verdicts(single)[1:] == ["", ""]
    assert single.alone_correct.shape == (len(images), 3)
    np.testing.assert_allclose(single.alone_correct.mean(axis=0), [t.accuracy for t in single.per_template])


def test_lab_compares_each_row_with_the_current_run(shapes_model, tmp_path):
    from explorer.inputs.sources import embed_folder
    from explorer.science.prompt_lab import run_lab
    from tests.shapes import CLASSES, make_labelled_folder

    make_labelled_folder(tmp_path, CLASSES[:4], 3, size=32, seed=2)
    images = embed_folder(shapes_model, tmp_path, labelled=True)
    report = run_lab(shapes_model, images, ["a photo of a {}."], compare_builtins=True)
    assert len(report.compare_evidence) == len(report.comparison) > 0
    for row, e in zip(report.comparison, report.compare_evidence):
        assert e.difference == pytest.approx(row.top1 - report.result.top1)
        assert e.n == len(images)
    doc = report.as_dict()
    assert len(doc["compare_vs_current"]) == len(report.comparison)
    assert doc["per_template_contribution"] == [None]   # the only prompt: nothing to leave it out against
