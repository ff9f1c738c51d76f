"""Model-aware probabilities: a sigmoid-trained model (the shapes model with a learned logit_bias,
loaded by open_clip like any SigLIP checkpoint) gets p = sigmoid(scale * cos + bias) per label in
every face, and the plain (contrastive) shapes model keeps its softmax, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.app.context import AppContext
from explorer.app.ui import classify_tab, heatmaps_tab, prompt_lab_tab
from explorer.cli import main as cli
from explorer.embed.model import ModelSlot
from explorer.embed.probability import Scoring, default_none_rule, default_none_threshold
from explorer.inputs.settings import load_settings
from explorer.science.evaluate import evaluate, none_of_these, open_set_scores
from explorer.science.heatmaps import similarity_matrix
from explorer.science.zeroshot import build_classifier, predict
from explorer.science.zpe import zpe_weights
from tests.conftest import SIGMOID_BIAS
from tests.helpers import encode_pil
from tests.shapes import CLASSES, caption, draw_shape, make_labelled_folder

LABELS = [caption(*c) for c in CLASSES[::5]]  # 5 labels


def by_hand_sigmoid(scale, bias, cos):
    """The SigLIP rule written out: 1 / (1 + exp(-(scale * cos + bias)))."""
    return 1.0 / (1.0 + np.exp(-(scale * np.asarray(cos, dtype=np.float64) + bias)))


def by_hand_softmax(scale, cos):
    z = np.exp(scale * np.asarray(cos, dtype=np.float64))
    return z / z.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("prob") / "data"
    make_labelled_folder(root, CLASSES[::5], 2, size=40, seed=5)  # 5 classes x 2 images
    return root


def context(model, tmp_path, tmp_path_factory):
    settings = load_settings(env={"EXPLORER_ALLOWED_ROOTS": str(tmp_path_factory.getbasetemp()),
                                  "EXPLORER_INDEX_DIR": str(tmp_path / "idx")})
    ctx = AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")
    ctx.slot.model = model
    return ctx


def run_cli(capsys, *args, model_dir):
    code = cli([*args, "--model", f"local-dir:{model_dir}", "--device", "cpu", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_sigmoid_model_is_loaded_by_open_clip_with_its_bias(sigmoid_model, shapes_model):
    assert sigmoid_model.model.logit_bias is not None  # open_clip built the parameter from init_logit_bias
    assert sigmoid_model.logit_bias == SIGMOID_BIAS
    assert sigmoid_model.scoring == Scoring("sigmoid", shapes_model.logit_scale, SIGMOID_BIAS)
    assert shapes_model.logit_bias is None and shapes_model.scoring.kind == "softmax"
    assert "sigmoid" in sigmoid_model.scoring.explain() and "softmax" in shapes_model.scoring.explain()


def test_predict_follows_the_model_rule(sigmoid_model, shapes_model):
    pictures = [draw_shape(*c, size=40, rng=i) for i, c in enumerate(CLASSES[::5])]
    emb = encode_pil(shapes_model, pictures)
    classes = build_classifier(shapes_model, LABELS, ["a photo of a {}."])
    sig = predict(emb, classes, LABELS, sigmoid_model.scoring)
    np.testing.assert_allclose(sig.probabilities,
                               by_hand_sigmoid(shapes_model.logit_scale, SIGMOID_BIAS, sig.cosines),
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(sig.probabilities.sum(axis=1), 1.0, atol=0.05)  # labels judged on their own
    soft = predict(emb, classes, LABELS, shapes_model.scoring)
    np.testing.assert_allclose(soft.probabilities, by_hand_softmax(shapes_model.logit_scale, soft.cosines),
                               rtol=1e-5)
    # The softmax path is unchanged: the scoring gives bit for bit what a bare logit scale gave.
    old = predict(emb, classes, LABELS, shapes_model.logit_scale)
    assert np.array_equal(soft.probabilities, old.probabilities) and soft.probabilities.dtype == np.float32
    assert sig.top1() == soft.top1()  # the rule changes probabilities, never the ranking


def test_classify_json_reports_per_label_sigmoid(sigmoid_model_dir, shapes_model_dir, images, capsys):
    files = sorted(str(p) for p in images.rglob("*.png"))
    labels = ", ".join(LABELS)
    code, doc = run_cli(capsys, "classify", *files, "--labels", labels, "--top-k", "5",
                        model_dir=sigmoid_model_dir)
    assert code == 0 and doc["probability"] == "sigmoid" and doc["logit_bias"] == SIGMOID_BIAS
    scale = doc["logit_scale"]
    assert scale == pytest.approx(21.339, abs=1e-3)
    for result in doc["results"]:
        for entry in result["labels"]:
            assert entry["probability"] == pytest.approx(
                float(by_hand_sigmoid(scale, SIGMOID_BIAS, entry["cosine"])), rel=1e-4, abs=1e-6)
    sums = [sum(e["probability"] for e in r["labels"]) for r in doc["results"]]
    assert max(abs(s - 1) for s in sums) > 0.05
    code, plain = run_cli(capsys, "classify", *files, "--labels", labels, "--top-k", "5",
                          model_dir=shapes_model_dir)
    assert code == 0 and plain["probability"] == "softmax"
    for result in plain["results"]:
        assert sum(e["probability"] for e in result["labels"]) == pytest.approx(1.0, abs=1e-5)


def test_the_classify_tab_shows_sigmoid_probabilities(sigmoid_model, images, tmp_path, tmp_path_factory):
    ctx = context(sigmoid_model, tmp_path, tmp_path_factory)
    files = sorted(str(p) for p in images.rglob("*.png"))
    view = classify_tab.classify(ctx, files, "\n".join(LABELS), "Single: a photo of a {}.", "", 5)
    predictions = view.report.predictions
    np.testing.assert_allclose(predictions.probabilities,
                               by_hand_sigmoid(sigmoid_model.logit_scale, SIGMOID_BIAS, predictions.cosines),
                               rtol=1e-5, atol=1e-7)
    assert view.report.as_dict()["probability"] == "sigmoid"
    assert "sigmoid" in view.summary and "sum to 100%" not in view.summary
    assert "sigmoid" in view.heatmap.layout.title.text and "softmax" not in view.heatmap.layout.title.text
    assert "sigmoid" in view.bars.layout.title.text


def test_heatmaps_matrix_and_view_follow_the_model(sigmoid_model, shapes_model, images, tmp_path,
                                                   tmp_path_factory):
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    sig = similarity_matrix(img, txt, Scoring("sigmoid", 10.0, -2.0))
    np.testing.assert_allclose(sig.probabilities, by_hand_sigmoid(10.0, -2.0, sig.cosines), rtol=1e-5)
    assert sig.as_dict()["scoring"]["probability"] == "sigmoid"
    soft = similarity_matrix(img, txt, 10.0)
    assert soft.as_dict()["scoring"]["probability"] == "softmax"
    np.testing.assert_allclose(soft.probabilities.sum(axis=1), 1.0, atol=1e-6)

    ctx = context(sigmoid_model, tmp_path, tmp_path_factory)
    files = sorted(str(p) for p in images.rglob("*.png"))[:3]
    view = heatmaps_tab.compute_matrix(ctx, files, "\n".join(LABELS), None, 4, "Cosine")
    state = view.state
    figure, note = heatmaps_tab.matrix_figure(state, heatmaps_tab.PROBABILITY_VIEWS["sigmoid"])
    assert "sigmoid" in note and "sums to 100%" not in note and "sigmoid" in figure.layout.title.text
    assert heatmaps_tab.view_update("sigmoid", "Probability (softmax per image)")["value"] == \
        "Probability (sigmoid per image and text)"


def test_open_set_scores_and_zpe_use_the_model_scale(sigmoid_model, shapes_model):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(12, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prompts = rng.normal(size=(3, 4, 16)).astype(np.float32)
    prompts /= np.linalg.norm(prompts, axis=2, keepdims=True)
    class_emb = prompts.mean(axis=1)
    class_emb /= np.linalg.norm(class_emb, axis=1, keepdims=True)
    rule = Scoring("sigmoid", 20.0, -5.0)
    max_cos, max_prob = open_set_scores(emb, class_emb, rule)
    np.testing.assert_allclose(max_prob, by_hand_sigmoid(20.0, -5.0, max_cos), rtol=1e-5)
    _, soft = open_set_scores(emb, class_emb, 20.0)
    assert not np.allclose(soft, max_prob)
    # ZPE's centred logits: the bias cancels, the weights are those of the same scale without it.
    true = np.arange(12) % 3
    with_bias = evaluate(emb, true, prompts, ["a", "b", "c"], ["t{}"] * 4, rule, "zpe")
    without = evaluate(emb, true, prompts, ["a", "b", "c"], ["t{}"] * 4, 20.0, "zpe")
    np.testing.assert_allclose(with_bias.zpe.weights, without.zpe.weights, rtol=1e-6)
    np.testing.assert_allclose(with_bias.zpe.weights, zpe_weights(emb, prompts, 20.0).weights, rtol=1e-6)
    assert with_bias.scoring == rule and with_bias.cosines.shape == (12, 3)
    np.testing.assert_allclose(with_bias.max_probability, by_hand_sigmoid(20.0, -5.0, with_bias.max_cosine),
                               rtol=1e-5)


def test_none_of_these_defaults_are_on_the_model_scale():
    sig = Scoring("sigmoid", 20.0, -6.0)
    rule = default_none_rule(sig, 7)
    assert rule.min_probability == default_none_threshold(sig, 7) == 0.5
    # The default cosine is where the model's own probability crosses 50%.
    assert float(by_hand_sigmoid(20.0, -6.0, 6.0 / 20.0)) == pytest.approx(0.5)
    assert rule.min_cosine == pytest.approx(0.3) and "more likely than not" in rule.text
    soft = Scoring("softmax", 20.0)
    assert default_none_threshold(soft, 2) == 0.75 and default_none_threshold(soft, 10) == 0.55
    assert default_none_threshold(soft, 1000) == 0.5
    # With two labels, a softmax never gives its best label under 50%: the old fixed 0.5 flags nothing.
    best_of_two = np.array([0.5, 0.52, 0.6, 0.9])
    cosines = np.full(4, 0.9)
    assert not none_of_these(cosines, best_of_two, min_probability=0.5).any()
    assert none_of_these(cosines, best_of_two, min_probability=default_none_threshold(soft, 2)).tolist() == \
        [True, True, True, False]


def test_prompt_lab_uses_the_sigmoid_defaults_and_says_so(sigmoid_model, images, tmp_path, tmp_path_factory):
    ctx = context(sigmoid_model, tmp_path, tmp_path_factory)
    view = prompt_lab_tab.evaluate_prompts(ctx, prompt_lab_tab.frame(["a photo of a {}."]), str(images), None,
                                           "", "", None, "Templates", "Equal average", 1, False, None, None)
    assert view.report is not None, view.summary
    rule = view.flags.rule
    assert rule.min_probability == 0.5
    assert rule.min_cosine == pytest.approx(-SIGMOID_BIAS / sigmoid_model.logit_scale, abs=0.005)
    assert "model's default" in view.none_of_these and "sigmoid" in view.none_of_these
    np.testing.assert_allclose(
        view.report.max_probability,
        by_hand_sigmoid(sigmoid_model.logit_scale, SIGMOID_BIAS, view.report.max_cosine), rtol=1e-5)
    assert "sigmoid" in view.summary
    mine = prompt_lab_tab.none_view(view.flags, 0.1, 0.9)
    assert "your thresholds" in mine


def test_eval_json_names_the_rule_and_calibration(sigmoid_model_dir, shapes_model_dir, images, capsys):
    code, doc = run_cli(capsys, "eval", str(images), "--templates", "single", model_dir=sigmoid_model_dir)
    assert code == 0 and doc["probability"] == "sigmoid" and doc["logit_bias"] == SIGMOID_BIAS
    assert doc["none_of_these"]["min_probability"] == 0.5
    assert doc["calibration"]["probability"] == "sigmoid" and len(doc["calibration"]["bins"]) == 15
    for p in doc["predictions"]:
        assert p["max_probability"] == pytest.approx(
            float(by_hand_sigmoid(doc["logit_scale"], SIGMOID_BIAS, p["max_cosine"])), rel=1e-4, abs=1e-6)
    code, plain = run_cli(capsys, "eval", str(images), "--templates", "single", model_dir=shapes_model_dir)
    assert code == 0 and plain["probability"] == "softmax"
    assert plain["none_of_these"]["min_probability"] == 0.6
