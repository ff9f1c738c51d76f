"""Modality gap tab: how far apart a model keeps images and texts, and what closing the gap does.

Layout and wiring only: inputs and a run live in gap_data.py (over explorer.gap_inputs and
explorer.gap), HTML in gap_html.py, figures in explorer.plots. A run's embeddings stay in a gr.State,
so the projection method and the shift slider recompute from them and never re-encode.
"""
from __future__ import annotations

import gradio as gr

from .. import plots
from ..captions import CaptionError
from ..gap import ProjectionError, project_2d
from ..index import IndexMismatchError
from ..model import ModelSlot
from ..paths import PathRefused
from ..progress import RateText
from ..prompts import PromptError
from ..settings import Settings
from . import gap_data as data
from . import gap_html as show
from .classify_tab import IMAGE_TYPES

PROJECTIONS = {"PCA (instant)": "pca", "UMAP (slower, cached)": "umap"}


def build(settings: Settings, slot: ModelSlot) -> None:
    gr.Markdown("CLIP-style models keep image and text embeddings in two separate cones: the *modality gap* "
                "(Liang et al. 2022). Measure it on your images and texts, see it in 2-D, and slide the two "
                "modalities towards each other to see what that does to matching.", elem_id="gap-intro")
    sources = [data.UPLOAD, data.INDEXED] if settings.hosted else [data.UPLOAD, data.FOLDER, data.INDEXED]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            source = gr.Radio(sources, value=data.UPLOAD, label="Images", elem_id="gap-source")
            files = gr.File(label="Images or a zip (class sub-folders label them); caption .txt files too",
                            file_count="multiple", file_types=IMAGE_TYPES + [".zip", ".txt"], height=140,
                            elem_id="gap-images")
            folder = gr.Textbox(label="Folder", visible=False, elem_id="gap-folder",
                                placeholder="/path/to/images", info="Allowed: " + ", ".join(
                                    str(r) for r in settings.allowed_roots) + ". Class sub-folders label the images.")
            with gr.Row(visible=False) as index_row:
                index_choice = gr.Dropdown([], label="Indexed folder (its stored embeddings are used)", scale=4,
                                           elem_id="gap-index")
                refresh = gr.Button("Refresh", scale=1, min_width=80, elem_id="gap-index-refresh")
            text_source = gr.Radio([data.LABELS, data.CSV, data.SIDECAR], value=data.LABELS, label="Texts",
                                   elem_id="gap-text-source")
            labels = gr.Textbox(label="Labels (an image's label: its folder's name, or the start of its file name, "
                                      "e.g. red_circle_3.png → “red circle”)", lines=3, elem_id="gap-labels",
                                placeholder="one per line, or comma-separated; empty: the class sub-folder names")
            templates = gr.Radio(list(data.TEMPLATE_SETS), value=next(iter(data.TEMPLATE_SETS)),
                                 label="Prompt templates", elem_id="gap-templates")
            csv_file = gr.File(label="Captions CSV: first line path,caption (paths relative to the CSV, the image "
                                     "folder, or just file names)", file_types=[".csv"], visible=False, height=90,
                               elem_id="gap-csv")
            run = gr.Button("Compute", variant="primary", elem_id="gap-run")
        with gr.Column(scale=3):
            table = gr.HTML(elem_id="gap-measures")
            lam = gr.Slider(0, 1, value=0, step=0.05, label="Shift along the gap (λ)", interactive=True,
                            info="Moves images by −λ/2 and texts by +λ/2 times the gap vector, then renormalises. "
                                 "0: the model as trained; 1: the centroids meet before renormalising.",
                            elem_id="gap-shift")
            readout = gr.HTML(elem_id="gap-readout")
            curve = gr.Plot(label="Shifting along the gap", elem_id="gap-curve")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            method = gr.Radio(list(PROJECTIONS), value=next(iter(PROJECTIONS)), label="2-D projection",
                              elem_id="gap-method")
            projection = gr.Plot(label="Joint map", elem_id="gap-projection")
            projection_note = gr.HTML(show.message("Hover a point for its file name or text, and an image point "
                                                   "for a preview. Grey lines join matched pairs.", "muted"),
                                      elem_id="gap-projection-note")
        with gr.Column(scale=2):
            histograms = gr.Plot(label="Cosine histograms", elem_id="gap-hist")
    state = gr.State(None)

    def on_source(choice):
        choices = data.indexed_folders(settings.index_dir, slot.model) if choice == data.INDEXED else None
        return (gr.update(visible=choice == data.UPLOAD), gr.update(visible=choice == data.FOLDER),
                gr.update(visible=choice == data.INDEXED),
                gr.update() if choices is None else gr.update(choices=choices, value=choices[0][1] if choices else None))

    def on_refresh():
        choices = data.indexed_folders(settings.index_dir, slot.model)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def on_text_source(choice):
        return (gr.update(visible=choice == data.LABELS), gr.update(visible=choice == data.LABELS),
                gr.update(visible=choice == data.CSV))

    source.change(on_source, source, [files, folder, index_row, index_choice])
    refresh.click(on_refresh, None, index_choice)
    text_source.change(on_text_source, text_source, [labels, templates, csv_file])

    def projection_of(run, method_name):
        try:
            proj = project_2d(run.image_emb, run.text_emb, PROJECTIONS[method_name], matches=run.matches)
        except ProjectionError as exc:
            return None, show.message(str(exc), "error")
        note = "Hover a point for its file name or text; image points also show a preview (the first " \
               f"{data.MAX_THUMBNAILS} images). Grey lines join matched pairs; × marks each modality's centroid."
        if proj.sampled:
            note += f" Showing a sample of {proj.sample_size:,} of {proj.total_points:,} points."
        figure = plots.gap_projection(proj, run.names, run.texts, proj.pair_lines(run.matches), run.thumbnails)
        return figure, show.message(note, "muted")

    def on_run(src, uploads, folder_text, index_folder, text_src, label_text, template_choice, csv_path,
               method_name, progress=gr.Progress()):
        blank = (None, None, None, None, gr.update(value=0), "", None)
        model = slot.model
        if model is None:
            return (show.message(f"No model is loaded. {slot.error or ''} Load one in the Model panel above.",
                                 "error"),) + blank
        progress(0, desc="Reading images")
        rate = RateText("images encoded")
        try:
            run = data.compute(model, settings, src, uploads, folder_text, index_folder, text_src, label_text,
                               template_choice, csv_path,
                               progress=lambda done, total: progress(done / max(total, 1), desc=rate(done, total)))
        except (PathRefused, PromptError, CaptionError, IndexMismatchError, ValueError, OSError) as exc:
            return (show.message(str(exc), "error"),) + blank
        progress(1, desc="Drawing")
        figure, note = projection_of(run, method_name)
        return (show.measures(run), plots.gap_histograms(run.measures.histograms), figure, note,
                plots.shift_curve(run.curve, 0.0, run.metric), gr.update(value=0),
                show.readout(run, run.curve[0]), run)

    def on_shift(run, value):
        if run is None:
            return gr.update(), gr.update()
        point = data.shift_point(run, value)
        return show.readout(run, point), plots.shift_curve(run.curve, point.lam, run.metric)

    def on_method(run, method_name):
        if run is None:
            return gr.update(), gr.update()
        return projection_of(run, method_name)

    inputs = [source, files, folder, index_choice, text_source, labels, templates, csv_file, method]
    run.click(on_run, inputs, [table, histograms, projection, projection_note, curve, lam, readout, state],
              concurrency_limit=2)
    lam.change(on_shift, [state, lam], [readout, curve], trigger_mode="always_last", show_progress="hidden")
    method.change(on_method, [state, method], [projection, projection_note])
