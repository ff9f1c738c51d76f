"""The test-time switches in the Classify tab and `clip-explorer classify` (issue 27): off by default the
page and the JSON are as they were; on, the results are test_time.apply_switches' own, and the page
names each switch, its cost and what it changed; hosted, too many image views are refused with the
setting named. Handlers are called as plain functions on the shapes model with a few tiny images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.app.ui import classify_tab
from explorer.app.ui.common import COMBINES
from explorer.cli import main as cli
from explorer.inputs.sources import embed_files
from explorer.science.test_time import SwitchSettings, apply_switches
from explorer.science.zeroshot import build_classifier
from tests.helpers import hosted_context, local_context
from tests.shapes import CLASSES, caption, draw_shape

SINGLE = "Single: a photo of a {}."
ZERO, MEAN = list(COMBINES)
CHOSEN = CLASSES[:4:2] + CLASSES[8:9]  # three shapes, told apart by colour and shape
LABELS = "\n".join(caption(c, s) for c, s in CHOSEN)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("switch-photos")
    paths = []
    for i, (color, shape) in enumerate(CHOSEN * 2):
        path = root / f"{i}_{color}_{shape}.png"
        draw_shape(color, shape, size=48, rng=i).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def ctx(shapes_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("switch-ctx")
    return local_context(shapes_model, work, work)


@pytest.fixture(scope="module")
def switched(ctx, photos):
    """One switched run (4 views, ZERO's vote, TDA): encoded once for the whole module."""
    return classify_tab.classify(ctx, photos, LABELS, SINGLE, "", 3, views=4, combine=ZERO, tda=True)


def test_switches_off_by_default_leave_the_page_and_json_as_they_were(ctx, photos):
    before = classify_tab.classify(ctx, photos, LABELS, SINGLE, "", 3)
    off = classify_tab.classify(ctx, photos, LABELS, SINGLE, "", 3, views=1, combine=MEAN, tda=False)
    assert before.report.switches is None and off.report.switches is None
    assert off.summary == before.summary and off.gallery == before.gallery
    assert "switches" not in before.report.as_dict(3) and "zs-switched" not in before.summary
    assert off.report.as_dict(3) == before.report.as_dict(3)


def test_switched_results_are_apply_switches_own_and_the_page_names_them(ctx, photos, switched, shapes_model):
    outcome = switched.report.switches
    assert outcome is not None and switched.report.predictions is outcome.after
    labels = switched.report.predictions.labels
    found = embed_files(shapes_model, photos, cache=ctx.embeddings)  # the page's embeddings, not re-encoded
    assert found.encoded == 0
    direct = apply_switches(shapes_model, list(found.paths), found.embeddings,
                            build_classifier(shapes_model, labels, ["a photo of a {}."]), labels,
                            SwitchSettings(views=4, combine="zero", tda=True))
    np.testing.assert_allclose(outcome.after.probabilities, direct.after.probabilities, atol=1e-6)
    assert outcome.changed == direct.changed and outcome.before.top1() == direct.before.top1()
    # the table shows the switched top labels; the page names each switch, its cost and the changes
    tops = [r["labels"][0]["label"] for r in switched.report.as_dict(1)["results"]]
    assert tops == outcome.after.top1()
    page = switched.summary
    for about in outcome.settings.as_dicts():
        assert about["method"] in page
    assert f"×{outcome.cost_ratio:.1f} the time of plain classification" in page
    assert f"{len(outcome.changed)} of {len(photos)}</b> top label(s) changed" in page
    assert switched.report.as_dict(3)["switches"] == outcome.as_dict()


def test_hosted_views_beyond_the_limit_are_refused_naming_the_setting(shapes_model, photos, tmp_path):
    ctx = hosted_context(tmp_path, shapes_model)
    files = photos * 2  # 12 files x 64 views: past the hosted limit of 512 image views
    assert len(files) * 64 > ctx.settings.max_view_encodes
    view = classify_tab.classify(ctx, files, LABELS, SINGLE, "", 3, views=64)
    assert "explorer-error" in view.summary and "--max-view-encodes" in view.summary
    assert f"limit of {ctx.settings.max_view_encodes:,}" in view.summary


@pytest.mark.parametrize("views, words", [(65, "from 0 to 64"), ("many", "from 0 to 64")])
def test_bad_switch_inputs_are_a_message(ctx, photos, views, words):
    view = classify_tab.classify(ctx, photos, LABELS, SINGLE, "", 3, views=views)
    assert "explorer-error" in view.summary and words in view.summary


def test_the_command_adds_the_switches_to_its_json(photos, shapes_model_dir, capsys):
    code = cli(["classify", *photos[:3], "--labels", LABELS.replace("\n", ","), "--views", "3", "--combine",
                "mean", "--seed", "1", "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu",
                "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [s["method"] for s in doc["switches"]["switches"]] == [
        d["method"] for d in SwitchSettings(views=3, combine="mean", seed=1).as_dicts()]
    assert {"cost_ratio", "changed", "seconds_plain", "seconds_switched"} <= set(doc["switches"])
