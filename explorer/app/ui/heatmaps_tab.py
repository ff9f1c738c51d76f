"""Heatmaps tab: an image x text similarity matrix (cosine or per-image probability), and where in
one image one text matches (a patch map overlaid on the image).

Handlers: `compute_matrix`, `matrix_figure`, `compute_patch_map` and `blend` (plain inputs in, a
view out); `build` lays out the page, and `_wire_matrix` and `_wire_map` wire its HeatmapsHandles.
The numbers come from science/heatmaps.py: `run_similarity` makes the matrix of `clip-explorer
similarity` too, and `image_tokens` + `map_for` the map of `clip-explorer heatmap`. The matrix (a
SimilarityMatrix) and the patch map (a MapState, with the image's patch tokens) are kept in gr.State, so
switching the view, moving the opacity slider or changing the colour scale never encodes anything again,
and another text for the map (live, as it is picked or entered) encodes only that text. The overlay
goes to the page as a WebP file written once into gradio's cache (`picture_file`, a fast encoding).

The images on the page are ImageItems in a gr.State: a unique name, the file, and for images sampled
from a search index the indexed folder (the map refuses a file outside it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from explorer.app import examples, plots
from explorer.app.context import AppContext
from explorer.embed.images import ImageError, file_key, fit_of, load_image, save_picture
from explorer.inputs import gate
from explorer.inputs.roots import inside_roots
from explorer.inputs.sources import display_names
from explorer.science.heatmaps import (
    METHODS,
    NoImagesRead,
    PatchMap,
    PatchMapUnsupported,
    PatchTokens,
    SimilarityMatrix,
    check_patch_support,
    image_tokens,
    map_for,
    method_name,
    overlay,
    run_similarity,
)
from explorer.science.prompts import parse_texts

from . import heatmaps_html as show
from .common import (
    IMAGE_TYPES,
    NO_INDEX,
    any_index_choices,
    failures_html,
    live,
    message,
    offer_examples,
    progress_reporter,
    session_of,
)

VIEWS = {"Cosine": "cosine", "Probability (softmax per image)": "probability",
         "Probability (sigmoid per image and text)": "probability"}
PROBABILITY_VIEWS = {
    "softmax": "Probability (softmax per image)", "sigmoid": "Probability (sigmoid per image and text)"
}
MAX_TEXTS = 64
MAX_IMAGES = 64
DISPLAY_SIDE = 640  # the overlay is drawn on a copy at most this many pixels on its longer side
# How the overlay is sent: WebP as gradio sends a picture, but encoded fast (method 0: a few ms where
# gradio's default takes tens) at a higher quality than gradio's 80, written straight into gradio's cache.
OVERLAY_ENCODING = dict(format="WEBP", quality=90, method=0)


@dataclass
class ImageItem:
    """An image on the page (a row of the matrix, a choice for the map)."""
    name: str               # unique on the page: the matrix row's name
    path: str               # the file
    root: str | None = None  # for an image sampled from a search index: its indexed folder


@dataclass
class MapState:
    """The last patch map and the copy of its image it is drawn over (at most DISPLAY_SIDE a side),
    with the image's patch tokens and what they were taken from (`source`: the image's name, file,
    folder, size and mtime, the method and the model): a map of the same image for another text is
    then a dot product, and the image is neither decoded nor encoded again."""
    pmap: PatchMap
    image: Image.Image
    tokens: PatchTokens | None = None
    source: tuple | None = None


def upload_items(paths) -> list[ImageItem]:
    """The first MAX_IMAGES uploaded files as items, named by file name (repeats numbered, so matrix
    rows never merge: 0.png, 0.png (2)); `upload_cap_note` says when some were left out."""
    paths = list(paths or [])[:MAX_IMAGES]
    return [ImageItem(name, str(p)) for name, p in zip(display_names(paths, folders=False), paths)]


def upload_cap_note(paths) -> str:
    """HTML saying how many uploads the matrix shows, when there are more than MAX_IMAGES; else ''."""
    total = len(list(paths or []))
    if total <= MAX_IMAGES:
        return ""
    return message(plots.cap_note(MAX_IMAGES, total, "uploaded images", f"at most {MAX_IMAGES} rows per run"),
                   "note")


index_choices = any_index_choices   # every index, whatever model made it


@dataclass
class MatrixView:
    summary: str
    state: SimilarityMatrix | None = None   # the matrix, kept for the view switch (None: none made)
    items: list[ImageItem] | None = None    # the images now on the page (None: unchanged)
    figure: Any = None
    note: str = ""


def compute_matrix(ctx: AppContext, paths, text: str, index_folder: str | None, sample: int, view: str,
                   progress=None) -> MatrixView:
    """The image x text matrix of the uploaded `paths` (the first MAX_IMAGES) and a sample of `sample`
    images of the index `index_folder` (NO_INDEX: none) against the texts in `text`, one per line, as
    heatmaps.run_similarity makes it, drawn as `view`. A problem comes back as the summary."""
    try:
        model = ctx.model()
        texts = parse_texts(text, MAX_TEXTS, gate.TextLimits.of(ctx.settings))
        if not texts.labels:
            raise ValueError("Type at least one text (one per line).")
        items = upload_items(paths)
        index = _index_sample(ctx, model, index_folder) if index_folder and index_folder != NO_INDEX else None
        run = run_similarity(model, [i.path for i in items], texts, names=[i.name for i in items],
                             index=index, sample=int(sample), cache=ctx.embeddings,
                             limits=ctx.settings.limits,
                             progress=progress_reporter(progress, "images encoded"))
    except NoImagesRead as exc:
        return MatrixView(failures_html(exc.failures) if exc.failures else
                          message("Drop one or more images, or pick a search index to sample from.", "error"))
    except (ValueError, OSError) as exc:  # NoModel, an index that cannot be used, ...
        return MatrixView(message(str(exc), "error"))
    # Index images remember their folder, so the patch map can refuse a file that has left it.
    items = [ImageItem(n, str(p), str(r) if r else None)
             for n, p, r in zip(run.matrix.names, run.paths, run.roots)]
    figure, note = matrix_figure(run.matrix, view)
    summary = upload_cap_note(paths) + show.matrix_summary(run)
    return MatrixView(summary, run.matrix, items, figure, note)


def _index_sample(ctx: AppContext, model, folder: str):
    """The session's index `folder`, if `model` made it (ValueError: the index cannot be used, why)."""
    try:
        index = ctx.open_index(folder)
        index.check_model(model)
        return index
    except (ValueError, OSError) as exc:
        raise ValueError(f"The index cannot be used: {exc}") from None


def matrix_figure(matrix: SimilarityMatrix | None, view_label: str):
    """(figure, colour-scale note) for `matrix` (a matrix state) shown as `view_label`."""
    if matrix is None:
        return None, ""
    kind = VIEWS[view_label]
    return (plots.similarity_heatmap(matrix.names, matrix.texts, matrix.cosines, matrix.probabilities, kind,
                                     rule=matrix.rule.kind),
            show.scale_note(kind, matrix))


def view_update(rule: str, current: str):
    """The "Show" choices for a model whose probabilities follow `rule` ("softmax" or "sigmoid"),
    keeping the current view (cosine or probability)."""
    choices = ["Cosine", PROBABILITY_VIEWS[rule]]
    return gr.update(choices=choices, value=choices[1] if VIEWS.get(current) == "probability" else choices[0])


def _rule_of(ctx: AppContext) -> str:
    try:
        return ctx.model().scoring.kind
    except ValueError:  # no model yet: the label follows the model at the first run
        return "softmax"


def display_copy(image: Image.Image) -> Image.Image:
    """A copy small enough to blend quickly on every slider move (the overlay is resampled to it)."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    if min(copy.size) < 384:  # tiny images are enlarged so the patch grid is visible
        factor = 384 / min(copy.size)
        copy = copy.resize((round(copy.width * factor), round(copy.height * factor)), Image.NEAREST)
    return copy


def compute_patch_map(ctx: AppContext, items: list[ImageItem] | None, name: str, text: str, method: str,
                      scale_label: str, previous: MapState | None = None) -> tuple[str, MapState | None]:
    """(info HTML, map state or None): where `text` matches in the image called `name`. When
    `previous` (the last map state) was taken from the same image, file, method and model, its patch
    tokens are re-used: only the text is encoded."""
    try:
        model = ctx.model()
        check_patch_support(model, method)
    except PatchMapUnsupported as exc:
        return message(f"No patch map for this model: {exc}.", "error"), None
    except ValueError as exc:
        return message(str(exc), "error"), None
    item = next((it for it in items or [] if it.name == name), None)
    if item is None:
        return message("Pick an image (drop images above first).", "error"), None
    text = (text or "").strip()
    if not text:
        return message("Pick or type a text.", "error"), None
    try:
        if item.root is not None and not inside_roots(Path(item.path), (Path(item.root),)):
            raise ImageError(item.name, "is outside its indexed folder")
        source = (item.name, item.path, item.root, file_key(item.path), method_name(method),
                  model.identifier, model.weights_digest)
        if previous is not None and previous.tokens is not None and previous.source == source:
            image, tokens = previous.image, previous.tokens
        else:
            # Bounded by what the model keeps, so a 1 x 2,000,000 strip costs what a photo does.
            full = load_image(item.path, ctx.settings.limits, name=item.name, fit=fit_of(model.preprocess))
            image, tokens = display_copy(full), image_tokens(model, [full], method)[0]
    except ImageError as exc:
        return message(f"{name} cannot be used: {exc.reason}", "error"), None
    pmap = map_for(model, tokens, text)
    return show.map_summary(pmap, show.SCALE_CHOICES[scale_label]), MapState(pmap, image, tokens, source)


def blend(state: MapState | None, opacity: float, scale_label: str):
    """The map in `state` drawn over its image at `opacity` (None without a map)."""
    return None if state is None else overlay(state.image, state.pmap, float(opacity),
                                              show.SCALE_CHOICES[scale_label])


def picture_file(picture: Image.Image | None) -> str | None:
    """The overlay as a file in gradio's cache (OVERLAY_ENCODING), which gradio sends as it is, neither
    encoding nor copying it again; None for None."""
    return None if picture is None else save_picture(picture, get_upload_folder(), name="patch-map",
                                                     **OVERLAY_ENCODING)


@dataclass
class HeatmapsHandles:
    """The tab's components, by name, for the wiring."""
    ctx: AppContext
    files: gr.File
    texts: gr.Textbox
    index_box: gr.Accordion
    index_choice: gr.Dropdown
    refresh: gr.Button
    sample_n: gr.Slider
    run: gr.Button
    examples_box: gr.Column
    view: gr.Radio
    status: gr.HTML
    plot: gr.Plot
    note: gr.HTML
    map_image: gr.Dropdown
    map_text: gr.Dropdown
    method: gr.Radio
    scale: gr.Radio
    opacity: gr.Slider
    map_run: gr.Button
    map_info: gr.HTML
    shown: gr.Image
    items_state: gr.State    # list[ImageItem]: the images now on the page
    matrix_state: gr.State   # SimilarityMatrix | None: the last matrix
    map_state: gr.State      # MapState | None: the last patch map


def build(ctx: AppContext) -> None:
    items_state, matrix_state, map_state = gr.State([]), gr.State(None), gr.State(None)
    gr.Markdown("### Image × text\nHow similar each image is to each text, as raw cosines or as the "
                "probabilities a zero-shot classifier over these texts would give.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            files = gr.File(label="Images: drag and drop one or many", file_count="multiple",
                            file_types=IMAGE_TYPES, elem_id="hm-images", height=150)
            texts = gr.Textbox(label="Texts, one per line", lines=4, elem_id="hm-texts",
                               placeholder="a red circle\na blue square\na photo of a dog")
            with gr.Accordion("…and/or a sample from a search index", open=False,
                              elem_id="hm-index-box") as index_box:
                with gr.Row():
                    index_choice = gr.Dropdown([NO_INDEX], value=NO_INDEX,
                                               label="Index (built in the Search tab)", scale=4,
                                               elem_id="hm-index")
                    refresh = gr.Button("↻ Refresh", scale=1, min_width=80, elem_id="hm-index-refresh")
                sample_n = gr.Slider(1, MAX_IMAGES, value=12, step=1, label="Images to sample",
                                     elem_id="hm-sample-n")
            run = gr.Button("Compute similarities", variant="primary", elem_id="hm-run")
            examples_box = gr.Column(elem_id="hm-examples-box")
        with gr.Column(scale=3):
            view = gr.Radio(["Cosine", PROBABILITY_VIEWS[_rule_of(ctx)]], value="Cosine", label="Show",
                            elem_id="hm-view")
            status = gr.HTML(elem_id="hm-status")
            plot = gr.Plot(label="Image × text", elem_id="hm-plot")
            note = gr.HTML(elem_id="hm-scale-note")
    gr.Markdown("### Where in the image\nFor one image and one text, how strongly each region of the image "
                "matches the text (patch tokens taken into the joint space by the model's own final norm and "
                "projection; open_clip ViT models only).")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            map_image = gr.Dropdown([], label="Image", elem_id="hm-map-image", info="from the images above")
            map_text = gr.Dropdown([], label="Text", allow_custom_value=True, elem_id="hm-map-text",
                                   info="one of the texts above, or type any other")
            method = gr.Radio(list(METHODS), value="tokens", label="Method", elem_id="hm-method",
                              info=show.METHOD_HELP["tokens"])
            scale = gr.Radio(list(show.SCALE_CHOICES), value=next(iter(show.SCALE_CHOICES)),
                             label="Colour scale", elem_id="hm-scale")
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity of the map", elem_id="hm-opacity")
            map_run = gr.Button("Show where it matches", variant="primary", elem_id="hm-map-run")
        with gr.Column(scale=3):
            map_info = gr.HTML(elem_id="hm-map-info")
            shown = gr.Image(label="Patch map over the image", type="pil", interactive=False, height=420,
                             visible=False, elem_id="hm-overlay", buttons=["download", "fullscreen"])

    ui = HeatmapsHandles(
        ctx, files=files, texts=texts, index_box=index_box, index_choice=index_choice, refresh=refresh,
        sample_n=sample_n, run=run, examples_box=examples_box, view=view, status=status, plot=plot, note=note,
        map_image=map_image, map_text=map_text, method=method, scale=scale, opacity=opacity, map_run=map_run,
        map_info=map_info, shown=shown, items_state=items_state, matrix_state=matrix_state,
        map_state=map_state)
    _wire_matrix(ui)
    _wire_map(ui)


def _image_choices(items: list[ImageItem], current):
    names = [item.name for item in items]
    return gr.update(choices=names, value=current if current in names else (names[0] if names else None))


def _wire_matrix(ui: HeatmapsHandles) -> None:
    ctx = ui.ctx

    def on_files(paths, current):
        items = upload_items(paths)
        return items, _image_choices(items, current)

    def on_texts(text, current):
        try:
            parsed = parse_texts(text, MAX_TEXTS, gate.TextLimits.of(ctx.settings)).labels
        except ValueError:  # a box over the limit: the run says why
            parsed = []
        return gr.update(choices=parsed, value=current if current else (parsed[0] if parsed else None))

    def on_refresh(current, request: gr.Request):
        choices = index_choices(session_of(ctx, request))
        return gr.update(choices=choices, value=current if current in [v for _, v in choices] else NO_INDEX)

    def on_run(paths, text, index_folder, n, view_label, current_image, request: gr.Request,
               progress=gr.Progress()):
        result = compute_matrix(session_of(ctx, request), paths, text, index_folder, n, view_label, progress)
        if result.state is None:
            return result.summary, None, gr.update(), gr.update(), None, "", gr.update()
        return (result.summary, result.state, result.items, _image_choices(result.items, current_image),
                result.figure, result.note, view_update(result.state.rule.kind, view_label))

    ui.files.change(on_files, [ui.files, ui.map_image], [ui.items_state, ui.map_image],
                    show_progress="hidden")
    ui.texts.change(on_texts, [ui.texts, ui.map_text], ui.map_text, show_progress="hidden")
    ui.refresh.click(on_refresh, ui.index_choice, ui.index_choice)
    ui.index_box.expand(on_refresh, ui.index_choice, ui.index_choice, show_progress="hidden")
    inputs = [ui.files, ui.texts, ui.index_choice, ui.sample_n, ui.view, ui.map_image]
    outputs = [ui.status, ui.matrix_state, ui.items_state, ui.map_image, ui.plot, ui.note, ui.view]
    ui.run.click(on_run, inputs, outputs, concurrency_limit=2, api_name="similarity")
    with ui.examples_box:
        offer_examples(
            [{ui.files: examples.paths(examples.A_FEW), ui.texts: examples.caption_text(examples.A_FEW)},
             {ui.files: examples.paths(), ui.texts: examples.caption_text()}],
            ["Cat, coffee, rocket × their captions", "All 8 photos × 8 captions"], inputs, on_run, outputs,
            "hm-examples")
    ui.view.change(matrix_figure, [ui.matrix_state, ui.view], [ui.plot, ui.note], show_progress="hidden")


def _wire_map(ui: HeatmapsHandles) -> None:

    # the parameters' names are the /patch_map API's (docs/api.md); no progress bar: a map is one image
    # through the tower, and another text for it only a text (the corner timer says it is running)
    def on_map(items, name, text, method_name, alpha, scale_label, previous, request: gr.Request):
        info, state = compute_patch_map(session_of(ui.ctx, request), items, name, text, method_name,
                                        scale_label, previous)
        if state is None and not (text or "").strip() and previous is not None:
            # the text box emptied while typing: the map and its image's tokens stay for the next text
            return info, gr.skip(), gr.skip()
        picture = picture_file(blend(state, alpha, scale_label))
        if picture is not None and previous is not None:  # on screen already: only the new picture
            return info, picture, state
        return info, gr.update(value=picture, visible=picture is not None), state

    def on_scale(state, alpha, scale_label):  # state: MapState | None
        if state is None:
            return gr.update(), gr.update()
        return (show.map_summary(state.pmap, show.SCALE_CHOICES[scale_label]),
                picture_file(blend(state, alpha, scale_label)))

    ui.method.change(lambda m: gr.update(info=show.METHOD_HELP[m]), ui.method, ui.method,
                     show_progress="hidden")
    inputs = [ui.items_state, ui.map_image, ui.map_text, ui.method, ui.opacity, ui.scale, ui.map_state]
    outputs = [ui.map_info, ui.shown, ui.map_state]
    # Another text for the map (picked, or typed and entered) answers at once: the image's patch tokens
    # are kept in the map state, so only the text is encoded (compute_patch_map). One event with the button.
    live([ui.map_text, ui.map_run.click], on_map, inputs, outputs, concurrency_limit=2, api_name="patch_map")
    ui.opacity.change(lambda s, a, sc: gr.update() if s is None else picture_file(blend(s, a, sc)),
                      [ui.map_state, ui.opacity, ui.scale], ui.shown, show_progress="hidden")
    ui.scale.change(on_scale, [ui.map_state, ui.opacity, ui.scale], [ui.map_info, ui.shown],
                    show_progress="hidden")
