"""Issue 29, as wired on the built page: the edits that answer live (common.live: `.input`, always the
last edit, no progress overlay) in the Heatmaps, Modality gap and Teach by example tabs. An edit that
runs the model runs its button's own handler with the same inputs and outputs, so hosted it passes the
same gate and counts against the same per-session job limit (gate_events wraps both with one function)."""
from __future__ import annotations

import pytest

from explorer.app.ui import build_app
from tests.helpers import local_context


@pytest.fixture(scope="module")
def app(shapes_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    return build_app(local_context(shapes_model, tmp, tmp))


def _edits(app, elem_id):
    block = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id)
    return [f for f in app.fns.values() if any(t[0] == block._id for t in f.targets)], block


@pytest.mark.parametrize("elem_id, api_name", [("hm-map-text", "patch_map"), ("teach-shots", "fewshot")])
def test_an_edit_runs_its_buttons_handler_live(app, elem_id, api_name):
    events, block = _edits(app, elem_id)
    [edit] = [f for f in events if (block._id, "input") in f.targets]
    button = next(f for f in app.fns.values() if f.api_name == api_name)
    assert edit.fn is button.fn and edit.inputs == button.inputs and edit.outputs == button.outputs
    assert edit.trigger_mode == "always_last" and edit.show_progress == "hidden"


def test_the_gap_shift_answers_live_from_the_run(app):
    events, block = _edits(app, "gap-shift")
    [edit] = [f for f in events if f.fn is not None]
    assert edit.targets == [(block._id, "input")]     # a user's move; not the run's reset to 0
    assert edit.trigger_mode == "always_last" and edit.show_progress == "hidden"
