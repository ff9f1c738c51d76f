"""Teach by example tab: a few labelled images per class adapt the zero-shot classifier (prototypes,
Tip-Adapter, GDA; explorer/science/fewshot.py), scored against zero-shot on a held-out part; then the
adapted classifier sorts new images or an indexed folder, and can be downloaded.

Handlers: `run_teach` (a TeachView), `method_view` (confusion and fixed / broken thumbnails of one
method, from the run's state: nothing is fitted again), `apply_classifier` (an ApplyView),
`download_classifier` (a zip path) and `index_choices`. The run (a TeachRun: the experiment's result,
with its classifiers and provenance) lives in a gr.State, so each session keeps its own classifiers;
images are embedded through the app context's cache, so nothing is encoded twice. The experiment is
explorer/science/fewshot_experiment.py's `run`, the one `clip-explorer fewshot` runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from PIL import Image

from explorer.app import plots
from explorer.app.context import AppContext
from explorer.inputs import gate
from explorer.inputs.sources import Embedded
from explorer.science import classifier_file, fewshot_experiment
from explorer.science.fewshot import METHODS, sort_embeddings
from explorer.science.fewshot_experiment import ExperimentResult, PromptChoice
from explorer.science.prompts import builtin_template_set

from . import teach_html as show
from .common import (
    TEMPLATE_CHOICES,
    ZIP_TYPES,
    failures_html,
    from_page,
    live,
    message,
    patient,
    progress_reporter,
    session_of,
    unchanged,
)

METHOD_CHOICES = [m for m in METHODS if m != "zero-shot"]
SHOT_CHOICES = ["All", "1", "2", "4", "8", "16"]
NO_INDEX = "(none)"
MAX_SHOWN = 48                 # thumbnails per gallery
MAX_CLASS_GALLERIES = 12       # per-class galleries of the sorting; more classes are counted, not shown
PLACEHOLDER_SIDE = 64
# Thumbnails in rows of 5 (each whole, its caption under it; a click shows it large), even when a gallery
# holds fewer (fit_columns would stretch them); as tall as its rows, up to gradio's 55% of the window (the
# rest scrolls; assets/style.css lifts gradio's 450 px minimum for height="auto").
GALLERY = dict(columns=5, height="auto", allow_preview=True, object_fit="contain", fit_columns=False,
               visible=False, buttons=[])


@dataclass
class TeachRun:
    """One session's run, kept in the page's gr.State: the result (scores, curve, the classifiers of
    the seed-0 shots and their test predictions) and what made it (model, prompts, shots, choices)."""
    result: ExperimentResult
    provenance: fewshot_experiment.Provenance
    images: Embedded | None = None   # the embedded examples, for a run with other shots or methods
    source: tuple | None = None      # what they were embedded from when that cannot change: uploads
    shown: tuple = ()                # the (summary, table) HTML the run put on the page


@dataclass
class TeachView:
    summary: str
    table: str = ""
    curve: Any = None                                # plotly figure; None hides it
    state: TeachRun | None = None
    methods: list[str] = field(default_factory=list)
    chosen: str | None = None
    curve_unchanged: bool = False                    # the previous run's curve: not made, not sent again


@dataclass
class MethodView:
    confusion: Any = None
    heading: str = ""
    fixed: list = field(default_factory=list)        # (PIL thumbnail, "true → zero-shot's answer")
    broken: list = field(default_factory=list)       # (PIL thumbnail, "true → this method's answer")


@dataclass
class ApplyView:
    summary: str
    groups: list = field(default_factory=list)       # [(class label, [(thumbnail, caption)])]
    none: list = field(default_factory=list)


def _shots(choice) -> int | None:
    return None if choice in (None, "", "All") else int(choice)


def run_teach(ctx: AppContext, folder_text: str, uploads, template_name: str, method_names, shots_choice,
              progress=None, previous: TeachRun | None = None, page: bool = True) -> TeachView:
    """Embed the labelled examples (typed folder or uploaded zip), hold out part of each class
    (fewshot_experiment.HELD_OUT), and score zero-shot and the chosen methods; the view's state keeps
    the fitted classifiers and the run's provenance. With `previous` (the session's last run) on the
    same examples and prompts, its embeddings and fitted draws are re-used: a shot count or methods
    change only fits what was not fitted yet (uploads are not even unpacked again; a typed folder is
    read again, through the embedding cache, in case its files changed). `page`: the page asked (it
    still shows the previous run's curve); an API call gets its curve made whatever came before."""
    shown = patient(progress)  # a refit that ends quickly draws no progress bar
    try:
        model = ctx.model()
        methods = [m for m in (method_names or []) if m in METHOD_CHOICES]
        if not methods:
            return TeachView(message("Pick at least one method to compare with zero-shot.", "error"))
        source = TEMPLATE_CHOICES[template_name]
        choice = PromptChoice(builtin_template_set(source), source)
        uploaded = tuple(u for u in (uploads or []) if u)
        key = (uploaded, model.identifier, model.weights_digest) if uploaded else None
        if previous is not None and key is not None and previous.source == key:
            images = previous.images
        else:
            images = ctx.embed_choice(uploads=uploads, folder=folder_text, labelled=True,
                                      progress=progress_reporter(progress, "images embedded"))
        if shown is not None:
            shown(1, desc="Fitting and scoring the methods")
        result = fewshot_experiment.run(model, images, choice, methods, _shots(shots_choice),
                                        limits=gate.TextLimits.of(ctx.settings),
                                        previous=previous.result if previous is not None else None)
    except ValueError as exc:  # NoModel, PathRefused, PromptError, too few images ...
        return TeachView(message(str(exc), "error"))
    curve = result.curve
    # the shots curve does not depend on the shot count: after a shot change it is neither made nor sent
    same_curve = page and previous is not None and unchanged(previous.result.curve, curve)
    figure = plots.fewshot_shots_curve(curve.shots, curve.mean, curve.std,
                                       curve.seeds) if curve.shots and not same_curve else None
    summary = show.summary(result, images.source, model.identifier) + failures_html(images.failures)
    table = show.accuracy_table(result)
    state = TeachRun(result, result.provenance, images, key, (summary, table))
    return TeachView(summary, table, figure, state, list(result.report.methods), result.best(), same_curve)


def _thumb(ctx: AppContext, path) -> Image.Image:
    thumb = ctx.thumbnails.image(path) if ctx.thumbnails is not None else None
    return thumb or Image.new("RGB", (PLACEHOLDER_SIDE,) * 2, (200, 200, 200))


def method_view(ctx: AppContext, state: TeachRun | None, method: str | None) -> MethodView:
    """The confusion matrix of `method` on the held-out images and the ones it fixes and breaks
    against zero-shot, as thumbnails captioned "true → predicted"."""
    if state is None or method not in state.result.predictions:
        return MethodView()
    result = state.result
    names, truth = result.class_names, result.truth
    fixed, broken = result.changes(method)
    zero_shot, own = result.predictions["zero-shot"], result.predictions[method]

    def items(indices, predicted):
        return [(_thumb(ctx, result.test_paths[i]), f"{names[truth[i]]} → {names[predicted[i]]}")
                for i in list(indices)[:MAX_SHOWN]]

    return MethodView(plots.confusion_heatmap(names, result.confusions[method]),
                      show.changes_heading(method, len(fixed), len(broken), MAX_SHOWN),
                      items(fixed, zero_shot) if method != "zero-shot" else [],
                      items(broken, own) if method != "zero-shot" else [])


def index_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, folder) of the indexes this session may sort: made by the loaded model, not empty."""
    try:
        model = ctx.model()
    except ValueError:
        return [(NO_INDEX, NO_INDEX)]
    return [(NO_INDEX, NO_INDEX)] + [(ctx.index_label(info), str(info.folder))
                                     for info in ctx.visible_indexes(model) if info.count]


def _classifier(ctx: AppContext, state: TeachRun | None, method: str | None):
    """The fitted classifier of `method` from this session's run, for the loaded model."""
    if state is None:
        raise ValueError("Run “Teach” first: there is no adapted classifier yet.")
    model = ctx.model()
    if model.identity.as_dict() != state.provenance.model:
        raise ValueError(
            f"The classifier was taught with {state.provenance.model_name}, but {model.identifier} is loaded "
            "now; its weights only mean something with the model that made them. Run again.")
    classifiers = state.result.classifiers
    if method not in classifiers:
        raise ValueError(
            f"{method or 'No method'} was not part of the run; pick one of {', '.join(classifiers)}.")
    return classifiers[method]


def apply_classifier(ctx: AppContext, state: TeachRun | None, method: str, files, index_folder: str | None,
                     threshold: float | None = None, progress=None) -> ApplyView:
    """Sort new images (uploads) or an index's stored embeddings with the run's `method`: per-class
    galleries, best first, and "none of these" (below `threshold`; None: fewshot.none_threshold)."""
    index_folder = None if index_folder in (None, "", NO_INDEX) else index_folder
    files = [f for f in (files or []) if f]
    try:
        classifier = _classifier(ctx, state, method)
        if not files and not index_folder:
            raise ValueError("Upload images (or a zip) to sort, or pick an index.")
        images = ctx.embed_choice(uploads=files or None, index_folder=None if files else index_folder,
                                  labelled=False, progress=progress_reporter(progress, "images embedded"))
    except ValueError as exc:
        return ApplyView(message(str(exc), "error"))
    result = sort_embeddings(classifier, images.embeddings, images.names, threshold)
    path_of = dict(zip(images.names, images.paths))
    groups = [(f"{name} ({len(items)})", [(_thumb(ctx, path_of[n]), f"{p:.0%} · {n}")
                                          for n, p in items[:MAX_SHOWN]])
              for name, items in result.classes.items()]
    none = [(_thumb(ctx, path_of[n]), f"{p:.0%} {c} · {n}") for n, p, c in result.none[:MAX_SHOWN]]
    extra = list(result.classes)[MAX_CLASS_GALLERIES:]
    return ApplyView(show.sort_summary(result, method, images.source, MAX_SHOWN, extra)
                     + failures_html(images.failures), groups[:MAX_CLASS_GALLERIES], none)


def download_classifier(ctx: AppContext, state: TeachRun | None, method: str) -> str:
    """The run's `method` classifier as a zip (its .json + .safetensors pair; the .json carries the
    run's provenance, the record `clip-explorer fewshot --json` prints), written in the session's own
    workspace when hosted (deleted with it). ValueError says why not."""
    classifier = _classifier(ctx, state, method)
    folder = ctx.downloads("classifiers")  # hosted: in the session's workspace, counted in its quota
    record = state.provenance
    return str(classifier_file.export_zip(classifier, folder, record.model, record.prompts,
                                          provenance=record.as_dict()))


# ---- the page ---------------------------------------------------------------------------------------
def build(ctx: AppContext) -> TeachPage:
    gr.Markdown("Teach the model your classes with a few labelled images each: training-free adaptation "
                "(class prototypes, Tip-Adapter, GDA) scored against zero-shot on a held-out part of your "
                "images; then sort new images with it, or download it.", elem_id="teach-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            gr.Markdown("### 1. Examples")
            if ctx.settings.hosted:
                folder = gr.State("")
            else:
                folder = gr.Textbox(label="Labelled folder on this machine", elem_id="teach-folder",
                                    placeholder="/path/to/folder",
                                    info="One sub-folder per class. Or upload below.")
            uploads = gr.File(label="Upload a zip of class folders", file_count="multiple",
                              file_types=ZIP_TYPES, height=110, elem_id="teach-upload")
            templates = gr.Dropdown(list(TEMPLATE_CHOICES), value=next(iter(TEMPLATE_CHOICES)),
                                    label="Zero-shot prompt templates", elem_id="teach-templates")
            methods = gr.CheckboxGroup(METHOD_CHOICES, value=list(METHOD_CHOICES),
                                       label="Methods (against zero-shot)", elem_id="teach-methods")
            shots = gr.Dropdown(SHOT_CHOICES, value="All", label="Shots per class",
                                info="All: every training image; K: K per class, over "
                                     f"{fewshot_experiment.CURVE_SEEDS} seeds",
                                elem_id="teach-shots")
            run = gr.Button("Teach", variant="primary", elem_id="teach-run")
        with gr.Column(scale=3):
            summary = gr.HTML(elem_id="teach-summary")
            table = gr.HTML(elem_id="teach-table")
            curve = gr.Plot(label="Shots curve", visible=False, elem_id="teach-curve")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            method = gr.Dropdown([], label="Method to inspect, apply and download", interactive=True,
                                 elem_id="teach-method")
            confusion = gr.Plot(label="Confusion matrix (held-out images)", visible=False,
                                elem_id="teach-confusion")
        with gr.Column(scale=3):
            changes = gr.HTML(elem_id="teach-changes")
            fixed = gr.Gallery(
                label="Fixed: zero-shot was wrong, this method is right (true → zero-shot's answer)",
                elem_id="teach-fixed", **GALLERY)
            broken = gr.Gallery(label="Broken: zero-shot was right, this method is wrong (true → its answer)",
                                elem_id="teach-broken", **GALLERY)
    gr.Markdown("### 2. Apply it: sort new images or an indexed folder")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            apply_files = gr.File(label="Images or a zip to sort", file_count="multiple",
                                  file_types=ZIP_TYPES, height=110, elem_id="teach-apply-upload")
            with gr.Row():
                index = gr.Dropdown([NO_INDEX], value=NO_INDEX,
                                    label="…or an index (built in the Search tab)", scale=3,
                                    elem_id="teach-index")
                refresh = gr.Button("↻ Refresh", scale=1, min_width=80, elem_id="teach-index-refresh")
            auto = gr.Checkbox(True, label="“None of these”: the default threshold (half-way from chance to "
                                           "certain)",
                               elem_id="teach-none-auto")
            threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="…or below this best probability",
                                  elem_id="teach-none-threshold")
            apply = gr.Button("Sort", variant="primary", elem_id="teach-apply")
            download = gr.Button("Download the classifier (.zip: .json + .safetensors)",
                                 elem_id="teach-download")
            download_file = gr.File(label="Classifier", visible=False, elem_id="teach-download-file")
        with gr.Column(scale=3):
            sort_html = gr.HTML(elem_id="teach-sort")
            galleries = [
                gr.Gallery(elem_id=f"teach-class-{i}", **GALLERY) for i in range(MAX_CLASS_GALLERIES)
            ]
            none_gallery = gr.Gallery(label="None of these", elem_id="teach-none", **GALLERY)
    page = TeachPage(ctx, folder, uploads, templates, methods, shots, run, summary, table, curve, method,
                     confusion, changes, fixed, broken, apply_files, index, refresh, auto, threshold, apply,
                     download, download_file, sort_html, galleries, none_gallery, gr.State(None),
                     gr.State(None))
    _wire_run(page)
    _wire_apply(page)
    return page


@dataclass
class TeachPage:
    """The page's components by name, for the wiring."""
    ctx: AppContext
    folder: Any                  # gr.Textbox (local) or gr.State("") (hosted: no paths)
    uploads: gr.File
    templates: gr.Dropdown
    methods: gr.CheckboxGroup
    shots: gr.Dropdown
    run: gr.Button
    summary: gr.HTML
    table: gr.HTML
    curve: gr.Plot
    method: gr.Dropdown
    confusion: gr.Plot
    changes: gr.HTML
    fixed: gr.Gallery
    broken: gr.Gallery
    apply_files: gr.File
    index: gr.Dropdown
    refresh: gr.Button
    auto: gr.Checkbox
    threshold: gr.Slider
    apply: gr.Button
    download: gr.Button
    download_file: gr.File
    sort_html: gr.HTML
    galleries: list             # [gr.Gallery] x MAX_CLASS_GALLERIES
    none_gallery: gr.Gallery
    state: gr.State             # a TeachRun, or None before the first run
    shown: gr.State             # the method whose confusion and galleries the page shows (None: none)
    # the run's handler with its inputs and outputs (set by _wire_run): another event may run Teach too
    # (the Map tab, on classes it put in `uploads`), the same function, so gated and counted alike
    run_handler: Any = None
    run_inputs: list = field(default_factory=list)
    run_outputs: list = field(default_factory=list)


def _method_outputs(view: MethodView):
    return (gr.update(value=view.confusion, visible=view.confusion is not None), view.heading,
            gr.update(value=view.fixed, visible=bool(view.fixed)),
            gr.update(value=view.broken, visible=bool(view.broken)))


def _wire_run(ui: TeachPage) -> None:
    ctx = ui.ctx

    def on_run(folder, uploads, templates, methods, shots, previous, shown, request: gr.Request,
               event: gr.EventData = None, progress=gr.Progress()):
        mine, page = session_of(ctx, request), from_page(event)
        view = run_teach(mine, folder, uploads, templates, methods, shots, progress, previous, page)
        if view.state is None:
            return view.summary, "", gr.update(
                visible=False), gr.update(), None, *_method_outputs(MethodView()), None
        # what the page already shows (the last run's summary and table, its curve) is not sent again; an
        # API call has no page and gets everything
        curve = gr.update(value=view.curve, visible=view.curve is not None)
        before = previous.shown if page and previous is not None and previous.shown else (None, None)
        html = [gr.skip() if unchanged(was, now) else now
                for was, now in zip(before, (view.summary, view.table))]
        return (*html, gr.skip() if page and view.curve_unchanged else curve,
                *run_method_outputs(mine, view, previous, shown if page else None))

    def on_method(state, method, request: gr.Request):
        return *_method_outputs(method_view(session_of(ctx, request), state, method)), method

    method_outputs = [ui.confusion, ui.changes, ui.fixed, ui.broken]
    inputs = [ui.folder, ui.uploads, ui.templates, ui.methods, ui.shots, ui.state, ui.shown]
    outputs = [ui.summary, ui.table, ui.curve, ui.method, ui.state, *method_outputs, ui.shown]
    # Another shot count answers at once from the last run's embeddings and fits; one event with the button.
    live([ui.shots, ui.run.click], on_run, inputs, outputs, concurrency_limit=2, api_name="fewshot")
    ui.run_handler, ui.run_inputs, ui.run_outputs = on_run, inputs, outputs
    ui.method.input(on_method, [ui.state, ui.method], [*method_outputs, ui.shown], show_progress="hidden")


def run_method_outputs(ctx: AppContext, view: TeachView, previous: TeachRun | None,
                       shown: str | None) -> tuple:
    """After a run: (method dropdown, state, confusion, changes heading, fixed, broken, the method shown).
    When the page already shows the run's chosen method as this run would (another shot count that
    predicts the held-out images alike: ExperimentResult.shows_alike), the dropdown, the confusion matrix,
    the heading and both galleries are gr.skip(): not made (no thumbnail read) nor sent again; the state
    too when the run is the previous one over again."""
    result = view.state.result
    alike = (previous is not None and shown == view.chosen
             and result.shows_alike(previous.result, view.chosen))
    same_choices = alike and list(previous.result.report.methods) == view.methods
    dropdown = gr.skip() if same_choices else gr.update(choices=view.methods, value=view.chosen)
    parts = (gr.skip(),) * 4 if alike else _method_outputs(method_view(ctx, view.state, view.chosen))
    # the same run again (gradio's dropdown sends a pick as two input events): the same fits of the same
    # images, prompts and shots; the session's run is kept, so nothing waits on its change (the index list)
    repeat = (same_choices and result.fitted is previous.result.fitted
              and view.state.provenance == previous.provenance)
    return dropdown, gr.skip() if repeat else view.state, *parts, view.chosen


def _wire_apply(ui: TeachPage) -> None:
    ctx = ui.ctx

    def on_apply(state, method, files, index, auto, threshold, request: gr.Request, progress=gr.Progress()):
        view = apply_classifier(session_of(ctx, request), state, method, files, index,
                                None if auto else threshold, progress=progress)
        shown = [gr.update(value=items, label=label, visible=True) for label, items in view.groups]
        hidden = [gr.update(value=None, visible=False)] * (MAX_CLASS_GALLERIES - len(shown))
        return (view.summary, *shown, *hidden,
                gr.update(value=view.none, visible=bool(view.none),
                          label=f"None of these ({len(view.none)})"))

    def on_refresh(current, request: gr.Request):
        choices = index_choices(session_of(ctx, request))
        return gr.update(choices=choices, value=current if current in [v for _, v in choices] else NO_INDEX)

    def on_download(state, method, request: gr.Request):
        try:
            path = download_classifier(session_of(ctx, request), state, method)
        except ValueError as exc:
            return gr.update(value=None, visible=False), message(str(exc), "error")
        return gr.update(value=path, visible=True), gr.update()

    ui.apply.click(on_apply, [ui.state, ui.method, ui.apply_files, ui.index, ui.auto, ui.threshold],
                   [ui.sort_html, *ui.galleries, ui.none_gallery], concurrency_limit=2,
                   api_name="fewshot_apply")
    ui.refresh.click(on_refresh, ui.index, ui.index)
    ui.state.change(on_refresh, ui.index, ui.index, show_progress="hidden")  # after each run
    ui.download.click(on_download, [ui.state, ui.method], [ui.download_file, ui.sort_html],
                      api_name="fewshot_download")
