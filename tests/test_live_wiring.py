"""Issue 29, as wired on the built (hosted) page: every edit that answers live runs its tab's own
handler (common.live: `.input`, always the last edit, progress never as an overlay). Where a tab has
one action (Classify, Search, the patch map, Teach), the edits and the button are one event, the
public endpoint itself: a page never has two of its runs in flight, so a press during a live run
waits instead of being refused by the session's job limit. Every one of them is a counted job (the
validator of the per-session limit, the shared model pool)."""
from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr
import pytest

from explorer.app.ui import build_app
from explorer.app.ui.common import LIVE
from tests.test_hosted import hosted_context

# elem_id of an edit -> (the api_name of the handler it runs, the button that shares its event or None)
LIVE_EDITS = {
    "zs-labels": ("classify", "zs-run"), "zs-templates": ("classify", "zs-run"),
    "zs-topk": ("classify", "zs-run"), "zs-custom": ("classify", "zs-run"),
    "search-text": ("search", "search-run"), "search-k": ("search", "search-run"),
    "hm-map-text": ("patch_map", "hm-map-run"), "teach-shots": ("fewshot", "teach-run"),
    "pl-templates": ("evaluate_prompts", None), "pl-labels": ("evaluate_prompts", None),
    "pl-weighting": ("evaluate_prompts", None), "pl-zpe-select": ("evaluate_prompts", None),
    "pl-single-row": ("evaluate_prompts", None),
    "map-index": ("map", "map-run"), "map-method": ("map", "map-run"),
}
# The Map tab's colour-by controls: each edit is a call of the public /map_colours endpoint itself.
MAP_COLOUR_EDITS = ("map-colour-by", "map-labels", "map-templates", "map-none", "map-k", "map-cluster-method",
                    "map-query", "map-vocabulary")


@pytest.fixture(scope="module")
def app(shapes_model, tmp_path_factory):
    return build_app(hosted_context(tmp_path_factory.mktemp("live"), shapes_model, EXPLORER_SESSION_JOBS="2"))


def _ids(app) -> dict:
    return {getattr(block, "elem_id", None): block_id for block_id, block in app.blocks.items()}


@pytest.mark.parametrize("elem_id", LIVE_EDITS)
def test_an_edit_runs_its_tabs_handler_live_as_a_counted_job(app, elem_id):
    api_name, button = LIVE_EDITS[elem_id]
    ids = _ids(app)
    block = app.blocks[ids[elem_id]]  # a dropdown of fixed choices: a pick is one select, two inputs
    edit = "select" if isinstance(block, gr.Dropdown) and not block.allow_custom_value else "input"
    [event] = [f for f in app.fns.values() if (ids[elem_id], edit) in f.targets]
    endpoint = next(f for f in app.fns.values() if f.api_name == api_name)
    assert inspect.unwrap(event.fn) is inspect.unwrap(endpoint.fn)  # the button's own handler
    assert event.trigger_mode == "always_last" and event.show_progress == LIVE["show_progress"] != "full"
    assert event.validator is not None and event.concurrency_id == endpoint.concurrency_id  # a job
    if button is not None:  # one event with the button: the endpoint itself
        assert event is endpoint and any(t == (ids[button], "click") for t in event.targets)
    else:
        assert event.api_visibility == "private"


def test_every_map_colour_edit_recolours_live_through_its_endpoint(app):
    ids = _ids(app)
    [endpoint] = [f for f in app.fns.values() if f.api_name == "map_colours"]
    for elem_id in MAP_COLOUR_EDITS:
        assert (ids[elem_id], "input") in endpoint.targets, elem_id
    assert (ids["map-classifier"], "upload") in endpoint.targets
    assert endpoint.trigger_mode == "always_last" and endpoint.show_progress == LIVE["show_progress"]
    assert endpoint.validator is not None and endpoint.api_visibility == "public"   # a counted job
    # the colours are drawn in the page: the patch box's change runs only JavaScript
    [patch] = [f for f in app.fns.values() if (ids["map-colour-patch"], "change") in f.targets]
    assert patch.fn is None and "explorerMap" in patch.js


def test_a_pick_in_a_fixed_dropdown_runs_once_a_typed_value_still_runs(app):
    ids = _ids(app)
    shots = [t for f in app.fns.values() for t in f.targets if t[0] == ids["teach-shots"]]
    assert (ids["teach-shots"], "select") in shots and (ids["teach-shots"], "input") not in shots
    typed = [t for f in app.fns.values() for t in f.targets if t[0] == ids["hm-map-text"]]  # custom values
    assert (ids["hm-map-text"], "input") in typed


def test_the_gap_shift_answers_live_from_the_run(app):
    block_id = _ids(app)["gap-shift"]
    [edit] = [f for f in app.fns.values() if f.fn is not None and any(t[0] == block_id for t in f.targets)]
    assert edit.targets == [(block_id, "input")]     # a user's move; not the run's reset to 0
    assert edit.trigger_mode == "always_last" and edit.show_progress == LIVE["show_progress"]


def test_a_new_text_for_the_patch_map_sends_only_a_picture_file_in_gradios_cache(app, tmp_path, monkeypatch):
    """Issue 29: the overlay is a file written into gradio's cache (sent as it is, not encoded by gradio);
    once a map is on screen, another text sends the new picture alone, not a component update."""
    from types import SimpleNamespace

    from explorer.app.ui import heatmaps_tab
    from tests.shapes import draw_shape

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    path = tmp_path / "one.png"
    draw_shape("red", "circle", size=64, rng=1).save(path)
    on_map = inspect.unwrap(next(f for f in app.fns.values() if f.api_name == "patch_map").fn)
    items, scale = heatmaps_tab.upload_items([str(path)]), next(iter(heatmaps_tab.show.SCALE_CHOICES))
    request = SimpleNamespace(session_hash="overlay-session")

    def ask(text, previous):
        return on_map(items, "one.png", text, "tokens", 0.5, scale, previous, request)

    info, shown, state = ask("a red circle", None)  # the first map: shown, as a file
    assert state is not None and shown["visible"] is True
    first = Path(shown["value"])
    assert first.suffix == ".webp" and first.parent.parent == cache and first.is_file()
    info, picture, state = ask("a blue square", state)  # another text: the picture alone
    assert "a blue square" in info and isinstance(picture, str) and Path(picture) != first
    assert Path(picture).parent.parent == cache
    assert heatmaps_tab.picture_file(heatmaps_tab.blend(state, 0.5, scale)) == picture  # the same file again
