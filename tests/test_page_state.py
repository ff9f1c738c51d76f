"""State that follows the model, and the no-model message (issue 25), without a browser:
tests/browser/test_model_panel.py drives the same through the page."""
from __future__ import annotations

import gradio as gr
import pytest

from explorer.app.context import NoModel, no_model_message
from explorer.app.ui import RULE_FOLLOWERS, build_app, heatmaps_tab, model_panel
from tests.helpers import local_context

OFFLINE = ("could not load ViT-B-32 (laion2b_s34b_b79k): its weights are not in the Hugging Face cache and "
           "HF_HUB_OFFLINE is set")


def test_the_no_model_message_is_made_of_sentences(shapes_model, tmp_path):
    ctx = local_context(shapes_model, tmp_path, tmp_path)
    ctx.slot.model, ctx.slot.error = None, OFFLINE
    with pytest.raises(NoModel) as caught:
        ctx.model()
    assert str(caught.value) == (
        "No model is loaded. Could not load ViT-B-32 (laion2b_s34b_b79k): its weights are not in the Hugging "
        "Face cache and HF_HUB_OFFLINE is set. Load one in the Model panel above.")
    assert no_model_message(None) == "No model is loaded. Load one in the Model panel above."
    assert no_model_message("folder not found.") == \
        "No model is loaded. Folder not found. Load one in the Model panel above."
    assert str(caught.value).startswith(model_panel.NO_MODEL)  # the stale-message check still finds it


def test_the_show_radio_follows_the_loaded_models_rule(shapes_model, sigmoid_model, tmp_path):
    ctx = local_context(shapes_model, tmp_path, tmp_path)
    follow = [RULE_FOLLOWERS["hm-view"]]
    softmax_label, sigmoid_label = (heatmaps_tab.PROBABILITY_VIEWS[r] for r in ("softmax", "sigmoid"))
    assert model_panel.rule_updates(ctx, follow, ["Cosine"])[0]["choices"] == ["Cosine", softmax_label]
    ctx.slot.model = sigmoid_model
    update = model_panel.rule_updates(ctx, follow, [softmax_label])[0]
    assert update["choices"] == ["Cosine", sigmoid_label] and update["value"] == sigmoid_label
    assert model_panel.rule_updates(ctx, follow, ["Cosine"])[0]["value"] == "Cosine"
    ctx.slot.model = None
    assert model_panel.rule_updates(ctx, follow, ["Cosine"])[0] == gr.update()  # nothing loaded: as it is


def test_the_radio_is_wired_to_model_loads_and_page_loads(shapes_model, tmp_path):
    app = build_app(local_context(shapes_model, tmp_path, tmp_path))
    radio = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "hm-view")
    load = next(f for f in app.fns.values() if f.api_name == "load_model")
    followers = [f for f in app.fns.values() if f.outputs == [radio] and f.inputs == [radio]]
    def after(fn) -> bool:  # chained, directly or through other events, to the load
        while fn.trigger_after is not None:
            if fn.trigger_after == load._id:
                return True
            fn = app.fns[fn.trigger_after]
        return False

    after_load = [f for f in followers if after(f)]
    on_page_load = [f for f in followers if any(t[1] == "load" for t in f.targets)]
    assert after_load and on_page_load
