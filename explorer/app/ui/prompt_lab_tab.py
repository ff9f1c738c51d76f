"""Prompt lab tab: edit a prompt set, add class descriptions, pick an ensembling, and see what each
prompt does on a labelled folder (accuracy) or on plain images (ZPE weights, "none of these").

Handlers: the row edits (`rows_of`, `moved`, `save_files`) and `evaluate_prompts` (plain inputs in,
a LabView out), which embeds the images through the app context and scores them with lab.run_lab,
the function behind `clip-explorer eval`. `build` lays out and wires; the page keeps each run's
flags (prompt_lab_html.LabFlags) in a gr.State, and its components in PromptLabHandles.

Live (issue 29): once a run has embedded the images, an edit of the prompts, the class names or an
option (ensembling, ZPE selection, chosen row, compared sets) scores them again as it is made, through
the button's own handler: the run keeps its images' embeddings (KeptImages, a gr.State) and a live edit
on the same images re-scores them, reading no image (only new prompts are encoded, the others are in
the model's text cache). The "none of these" sliders redraw from the run's flags alone.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from explorer.app import examples, plots
from explorer.app.context import AppContext
from explorer.embed.probability import NoneRule, default_none_rule
from explorer.inputs import gate
from explorer.inputs.sources import Embedded
from explorer.science.descriptions import ASSETS as DESCRIPTION_EXAMPLES
from explorer.science.descriptions import parse_descriptions, read_descriptions_file
from explorer.science.evaluate import cosine_name
from explorer.science.prompt_lab import LabReport, run_lab
from explorer.science.prompts import (
    builtin_template_set,
    check_new_template,
    check_templates,
    parse_labels,
    read_template_file,
    write_template_files,
)
from explorer.science.zpe import MAD_THRESHOLD

from . import prompt_lab_html as show
from .common import (
    COMBINES,
    LIVE,
    TEMPLATE_CHOICES,
    ZIP_TYPES,
    SwitchControls,
    live,
    message,
    offer_examples,
    patient,
    progress_reporter,
    session_of,
    switch_controls,
    switch_settings,
    unchanged,
)
from .prompt_lab_html import CalibrationData, LabFlags

EXAMPLES = {p.name: p for p in sorted(DESCRIPTION_EXAMPLES.glob("*.json"))}
WEIGHTINGS = {
    "Equal average": "mean", "ZPE (weights from the images)": "zpe", "One chosen template": "single"
}
USES = {"Templates": "templates", "Descriptions": "descriptions", "Both": "both", "Pooled (CuPL+e)": "pooled",
        "WaffleCLIP random descriptors": "waffle"}
ZPE_SELECTS = {"All prompts": "all", "MAD selection (the paper's)": "mad"}
SAVED_SETS = Path(tempfile.gettempdir()) / "clip-explorer-prompt-sets"


# ---- the editable template list ------------------------------------------------------------------
def rows_of(table) -> list[str]:
    """The template column of the Dataframe value (pandas, list of lists or None), blanks dropped."""
    if table is None:
        return []
    values = table.iloc[:, 0].tolist() if hasattr(table, "iloc") else [row[0] if row else "" for row in table]
    return [" ".join(str(v).split()) for v in values if v is not None and str(v).strip()]


def frame(rows: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"template": list(rows)})


def moved(rows: list[str], number, delta: int) -> list[str]:
    """Row `number` (from 1) moved by delta (-1 up, +1 down); unchanged at the ends."""
    i = int(number or 0) - 1
    j = i + delta
    if not (0 <= i < len(rows) and 0 <= j < len(rows)):
        return rows
    rows = list(rows)
    rows[i], rows[j] = rows[j], rows[i]
    return rows


def added(rows: list[str], text: str, limits: gate.TextLimits = gate.DEFAULT_TEXT_LIMITS) -> list[str]:
    """The rows with `text` added at the end; PromptError naming the new row's number when it cannot be."""
    return list(rows) + [check_new_template(text, len(rows) + 1, limits)]


def save_files(rows: list[str], ctx: AppContext | None = None) -> tuple[str, str]:
    """The set as prompt-set.txt and prompt-set.json (one folder per distinct set; with `ctx`, among
    its session's downloads: hosted, in the visitor's workspace) -> both paths."""
    name = hashlib.sha1("\n".join(rows).encode()).hexdigest()[:16]
    folder = ctx.downloads("prompt-sets", name) if ctx is not None else SAVED_SETS / name
    folder.mkdir(parents=True, exist_ok=True)
    txt, js = write_template_files(rows, folder)
    return str(txt), str(js)


# ---- a run ------------------------------------------------------------------------------------------
@dataclass
class LabView:
    summary: str
    per_template: str = ""
    comparison: str = ""
    per_class: str = ""
    confusion: Any = None         # plotly figure; None hides it
    none_of_these: str = ""
    flags: LabFlags | None = None  # what the "none of these" sliders and calibration redraw from
    report: LabReport | None = None


FRESH = "embed"  # what the button sends for `kept`: embed the images chosen (a live edit sends KeptImages)


@dataclass
class KeptImages:
    """The last run's images, embedded, and the choice that named them (folder, uploads): a live edit
    with the same choice scores these again instead of reading the images. `shown`: what the confusion
    matrix drew (classes, predicted, true), so an edit that moves no prediction does not re-send it."""
    chosen: tuple
    images: Embedded
    shown: tuple = ()


def chosen_images(folder, uploads) -> tuple:
    """What names a run's images: the folder typed and the uploads (gradio's copies, named by content)."""
    return (folder or "").strip(), tuple(str(u) for u in uploads or [] if u)


def evaluate_prompts(ctx: AppContext, table, folder_text: str, files, label_text: str, desc_text: str,
                     desc_path: str | None, use_name: str, weighting_name: str, row, compare_builtins: bool,
                     min_cosine: float | None, min_probability: float | None, progress=None,
                     zpe_select_name: str = "All prompts", mad_threshold: float | None = None,
                     images: Embedded | None = None, views=0, combine: str = next(iter(COMBINES)),
                     tda: bool = False) -> LabView:
    """One run; a None threshold takes the model's default "none of these" rule (default_none_rule).
    `zpe_select_name` (a ZPE_SELECTS key) and `mad_threshold`: ZPE's MAD prompt selection. `images`:
    the chosen images already embedded (a live edit: none is read again), else they are embedded.
    `views`, `combine`, `tda`: the test-time switches (common.switch_settings; off by default), applied
    to the run's class embeddings on the same images: the summary says what they changed and cost."""
    use = USES[use_name]
    shown = patient(progress)  # a re-scoring that ends quickly draws no progress bar
    try:
        model = ctx.model()
        limits = gate.TextLimits.of(ctx.settings)  # this request's text limits (hosted: stricter)
        switches = switch_settings(views, combine, tda)
        templates = check_templates(rows_of(table), limits=limits) if use not in (
            "descriptions", "waffle") else None  # WaffleCLIP brings its own prompt format
        # An uploaded file, or typed JSON: the typed text is never taken as a path.
        descriptions = read_descriptions_file(desc_path, limits) if desc_path else (
            parse_descriptions(desc_text, "typed descriptions", limits) if
            (desc_text or "").strip() else None)
        if images is None:
            images = ctx.embed_choice(uploads=files, folder=folder_text,
                                      progress=progress_reporter(progress, "images embedded"))
        if shown is not None:
            shown(1, desc="Scoring the prompts")
        report = run_lab(model, images, templates, descriptions, use, WEIGHTINGS[weighting_name],
                         labels=parse_labels(label_text,
                                             limits).labels, template=int(row or 1) - 1, limits=limits,
                         compare_builtins=compare_builtins, zpe_select=ZPE_SELECTS[zpe_select_name],
                         mad_threshold=MAD_THRESHOLD if mad_threshold is None else float(mad_threshold),
                         switches=switches, max_encodes=ctx.settings.max_view_encodes, view_cache=ctx.views,
                         image_limits=ctx.settings.limits, progress=progress_reporter(progress, "images"))
    except ValueError as exc:  # NoModel, PromptError, PathRefused, IndexMismatchError ...
        return LabView(message(str(exc), "error"))
    result, rule = report.result, default_none_rule(model.scoring, len(report.class_names))
    flags = flags_of(report, rule, model.scoring.kind)
    min_cosine = rule.min_cosine if min_cosine is None else min_cosine
    min_probability = rule.min_probability if min_probability is None else min_probability
    return LabView(
        show.summary(report), "<h4>Per prompt</h4>" + show.per_template(report),
        "<h4>Prompt sets compared</h4>" +
        show.comparison(report.comparison, report.compare_evidence) if report.comparison else "",
        "<h4>Per class</h4>" + show.per_class(result) if result is not None else "",
        plots.confusion_heatmap(result.class_names, result.confusion) if result is not None else None,
        none_view(flags, min_cosine, min_probability), flags, report)


def flags_of(report: LabReport, rule: NoneRule, probability: str) -> LabFlags:
    """What the page keeps of a run: per image its names, classes and best scores; the model's default
    "none of these" `rule` and `probability` kind (its own scale); the calibration data when labelled."""
    result = report.result
    labelled = result is not None and result.cosines is not None and result.scoring is not None
    calibration = CalibrationData(result.cosines, result.true_idx, result.scoring) if labelled else None
    return LabFlags(names=report.images.names, predicted=report.predicted, true=report.true,
                    max_cosine=report.max_cosine, max_probability=report.max_probability, rule=rule,
                    probability=probability, calibration=calibration, cosine=cosine_name(report.weighting))


def none_view(flags: LabFlags | None, min_cosine: float, min_probability: float) -> str:
    return "<h4>None of these</h4>" + show.none_table(flags, min_cosine, min_probability) if flags else ""


# ---- the page ---------------------------------------------------------------------------------------
@dataclass
class PromptLabHandles:
    """The page's components, by name, for the wiring (and for the calibration view, which reads
    `flags` and is drawn under the results)."""
    # the prompt set and its editing
    builtin: gr.Dropdown
    load_builtin: gr.Button
    table: gr.Dataframe
    new: gr.Textbox
    add: gr.Button
    row_no: gr.Number
    up: gr.Button
    down: gr.Button
    remove: gr.Button
    load_file: gr.UploadButton
    save_txt: gr.DownloadButton
    save_json: gr.DownloadButton
    set_status: gr.HTML
    example: gr.Dropdown
    desc_file: gr.File
    desc_text: gr.Textbox
    use: gr.Radio
    # the images and the run's settings
    folder: gr.Textbox | gr.State   # hosted: no folder on the server may be typed ("")
    uploads: gr.File
    labels: gr.Textbox
    examples_box: gr.Column
    weighting: gr.Radio
    zpe_select: gr.Dropdown
    mad_threshold: gr.Number
    single_row: gr.Number
    compare_on: gr.Checkbox
    min_cos: gr.Slider
    min_prob: gr.Slider
    none_auto: gr.Checkbox
    switches: SwitchControls         # the test-time switches (views, combine, tda)
    run: gr.Button
    # the results
    summary: gr.HTML
    templates_html: gr.HTML
    compare_html: gr.HTML
    class_html: gr.HTML
    confusion: gr.Plot
    none_html: gr.HTML
    flags: gr.State                  # the last run's LabFlags (None before a run, or after a failed one)


def build(ctx: AppContext) -> PromptLabHandles:
    gr.Markdown(
        "Edit the prompts that turn class names into text, then see on your own images which "
        "prompts help, which hurt, and how the ensembling choice changes accuracy.", elem_id="pl-intro")
    first_set = next(iter(TEMPLATE_CHOICES))
    default = builtin_template_set(TEMPLATE_CHOICES[first_set])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gr.Markdown("### Prompt set")
            with gr.Row():
                builtin = gr.Dropdown(list(TEMPLATE_CHOICES), value=first_set, scale=3, label="Built-in set",
                                      elem_id="pl-builtin")
                load_builtin = gr.Button("Load built-in set", scale=1, elem_id="pl-load-builtin")
            table = gr.Dataframe(
                frame(default), headers=["template"], datatype="str", column_count=1, interactive=True,
                wrap=True, show_row_numbers=True, max_height=280, elem_id="pl-templates",
                label="Templates: {} is replaced by the class name (click a cell to edit it)")
            with gr.Row():
                new = gr.Textbox(label="New template", placeholder="a drawing of a {}.", scale=3,
                                 elem_id="pl-new-template")
                add = gr.Button("Add row", scale=1, elem_id="pl-add")
            with gr.Row():
                row_no = gr.Number(label="Row", value=1, precision=0, minimum=1, scale=1, min_width=70,
                                   elem_id="pl-row")
                up = gr.Button("Move up", scale=1, min_width=90, elem_id="pl-up")
                down = gr.Button("Move down", scale=1, min_width=90, elem_id="pl-down")
                remove = gr.Button("Remove", scale=1, min_width=90, variant="stop", elem_id="pl-remove")
            with gr.Row():
                load_file = gr.UploadButton("Load .txt / .json", file_types=[".txt", ".json"], size="md",
                                            elem_id="pl-load-file")
                # Hosted, the files are the visitor's (made at page load in their workspace, see
                # _wire_editing), so /config names no server file.
                txt_path, json_path = (None, None) if ctx.settings.hosted else save_files(default)
                save_txt = gr.DownloadButton("Save as .txt", value=txt_path, size="md", elem_id="pl-save-txt")
                save_json = gr.DownloadButton("Save as .json", value=json_path, size="md",
                                              elem_id="pl-save-json")
            set_status = gr.HTML(message(f"{len(default)} template(s)."), elem_id="pl-set-status")
            with gr.Accordion("Class descriptions (CuPL style)", open=False):
                example = gr.Dropdown(["(none)"] + list(EXAMPLES), value="(none)",
                                      label="Example descriptions", elem_id="pl-desc-example")
                desc_file = gr.File(label="Descriptions JSON file", file_types=[".json"], height=130,
                                    elem_id="pl-desc-file")
                desc_text = gr.Textbox(
                    label='…or type JSON only: {"class": ["sentence", …]} (files go in the '
                    'upload above)', lines=5, max_lines=12, elem_id="pl-desc-text")
            use = gr.Radio(
                list(USES), value="Templates", label="Build each class's prompts from", elem_id="pl-use",
                info="Both: the templates plus one descriptions prompt weighing as much as all templates "
                "together. Pooled (CuPL+e): one list of every template prompt and every sentence, "
                "each weighing the same. WaffleCLIP (Roth et al., ICCV 2023): random word and character "
                "descriptors, one pooled prompt per class; no templates nor descriptions used.")
        with gr.Column(scale=1):
            gr.Markdown("### Images")
            if ctx.settings.hosted:
                folder = gr.State("")
            else:
                folder = gr.Textbox(
                    label="Folder on this machine", elem_id="pl-folder", placeholder="/path/to/folder",
                    info="One sub-folder per class (labelled), or just images (unlabelled). "
                    "Or upload below instead.")
            uploads = gr.File(label="Upload a zip of class folders (labelled), or images (unlabelled)",
                              file_count="multiple", file_types=ZIP_TYPES, height=130, elem_id="pl-upload")
            labels = gr.Textbox(label="Class names (for unlabelled images; a labelled folder's sub-folders "
                                      "name its classes)", lines=3, elem_id="pl-labels",
                                placeholder="one per line, or comma-separated")
            examples_box = gr.Column(elem_id="pl-examples-box")
            weighting = gr.Radio(list(WEIGHTINGS), value="Equal average", label="Ensembling",
                                 elem_id="pl-weighting")
            with gr.Row():
                zpe_select = gr.Dropdown(list(ZPE_SELECTS), value="All prompts", label="ZPE weights over",
                                         scale=2, elem_id="pl-zpe-select")
                mad_threshold = gr.Number(
                    MAD_THRESHOLD, label="MAD threshold", minimum=0, step=0.1, scale=1,
                    elem_id="pl-mad-threshold", visible=False,  # shown with MAD selection (_wire_options)
                    info="keep prompts scoring more than this many MADs above the median")
            single_row = gr.Number(label="Row used by “One chosen template” (descriptions are the last row)",
                                   value=1, precision=0, minimum=1, elem_id="pl-single-row", visible=False)
            compare_on = gr.Checkbox(True, label="Compare with the built-in sets (equal average and ZPE)",
                                     elem_id="pl-compare-on")
            with gr.Row():
                min_cos = gr.Slider(-1, 1, value=0.2, step=0.01, label="“None of these” below max cosine",
                                    elem_id="pl-min-cos")
                min_prob = gr.Slider(0, 1, value=0.5, step=0.01, label="…or below max probability",
                                     elem_id="pl-min-prob")
            none_auto = gr.Checkbox(
                True, label="“None of these” thresholds: the model's defaults, set at each run "
                "(softmax or sigmoid scale)", elem_id="pl-none-auto")
            switches = switch_controls("pl", "in the order the images are listed")
            run = gr.Button("Evaluate prompts", variant="primary", elem_id="pl-run")

    summary = gr.HTML(elem_id="pl-summary")
    templates_html = gr.HTML(elem_id="pl-per-template")  # the widest table: the page's whole width
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            compare_html = gr.HTML(elem_id="pl-compare")
        with gr.Column(scale=2):
            class_html = gr.HTML(elem_id="pl-per-class")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            # the figure has its own title: a label badge would be drawn over it
            confusion = gr.Plot(label="Confusion matrix", show_label=False, visible=False,
                                elem_id="pl-confusion")
        with gr.Column(scale=2):  # six columns, class names among them: the wider side
            none_html = gr.HTML(elem_id="pl-none")
    flags = gr.State(None)
    ui = PromptLabHandles(
        builtin=builtin, load_builtin=load_builtin, table=table, new=new, add=add, row_no=row_no, up=up,
        down=down, remove=remove, load_file=load_file, save_txt=save_txt, save_json=save_json,
        set_status=set_status, example=example, desc_file=desc_file, desc_text=desc_text, use=use,
        folder=folder, uploads=uploads, labels=labels, examples_box=examples_box, weighting=weighting,
        zpe_select=zpe_select, mad_threshold=mad_threshold, single_row=single_row, compare_on=compare_on,
        min_cos=min_cos, min_prob=min_prob, none_auto=none_auto, switches=switches, run=run, summary=summary,
        templates_html=templates_html, compare_html=compare_html, class_html=class_html,
        confusion=confusion, none_html=none_html, flags=flags)
    _wire_editing(ctx, ui, _wire_run(ctx, ui))
    _wire_none_defaults(ui)
    _wire_options(ui)
    return ui  # the calibration view (ui/calibration_view.py) is wired onto it by ui/__init__.py


def _wire_options(ui: PromptLabHandles) -> None:
    """Each option's own setting shows only while the option is chosen: the MAD threshold with MAD
    selection, the row number with "One chosen template"."""
    mad = next(name for name, key in ZPE_SELECTS.items() if key == "mad")
    single = next(name for name, key in WEIGHTINGS.items() if key == "single")
    ui.zpe_select.change(lambda choice: gr.update(visible=choice == mad), ui.zpe_select, ui.mad_threshold,
                         show_progress="hidden")
    ui.weighting.change(lambda choice: gr.update(visible=choice == single), ui.weighting, ui.single_row,
                        show_progress="hidden")


def _wire_none_defaults(ui: PromptLabHandles) -> None:
    """After each run, with the box ticked, the sliders move to the model's own default thresholds
    (the run's `flags` carry them) and the table is drawn with them."""
    def on_flags(flags: LabFlags | None, auto):
        if not flags or not auto:
            return gr.update(), gr.update(), gr.update()
        rule = flags.rule
        return rule.min_cosine, rule.min_probability, none_view(flags, rule.min_cosine, rule.min_probability)

    ui.flags.change(on_flags, [ui.flags, ui.none_auto], [ui.min_cos, ui.min_prob, ui.none_html],
                    show_progress="hidden")


def lab_outputs(view: LabView, chosen: tuple, before: KeptImages | None) -> tuple:
    """The Prompt lab's outputs for `view`, a run on the images `chosen` names: summary, per prompt,
    compared sets, per class, confusion, none of these, flags, kept images. `before`: for a live edit,
    the images it re-scored (KeptImages); None for a run of the button. A live edit that fails shows why
    above the last results, which stay; one that moves no prediction leaves the confusion matrix as it is."""
    if view.report is None:
        if before is not None:
            return (view.summary, *(gr.skip(),) * 7)
        return (view.summary, "", "", "", gr.update(value=None, visible=False), "", None, None)
    report = view.report
    shown = (report.class_names, report.predicted, report.true)
    confusion = gr.update(value=view.confusion, visible=view.confusion is not None)
    if before is not None and unchanged(before.shown, shown):
        confusion = gr.skip()
    return (view.summary, view.per_template, view.comparison, view.per_class, confusion, view.none_of_these,
            view.flags, KeptImages(chosen, report.images, shown))


def _wire_run(ctx: AppContext, ui: PromptLabHandles):
    """The button, its one-click example and the live edits (all one handler); returns what chains a
    live re-scoring onto another event (the template table's edit buttons)."""
    def on_run(table, folder, uploads, labels, desc_text, desc_file, use, weighting, single_row, compare_on,
               min_cos, min_prob, zpe_select, mad_threshold, views, combine, tda, request: gr.Request,
               progress=gr.Progress(), kept=FRESH):
        # kept: FRESH from the button and the example (embed the images); a live edit's KeptImages
        chosen = chosen_images(folder, uploads)
        before = None if isinstance(kept, str) else kept
        if before is not None and before.chosen != chosen or before is None and kept != FRESH:
            return (gr.skip(),) * 8  # no run on these images yet: the button embeds them
        view = evaluate_prompts(session_of(ctx, request), table, folder, uploads, labels, desc_text,
                                desc_file, use, weighting, single_row, compare_on, min_cos, min_prob,
                                progress=progress, zpe_select_name=zpe_select, mad_threshold=mad_threshold,
                                images=before.images if before is not None else None, views=views,
                                combine=combine, tda=tda)
        return lab_outputs(view, chosen, before)

    kept = gr.State(None)  # the last run's KeptImages
    inputs = [ui.table, ui.folder, ui.uploads, ui.labels, ui.desc_text, ui.desc_file, ui.use, ui.weighting,
              ui.single_row, ui.compare_on, ui.min_cos, ui.min_prob, ui.zpe_select, ui.mad_threshold,
              *ui.switches.inputs()]
    outputs = [ui.summary, ui.templates_html, ui.compare_html, ui.class_html, ui.confusion, ui.none_html,
               ui.flags, kept]
    ui.run.click(on_run, inputs, outputs, concurrency_limit=2, api_name="evaluate_prompts")
    seven = [[t]
             for t in builtin_template_set("simple")]  # which of OpenAI's 7 templates do the photos favour?
    with ui.examples_box:
        offer_examples([{ui.table: seven, ui.uploads: examples.paths(), ui.labels: examples.label_text(),
                         ui.weighting: "ZPE (weights from the images)"}],
                       ["8 photos · 8 labels · ZPE over 7 templates"], inputs, on_run, outputs,
                       "pl-examples")
    # Live (issue 29), text and options only: the descriptions' JSON stays on the button (half-typed
    # JSON is an error at every key), and so do new images (they must be read and encoded).
    live([ui.table, ui.labels, ui.use, ui.weighting, ui.zpe_select, ui.mad_threshold, ui.single_row,
          ui.compare_on, *ui.switches.edits()], on_run, [*inputs, kept], outputs, concurrency_limit=2)
    for slider in (ui.min_cos, ui.min_prob):
        # change, not release: a value typed in the number box applies on Enter, as the search threshold does
        slider.change(none_view, [ui.flags, ui.min_cos, ui.min_prob], ui.none_html, show_progress="hidden")
    return lambda event: event.success(on_run, [*inputs, kept], outputs, concurrency_limit=2,
                                       show_progress=LIVE["show_progress"])


def _wire_editing(ctx: AppContext, ui: PromptLabHandles, relive) -> None:
    """Events that edit the template table; each re-checks the set and refreshes the downloads, then
    (`relive`) re-scores the last run's images with the new set (live, issue 29)."""
    def on_table(current, request: gr.Request = None):
        rows = rows_of(current)
        try:
            check_templates(rows, limits=gate.TextLimits.of(ctx.settings))
        except ValueError as exc:
            return gr.update(), gr.update(), message(str(exc), "error")
        txt, js = save_files(rows, session_of(ctx, request))
        return txt, js, message(f"{len(rows)} template(s).")

    def edit(change):
        def handler(current, *args):
            try:
                return frame(change(rows_of(current), *args)), ""
            except (ValueError, OSError) as exc:
                return gr.update(), message(str(exc), "error")
        return handler

    def add_row(current, text):
        try:
            return frame(added(rows_of(current), text, gate.TextLimits.of(ctx.settings))), "", ""
        except ValueError as exc:
            return gr.update(), message(str(exc), "error"), gr.update()

    table, row_no, status = ui.table, ui.row_no, ui.set_status
    table.change(on_table, table, [ui.save_txt, ui.save_json, status])
    if ctx.settings.hosted:
        gr.context.Context.root_block.load(on_table, table, [ui.save_txt, ui.save_json, status])
    relive(ui.load_builtin.click(edit(lambda rows, choice: builtin_template_set(TEMPLATE_CHOICES[choice])),
                                 [table, ui.builtin], [table, status]))
    relive(ui.add.click(add_row, [table, ui.new], [table, status, ui.new]))
    relive(ui.new.submit(add_row, [table, ui.new], [table, status, ui.new]))
    up = ui.up.click(edit(lambda rows, n: moved(rows, n, -1)), [table, row_no], [table, status])
    up.success(lambda n: max(1, int(n or 1) - 1), row_no, row_no)
    down = ui.down.click(edit(lambda rows, n: moved(rows, n, +1)), [table, row_no], [table, status])
    down.success(lambda n: int(n or 1) + 1, row_no, row_no)
    relive(up)
    relive(down)
    relive(ui.remove.click(edit(lambda rows, n: [r for i, r in enumerate(rows, 1) if i != int(n or 0)]),
                           [table, row_no], [table, status]))
    relive(ui.load_file.upload(edit(lambda rows, f: read_template_file(f, gate.TextLimits.of(ctx.settings))),
                               [table, ui.load_file], [table, status]))
    ui.example.change(lambda name: EXAMPLES[name].read_text(encoding="utf-8") if name in EXAMPLES else "",
                      ui.example, ui.desc_text)
