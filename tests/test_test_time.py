"""Test-time switches on shapes images: ZERO's vote over real views, TDA, the view limit, bad files."""
import json

import numpy as np
import pytest
import torch

from explorer.embed.images import fit_of, load_image
from explorer.embed.views import augmented_views, view_seed
from explorer.inputs.gate import Refused
from explorer.inputs.settings import load_settings
from explorer.inputs.sources import embed_files
from explorer.science.tda import tda_logits
from explorer.science.test_time import SwitchSettings, ViewCache, apply_switches
from explorer.science.zero import mean_view_features, zero_votes
from explorer.science.zeroshot import build_classifier
from tests.shapes import caption, make_labelled_folder

CLASSES = [("red", "circle"), ("orange", "circle"), ("red", "square"), ("blue", "triangle")]


@pytest.fixture(scope="module")
def shapes_set(shapes_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("switches")
    written = make_labelled_folder(root, CLASSES, 4, size=64, seed=5)
    labels = [caption(*c) for c in CLASSES]
    paths = [path for path, _ in written]
    true = np.array([labels.index(label) for _, label in written])
    base = embed_files(shapes_model, paths).embeddings
    classes = build_classifier(shapes_model, labels, ["{}"])
    return paths, base, classes, labels, true


@pytest.fixture(scope="module")
def zero_outcome(shapes_model, shapes_set):
    paths, base, classes, labels, true = shapes_set
    return apply_switches(shapes_model, paths, base, classes, labels, SwitchSettings(views=4, seed=1),
                          true_idx=true)


def test_zero_votes_over_the_images_own_views(shapes_model, shapes_set, zero_outcome):
    paths, base, classes, labels, true = shapes_set
    scale = shapes_model.scoring.scale
    for row, path in enumerate(paths):
        image = load_image(path, fit=fit_of(shapes_model.preprocess))
        pixels = augmented_views(image, 4, shapes_model.preprocess, view_seed(1, row))
        views = shapes_model.encode_pixels(pixels)
        votes = zero_votes(scale * (views @ classes.T)[None])[0]
        np.testing.assert_allclose(zero_outcome.after.probabilities[row], votes / votes.sum(), atol=1e-6)
    before_top = zero_outcome.before.probabilities.argmax(axis=1)
    after_top = zero_outcome.after.probabilities.argmax(axis=1)
    assert zero_outcome.changed == [int(i) for i in np.flatnonzero(before_top != after_top)]
    assert zero_outcome.before_accuracy == pytest.approx(float((before_top == true).mean()))
    assert zero_outcome.after_accuracy == pytest.approx(float((after_top == true).mean()))
    assert zero_outcome.evidence is not None and zero_outcome.evidence.n == len(paths)


def test_outcome_says_what_ran_and_what_it_cost(zero_outcome):
    data = json.loads(json.dumps(zero_outcome.as_dict()))
    assert [s["method"] for s in data["switches"]] == ["ZERO"]
    zero = data["switches"][0]
    assert zero["params"]["views"] == 4 and "FarinaMatteo/zero" in zero["source"] and zero["differs"]
    assert zero_outcome.seconds_switched > zero_outcome.seconds_plain > 0
    assert data["cost_ratio"] == pytest.approx(zero_outcome.seconds_switched / zero_outcome.seconds_plain)
    assert data["evidence"]["n"] == 16 and zero_outcome.settings.describe() == "ZERO over 4 views"


def test_tda_alone_runs_on_the_plain_features_in_order(shapes_model, shapes_set):
    paths, base, classes, labels, true = shapes_set
    outcome = apply_switches(shapes_model, paths, base, classes, labels, SwitchSettings(tda=True),
                             true_idx=true)
    np.testing.assert_allclose(outcome.after.logits, tda_logits(base, classes, shapes_model.scoring.scale))
    assert [s["method"] for s in outcome.settings.as_dicts()] == ["TDA"]
    assert outcome.evidence is not None and outcome.seconds_plain > 0
    assert outcome.settings.describe() == "TDA (stream: order given)"


def test_mean_of_views_with_a_file_that_cannot_be_reopened(shapes_model, shapes_set, tmp_path):
    paths, base, classes, labels, _ = shapes_set
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    rows = [paths[0], paths[5], broken]
    features = np.stack([base[0], base[5], base[9]])   # the broken file's row: some earlier feature
    outcome = apply_switches(shapes_model, rows, features, classes, labels,
                             SwitchSettings(views=3, combine="mean"))
    np.testing.assert_allclose(outcome.after.probabilities[2], outcome.before.probabilities[2])
    assert len(outcome.notes) == 1 and "broken.png" in outcome.notes[0]
    assert str(tmp_path) not in outcome.notes[0]
    image = load_image(paths[5], fit=fit_of(shapes_model.preprocess))
    pixels = augmented_views(image, 3, shapes_model.preprocess, view_seed(0, 1))
    views = shapes_model.encode_pixels(pixels)
    np.testing.assert_allclose(outcome.after.cosines[1], mean_view_features(views[None])[0] @ classes.T,
                               atol=1e-5)


def test_hosted_view_limit_refuses_before_encoding(shapes_model, shapes_set):
    paths, base, classes, labels, _ = shapes_set
    limit = load_settings(env={"EXPLORER_HOSTED": "1"}).max_view_encodes
    assert limit == 512 and load_settings(env={}).max_view_encodes == 100_000
    assert load_settings(env={"EXPLORER_MAX_VIEW_ENCODES": "7"}).max_view_encodes == 7
    encodes = shapes_model.image_encodes
    with pytest.raises(Refused, match="1,024 is more than the limit of 512.*EXPLORER_MAX_VIEW_ENCODES"):
        apply_switches(shapes_model, paths, base, classes, labels, SwitchSettings(views=64),
                       max_encodes=limit)
    assert shapes_model.image_encodes == encodes


def test_off_is_the_plain_prediction(shapes_model, shapes_set):
    paths, base, classes, labels, _ = shapes_set
    outcome = apply_switches(shapes_model, paths, base, classes, labels, SwitchSettings(views=1))
    assert outcome.after is outcome.before and outcome.changed == [] and outcome.settings.as_dicts() == []
    assert not outcome.settings.on() and outcome.settings.describe() == "off"


def test_views_are_seeded_and_leave_the_global_generator_alone(shapes_model, shapes_set):
    image = load_image(shapes_set[0][0])
    state = torch.random.get_rng_state()
    views = augmented_views(image, 5, shapes_model.preprocess, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert views.shape == (5, 3, 32, 32) and torch.equal(views[0], shapes_model.preprocess(image))
    assert torch.equal(views, augmented_views(image, 5, shapes_model.preprocess, seed=3))
    assert not torch.equal(views[1:], augmented_views(image, 5, shapes_model.preprocess, seed=4)[1:])


def test_a_rerun_takes_the_views_from_the_cache_and_keeps_their_cost(shapes_model, shapes_set, zero_outcome):
    """A label edit with the switches on: the same files' views come from the cache (nothing encoded),
    the votes are the same, and the cost is the one measured when the views were encoded."""
    paths, base, classes, labels, true = shapes_set
    cache, settings = ViewCache(), SwitchSettings(views=4, seed=1)
    first = apply_switches(shapes_model, paths, base, classes, labels, settings, true_idx=true, cache=cache)
    assert len(cache) == len(paths)
    encodes = shapes_model.image_encodes
    again = apply_switches(shapes_model, paths, base, classes[::-1], labels[::-1], settings, cache=cache)
    assert shapes_model.image_encodes == encodes
    np.testing.assert_allclose(again.after.probabilities[:, ::-1], first.after.probabilities, atol=1e-6)
    np.testing.assert_allclose(first.after.probabilities, zero_outcome.after.probabilities, atol=1e-6)
    assert again.cost_ratio == pytest.approx(first.cost_ratio, rel=0.5)
    other_seed = apply_switches(shapes_model, paths[:2], base[:2], classes, labels,
                                SwitchSettings(views=4, seed=2), cache=cache)
    assert shapes_model.image_encodes == encodes + 2 * 4 and other_seed.after is not other_seed.before


def test_tda_alone_times_the_plain_path_once_per_files(shapes_model, shapes_set):
    """TDA alone re-encodes a sample to time the plain path; with the app's cache, a re-run on the same
    files (a live label edit) encodes nothing and reports the same plain time."""
    paths, base, classes, labels, _ = shapes_set
    cache, settings = ViewCache(), SwitchSettings(tda=True)
    first = apply_switches(shapes_model, paths, base, classes, labels, settings, cache=cache)
    encodes = shapes_model.image_encodes
    again = apply_switches(shapes_model, paths, base, classes[::-1], labels[::-1], settings, cache=cache)
    assert shapes_model.image_encodes == encodes
    assert again.seconds_plain == pytest.approx(first.seconds_plain, rel=0.5)
