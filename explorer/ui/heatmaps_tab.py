"""Heatmaps tab: an image x text similarity matrix (cosine or per-image probability), and where in
one image one text matches (a patch map overlaid on the image).

Layout and wiring only; the numbers come from explorer/heatmaps.py, figures from plots.py, and the
image list, index sampling and notes from heatmaps_data.py. The matrix and the patch map are kept in
gr.State, so switching the view, moving the opacity slider or changing the colour scale never
encodes anything again.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import plots
from ..heatmaps import PatchMapUnsupported, check_patch_support, overlay, patch_map, similarity_matrix
from ..images import ImageError
from ..index import IndexMismatchError
from ..model import ModelSlot
from ..settings import Settings
from . import heatmaps_data as data
from .classify_tab import IMAGE_TYPES
from .search_indexes import OpenIndexes, servable_roots
from .search_tab import DEFAULT_INDEX_DIR

VIEWS = {"Cosine": "cosine", "Probability (softmax per image)": "probability"}
NO_INDEX = "(none)"


def build(settings: Settings, slot: ModelSlot) -> None:
    indexes = OpenIndexes()
    base = Path(settings.index_dir or DEFAULT_INDEX_DIR)
    served = servable_roots(settings.allowed_roots)
    limits = dict(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    items_state = gr.State([])     # images on the page (heatmaps_data docstring)
    matrix_state = gr.State(None)  # {"names", "texts", "matrix": SimilarityMatrix}
    map_state = gr.State(None)     # {"pmap": PatchMap, "image": display-size PIL image}

    gr.Markdown("### Image × text\nHow similar each image is to each text, as raw cosines or as the "
                "probabilities a zero-shot classifier over these texts would give.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            files = gr.File(label="Images: drag and drop one or many", file_count="multiple",
                            file_types=IMAGE_TYPES, elem_id="hm-images", height=150)
            texts = gr.Textbox(label="Texts, one per line", lines=4, elem_id="hm-texts",
                               placeholder="a red circle\na blue square\na photo of a dog")
            # Hosted: every visitor's uploaded indexes share one folder, so none is offered to others.
            with gr.Accordion("…and/or a sample from a search index", open=False, visible=not settings.hosted,
                              elem_id="hm-index-box") as index_box:
                with gr.Row():
                    index_choice = gr.Dropdown([NO_INDEX], value=NO_INDEX, label="Index (built in the Search tab)",
                                               scale=4, elem_id="hm-index")
                    refresh = gr.Button("↻ Refresh", scale=1, min_width=80, elem_id="hm-index-refresh")
                sample_n = gr.Slider(1, data.MAX_IMAGES, value=12, step=1, label="Images to sample",
                                     elem_id="hm-sample-n")
            run = gr.Button("Compute similarities", variant="primary", elem_id="hm-run")
        with gr.Column(scale=3):
            view = gr.Radio(list(VIEWS), value=next(iter(VIEWS)), label="Show", elem_id="hm-view")
            status = gr.HTML(elem_id="hm-status")
            plot = gr.Plot(label="Image × text", elem_id="hm-plot")
            note = gr.HTML(elem_id="hm-scale-note")

    gr.Markdown("### Where in the image\nFor one image and one text, how strongly each region of the image "
                "matches the text (patch tokens taken into the joint space by the model's own final norm and "
                "projection; open_clip ViT models only).")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            map_image = gr.Dropdown([], label="Image", elem_id="hm-map-image",
                                    info="from the images above")
            map_text = gr.Dropdown([], label="Text", allow_custom_value=True, elem_id="hm-map-text",
                                   info="one of the texts above, or type any other")
            method = gr.Radio(list(data.METHOD_HELP), value="tokens", label="Method", elem_id="hm-method",
                              info=data.METHOD_HELP["tokens"])
            scale = gr.Radio(list(data.SCALE_CHOICES), value=next(iter(data.SCALE_CHOICES)),
                             label="Colour scale", elem_id="hm-scale")
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity of the map", elem_id="hm-opacity")
            map_run = gr.Button("Show where it matches", variant="primary", elem_id="hm-map-run")
        with gr.Column(scale=3):
            map_info = gr.HTML(elem_id="hm-map-info")
            shown = gr.Image(label="Patch map over the image", type="pil", interactive=False, height=420,
                             visible=False, elem_id="hm-overlay", buttons=["download", "fullscreen"])

    # ---- choices that follow the inputs ------------------------------------------------------
    def on_files(paths, current_image):
        items = data.upload_items(paths)
        return items, _image_choices(items, current_image)

    def on_texts(text, current):
        parsed, _ = data.parse_texts(text)
        value = current if current else (parsed[0] if parsed else None)
        return gr.update(choices=parsed, value=value)

    def on_refresh(current):
        choices = [(NO_INDEX, NO_INDEX)] + data.list_indexes(base, indexes, served)
        values = [v for _, v in choices]
        return gr.update(choices=choices, value=current if current in values else NO_INDEX)

    files.change(on_files, [files, map_image], [items_state, map_image], show_progress="hidden")
    texts.change(on_texts, [texts, map_text], map_text, show_progress="hidden")
    refresh.click(on_refresh, index_choice, index_choice)
    index_box.expand(on_refresh, index_choice, index_choice, show_progress="hidden")
    method.change(lambda m: gr.update(info=data.METHOD_HELP[m]), method, method, show_progress="hidden")

    # ---- image x text ------------------------------------------------------------------------
    def draw(state, view_label):
        if not state:
            return None, ""
        m, kind = state["matrix"], VIEWS[view_label]
        return (plots.similarity_heatmap(state["names"], state["texts"], m.cosines, m.probabilities, kind),
                data.scale_note(kind, m.cosines, m.logit_scale))

    def on_run(paths, text, index_folder, n, view_label, current_image, progress=gr.Progress()):
        items = data.upload_items(paths)
        fail = (None, gr.update(), gr.update(), None, "")
        model = slot.model
        if model is None:
            return data.message(f"No model is loaded. {slot.error or ''} Load one in the Model panel above.",
                                "error"), *fail
        parsed, notes = data.parse_texts(text)
        if not parsed:
            return data.message("Type at least one text (one per line).", "error"), *fail
        if index_folder and index_folder != NO_INDEX and not settings.hosted:
            try:
                index, rels = data.sample_index(indexes, index_folder, n, model, served)
            except (IndexMismatchError, ValueError, OSError) as exc:
                return data.message(f"The index cannot be used: {exc}", "error"), *fail
            items = data.add_index_items(items, index, rels)
        if not items:
            return data.message("Drop one or more images, or pick a search index to sample from.", "error"), *fail
        progress(0, desc="Encoding images and texts")
        kept, image_emb, failures = data.embed_items(model, items, indexes, **limits)
        if image_emb is None:
            return data.matrix_summary([], parsed, failures, notes, 0), *fail
        matrix = similarity_matrix(image_emb, model.encode_texts(parsed), model.logit_scale)
        state = {"names": [item["name"] for item in kept], "texts": parsed, "matrix": matrix}
        figure, scale_text = draw(state, view_label)
        summary = data.matrix_summary(state["names"], parsed, failures, notes,
                                      sum("index" in item for item in kept))
        return summary, state, kept, _image_choices(kept, current_image), figure, scale_text

    run_inputs = [files, texts, index_choice, sample_n, view, map_image]
    run_outputs = [status, matrix_state, items_state, map_image, plot, note]
    run.click(on_run, run_inputs, run_outputs, concurrency_limit=2)
    view.change(draw, [matrix_state, view], [plot, note], show_progress="hidden")

    # ---- where in the image ------------------------------------------------------------------
    def blend(state, alpha, scale_label):
        if not state:
            return gr.update()
        return gr.update(value=overlay(state["image"], state["pmap"], float(alpha), data.SCALE_CHOICES[scale_label]),
                         visible=True)

    def on_map(items, name, text, method_name, alpha, scale_label, progress=gr.Progress()):
        hidden = gr.update(value=None, visible=False)
        model = slot.model
        if model is None:
            return data.message("No model is loaded; load one in the Model panel above.", "error"), hidden, None
        try:
            check_patch_support(model, method_name)
        except PatchMapUnsupported as exc:
            return data.message(f"No patch map for this model: {exc}.", "error"), hidden, None
        item = next((it for it in items or [] if it["name"] == name), None)
        if item is None:
            return data.message("Pick an image (drop images above first).", "error"), hidden, None
        text = (text or "").strip()
        if not text:
            return data.message("Pick or type a text.", "error"), hidden, None
        try:
            image = data.load_display_image(item, indexes, **limits)
        except (ImageError, ValueError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageError) else str(exc)
            return data.message(f"{name} cannot be used: {reason}", "error"), hidden, None
        progress(0, desc="Computing the patch map")
        pmap = patch_map(model, image, text, method_name)
        state = {"pmap": pmap, "image": data.display_copy(image)}
        return data.map_summary(pmap, data.SCALE_CHOICES[scale_label]), blend(state, alpha, scale_label), state

    map_inputs = [items_state, map_image, map_text, method, opacity, scale]
    map_run.click(on_map, map_inputs, [map_info, shown, map_state], concurrency_limit=2)
    opacity.change(blend, [map_state, opacity, scale], shown, show_progress="hidden")

    def on_scale(state, alpha, scale_label):
        if not state:
            return gr.update(), gr.update()
        return data.map_summary(state["pmap"], data.SCALE_CHOICES[scale_label]), blend(state, alpha, scale_label)

    scale.change(on_scale, [map_state, opacity, scale], [map_info, shown], show_progress="hidden")


def _image_choices(items: list[dict], current: str | None):
    names = [item["name"] for item in items]
    return gr.update(choices=names, value=current if current in names else (names[0] if names else None))
