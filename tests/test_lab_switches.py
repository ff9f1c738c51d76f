"""The test-time switches and WaffleCLIP's descriptors in the Prompt lab and `clip-explorer eval` (issue 27):
off by default the lab is as it was; on a labelled folder, the switches' accuracy before and after with
the paired evidence, worded honestly; the view limit refused with its setting named. Shapes model, one
tiny labelled folder."""
from __future__ import annotations

import json

import pytest

from explorer.app.ui import prompt_lab_tab
from explorer.cli import main as cli
from explorer.inputs import gate
from explorer.science.descriptions import WAFFLE_SLOT
from explorer.science.prompt_lab import run_lab
from explorer.science.test_time import SwitchSettings
from tests.helpers import local_context
from tests.shapes import CLASSES, make_labelled_folder

TABLE = prompt_lab_tab.frame(["a photo of a {}."])
WAFFLE = next(name for name, key in prompt_lab_tab.USES.items() if key == "waffle")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-switches") / "data"
    make_labelled_folder(root, CLASSES[:12:4], 4, size=40, seed=5)  # 3 classes x 4 images
    return root


@pytest.fixture(scope="module")
def ctx(shapes_model, folder):
    return local_context(shapes_model, folder.parent, folder.parent)


def lab(ctx, folder, use="Templates", **switches):
    return prompt_lab_tab.evaluate_prompts(ctx, TABLE, str(folder), None, "", "", None, use, "Equal average",
                                           1, False, None, None, **switches)


@pytest.fixture(scope="module")
def plain(ctx, folder):
    return lab(ctx, folder)


@pytest.fixture(scope="module")
def switched(ctx, folder, plain):
    return lab(ctx, folder, views=3, tda=True)


def test_off_by_default_the_lab_is_as_it_was(ctx, folder, plain):
    off = lab(ctx, folder, views=1, tda=False)
    assert plain.report.switches is None and off.report.switches is None
    assert off.summary == plain.summary and "pl-switched" not in plain.summary
    assert off.report.as_dict() == plain.report.as_dict() and "switches" not in plain.report.as_dict()


def test_labelled_switches_give_before_and_after_with_the_paired_evidence(plain, switched):
    outcome = switched.report.switches
    assert outcome.before_accuracy == pytest.approx(plain.report.result.top1)  # "before" is the plain run
    e = outcome.evidence
    assert e is not None and e.n == len(plain.report.images) == 12
    page = switched.summary
    assert "pl-switch-accuracy" in page and e.describe() in page
    assert f"{outcome.before_accuracy:.1%} plain → {outcome.after_accuracy:.1%} switched" in page
    if not e.verdict:  # within chance: said so, in those words
        assert "no clear difference on these 12 images" in page
    for about in outcome.settings.as_dicts():
        assert about["method"] in page
    assert f"×{outcome.cost_ratio:.1f} the time of plain classification" in page
    assert switched.report.as_dict()["switches"] == outcome.as_dict()
    # the run's own numbers stay the plain ones
    assert switched.report.result.top1 == plain.report.result.top1


def test_the_view_limit_is_refused_naming_its_setting(shapes_model, plain):
    with pytest.raises(gate.Refused, match="max-view-encodes"):
        run_lab(shapes_model, plain.report.images, ["a photo of a {}."], switches=SwitchSettings(views=4),
                max_encodes=10)


def test_waffle_descriptors_as_the_prompt_source(ctx, folder):
    view = lab(ctx, folder, use=WAFFLE)
    assert view.report.slots == [WAFFLE_SLOT] and view.report.result is not None
    doc = view.report.as_dict()
    assert doc["prompt_source"]["method"] == "WaffleCLIP" and doc["prompt_source"]["params"]["their_reps"] > 1
    assert "WaffleCLIP" in view.summary and "templates were not used" not in view.summary


def test_the_eval_command_adds_switches_and_the_waffle_source(folder, shapes_model_dir, capsys):
    code = cli(["eval", str(folder), "--source", "waffle", "--views", "2", "--combine", "mean",
                "--model", f"local-dir:{shapes_model_dir}", "--device", "cpu", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["prompts"] == "waffle" and doc["prompt_source"]["method"] == "WaffleCLIP"
    assert doc["switches"]["evidence"]["n"] == 12
    assert [s["method"] for s in doc["switches"]["switches"]] == [
        d["method"] for d in SwitchSettings(views=2, combine="mean").as_dicts()]
