"""ZPE's prompt selection by median absolute deviation, checked against a transcription of the
authors' code (google/uncertainty-baselines, experimental/multimodal/
Zero_shot_prompt_ensembling_for_text_image_models_results.ipynb: `mad_method` and its use in the
main loop), and reachable from `eval --zpe-select mad` and the prompt lab."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.science.zpe import MAD_THRESHOLD, mad_rule, mad_select, softmax_weights, zpe_scores, zpe_weights
from tests.shapes import CLASSES, class_name, make_labelled_folder


def _mad_method(data, threshold=3):
    """The notebook's `mad_method`, line for line; scipy.stats.median_abs_deviation(data) at its
    default scale=1.0 is median(|data - median(data)|)."""
    if threshold == "NA":
        return np.arange(len(data))
    med = np.median(data)
    mad = np.abs(np.median(np.abs(data - med)))
    outliers = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, v in enumerate(data):
            t = (v - med) / mad
            if t > threshold:
                outliers.append(i)
            else:
                continue
    return np.array(outliers, dtype=np.int32)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("threshold", [0.1, 0.5, 1.0, 2.0, 3.0])
def test_mad_rule_is_the_notebooks_mad_method(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for trial in range(200):
        scores = rng.normal(size=rng.integers(1, 90)) * rng.uniform(0.01, 5)
        if trial % 7 == 0:
            scores[: len(scores) // 2] = scores[0]   # ties at the median; MAD may be 0
        assert np.flatnonzero(mad_rule(scores, threshold)).tolist() == _mad_method(scores, threshold).tolist()


def test_direction_ties_and_the_default_threshold():
    assert MAD_THRESHOLD == 0.5  # the notebook's ImageNet tables (Table 1: select_threshold == .5)
    scores = np.array([0.0, 1.0, 2.0, 3.0, 10.0, -10.0])   # median 1.5, MAD 1.5
    assert np.flatnonzero(mad_rule(scores, 0.5)).tolist() == [3, 4]       # upward outliers only
    assert np.flatnonzero(mad_rule(scores, 1.0)).tolist() == [4]          # (3 - 1.5) / 1.5 = 1 is not > 1
    flat_top = np.array([1.0, 1.0, 1.0, 1.0, 2.0])                        # MAD 0: above the median -> +inf
    assert np.flatnonzero(mad_rule(flat_top, 2.0)).tolist() == [4] == _mad_method(flat_top, 2.0).tolist()


def test_when_none_pass_the_best_prompt_is_kept_and_said():
    flat = np.array([1.0, 1.0, 1.0])
    assert not mad_rule(flat, 0.5).any() and len(_mad_method(flat, 0.5)) == 0
    assert mad_select(flat, 0.5).sum() == 1
    rng = np.random.default_rng(0)
    prompts = np.repeat(_unit(rng.normal(size=(3, 1, 8))), 4, axis=1)     # 4 identical prompts: equal scores
    result = zpe_weights(_unit(rng.normal(size=(10, 8))), prompts, 10.0, mad_threshold=0.5)
    assert result.selected.sum() == 1 and "no prompt passed" in result.selection


def test_selected_weights_are_the_notebooks_softmax_scores_restricted():
    """The notebook weights the kept prompts by softmax over all scores, restricted (agg_logits then
    averages: a constant factor); here the softmax is over the kept ones. Same up to that factor."""
    rng = np.random.default_rng(4)
    images, prompts = _unit(rng.normal(size=(40, 16))), _unit(rng.normal(size=(5, 12, 16)))
    scores = zpe_scores(images, prompts, 30.0)
    result = zpe_weights(images, prompts, 30.0, mad_threshold=0.5)
    kept = _mad_method(scores, 0.5)
    assert np.flatnonzero(result.selected).tolist() == kept.tolist() and 0 < len(kept) < 12
    full = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(result.weights[kept], full[kept] / full[kept].sum(), rtol=1e-5)
    assert result.weights[np.setdiff1d(np.arange(12), kept)].sum() == 0
    np.testing.assert_allclose(result.weights, softmax_weights(scores, mad_rule(scores, 0.5)), rtol=1e-6)
    assert result.as_dict()["select"] == "mad" and result.as_dict()["mad_threshold"] == 0.5
    assert zpe_weights(images, prompts, 30.0).as_dict()["select"] == "all"


@pytest.mark.timeout(240)
def test_eval_command_reaches_mad_selection(shapes_model_dir, tmp_path, capsys):
    from explorer.cli import main

    make_labelled_folder(tmp_path / "data", CLASSES[:4], 2, size=32, seed=1)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({f"a_{c}_{s}": class_name(c, s) for c, s in CLASSES[:4]}))
    base = [
        "eval",
        str(tmp_path / "data"), "--model", f"local-dir:{shapes_model_dir}", "--classnames",
        str(names), "--templates", "openai", "--weighting", "zpe", "--json"
    ]
    assert main(base + ["--zpe-select", "mad", "--zpe-mad-threshold", "1.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    selected = np.array(doc["zpe"]["selected"])
    assert doc["zpe"]["select"] == "mad" and doc["zpe"]["mad_threshold"] == 1.5
    assert selected.tolist() == mad_select(np.array(doc["zpe"]["scores"]), 1.5).tolist()
    assert 0 < selected.sum() < 80
    weights = np.array([t["weight"] for t in doc["per_template"]])
    assert weights[~selected].sum() == 0 and weights.sum() == pytest.approx(1, abs=1e-4)
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert all(plain["zpe"]["selected"]) and plain["zpe"]["select"] == "all"


def _is_top_of_the_order(scores, kept) -> bool:
    """True when no prompt outside `kept` scores higher than one inside it (ties may go either way)."""
    kept = np.asarray(kept, dtype=bool)
    return not kept.any() or kept.all() or scores[~kept].max() <= scores[kept].min()


@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0, 5.0])
def test_mad_keeps_the_best_scoring_prompts(threshold):
    """The kept set is always the top of the score order: never a prompt without every higher-scoring
    one (scores of every sign, ties, MAD 0, nothing passing), and the weights follow the scores."""
    rng = np.random.default_rng(int(threshold * 10) + 1)
    for trial in range(300):
        scores = rng.normal(size=rng.integers(1, 40)) * rng.uniform(0.01, 10) + rng.uniform(-50, 50)
        if trial % 5 == 0:
            scores = np.round(scores, 0)                    # many ties
        if trial % 11 == 0:
            scores[: max(1, len(scores) * 2 // 3)] = scores[0]   # MAD 0
        for kept in (mad_rule(scores, threshold), mad_select(scores, threshold)):
            assert _is_top_of_the_order(scores, kept), (scores, kept)
        keep = mad_select(scores, threshold)
        assert keep[int(np.argmax(scores))]                  # the best prompt is always kept
        weights = softmax_weights(scores, keep)
        order = np.argsort(-scores[keep], kind="stable")
        assert np.all(np.diff(weights[keep][order]) <= 1e-7)  # a higher score never weighs less


def test_mad_selection_through_zpe_keeps_the_best_scoring_prompts():
    rng = np.random.default_rng(12)
    for _ in range(20):
        images, prompts = _unit(rng.normal(size=(30, 12))), _unit(rng.normal(size=(4, 15, 12)))
        result = zpe_weights(images, prompts, 25.0, mad_threshold=0.5)
        assert _is_top_of_the_order(result.scores, result.selected)
        assert result.selected[int(np.argmax(result.scores))]
