"""Compare models: each model's numbers are the Prompt lab's on the same images, the pairs are the lab's
paired evidence, models are never resident together, and a second comparison encodes nothing."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import spearmanr

from explorer.index.build import build_index
from explorer.index.image_index import open_index
from explorer.inputs import gate
from explorer.inputs.sources import embed_folder
from explorer.science.calibration import calibrate
from explorer.science.evaluate import paired_difference
from explorer.science.model_compare import ModelChoice, compare_indexes, compare_models
from explorer.science.prompt_lab import run_lab
from explorer.science.prompts import builtin_template_set
from tests.helpers import local_context
from tests.shapes import CLASSES, make_labelled_folder


class Recorder:
    """An opener over ctx.compared_model that records the order of opens and closes, the models it
    lent, and an embed_for over ctx.stored that keeps each Stored."""

    def __init__(self, ctx, root, labelled=True):
        self.ctx, self.root, self.labelled = ctx, root, labelled
        self.events, self.models, self.stored, self.said = [], [], [], []

    @contextmanager
    def open(self, choice):
        with self.ctx.compared_model(choice) as model:
            self.events.append(("open", choice.label()))
            self.models.append(model)
            yield model
            self.events.append(("close", choice.label()))

    def embed(self, model, progress, should_stop):
        found = self.ctx.stored(model, self.root, labelled=self.labelled, progress=progress,
                                should_stop=should_stop, workers=0)
        self.stored.append(found)
        return found

    def compare(self, choices, **kwargs):
        return compare_models(choices, self.open, self.embed, progress=lambda f, s: self.said.append((f, s)),
                              **kwargs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shapes_model, shapes_model_dir, noisy_model_dir):
    base = tmp_path_factory.mktemp("compare")
    root = base / "photos"
    make_labelled_folder(root, CLASSES[:8], 5, seed=3)
    ctx = local_context(shapes_model, base, base)
    choices = [ModelChoice.parse(f"local-dir:{folder}") for folder in (shapes_model_dir, noisy_model_dir)]
    cache = ctx.embeddings
    recorder = Recorder(ctx, root)
    report = recorder.compare(choices)
    return ctx, root, choices, recorder, report, cache


def direct_lab(model, root):
    return run_lab(model, embed_folder(model, root, labelled=True), builtin_template_set("simple"))


def by_name(lab, values):
    return dict(zip(lab.images.names, values))


def test_each_run_and_pair_is_the_prompt_labs_own(setup, shapes_model, noisy_model):
    _, root, choices, _, report, _ = setup
    labs = [direct_lab(shapes_model, root), direct_lab(noisy_model, root)]
    assert len(report.runs) == 2 and not report.cancelled
    assert sorted(report.names) == sorted(labs[0].images.names) and report.class_names == labs[0].class_names
    correct = []
    for run, lab in zip(report.runs, labs):
        assert run.top1() == pytest.approx(lab.result.top1) and run.top5() == pytest.approx(lab.result.top5)
        assert run.report.result.per_class == pytest.approx(lab.result.per_class)
        ece = calibrate(lab.result.cosines, lab.result.true_idx, lab.result.scoring).model.ece
        assert run.ece == pytest.approx(ece, abs=1e-6)
        assert run.best_set["top1"] >= run.top1() and run.scoring == "softmax"
        assert run.cost.params > 0 and run.cost.load_seconds is not None and run.seconds_per_image > 0
        right = by_name(lab, lab.result.predictions == lab.result.true_idx)
        correct.append(np.array([right[name] for name in report.names]))
    assert 0.5 < report.runs[1].top1() < report.runs[0].top1() == 1.0   # the noisy model is worse
    expected = paired_difference(correct[0], correct[1])
    (pair,) = report.pairs
    assert (pair.a, pair.b) == (0, 1) and pair.evidence == expected
    answers = [by_name(lab, lab.predicted) for lab in labs]
    differ = [r for r, name in enumerate(report.names) if answers[0][name] != answers[1][name]]
    assert report.disagreements == differ and differ
    assert pair.agreement == pytest.approx(1 - len(differ) / len(report.names))
    row = differ[0]
    tops = report.top_labels(row)
    assert [top[0][0] for top in tops] == [answers[0][report.names[row]], answers[1][report.names[row]]]
    doc = json.loads(json.dumps(report.as_dict()))
    assert [m["model"] for m in doc["models"]] == [c.label() for c in choices]
    assert doc["pairs"][0]["evidence"]["a_only"] == expected.a_only
    assert len(doc["disagreements"]) == len(differ)


def test_models_take_turns_and_the_resident_one_is_lent_not_reloaded(setup, shapes_model):
    ctx, _, choices, recorder, _, cache = setup
    labels = [c.label() for c in choices]
    assert recorder.events[:4] == [("open", labels[0]), ("close", labels[0]), ("open", labels[1]),
                                   ("close", labels[1])]
    assert recorder.models[0] is shapes_model and recorder.models[1] is not shapes_model
    assert ctx.slot.model is shapes_model and ctx.embeddings is cache
    said = [text for _, text in recorder.said]
    assert any(text.startswith(f"model 1 of 2 ({labels[0]}): ") and "images embedded" in text
               for text in said)
    assert any(text.startswith(f"model 2 of 2 ({labels[1]}): ") for text in said)
    fractions = [f for f, _ in recorder.said]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_a_second_comparison_and_a_later_lab_or_search_encode_nothing(setup, shapes_model):
    ctx, root, choices, first, report, _ = setup
    assert [s.encoded for s in first.stored[:2]] == [len(report.names)] * 2
    again = Recorder(ctx, root)
    before = shapes_model.image_encodes
    second = again.compare(choices)
    assert [s.encoded for s in again.stored] == [0, 0] and not any(s.timed_now for s in again.stored)
    assert shapes_model.image_encodes == before and again.models[1].image_encodes == 0
    assert [r.seconds_per_image for r in second.runs] == [r.seconds_per_image for r in report.runs]
    assert [r.top1() for r in second.runs] == [r.top1() for r in report.runs]
    assert ctx.embed_choice(folder=str(root), labelled=True).encoded == 0
    assert ctx.index_choice(folder=str(root), workers=0).report.added == 0
    assert shapes_model.image_encodes == before


def test_unlabelled_images_compare_by_agreement(setup, shapes_model, noisy_model):
    ctx, root, choices, _, _, _ = setup
    names = [f"{c} {s}" for c, s in CLASSES[:8]]
    report = Recorder(ctx, root, labelled=False).compare(choices, labels=names)
    assert report.true is None and [r.top1() for r in report.runs] == [None, None]
    assert report.runs[0].ece is None and report.pairs[0].evidence is None
    assert json.dumps(report.as_dict())


def test_cancel_after_the_first_model_keeps_its_run(setup):
    ctx, root, choices, _, _, _ = setup
    recorder = Recorder(ctx, root)
    report = recorder.compare(choices, should_stop=lambda: ("close", choices[0].label()) in recorder.events)
    assert report.cancelled and len(report.runs) == 1 and report.pairs == [] and report.disagreements == []
    assert recorder.events == [("open", choices[0].label()), ("close", choices[0].label())]


def test_a_model_that_cannot_load_is_a_clear_error(setup, tmp_path):
    ctx, root, choices, _, _, _ = setup
    missing = ModelChoice.parse(f"local-dir:{tmp_path / 'nothing'}")
    before = sorted(ctx.indexes.index_dir.iterdir())
    with pytest.raises(ValueError, match=r"Could not load local-dir:.*nothing to compare it: .*not found"):
        Recorder(ctx, root).compare([choices[0], missing])
    assert sorted(ctx.indexes.index_dir.iterdir()) == before


def test_the_choices_are_checked(setup):
    _, _, choices, _, _, _ = setup
    opener = embed = None
    with pytest.raises(ValueError, match="at least two"):
        compare_models(choices[:1], opener, embed)
    with pytest.raises(ValueError, match="chosen twice"):
        compare_models([choices[0], ModelChoice.parse(choices[0].name + "/.")], opener, embed)
    with pytest.raises(gate.Refused, match="EXPLORER_MAX_COMPARE_MODELS"):
        compare_models(choices + [ModelChoice("ViT-B-32")], opener, embed, max_models=2)
    with pytest.raises(gate.Refused, match="EXPLORER_MAX_PROMPTS"):  # typed labels: before any model opens
        compare_models(choices, opener, embed, labels=["a", "b", "c"], templates=["{}"] * 10,
                       limits=replace(gate.DEFAULT_TEXT_LIMITS, max_prompts=20))
    assert ModelChoice.parse("ViT-B-32 @ openai") == ModelChoice("ViT-B-32", "openai")
    assert ModelChoice.parse("hf-hub:org/repo@tag") == ModelChoice("hf-hub:org/repo")


def test_two_indexes_of_one_folder_agree_as_computed_directly(setup, shapes_model, noisy_model, tmp_path):
    ctx, root, _, _, _, _ = setup
    models = [shapes_model, noisy_model]
    indexes = [ctx.indexes.find_for(root, model) for model in models]
    opened = []

    @contextmanager
    def lend(choice):
        opened.append(choice.label())
        yield next(m for m in models if choice.matches(m))

    queries, k = ["a red circle", "a green triangle"], 5
    found = compare_indexes(*indexes, lend, queries, k=k)
    assert opened == [ModelChoice.of(m.name).label() for m in models] and found.labels == tuple(opened)
    for i, query in enumerate(queries):
        cosines = []
        for model, index in zip(models, indexes):
            names, vectors = index.all_embeddings()
            cosines.append(dict(zip(names, vectors @ model.encode_texts([query])[0])))
        tops = [sorted(c, key=c.get, reverse=True)[:k] for c in cosines]
        assert list(found.top[i]) == tops
        assert found.overlap[i] == len(set(tops[0]) & set(tops[1])) / k
        union = list(dict.fromkeys(tops[0] + tops[1]))
        rho = spearmanr([cosines[0][n] for n in union], [cosines[1][n] for n in union]).statistic
        assert found.rank_correlation[i] == pytest.approx(rho, abs=1e-9) and found.compared[i] == len(union)
    assert json.dumps(found.as_dict())
    part = tmp_path / "part"
    build_index(shapes_model, root / sorted(p.name for p in root.iterdir())[0], part, workers=0)
    with pytest.raises(ValueError, match="different folders"):
        compare_indexes(open_index(part), indexes[1], lend, queries)
    with pytest.raises(ValueError, match="same model"):
        compare_indexes(indexes[0], indexes[0], lend, queries)


def test_a_parked_model_is_the_same_object_back_on_its_device(shapes_model_dir):
    import torch

    from explorer.embed.model import load_model, parked

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(f"local-dir:{shapes_model_dir}", device=device)
    weights = next(model.model.parameters())
    pixels = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    before = model.encode_pixels(pixels)
    with parked(model) as same:
        assert same is model
        assert next(model.model.parameters()).device.type == "cpu"
    assert next(model.model.parameters()).device.type == device and next(model.model.parameters()) is weights
    np.testing.assert_allclose(model.encode_pixels(pixels), before, atol=1e-6)
    with parked(None) as nothing:
        assert nothing is None


def test_hosted_lends_only_the_offered_models(setup, shapes_model_dir, noisy_model_dir):
    ctx, _, choices, _, _, _ = setup
    hosted = replace(ctx, settings=replace(ctx.settings, hosted=True, model=f"local-dir:{shapes_model_dir}",
                                           pretrained=None, models=()))
    with hosted.compared_model(choices[0]) as model:
        assert model is ctx.slot.model
    with pytest.raises(ValueError, match="not offered here"), hosted.compared_model(choices[1]):
        pass
