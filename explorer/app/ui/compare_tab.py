"""Compare models tab: two to a few models side by side on your own images (a folder, uploads, or the
images of an index): accuracy, calibration, the best prompt set, cost and speed, one column per model;
the paired evidence between each two; each image's answers; a gallery of exactly the images where they
disagree. And, in an accordion, two indexes of the same folder made by two models: how far their top k
agree per query.

`run_compare` and `run_index_agreement` are the handlers (plain inputs in, a CompareView or HTML out):
they read the models and texts first (hosted: only the models the demo offers, at most
max_compare_models; nothing loads otherwise), resolve the images through AppContext.compare_root, and
call the core (explorer/science/model_compare.py): each model in turn is opened by
AppContext.compared_model (the resident model itself when named, never reloaded), its embeddings kept in
the app's index of the folder (AppContext.stored: a second comparison encodes nothing), then freed.
compare_html draws the tables, plots.py the figure. Cancel (per browser session, common.Stops) stops
after the step in flight and shows the models done so far.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from explorer.app import plots
from explorer.app.context import AppContext
from explorer.embed.names import LOCAL_DIR, describe
from explorer.inputs import gate
from explorer.science.model_compare import CompareReport, ModelChoice, compare_indexes, compare_models
from explorer.science.prompts import parse_labels

from . import compare_html as show
from .common import (
    NO_INDEX,
    TEMPLATE_CHOICES,
    ZIP_TYPES,
    Stops,
    any_index_choices,
    message,
    offered,
    patient,
    public_name,
    session_of,
    template_set,
)

FIRST_TEMPLATES = next(iter(TEMPLATE_CHOICES))
MAX_K = 100                  # the most results per query the index comparison looks at
NOT_OFFERED = "That model is not offered here"
GALLERY_COLUMNS, GALLERY_ROWS, GALLERY_ROW_PX = 4, 3, 290   # the disagreements: 4 a row, 3 rows shown


@dataclass
class CompareView:
    summary: str                                   # HTML: one column per model
    plot: Any = None                               # accuracy against ms per image; None hides it
    pairs: str = ""                                # HTML: the pairwise evidence
    per_image: str = ""                            # HTML: each image's top labels by every model
    gallery: list = field(default_factory=list)    # (thumbnail file, caption) of the disagreements
    report: CompareReport | None = None            # the core's report the page was drawn from


# ---- reading the inputs (nothing loads before these pass) ------------------------------------------------
def _entries(models, limits: gate.TextLimits) -> list[str]:
    """The models named: a list (the hosted dropdown), or text with one identifier a line."""
    if isinstance(models, (list, tuple)):
        entries = [str(m) for m in models if m is not None]
        gate.within(entries, "Models", limits, noun="model")
    else:
        entries = gate.text(models, "Models", limits).splitlines()
    return [e.strip() for e in entries if e.strip() and not e.strip().startswith("#")]


def model_choices(ctx: AppContext, models, limits: gate.TextLimits) -> list[ModelChoice]:
    """The models to compare, in order. Hosted, each must be one the demo offers (by its label); more
    than max_compare_models is refused. ValueError says why, before anything loads."""
    entries = _entries(models, limits)
    gate.check_count("Models to compare", len(entries), max_models(ctx), "max_compare_models", "models")
    if ctx.settings.hosted:
        labels = offered(ctx)
        unknown = [e for e in entries if e not in labels]
        if unknown:
            raise ValueError(f"{NOT_OFFERED}: {unknown[0][:80]}. Pick the models from the list "
                             f"({', '.join(labels)}).")
        choices = [ModelChoice.of(*labels[e]) for e in entries]
    else:
        choices = [ModelChoice.parse(e) for e in entries]
    if len(choices) < 2:
        raise ValueError("Name at least two models to compare, one a line (e.g. ViT-B-32@openai, or "
                         "local-dir:/path/to/model).")
    return choices


def max_models(ctx: AppContext) -> int:
    """The most models one comparison may run (the setting max_compare_models)."""
    return ctx.settings.max_compare_models


def shown_names(ctx: AppContext, choices: list[ModelChoice]) -> list[str]:
    """How the page names each model: a local-dir: model by its folder's name, a checkpoint by its file
    name (hosted always; locally unless two would then read the same), never a server path hosted."""
    short = [describe(public_name(c.name), public_name(c.pretrained)).removeprefix(LOCAL_DIR)
             for c in choices]
    if ctx.settings.hosted or len(set(short)) == len(short):
        return short
    return [c.label() for c in choices]


def short_labels(ctx: AppContext, labels: list[str]) -> list[str]:
    """Models named by their identifier (model.describe) as shown_names names them."""
    short = [(public_name(label) or "").removeprefix(LOCAL_DIR) for label in labels]
    return short if ctx.settings.hosted or len(set(short)) == len(short) else labels


def _public(ctx: AppContext, choices: list[ModelChoice], text: str) -> str:
    """`text` with the chosen models' server paths cut to their names (hosted only)."""
    if not ctx.settings.hosted:
        return text
    for value in sorted({v for c in choices for v in (c.name, c.pretrained) if v}, key=len, reverse=True):
        text = text.replace(value, public_name(value))
    return text


def _overall(ctx: AppContext, choices: list[ModelChoice], progress) -> Callable | None:
    """The core's progress(fraction, "model 2 of 3 (NAME): ...") on a gr.Progress (hosted: no paths)."""
    shown = patient(progress)
    if shown is None:
        return None
    return lambda fraction, text: shown(min(1.0, max(0.0, float(fraction))), desc=_public(ctx, choices, text))


# ---- the handlers --------------------------------------------------------------------------------------
def run_compare(ctx: AppContext, models, folder, uploads, index, labels, templates, progress=None,
                should_stop: Callable[[], bool] | None = None) -> CompareView:
    """Compare the `models` (text, one identifier a line; hosted: offered labels) on the chosen images
    (`uploads`, else a typed `folder` locally, else the images of the index folder `index`), scored
    with the `templates` (a TEMPLATE_CHOICES key) against the class folders, or the typed `labels`
    when the images are unlabelled."""
    choices: list[ModelChoice] = []
    try:
        limits = gate.TextLimits.of(ctx.settings)  # this request's text limits (hosted: stricter)
        choices = model_choices(ctx, models, limits)
        parsed = parse_labels(gate.text(labels, "Class labels", limits), limits)  # over limits: notes say so
        prompt_set = template_set(templates)
        root, notes = ctx.compare_root(uploads=[u for u in uploads or [] if u] or None,
                                       folder=(folder or "").strip() or None,
                                       index_folder=index if index and index != NO_INDEX else None)
        report = compare_models(
            choices, ctx.compared_model,
            lambda model, step, stop: ctx.stored(model, root, progress=step, should_stop=stop),
            labels=parsed.labels or None, templates=prompt_set, limits=limits,
            max_models=max_models(ctx),
            progress=_overall(ctx, choices, progress), should_stop=should_stop)
    except ValueError as exc:  # Refused, PathRefused, a model that cannot load, PromptError ...
        return CompareView(message(_public(ctx, choices, str(exc)), "error"))
    shown = "your upload" if ctx.settings.hosted or uploads and any(uploads) else \
        (f"the images of {root}" if index and index != NO_INDEX else str(root))
    return compare_view(report, shown_names(ctx, choices[:len(report.runs)]),
                        show.images_line(shown, [_public(ctx, choices, n) for n in notes + parsed.notes]),
                        ctx)


def compare_view(report: CompareReport, names: list[str], images: str, ctx: AppContext) -> CompareView:
    """The page's tables, figure and gallery of a comparison (`images`: HTML saying which images)."""
    if not report.runs:
        return CompareView(show.heading(report, names) + images, report=report)
    figure = plots.accuracy_vs_time(
        names, [None if r.seconds_per_image is None else r.seconds_per_image * 1000 for r in report.runs],
        [r.top1() for r in report.runs], [bool(r.timed_now) for r in report.runs]) \
        if report.true is not None else None
    return CompareView(show.summary(report, names) + images, figure, show.pairs(report, names),
                       show.per_image(report, names), disagreement_gallery(ctx, report, names), report)


def disagreement_gallery(ctx: AppContext, report: CompareReport, names: list[str]) -> list:
    """(thumbnail file in gradio's cache, caption) of exactly the images where the models disagree, each
    caption naming every model's answer (and the true label when labelled)."""
    folder = get_upload_folder()  # gradio's cache: it takes these files as they are
    items = []
    for row in report.disagreements:
        thumb = ctx.thumbnails.file(report.paths[row], folder)
        if thumb is not None:
            items.append((thumb, show.caption(report, names, row)))
    return items


def run_index_agreement(ctx: AppContext, index_a, index_b, queries, k) -> str:
    """How far two indexes of the same folder, made by two models, agree: per query (one a line), the
    overlap of their top `k` and the rank correlation of their scores, as HTML."""
    opened = []
    try:
        limits = gate.TextLimits.of(ctx.settings)
        texts = [q.strip() for q in gate.text(queries, "Queries", limits).splitlines() if q.strip()]
        gate.within(texts, "Queries", limits, noun="query")
        if not texts:
            raise ValueError("Type at least one query, one a line (e.g. a red circle).")
        count = _whole(k, "Results per query")
        if not index_a or not index_b or NO_INDEX in (index_a, index_b):
            raise ValueError("Choose two indexes of the same folder, made by two models.")
        opened = [ctx.open_index(index_a), ctx.open_index(index_b)]
        result = compare_indexes(*opened, ctx.compared_model, texts, count)
    except ValueError as exc:
        text = str(exc)
        for index in opened:  # hosted: an upload is "your upload", never its folder on the server
            text = text.replace(str(index.root), "your upload") if ctx.settings.hosted else text
        return message(text, "error")
    return show.agreement(result, short_labels(ctx, list(result.labels)))


def _whole(value, what: str) -> int:
    try:
        count = int(round(float(value)))
    except (TypeError, ValueError):
        raise ValueError(f"{what}: a whole number from 1 to {MAX_K}, not {str(value)[:40]!r}") from None
    if not 1 <= count <= MAX_K:
        raise ValueError(f"{what}: a whole number from 1 to {MAX_K}, not {count:,}")
    return count


def gallery_height(count: int) -> int:
    """Pixels that show every row of the disagreement gallery (its captions too), up to
    GALLERY_ROWS rows; more scroll inside it."""
    rows = min(GALLERY_ROWS, max(1, -(-count // GALLERY_COLUMNS)))
    return 60 + GALLERY_ROW_PX * rows


index_choices = any_index_choices   # every index, whatever model made it


def default_models(ctx: AppContext) -> str:
    """The local box's first value: the loaded model (else the configured one), as `name@pretrained`."""
    model = ctx.slot.model
    name, pretrained = (model.name, model.pretrained) if model is not None else \
        (ctx.settings.model, ctx.settings.pretrained)
    return f"{name}@{pretrained}" if pretrained else name


# ---- the page --------------------------------------------------------------------------------------------
@dataclass
class CompareAsked:
    """A click on Run: a Cancel pressed after it stops that comparison (common.Stops)."""
    at: float  # time.monotonic() of the click


def build(ctx: AppContext) -> None:
    hosted = ctx.settings.hosted
    gr.Markdown(
        "Compare models on your own images: each model runs in turn on the same images, and the page "
        "shows their accuracy, calibration, cost and speed side by side, whether a difference is beyond "
        "chance, and the images where they disagree.", elem_id="cmp-intro")
    asked = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            if hosted:
                labels = list(offered(ctx))
                # Any value is let through to the handler, which names what is not offered (an API call
                # may send anything; gradio's own check would only say the inputs could not be read).
                models = gr.Dropdown(labels, value=labels[:2], multiselect=True, label="Models",
                                     elem_id="cmp-models", allow_custom_value=True,
                                     info="the models this demo offers; each loads in turn, then is freed")
            else:
                models = gr.Textbox(default_models(ctx), label="Models, one a line", lines=3,
                                    elem_id="cmp-models",
                                    placeholder="ViT-B-32@laion2b_s34b_b79k\nlocal-dir:/path/to/model",
                                    info="open_clip name@pretrained, hf-hub:org/repo or local-dir:/path; "
                                    "the loaded model is used as it is")
            if hosted:
                folder = gr.State("")
            else:
                folder = gr.Textbox(label="Folder on this machine", elem_id="cmp-folder",
                                    placeholder="/path/to/folder",
                                    info="Class sub-folders label the images. Or upload below instead.")
            uploads = gr.File(label="Upload images, or a zip of class folders (labelled)",
                              file_count="multiple", file_types=ZIP_TYPES, height=130, elem_id="cmp-uploads")
            with gr.Accordion("…or the images of an index", open=False, elem_id="cmp-index-box") as index_box:
                with gr.Row():
                    index = gr.Dropdown([NO_INDEX], value=NO_INDEX, label="Index (built in the Search tab)",
                                        scale=4, elem_id="cmp-index", allow_custom_value=True)
                    refresh = gr.Button("↻ Refresh", scale=1, min_width=80, elem_id="cmp-index-refresh")
            labels_box = gr.Textbox("", label="Class labels (for unlabelled images)", lines=2,
                                    placeholder="cat, dog, car", elem_id="cmp-labels",
                                    info="Empty: the class folders' names.")
            templates = gr.Radio(list(TEMPLATE_CHOICES), value=FIRST_TEMPLATES, label="Prompt templates",
                                 elem_id="cmp-templates")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="cmp-run", scale=3)
                cancel = gr.Button("Cancel", variant="stop", visible=False, elem_id="cmp-cancel", scale=1)
        with gr.Column(scale=3):
            summary = gr.HTML(elem_id="cmp-summary", css_template="min-height: 52px;")
            plot = gr.Plot(label="Accuracy against time", show_label=False, visible=False, elem_id="cmp-plot")
            pairs = gr.HTML(elem_id="cmp-pairs")
            gallery = gr.Gallery(label="Where the models disagree", columns=GALLERY_COLUMNS, height="auto",
                                 allow_preview=True, object_fit="contain", visible=False, fit_columns=False,
                                 elem_id="cmp-gallery", buttons=[])
            per_image = gr.HTML(elem_id="cmp-per-image")
    with gr.Accordion("Two indexes of the same folder", open=False, elem_id="cmp-indexes-acc") as pair_box:
        gr.Markdown("Two indexes of one folder, made by two models (build each in the Search tab with the "
                    "model loaded): do they return the same images for the same queries?")
        with gr.Row():
            index_a = gr.Dropdown([NO_INDEX], value=NO_INDEX, label="Index A", scale=3, elem_id="cmp-index-a",
                                  allow_custom_value=True)
            index_b = gr.Dropdown([NO_INDEX], value=NO_INDEX, label="Index B", scale=3, elem_id="cmp-index-b",
                                  allow_custom_value=True)
            refresh_pair = gr.Button("↻ Refresh", scale=1, min_width=80, elem_id="cmp-indexes-refresh")
        with gr.Row():
            queries = gr.Textbox("", label="Queries, one a line", lines=3, scale=3, elem_id="cmp-queries",
                                 placeholder="a red circle\na blue square")
            k = gr.Slider(1, MAX_K, value=10, step=1, label="Results per query (k)", scale=1, elem_id="cmp-k")
        agree = gr.Button("Compare the indexes", elem_id="cmp-indexes-run")
        agreement = gr.HTML(elem_id="cmp-indexes")

    _wire_run(ctx, Stops(), asked, [models, folder, uploads, index, labels_box, templates], run, cancel,
              [summary, plot, pairs, per_image, gallery])
    _wire_indexes(ctx, (index_box, refresh, index), (pair_box, refresh_pair, index_a, index_b),
                  [index_a, index_b, queries, k], agree, agreement)


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


def _wire_run(ctx: AppContext, stops: Stops, asked, inputs: list, run, cancel, outputs: list) -> None:
    """Run (its Cancel shown while it runs, per session, as Search's build) and the `compare` and
    `cancel_compare` endpoints."""
    def on_arm():  # at the click, before any wait in the queue: a Cancel from now on stops this run
        return CompareAsked(time.monotonic()), gr.update(visible=True, value="Cancel", interactive=True), ""

    def on_run(models, folder, uploads, index, labels, templates, asked, request: gr.Request,
               progress=gr.Progress()):
        stop = stops.checker(_session(request), time.monotonic() if asked is None else asked.at)
        view = run_compare(session_of(ctx, request), models, folder, uploads, index, labels, templates,
                           progress, stop)
        gallery = gr.update(value=view.gallery, visible=bool(view.gallery), selected_index=None,
                            height=gallery_height(len(view.gallery)))
        return (view.summary, gr.update(value=view.plot, visible=view.plot is not None), view.pairs,
                view.per_image, gallery)

    def on_cancel(request: gr.Request):
        stops.cancel(_session(request))
        return gr.update(value="Cancelling after this step…", interactive=False)

    quiet = dict(show_progress="hidden", api_visibility="private", concurrency_limit=None)
    armed = run.click(on_arm, None, [asked, cancel, outputs[0]], **quiet)
    ran = armed.then(on_run, [*inputs, asked], outputs, concurrency_limit=1, api_name="compare",
                     show_progress_on=[outputs[0]])  # one progress bar, on the summary
    ran.then(lambda: (None, gr.update(visible=False)), None, [asked, cancel], **quiet)
    cancel.click(on_cancel, None, cancel, show_progress="hidden", concurrency_limit=None,
                 api_name="cancel_compare")


def _wire_indexes(ctx: AppContext, single: tuple, pair: tuple, inputs: list, agree, agreement) -> None:
    """The index dropdowns, refreshed when their accordion opens or Refresh is pressed, and the
    `compare_indexes` endpoint."""
    def refreshed(current, choices):
        return gr.update(choices=choices, value=current if current in [v for _, v in choices] else NO_INDEX)

    def on_refresh(current, request: gr.Request):
        return refreshed(current, index_choices(session_of(ctx, request)))

    def on_refresh_pair(a, b, request: gr.Request):
        choices = index_choices(session_of(ctx, request))
        return refreshed(a, choices), refreshed(b, choices)

    def on_agree(index_a, index_b, queries, k, request: gr.Request):
        return run_index_agreement(session_of(ctx, request), index_a, index_b, queries, k)

    box, button, index = single
    for trigger in (box.expand, button.click):
        trigger(on_refresh, index, index, show_progress="hidden", api_visibility="private")
    box, button, index_a, index_b = pair
    for trigger in (box.expand, button.click):
        trigger(on_refresh_pair, [index_a, index_b], [index_a, index_b], show_progress="hidden",
                api_visibility="private")
    agree.click(on_agree, inputs, agreement, concurrency_limit=2, api_name="compare_indexes")
