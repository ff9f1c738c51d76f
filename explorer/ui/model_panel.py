"""The model bar shown above every tab: what is loaded, and a way to load another."""
from __future__ import annotations

import gradio as gr

from ..model import ModelSlot
from ..settings import Settings


def build(settings: Settings, slot: ModelSlot) -> None:
    # A callable value is re-read on every page load, so a model loaded from another session shows.
    status = gr.Markdown(lambda: _status_text(slot), elem_id="model-status")
    with gr.Accordion("Load another model", open=slot.model is None):
        with gr.Row():
            name = gr.Textbox(label="Model", value=settings.model, scale=3, elem_id="model-name",
                              info="open_clip name (ViT-B-32), hf-hub:org/repo, or local-dir:/path")
            pretrained = gr.Textbox(label="Pretrained", value=settings.pretrained or "", scale=2,
                                    elem_id="model-pretrained", info="tag (laion2b_s34b_b79k) or checkpoint file; empty for hub/local-dir")
            load = gr.Button("Load model", variant="secondary", scale=1, elem_id="model-load")

    def on_load(model_name: str, tag: str, progress=gr.Progress()):
        progress(0, desc=f"Loading {model_name}…")
        slot.load(model_name, tag.strip() or None, settings.device, settings.precision)
        return _status_text(slot)

    load.click(on_load, [name, pretrained], status, concurrency_limit=1)


def _status_text(slot: ModelSlot) -> str:
    if slot.model is not None and not slot.error:
        return f"**Model:** {slot.status()}"
    return f"**Model problem: {slot.status()}** Enter another model under *Load another model* and press *Load model*."
