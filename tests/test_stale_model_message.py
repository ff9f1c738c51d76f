"""After a model loads, a tab's old "No model is loaded ... could not load" message does not stay.

The handlers are called as plain functions: classify_tab.classify shows the problem, model_panel's
load_model loads a model, stale_panes says what replaces each message pane; build_app wires them."""
from __future__ import annotations

import pytest

from explorer.app.context import AppContext
from explorer.app.ui import classify_tab, model_panel
from explorer.app.ui.common import TEMPLATE_CHOICES
from explorer.embed.model import ModelSlot
from explorer.inputs.settings import load_settings
from tests.shapes import draw_shape


@pytest.fixture
def ctx(tmp_path):
    settings = load_settings(
        env={"EXPLORER_ALLOWED_ROOTS": str(tmp_path), "EXPLORER_INDEX_DIR": str(tmp_path / "i")})
    return AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "uploads")


def test_a_successful_load_replaces_the_classify_panes_no_model_message(ctx, shapes_model_dir, tmp_path):
    image = tmp_path / "red.png"
    draw_shape("red", "circle", rng=1).save(image)
    missing = tmp_path / "no-such-model"
    model_panel.load_model(ctx, f"local-dir:{missing}")

    def run():
        return classify_tab.classify(ctx, [str(image)], "a red circle\na blue square",
                                     next(iter(TEMPLATE_CHOICES)), "", 2).summary

    failed = run()
    assert model_panel.NO_MODEL in failed and "no-such-model" in failed
    other = '<div class="explorer-note">Drop one or more images first.</div>'
    # While the load keeps failing, the message is true: it stays.
    model_panel.load_model(ctx, f"local-dir:{missing}")
    assert model_panel.stale_panes(ctx, [failed, other, None]) == [None, None, None]
    # A model loads: the stale message is replaced, the other panes are left alone.
    status = model_panel.load_model(ctx, f"local-dir:{shapes_model_dir}")
    assert "Loaded" in status
    note, kept, empty = model_panel.stale_panes(ctx, [failed, other, None])
    assert model_panel.NO_MODEL not in note and "could not load" not in note and "no-such-model" not in note
    assert "Loaded" in note and "shapes_clip" in note and "Run this again" in note
    assert (kept, empty) == (None, None)
    assert model_panel.NO_MODEL not in run()  # and classifying now works


def test_the_marker_is_how_the_no_model_message_begins(ctx):
    with pytest.raises(ValueError) as no_model:
        ctx.model()
    assert str(no_model.value).startswith(model_panel.NO_MODEL)


def test_the_app_wires_the_refresh_to_every_message_pane_after_the_load(ctx):
    from explorer.app.ui import build_app

    app = build_app(ctx)
    ids = {block._id: getattr(block, "elem_id", None) for block in app.blocks.values()}
    deps = app.config["dependencies"]
    load = next(d for d in deps if d.get("api_name") == "load_model")
    chained = [d for d in deps if d.get("trigger_after") == load["id"]]
    assert len(chained) == 1
    outputs = [ids[i] for i in chained[0]["outputs"]]
    assert outputs == list(model_panel.MESSAGE_PANES)   # every pane exists in the app, in order
