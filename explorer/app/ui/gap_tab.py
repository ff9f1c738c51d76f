"""Modality gap tab: how far apart a model keeps images and texts, and what closing the gap does.

Handlers: `compute_gap`, `projection_view` and `shift_view` (plain inputs in, a view out); `build`
lays out and wires. Images come through the app context (sources.py), texts and numbers from
gap_run.py and gap.py, the same functions `clip-explorer gap` calls; HTML is gap_html.py. A run
(gap_run.GapRun) stays in a gr.State, so the projection method and the shift slider recompute from
its embeddings and never re-encode: the slider moves the map, the histograms and the measures
(GapRun.at, GapRun.projection), not only the readout, live as it moves (`shift_update`: what a move
leaves as it is, the UMAP map or an unchanged note, is not sent again). A box or lasso selection on
the map comes back through a hidden textbox (assets/gap_select.js writes the points' ids there);
`selection_view` lists those images and texts. The page's components are named in GapHandles, for the wiring.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from explorer.app import examples, plots
from explorer.app.context import AppContext
from explorer.inputs import gate
from explorer.science.gap import ProjectionError
from explorer.science.gap_run import GapRun, caption_texts, captions_for, label_texts, run_gap
from explorer.science.prompts import PromptError, builtin_template_set, parse_labels
from explorer.science.zeroshot import check_prompts

from . import gap_html as show
from .common import (
    TEMPLATE_CHOICES,
    ZIP_TYPES,
    live,
    message,
    offer_examples,
    progress_reporter,
    session_of,
    unchanged,
)

UPLOAD, FOLDER, INDEXED = "Upload images or a zip", "Folder on this machine", "Indexed folder (Search tab)"
LABELS, CSV, SIDECAR = "Labels + templates", "Captions CSV (path,caption)", "Caption .txt beside each image"
PROJECTIONS = {"Gap-aligned (instant)": "gap", "PCA (instant)": "pca", "UMAP (slower, cached)": "umap"}
MAX_THUMBNAILS = 400   # hover previews in the projection; more would bloat the figure sent to the browser
MAX_SELECTED = 20_000  # ids read from one selection (the map draws at most gap.DEFAULT_MAX_POINTS points)
SHOWN_IMAGES, SHOWN_TEXTS = 60, 200   # of a selection, listed beside the count
# The shift slider's figures are redrawn in place in the page (plotly's react on the plot on screen) from a
# patch written into a hidden textbox, not re-sent through gr.Plot, which re-mounts a plot (two draws, the
# second from scratch) for every new value.
PLOT_PATCH_JS = (Path(__file__).resolve().parents[3] / "assets" / "plot_patch.js").read_text(encoding="utf-8")
PATCHED = ("gap-curve", "gap-hist", "gap-projection")   # the elem_ids of the figures a move redraws
_patches = itertools.count(1)   # each patch numbered, so two equal moves still each redraw
SELECTION_HINT = ("Choose Box Select or Lasso Select in the map's toolbar and drag over points to list "
                  "their images and texts here; double-click the map to clear.")


@dataclass
class GapView:
    measures: str
    histograms: Any = None
    projection: Any = None
    projection_note: str = ""
    curve: Any = None
    readout: str = ""
    run: GapRun | None = None
    thumbnails: list | None = None   # hover previews of the first MAX_THUMBNAILS images, made once per run


def index_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, index folder) of the indexes the loaded model made."""
    model = ctx.slot.model
    return [] if model is None else [(ctx.index_label(info), str(info.folder))
                                     for info in ctx.visible_indexes(model)]


def compute_gap(ctx: AppContext, source: str, uploads, folder_text: str, index_folder: str | None,
                text_source: str, label_text: str, template_choice: str, csv_path: str | None, method: str,
                progress=None) -> GapView:
    try:
        model = ctx.model()
        limits = gate.TextLimits.of(ctx.settings)  # this request's text limits (hosted: stricter)
        if source == INDEXED and not index_folder:
            raise ValueError(
                "Pick an indexed folder (build one in the Search tab), or choose another image source.")
        images = ctx.embed_choice(uploads=uploads if source == UPLOAD else None,
                                  folder=folder_text if source == FOLDER else None,
                                  index_folder=index_folder if source == INDEXED else None,
                                  progress=progress_reporter(progress, "images encoded"))
        if text_source == LABELS:
            labels, templates = (parse_labels(label_text, limits).labels,
                                 builtin_template_set(TEMPLATE_CHOICES[template_choice]))
            check_prompts(labels, templates, limits)  # before any prompt is encoded
            texts = label_texts(model, images, labels, templates)
        else:
            if text_source == CSV and not csv_path:
                raise PromptError("Upload a CSV whose first line is path,caption.")
            if text_source == SIDECAR and images.root is not None and not ctx.servable(images.root):
                raise ValueError(f"{images.root} is outside the folders this app may read, so its .txt files "
                                 "cannot be read")
            found = captions_for(images, csv_path if text_source == CSV else None, limits)
            texts = caption_texts(model, images, found, limits)
        run = run_gap(images, texts)
    except ValueError as exc:  # NoModel, PathRefused, PromptError, CaptionError, IndexMismatchError ...
        return GapView(message(str(exc), "error"))
    thumbnails = thumbnails_of(ctx, run)
    figure, note = projection_view(run, method, 0.0, thumbnails)
    return GapView(show.measures(run), plots.gap_histograms(run.measures.histograms), figure, note,
                   plots.shift_curve(run.curve, 0.0, run.metric), show.readout(run, run.curve[0]), run,
                   thumbnails)


def thumbnails_of(ctx: AppContext, run: GapRun) -> list:
    """Hover previews (data: URIs, or None) of the run's first MAX_THUMBNAILS images."""
    return [preview_of(ctx, p) for p in run.images.paths[:MAX_THUMBNAILS]]


def preview_of(ctx: AppContext, path) -> str | None:
    """A small data: URI of the image at `path`, or None when this app may not read it."""
    return ctx.thumbnails.data_uri(path) if ctx.servable(path) else None


def projection_view(run: GapRun, method_label: str, lam: float = 0.0, thumbnails: list | None = None):
    """(figure, note) of the joint 2-D map of the run's images and texts at shift `lam`."""
    method = PROJECTIONS[method_label]
    try:
        proj = run.projection(method, float(lam or 0.0))
    except ProjectionError as exc:
        return None, message(str(exc), "error")
    n = len(run.images)
    previews = f"the first {MAX_THUMBNAILS:,} of {n:,} images" if n > MAX_THUMBNAILS else "every image"
    note = (
        f"Hover a point for its file name or text; image points also show a preview ({previews}). Grey lines "
        "join matched pairs; × marks each modality's centroid.")
    if method == "gap":
        note += (" x runs along the gap vector, so the centroids sit the measured gap length apart on it; "
                 "y is the main direction of what remains.")
    if method == "umap":
        note += (" The shift slider does not redraw UMAP (seconds per map): it shows the embeddings as "
                 "trained.")
    else:
        note += (
            " The shift slider moves the points: the axes stay those of the embeddings as trained, so the "
            "two clouds are seen to close in.")
    if proj.fit is not None and proj.fit.note:
        note += f" Note: {proj.fit.note}."
    if proj.sampled:
        note += f" Showing a sample of {proj.sample_size:,} of {proj.total_points:,} points."
    figure = plots.gap_projection(proj, run.images.names, run.texts.texts, proj.pair_lines(run.texts.matches),
                                  thumbnails)
    return figure, message(note, "muted")


def selected_items(run: GapRun, ids) -> tuple[list[int], list[int]]:
    """(image indices, text indices) named by a map selection, "i3,t0,...", in order without repeats.
    The ids come from the page, so from anyone: ids that name no item of this run are ignored, and at
    most MAX_SELECTED are read."""
    images, texts = {}, {}
    if not isinstance(ids, str):
        return [], []
    for token in ids[:MAX_SELECTED * 8].split(",")[:MAX_SELECTED]:
        kind, number = token.strip()[:1], token.strip()[1:]
        if not (number.isascii() and number.isdigit()) or len(number) > 9:
            continue
        i = int(number)
        if kind == "i" and i < len(run.images):
            images[i] = None
        elif kind == "t" and i < len(run.texts.texts):
            texts[i] = None
    return list(images), list(texts)


def selection_view(ctx: AppContext, run: GapRun | None, ids, thumbnails: list | None = None) -> str:
    """HTML listing the images (thumbnails and names) and texts of a map selection; the hint when empty."""
    images, texts = ([], []) if run is None else selected_items(run, ids)
    if not images and not texts:
        return message(SELECTION_HINT, "muted")
    thumbnails = thumbnails or []   # the run's hover previews, reused; beyond them made here
    shown = [(run.images.names[i],
              thumbnails[i] if i < len(thumbnails) else preview_of(ctx, run.images.paths[i]))
             for i in images[:SHOWN_IMAGES]]
    return show.selection(len(images), len(texts), shown, [run.texts.texts[j] for j in texts[:SHOWN_TEXTS]])


def shift_view(run: GapRun, lam: float, method_label: str, thumbnails: list | None = None) -> tuple:
    """(readout HTML, curve, measures HTML, histograms, map, map note) at shift `lam`, all from the
    run's embeddings: the measures and histograms of the shifted embeddings, the map moved."""
    shifted = run.at(lam)
    figure, note = projection_view(run, method_label, shifted.lam, thumbnails)
    return (*_shifted_parts(run, shifted), figure, note)


def shift_update(run: GapRun, lam: float, method_label: str, thumbnails: list | None = None,
                 note_shown: str | None = None) -> tuple:
    """shift_view's six outputs for a move of the slider, with gr.skip() for those the move leaves as
    they are, so they are neither made nor sent: the UMAP map (drawn unshifted whatever λ) and its note,
    and a map note the page already shows (`note_shown`)."""
    shifted = run.at(lam)
    if PROJECTIONS[method_label] == "umap":
        figure, note = gr.skip(), gr.skip()
    else:
        figure, note = projection_view(run, method_label, shifted.lam, thumbnails)
        note = gr.skip() if unchanged(note_shown, note) else note
    return (*_shifted_parts(run, shifted), figure, note)


def plot_patch(figures: dict) -> str:
    """The patch assets/plot_patch.js applies: {elem_id: figure} as JSON, each figure as gr.Plot would
    send it (plotly's to_json); figures that are gr.skip() or None are left out, and so left as they are on
    the page. A trace without hover previews (customdata) keeps the ones drawn for the same points."""
    parts = ", ".join(f'"{elem_id}": {figure.to_json()}' for elem_id, figure in figures.items()
                      if figure is not None and not isinstance(figure, dict))  # dict: gr.skip()
    return f'{{"seq": {next(_patches)}, "keep": ["customdata"], "figures": {{{parts}}}}}'


def shift_in_place(run: GapRun, lam: float, method_label: str, note_shown: str | None = None) -> tuple:
    """A move of the slider as sent to the page: (readout, curve, measures, histograms, map, map note,
    plot patch). The curve, histograms and map are gr.skip(): their new figures travel in the patch,
    drawn in place over the plots on screen; the map without its hover previews, which the drawn points
    keep. What shift_update leaves as it is stays so (the UMAP map, a note already shown)."""
    readout, curve, table, histograms, figure, note = shift_update(run, lam, method_label, None, note_shown)
    patch = plot_patch(dict(zip(PATCHED, (curve, histograms, figure))))
    return readout, gr.skip(), table, gr.skip(), gr.skip(), note, patch


def _shifted_parts(run: GapRun, shifted) -> tuple:
    """(readout HTML, curve, measures HTML, histograms) of the run at `shifted` (GapRun.at)."""
    return (show.readout(run, shifted.point), plots.shift_curve(run.curve, shifted.lam, run.metric),
            show.measures(run, shifted), plots.gap_histograms(shifted.measures.histograms))


@dataclass
class GapHandles:
    """The tab's components, by name, for the wiring."""
    # the inputs
    source: gr.Radio
    files: gr.File
    folder: gr.Textbox
    index_row: gr.Row
    index_choice: gr.Dropdown
    refresh: gr.Button
    text_source: gr.Radio
    labels: gr.Textbox
    templates: gr.Radio
    csv_file: gr.File
    run: gr.Button
    examples_box: gr.Column
    # the measures and the shift
    table: gr.HTML
    lam: gr.Slider
    readout: gr.HTML
    curve: gr.Plot
    # the joint map and its selection
    method: gr.Radio
    projection: gr.Plot
    projection_note: gr.HTML
    selection: gr.HTML
    selection_ids: gr.Textbox
    histograms: gr.Plot
    plot_patch: gr.Textbox   # the shift's figures, drawn in place by assets/plot_patch.js
    state: gr.State    # the last GapRun (None before a run, or after a failed one)
    thumbs: gr.State   # its hover previews (data: URIs or None, list[str | None]), made once per run


def build(ctx: AppContext) -> GapHandles:
    gr.Markdown("CLIP-style models keep image and text embeddings in two separate cones: the *modality gap* "
                "(Liang et al. 2022). Measure it on your images and texts, see it in 2-D, and slide the two "
                "modalities towards each other to see what that does to matching.", elem_id="gap-intro")
    sources = [UPLOAD, INDEXED] if ctx.settings.hosted else [UPLOAD, FOLDER, INDEXED]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            source = gr.Radio(sources, value=UPLOAD, label="Images", elem_id="gap-source")
            files = gr.File(label="Images or a zip (class sub-folders label them); caption .txt files too",
                            file_count="multiple", file_types=ZIP_TYPES + [".txt"], height=140,
                            elem_id="gap-images")
            folder = gr.Textbox(
                label="Folder", visible=False, elem_id="gap-folder", placeholder="/path/to/images",
                info="Allowed: " + ", ".join(str(r) for r in ctx.settings.allowed_roots) +
                ". Class sub-folders label the images.")
            with gr.Row(visible=False) as index_row:
                index_choice = gr.Dropdown([], label="Indexed folder (its stored embeddings are used)",
                                           scale=4, elem_id="gap-index")
                refresh = gr.Button("Refresh", scale=1, min_width=80, elem_id="gap-index-refresh")
            text_source = gr.Radio([LABELS, CSV, SIDECAR], value=LABELS, label="Texts",
                                   elem_id="gap-text-source")
            labels = gr.Textbox(
                label="Labels (an image's label: its folder's name, or the start of its file name, "
                "e.g. red_circle_3.png → “red circle”)", lines=3, elem_id="gap-labels",
                placeholder="one per line, or comma-separated; empty: the class sub-folder names")
            templates = gr.Radio(list(TEMPLATE_CHOICES), value=next(iter(TEMPLATE_CHOICES)),
                                 label="Prompt templates", elem_id="gap-templates")
            csv_file = gr.File(
                label="Captions CSV: first line path,caption (paths relative to the CSV, the image "
                "folder, or just file names)", file_types=[".csv"], visible=False, height=90,
                elem_id="gap-csv")
            run = gr.Button("Compute", variant="primary", elem_id="gap-run")
            examples_box = gr.Column(elem_id="gap-examples-box")
        with gr.Column(scale=3):
            table = gr.HTML(elem_id="gap-measures")
            lam = gr.Slider(
                0, 1, value=0, step=0.05, label="Shift along the gap (λ)", interactive=True,
                info="Moves images by −λ/2 and texts by +λ/2 times the gap vector, then renormalises. "
                "0: the model as trained; 1: the centroids meet before renormalising.", elem_id="gap-shift")
            readout = gr.HTML(elem_id="gap-readout")
            curve = gr.Plot(label="Shifting along the gap", elem_id="gap-curve")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            method = gr.Radio(list(PROJECTIONS), value=next(iter(PROJECTIONS)), label="2-D projection",
                              elem_id="gap-method")
            projection = gr.Plot(label="Joint map", elem_id="gap-projection")
            projection_note = gr.HTML(message("Hover a point for its file name or text, and an image point "
                                              "for a preview. Grey lines join matched pairs.", "muted"),
                                      elem_id="gap-projection-note")
            selection = gr.HTML(message(SELECTION_HINT, "muted"), elem_id="gap-selection")
            selection_ids = gr.Textbox(visible="hidden",
                                       elem_id="gap-selection-ids")  # filled by gap_select.js
        with gr.Column(scale=2):
            histograms = gr.Plot(label="Cosine histograms", elem_id="gap-hist")
    state, thumbs = gr.State(None), gr.State(None)   # the GapRun; its hover previews, made once
    patch = gr.Textbox(visible="hidden", elem_id="gap-plot-patch")  # read by assets/plot_patch.js

    ui = GapHandles(
        source=source, files=files, folder=folder, index_row=index_row, index_choice=index_choice,
        refresh=refresh, text_source=text_source, labels=labels, templates=templates, csv_file=csv_file,
        run=run, examples_box=examples_box, table=table, lam=lam, readout=readout, curve=curve,
        method=method, projection=projection, projection_note=projection_note, selection=selection,
        selection_ids=selection_ids, histograms=histograms, plot_patch=patch, state=state, thumbs=thumbs)
    _wire(ctx, ui)
    _wire_map(ctx, ui)
    return ui


def _wire(ctx: AppContext, ui: GapHandles) -> None:
    """The image and text sources, the run and its one-click examples."""
    def choices_update(request: gr.Request):
        choices = index_choices(session_of(ctx, request))
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def on_source(choice, request: gr.Request):
        return (gr.update(visible=choice == UPLOAD), gr.update(visible=choice == FOLDER),
                gr.update(visible=choice == INDEXED),
                choices_update(request) if choice == INDEXED else gr.update())

    def on_text_source(choice):
        return (gr.update(visible=choice == LABELS), gr.update(visible=choice == LABELS),
                gr.update(visible=choice == CSV))

    def on_run(source, files, folder, index_choice, text_source, labels, templates, csv_file, method,
               request: gr.Request, progress=gr.Progress()):
        view = compute_gap(session_of(ctx, request), source, files, folder, index_choice, text_source, labels,
                           templates, csv_file, method, progress=progress)
        return (view.measures, view.histograms, view.projection, view.projection_note, view.curve,
                gr.update(value=0), view.readout, view.run, view.thumbnails, message(SELECTION_HINT,
                                                                                     "muted"), "", "")

    ui.source.change(on_source, ui.source, [ui.files, ui.folder, ui.index_row, ui.index_choice])
    ui.refresh.click(choices_update, None, ui.index_choice)
    ui.text_source.change(on_text_source, ui.text_source, [ui.labels, ui.templates, ui.csv_file])
    inputs = [
        ui.source, ui.files, ui.folder, ui.index_choice, ui.text_source, ui.labels, ui.templates, ui.csv_file,
        ui.method
    ]
    outputs = [
        ui.table, ui.histograms, ui.projection, ui.projection_note, ui.curve, ui.lam, ui.readout, ui.state,
        ui.thumbs, ui.selection, ui.selection_ids, ui.plot_patch
    ]
    ui.run.click(on_run, inputs, outputs, concurrency_limit=2, api_name="gap")
    photos = {ui.source: UPLOAD, ui.files: examples.paths(), ui.labels: examples.label_text()}
    with ui.examples_box:
        offer_examples([{**photos, ui.text_source: LABELS},
                        {**photos, ui.text_source: CSV, ui.csv_file: str(examples.CAPTIONS_CSV)}],
                       ["8 photos + their labels", "8 photos + their captions (CSV)"], inputs, on_run,
                       outputs, "gap-examples")


def _wire_map(ctx: AppContext, ui: GapHandles) -> None:
    """What follows a run without re-encoding: a selection on the map, the shift slider, the method."""
    # ids from gap_select.js, or from anyone
    def on_select(run: GapRun | None, ids, thumbnails: list | None, request: gr.Request):
        return selection_view(session_of(ctx, request), run, ids, thumbnails)

    ui.selection_ids.change(on_select, [ui.state, ui.selection_ids, ui.thumbs], ui.selection,
                            show_progress="hidden", trigger_mode="always_last", api_visibility="private")

    # the readout, curve, measures, histograms and map all follow, live as the slider moves (only the last
    # move waiting runs; no progress overlay); what the move leaves as it is is not sent again, and the
    # figures are redrawn in place (the patch, applied in the page: no server call)
    def on_shift(run: GapRun | None, lam, method, note_shown):
        return (gr.skip(),) * 7 if run is None else shift_in_place(run, lam, method, note_shown)

    live([ui.lam], on_shift, [ui.state, ui.lam, ui.method, ui.projection_note],
         [ui.readout, ui.curve, ui.table, ui.histograms, ui.projection, ui.projection_note, ui.plot_patch])
    ui.plot_patch.change(None, ui.plot_patch, None, js=PLOT_PATCH_JS, show_progress="hidden",
                         api_visibility="private")

    def on_method(run: GapRun | None, method, lam, thumbnails: list | None):
        return (gr.update(), gr.update()) if run is None else projection_view(run, method, lam, thumbnails)

    ui.method.change(on_method, [ui.state, ui.method, ui.lam, ui.thumbs], [ui.projection, ui.projection_note])
