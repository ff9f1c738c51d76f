"""The model bar shown above every tab: what is loaded, and a way to load another.

Locally any open_clip identifier may be typed. Hosted, visitors pick from the operator's list
(EXPLORER_MODELS) and nothing else is loaded, whatever a raw API call sends.
"""
from __future__ import annotations

import gradio as gr

from ..context import AppContext
from ..model import describe


def status_text(ctx: AppContext, on_page_load: bool = False) -> str:
    """The status line. Hosted, a stranger's failed load is not news to everyone else: a page load
    shows only what is loaded; the failure is shown to the visitor who asked for it."""
    quiet = on_page_load and ctx.settings.hosted
    if ctx.slot.model is not None and (not ctx.slot.error or quiet):
        return f"**Model:** {ctx.slot.loaded()}"
    pick = "Pick another model" if ctx.settings.hosted else "Enter another model"
    return f"**Model problem: {ctx.slot.status()}** {pick} under *Load another model* and press *Load model*."


def offered(ctx: AppContext) -> dict[str, tuple[str, str | None]]:
    """label -> (model, pretrained) of the models a hosted demo offers."""
    return {describe(name, pretrained): (name, pretrained) for name, pretrained in ctx.settings.model_choices()}


def load_model(ctx: AppContext, name: str, pretrained: str = "") -> str:
    """Load another model into the one slot (a failed load keeps the old one); the new status line.
    Hosted, `name` must be the label of an offered model."""
    if ctx.settings.hosted:
        choice = offered(ctx).get(name)
        if choice is None:
            return status_text(ctx) + "\n\n*That model is not offered here; pick one from the list.*"
        ctx.slot.load(*choice, ctx.settings.device, ctx.settings.precision, public=True)
    else:
        ctx.slot.load(name, (pretrained or "").strip() or None, ctx.settings.device, ctx.settings.precision)
    return status_text(ctx)


def build(ctx: AppContext) -> None:
    # A callable value is re-read on every page load, so a model loaded from another session shows.
    status = gr.Markdown(lambda: status_text(ctx, on_page_load=True), elem_id="model-status")
    hosted = ctx.settings.hosted
    with gr.Accordion("Load another model", open=ctx.slot.model is None):
        with gr.Row():
            if hosted:
                labels = list(offered(ctx))
                name = gr.Dropdown(labels, value=labels[0], label="Model", scale=5, elem_id="model-name",
                                   info="the models this demo offers; loading one changes it for every visitor")
                pretrained = gr.State("")
            else:
                name = gr.Textbox(label="Model", value=ctx.settings.model, scale=3, elem_id="model-name",
                                  info="open_clip name (ViT-B-32), hf-hub:org/repo, or local-dir:/path")
                pretrained = gr.Textbox(label="Pretrained", value=ctx.settings.pretrained or "", scale=2,
                                        elem_id="model-pretrained",
                                        info="tag (laion2b_s34b_b79k) or checkpoint file; empty for hub/local-dir")
            load = gr.Button("Load model", variant="secondary", scale=1, elem_id="model-load")

    def on_load(model_name: str, tag: str, progress=gr.Progress()):
        progress(0, desc=f"Loading {model_name}…")
        return load_model(ctx, model_name, tag)

    load.click(on_load, [name, pretrained], status, concurrency_limit=1, api_name="load_model")
