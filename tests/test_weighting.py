"""ZPE prompt weighting and CuPL-style descriptions. ZPE's scores, weights and its combination of the
prompts are checked against literal transcriptions of the authors' notebook (google/uncertainty-
baselines, experimental/multimodal/Zero_shot_prompt_ensembling_for_text_image_models_results.ipynb:
`get_weights`, `jax.nn.softmax` over prompts, `get_logits` and `agg_logits`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.science.descriptions import (
    DESCRIPTIONS_SLOT,
    for_labels,
    load_descriptions,
    parse_descriptions,
    prompt_set,
)
from explorer.science.prompts import PromptError
from explorer.science.zpe import BIAS_TEST_ONLY, mad_select, zpe_scores, zpe_weights
from tests.helpers import encode_pil

ROOT = Path(__file__).resolve().parents[1]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _paper_zpe(images, prompts, scale, pretrain=None):
    """A literal transcription of ZPE (Allingham et al. 2023): loops, float64, no shortcuts."""
    images, prompts = images.astype(np.float64), prompts.astype(np.float64)
    c_count, t_count, _ = prompts.shape
    logit = lambda x, t, c: scale * float(np.dot(x, prompts[c, t]))  # noqa: E731
    scores = np.zeros(t_count)
    for t in range(t_count):
        test_mean = [np.mean([logit(x, t, c) for x in images]) for c in range(c_count)]
        if pretrain is None:
            bias = test_mean
        else:
            pre_mean = [np.mean([logit(x, t, c) for x in pretrain]) for c in range(c_count)]
            bias = [0.5 * (pre_mean[c] + test_mean[c]) for c in range(c_count)]
        scores[t] = np.mean([max(logit(x, t, c) - bias[c] for c in range(c_count)) for x in images])
    weights = np.exp(scores - scores.max())
    return scores, weights / weights.sum()


def _paper_agg_logits(images, prompts, scale, weights, kept=None):
    """The notebook's `get_logits` then `agg_logits(logits[:, kept, :], weights[:, kept, :])`, as loops
    in float64: logits[i, t, c] = scale * <x_i, z_ct> (their encoders scale both sides by sqrt(scale)),
    then (logits * weights).mean(axis=1) over the kept prompts. With MAD selection `weights` is the
    softmax over ALL prompts and `kept` the selected ones (their weights are not renormalised)."""
    images, prompts = images.astype(np.float64), prompts.astype(np.float64)
    c_count, t_count, _ = prompts.shape
    kept = list(range(t_count)) if kept is None else [int(t) for t in kept]
    out = np.zeros((len(images), c_count))
    for i, x in enumerate(images):
        for c in range(c_count):
            out[i, c] = sum(weights[t] * scale * float(np.dot(x, prompts[c, t])) for t in kept) / len(kept)
    return out


def _renormalised_predictions(images, prompts, weights):
    """The combination used before (open_clip's renormalised weighted mean): what the tests must tell
    apart from the authors' logit average."""
    mean = _unit(np.einsum("ctd,t->cd", prompts.astype(np.float64), np.asarray(weights, np.float64)))
    return (images.astype(np.float64) @ mean.T).argmax(axis=1)


def _spread_prompts(seed=5, C=8, T=10, D=24, N=400):
    """Classes whose prompts scatter by different amounts around the class direction (so the norm of
    the mean prompt differs per class), images near the class directions: where the two combinations
    part."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(C, D)))
    spread = np.linspace(0.3, 2.0, C)[:, None, None]
    prompts = _unit(centres[:, None, :] + spread * rng.normal(size=(C, T, D)) / np.sqrt(D)).astype(np.float32)
    true = rng.integers(0, C, size=N)
    images = _unit(centres[true] + 1.2 * rng.normal(size=(N, D)) / np.sqrt(D)).astype(np.float32)
    return images, true, prompts


def test_zpe_predictions_are_the_authors_logit_average():
    """Every prediction and probability of `evaluate(..., "zpe")` is the notebook's weighted logit
    average (its 1/T factor undone: the weights sum to 1 here, so the logits keep the model's scale)."""
    from explorer.embed.probability import softmax
    from explorer.science.evaluate import evaluate

    images, true, prompts = _spread_prompts()
    scale = 30.0
    C, T = prompts.shape[:2]
    result = evaluate(images, true, prompts, [f"c{i}" for i in range(C)], [f"t{i} {{}}" for i in range(T)],
                      scale, "zpe")
    _, weights = _paper_zpe(images, prompts, scale)
    paper = _paper_agg_logits(images, prompts, scale, weights)
    assert result.predictions.tolist() == paper.argmax(axis=1).tolist()
    np.testing.assert_allclose(result.cosines * scale, paper * T, rtol=1e-4, atol=1e-4)
    probabilities = label_rows(result, softmax(paper * T))
    np.testing.assert_allclose(result.max_probability, probabilities, rtol=1e-4, atol=1e-6)
    # the test can tell the two combinations apart: renormalising moves some predictions
    assert (_renormalised_predictions(images, prompts, weights) != result.predictions).sum() >= 3


def label_rows(result, probabilities):
    return probabilities[np.arange(len(probabilities)), result.predictions]


def test_zpe_with_mad_selection_is_the_authors_restricted_softmax():
    from explorer.science.evaluate import evaluate
    from tests.test_zpe_select import _mad_method

    images, true, prompts = _spread_prompts(seed=8, T=16)
    scale, threshold = 30.0, 0.5
    C, T = prompts.shape[:2]
    result = evaluate(images, true, prompts, [f"c{i}" for i in range(C)], [f"t{i} {{}}" for i in range(T)],
                      scale, "zpe", mad_threshold=threshold)
    scores, weights = _paper_zpe(images, prompts, scale)
    kept = _mad_method(scores, threshold)
    assert 0 < len(kept) < T and np.flatnonzero(result.zpe.selected).tolist() == kept.tolist()
    paper = _paper_agg_logits(images, prompts, scale, weights, kept)
    assert result.predictions.tolist() == paper.argmax(axis=1).tolist()
    # the notebook's logits are these times sum(kept weights) / |kept|: one constant, no prediction moves
    factor = weights[kept].sum() / len(kept)
    np.testing.assert_allclose(result.cosines * scale * factor, paper, rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(240)
def test_zpe_on_a_labelled_folder_predicts_as_the_authors(shapes_model_dir, tmp_path, capsys):
    """`clip-explorer eval --weighting zpe --json` and the Prompt lab's run on a labelled folder: each
    image's prediction is the authors' logit-averaged ZPE (scores, softmax and agg_logits transcribed),
    on a folder where renormalising the weighted mean would change a prediction."""
    from explorer.cli import main
    from explorer.embed.model import load_model
    from explorer.inputs.sources import embed_folder
    from explorer.science.prompt_lab import run_lab
    from explorer.science.prompts import builtin_template_set
    from tests.shapes import CLASSES, make_labelled_folder

    make_labelled_folder(tmp_path / "data", CLASSES, 3, size=32, seed=2)
    model = load_model(f"local-dir:{shapes_model_dir}", device="cpu")
    images = embed_folder(model, tmp_path / "data")
    templates = builtin_template_set("openai")
    prompts = prompt_set(model, images.class_names, templates).embeddings
    _, weights = _paper_zpe(images.embeddings, prompts, model.logit_scale)
    paper = _paper_agg_logits(images.embeddings, prompts, model.logit_scale, weights)
    expected = [images.class_names[k] for k in paper.argmax(axis=1)]
    top2 = np.sort(paper, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-4  # no near-tie for rounding to decide
    renormalised = _renormalised_predictions(images.embeddings, prompts, weights)
    assert (renormalised != paper.argmax(axis=1)).any()  # this folder tells the combinations apart

    report = run_lab(model, images, templates, weighting="zpe")
    assert report.predicted == expected
    assert main(["eval", str(tmp_path / "data"), "--model", f"local-dir:{shapes_model_dir}",
                 "--templates", "openai", "--weighting", "zpe", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {p["image"]: p["predicted"] for p in doc["predictions"]}
    assert [by_name[name] for name in images.names] == expected
    assert doc["cosine"].startswith("the ZPE-weighted mean")


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(7)
    C, T, D, N, M = 5, 6, 16, 40, 25
    images = _unit(rng.normal(size=(N, D))).astype(np.float32)
    prompts = _unit(rng.normal(size=(C, T, D))).astype(np.float32)
    pretrain = _unit(rng.normal(size=(M, D))).astype(np.float32)
    return images, prompts, pretrain


def test_zpe_matches_paper_formula_with_pretraining_sample(synthetic):
    images, prompts, pretrain = synthetic
    result = zpe_weights(images, prompts, 14.3, reference_emb=pretrain, reference_name="synthetic")
    scores, weights = _paper_zpe(images, prompts, 14.3, pretrain)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.weights, weights, rtol=1e-4, atol=1e-6)
    assert abs(result.weights.sum() - 1) < 1e-5
    assert "25 reference images (synthetic)" in result.bias_source


def test_zpe_without_pretraining_sample_uses_test_images(synthetic):
    images, prompts, _ = synthetic
    result = zpe_weights(images, prompts, 50.0)
    scores, weights = _paper_zpe(images, prompts, 50.0, pretrain=None)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.weights, weights, rtol=1e-4, atol=1e-6)
    assert result.bias_source == BIAS_TEST_ONLY
    # the images themselves as the "pre-training sample" is the same correction
    same = zpe_weights(images, prompts, 50.0, reference_emb=images)
    np.testing.assert_allclose(same.scores, result.scores, rtol=1e-5, atol=1e-5)


def test_zpe_chunking_does_not_change_scores(synthetic, monkeypatch):
    from explorer.science import zpe as weighting

    images, prompts, pretrain = synthetic
    whole = zpe_scores(images, prompts, 10.0, pretrain)
    monkeypatch.setattr(weighting, "_CHUNK", 7)
    np.testing.assert_allclose(zpe_scores(images, prompts, 10.0, pretrain), whole, rtol=1e-5)


def test_bias_correction_removes_a_constant_prompt_offset(synthetic):
    """A prompt that adds the same direction to every class looks confident without the correction;
    the per-class mean subtraction must make its score identical to the clean prompt's."""
    images, prompts, _ = synthetic
    shift = _unit(images.mean(axis=0))
    biased = prompts.copy()
    biased[:, 1] = prompts[:, 0] + 2.0 * shift  # not normalised on purpose: a pure offset per class
    scores = zpe_scores(images, biased, 10.0)
    assert scores[1] == pytest.approx(scores[0], rel=1e-4)


def test_zpe_rejects_bad_shapes(synthetic):
    images, prompts, _ = synthetic
    with pytest.raises(ValueError, match="at least one unlabelled image"):
        zpe_weights(images[:0], prompts, 10.0)
    with pytest.raises(ValueError, match=r"\[classes, prompts, dim\]"):
        zpe_weights(images, prompts[:, 0], 10.0)
    with pytest.raises(ValueError, match="image embeddings"):
        zpe_weights(images[:, :8], prompts, 10.0)


def test_mad_selection_keeps_outliers_and_never_nothing():
    scores = np.array([1.0, 1.1, 0.9, 1.0, 3.0, 1.05])
    assert mad_select(scores, 2.0).tolist() == [False, False, False, False, True, False]
    flat = np.array([1.0, 1.0, 1.0])
    assert mad_select(flat, 2.0).sum() == 1
    rng = np.random.default_rng(0)
    C, T, D = 3, 6, 8
    result = zpe_weights(_unit(rng.normal(size=(10, D))), _unit(rng.normal(size=(C, T, D))), 10.0,
                         mad_threshold=0.5)
    assert result.weights[~result.selected].sum() == 0
    assert result.weights[result.selected].sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.timeout(120)
def test_noise_prompt_gets_lower_weight_on_shapes_model(shapes_model):
    from tests.shapes import CLASSES, class_name, draw_shape

    rng = np.random.default_rng(11)
    labels = [class_name(*c) for c in CLASSES]
    images = [draw_shape(color, shape, size=64, rng=rng) for color, shape in CLASSES for _ in range(2)]
    image_emb = encode_pil(shapes_model, images)
    templates = ["a photo of a {}.", "a drawing of a {}.", "a {} on a dark background."]
    prompts = prompt_set(shapes_model, labels, templates).embeddings
    noise = _unit(np.random.default_rng(3).normal(size=(len(labels), 1, prompts.shape[2]))).astype(np.float32)
    result = zpe_weights(image_emb, np.concatenate([prompts, noise], axis=1), shapes_model.logit_scale)
    assert result.weights[3] < 0.1 * result.weights[:3].min(), result.weights
    assert result.scores[3] < result.scores[:3].min()


# ---- descriptions ---------------------------------------------------------------------------------
def test_parse_descriptions_tidies_and_reports_errors(tmp_path):
    parsed = parse_descriptions('{" red  circle ": ["  a red circle. ", ""], "blue square": ["x"]}')
    assert parsed == {"red circle": ["a red circle."], "blue square": ["x"]}
    for text, message in [("[1, 2]", "expected a JSON object"), ("{not json", "not valid JSON"),
                          ('{"cat": []}', "'cat' has no sentences"),
                          ('{"cat": "a cat"}', "list of sentences"), ('{"cat": [1]}', "list of sentences"),
                          ("{}", "no classes"), ('{"Cat": ["a"], "cat": ["b"]}', "appears twice")]:
        with pytest.raises(PromptError, match=message):
            parse_descriptions(text)
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"cat": ["a small furry animal"]}))
    assert load_descriptions(str(path)) == {"cat": ["a small furry animal"]}
    with pytest.raises(PromptError, match="neither JSON text nor an existing file"):
        load_descriptions(str(tmp_path / "missing.json"))


def test_shipped_examples_load():
    shapes = load_descriptions(ROOT / "assets" / "descriptions" / "shapes_example.json")
    animals = load_descriptions(ROOT / "assets" / "descriptions" / "animals_example.json")
    assert len(shapes) == 24 and "red circle" in shapes
    assert "platypus" in animals and all(len(v) >= 3 for v in animals.values())


def test_for_labels_matches_names_and_names_the_missing():
    descriptions = {"Red Circle": ["a"], "blue square": ["b", "c"], "green cross": ["d"]}
    sentences, notes = for_labels(descriptions, ["red  circle", "blue square"])
    assert sentences == [["a"], ["b", "c"]]
    assert notes and "green cross" in notes[0]
    with pytest.raises(PromptError, match="no sentences for 'yellow circle'"):
        for_labels(descriptions, ["red circle", "yellow circle"])


def test_description_slot_is_mean_of_sentence_embeddings(random_vit):
    descriptions = {"cat": ["a small furry animal.", "it purrs on the sofa."], "dog": ["it barks."]}
    got = prompt_set(random_vit, ["cat", "dog"], None, descriptions, "descriptions").embeddings
    flat = random_vit.encode_texts(["a small furry animal.", "it purrs on the sofa.", "it barks."])
    np.testing.assert_allclose(got[0, 0], _unit(flat[:2].mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(got[1, 0], flat[2], atol=1e-6)

    both = prompt_set(random_vit, ["cat", "dog"], ["a photo of a {}.", "a {}."], descriptions, "both")
    assert both.slots == ["a photo of a {}.", "a {}.", DESCRIPTIONS_SLOT]
    assert both.embeddings.shape == (2, 3, random_vit.embed_dim)
    np.testing.assert_allclose(both.mean_weights, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(both.embeddings[:, 2], got[:, 0], atol=1e-6)
    alone = prompt_set(random_vit, ["cat", "dog"], None, descriptions, "descriptions")
    assert alone.slots == [DESCRIPTIONS_SLOT] and alone.mean_weights.tolist() == [1.0]
    with pytest.raises(PromptError, match="needs class descriptions"):
        prompt_set(random_vit, ["cat", "dog"], ["a {}."], None, "both")


def test_a_zpe_runs_cosines_are_named_weighted_mean_cosines(shapes_model, tmp_path):
    """Under ZPE the "cosine" is the weighted mean of the per-prompt cosines: the JSON and the "none of
    these" table say so; equal weighting keeps plain cosines."""
    from explorer.app.ui import prompt_lab_html as show
    from explorer.app.ui.prompt_lab_tab import flags_of
    from explorer.embed.probability import default_none_rule
    from explorer.inputs.sources import embed_folder
    from explorer.science.prompt_lab import run_lab
    from tests.shapes import CLASSES, class_name, draw_shape

    for i, (color, shape) in enumerate(CLASSES[:3]):
        draw_shape(color, shape, size=40, rng=i).save(tmp_path / f"{i}.png")
    images = embed_folder(shapes_model, tmp_path)
    labels = [class_name(c, s) for c, s in CLASSES[:3]]
    rule = default_none_rule(shapes_model.scoring, len(labels))
    for weighting, name in (("zpe", "max weighted mean cosine"), ("mean", "max cosine")):
        report = run_lab(shapes_model, images, ["a photo of a {}.", "a {}."], weighting=weighting,
                         labels=labels)
        meaning = "the ZPE-weighted" if weighting == "zpe" else "the cosine"
        assert report.as_dict()["cosine"].startswith(meaning)
        table = show.none_table(flags_of(report, rule, "softmax"), 0.2, 0.5)
        assert f"<th>{name}</th>" in table and f"({name} &lt; 0.20" in table
