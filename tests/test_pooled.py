"""CuPL+e ("pooled"): per class one list of every template prompt and every description sentence,
each text weighing the same, as sarahpratt/CuPL's classify_imagenet.py `zeroshot_classifier_gpt(...,
use_both=True)` builds it; and "both" keeps its own documented rule beside it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.science.descriptions import POOLED_SLOT, prompt_set, slot_texts
from explorer.science.zeroshot import ensemble
from tests.shapes import make_labelled_folder

LABELS = ["red circle", "blue square"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "a {} on a dark background."]
DESCRIPTIONS = {"red circle": ["a round shape coloured red.", "a red disc."],
                "blue square": ["a shape with four equal sides, coloured blue."]}


def _cupl_both(model, label):
    """CuPL's classifier with use_both=True, written out: texts = filled templates + the class's
    sentences; embed; normalise each; mean; normalise."""
    texts = [t.format(label) for t in TEMPLATES] + DESCRIPTIONS[label]
    emb = model.encode_texts(texts).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    mean = emb.mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_pooled_equals_one_list_mean(shapes_model):
    pooled = prompt_set(shapes_model, LABELS, TEMPLATES, DESCRIPTIONS, "pooled")
    assert pooled.slots == [POOLED_SLOT] and pooled.embeddings.shape == (2, 1, shapes_model.embed_dim)
    assert pooled.mean_weights.tolist() == [1.0]
    for c, label in enumerate(LABELS):
        np.testing.assert_allclose(pooled.embeddings[c, 0], _cupl_both(shapes_model, label), atol=1e-6)
    # the class embedding the classifier uses is that same vector
    np.testing.assert_allclose(ensemble(pooled.embeddings, pooled.mean_weights),
                               np.stack([_cupl_both(shapes_model, label) for label in LABELS]), atol=1e-6)


def test_both_keeps_its_rule_and_differs_from_pooled(shapes_model):
    """"both": template slots + one descriptions slot, the descriptions slot weighing 1/2 under equal
    weighting. With 3 templates and 1-2 sentences that is not the pooled mean."""
    both = prompt_set(shapes_model, LABELS, TEMPLATES, DESCRIPTIONS, "both")
    assert both.slots == TEMPLATES + ["descriptions"]
    np.testing.assert_allclose(both.mean_weights, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    by_rule = ensemble(both.embeddings, both.mean_weights)
    pooled = prompt_set(shapes_model, LABELS, TEMPLATES, DESCRIPTIONS, "pooled").embeddings[:, 0]
    assert np.abs(by_rule - pooled).max() > 1e-3


def test_pooled_slot_texts_are_the_whole_pool():
    [pool] = slot_texts(LABELS, TEMPLATES, DESCRIPTIONS, "pooled")
    assert len(
        pool) == 2 * len(TEMPLATES) + 3 and "a red disc." in pool and "a drawing of a blue square." in pool
    both = slot_texts(LABELS, TEMPLATES, DESCRIPTIONS, "both")
    assert len(both) == 4 and both[0] == ["a photo of a red circle.", "a photo of a blue square."]


@pytest.mark.timeout(240)
def test_eval_use_pooled(shapes_model_dir, tmp_path, capsys):
    from explorer.cli import main

    make_labelled_folder(tmp_path / "data", [("red", "circle"), ("blue", "square")], 2, size=32, seed=1)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"a_red_circle": "red circle", "a_blue_square": "blue square"}))
    described = tmp_path / "d.json"
    described.write_text(json.dumps(DESCRIPTIONS))
    templates = tmp_path / "t.txt"
    templates.write_text("\n".join(TEMPLATES) + "\n")
    assert main([
        "eval",
        str(tmp_path / "data"), "--model", f"local-dir:{shapes_model_dir}", "--classnames",
        str(names), "--templates",
        str(templates), "--descriptions",
        str(described), "--use", "pooled", "--json"
    ]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["prompts"] == "pooled" and doc["slots"] == [POOLED_SLOT]
    assert [t["template"] for t in doc["per_template"]] == [POOLED_SLOT]
