"""Prompt lab tab: edit a prompt set, add class descriptions, pick an ensembling, and see what each
prompt does on a labelled folder (accuracy) or on plain images (ZPE weights, "none of these")."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from .. import plots
from ..descriptions import ASSETS as DESCRIPTION_EXAMPLES
from ..model import ModelSlot
from ..progress import RateText
from ..prompts import PromptError
from ..settings import Settings
from . import prompt_lab_data as data
from . import prompt_lab_html as show
from .classify_tab import IMAGE_TYPES

EXAMPLES = {p.name: p for p in sorted(DESCRIPTION_EXAMPLES.glob("*.json"))}


def _frame(rows: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"template": list(rows)})


def build(settings: Settings, slot: ModelSlot) -> None:
    gr.Markdown("Edit the prompts that turn class names into text, then see on your own images which "
                "prompts help, which hurt, and how the ensembling choice changes accuracy.", elem_id="pl-intro")
    default = data.builtin(next(iter(data.BUILTIN_SETS)))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gr.Markdown("### Prompt set")
            with gr.Row():
                builtin = gr.Dropdown(list(data.BUILTIN_SETS), value=next(iter(data.BUILTIN_SETS)), scale=3,
                                      label="Built-in set", elem_id="pl-builtin")
                load_builtin = gr.Button("Load built-in set", scale=1, elem_id="pl-load-builtin")
            table = gr.Dataframe(_frame(default), headers=["template"], datatype="str", column_count=1,
                                 interactive=True, wrap=True, show_row_numbers=True,
                                 max_height=280, elem_id="pl-templates",
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
                txt_path, json_path = data.save_files(default)
                save_txt = gr.DownloadButton("Save as .txt", value=txt_path, size="md", elem_id="pl-save-txt")
                save_json = gr.DownloadButton("Save as .json", value=json_path, size="md", elem_id="pl-save-json")
            set_status = gr.HTML(show.message(f"{len(default)} template(s)."), elem_id="pl-set-status")
            with gr.Accordion("Class descriptions (CuPL style)", open=False):
                example = gr.Dropdown(["(none)"] + list(EXAMPLES), value="(none)", label="Example descriptions",
                                      elem_id="pl-desc-example")
                desc_file = gr.File(label="Descriptions JSON file", file_types=[".json"], height=90,
                                    elem_id="pl-desc-file")
                desc_text = gr.Textbox(label='…or type JSON: {"class": ["sentence", …]}', lines=5,
                                       max_lines=12, elem_id="pl-desc-text")
            use = gr.Radio(list(data.USES), value="Templates", label="Build each class's prompts from",
                           elem_id="pl-use")
        with gr.Column(scale=1):
            gr.Markdown("### Images")
            if settings.hosted:
                folder = gr.State("")
            else:
                folder = gr.Textbox(label="Folder on this machine", elem_id="pl-folder",
                                    placeholder="/path/to/folder",
                                    info="One sub-folder per class (labelled), or just images (unlabelled). "
                                         "Or upload below instead.")
            uploads = gr.File(label="Upload a zip of class folders (labelled), or images (unlabelled)",
                              file_count="multiple", file_types=[".zip"] + IMAGE_TYPES, height=130,
                              elem_id="pl-upload")
            labels = gr.Textbox(label="Class names (for unlabelled images; a labelled folder's sub-folders "
                                      "name its classes)", lines=3, elem_id="pl-labels",
                                placeholder="one per line, or comma-separated")
            weighting = gr.Radio(list(data.WEIGHTINGS), value="Equal average", label="Ensembling",
                                 elem_id="pl-weighting")
            single_row = gr.Number(label="Row used by “One chosen template” (descriptions are the last row)",
                                   value=1, precision=0, minimum=1, elem_id="pl-single-row")
            compare_on = gr.Checkbox(True, label="Compare with the built-in sets (equal average and ZPE)",
                                     elem_id="pl-compare-on")
            with gr.Row():
                min_cos = gr.Slider(-1, 1, value=0.2, step=0.01, label="“None of these” below max cosine",
                                    elem_id="pl-min-cos")
                min_prob = gr.Slider(0, 1, value=0.5, step=0.01, label="…or below max probability",
                                     elem_id="pl-min-prob")
            run = gr.Button("Evaluate prompts", variant="primary", elem_id="pl-run")

    summary = gr.HTML(elem_id="pl-summary")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            templates_html = gr.HTML(elem_id="pl-per-template")
        with gr.Column(scale=2):
            compare_html = gr.HTML(elem_id="pl-compare")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            class_html = gr.HTML(elem_id="pl-per-class")
        with gr.Column(scale=3):
            confusion = gr.Plot(label="Confusion matrix", visible=False, elem_id="pl-confusion")
    none_html = gr.HTML(elem_id="pl-none")
    flags = gr.State(None)

    # ---- editing the set --------------------------------------------------------------------------
    def on_table(frame):
        rows = data.rows_of(frame)
        try:
            data.checked(rows)
        except PromptError as exc:
            return gr.update(), gr.update(), show.message(str(exc), "error")
        txt, js = data.save_files(rows)
        return txt, js, show.message(f"{len(rows)} template(s).")

    def edit(change):
        def handler(frame, *args):
            try:
                return _frame(change(data.rows_of(frame), *args)), ""
            except (PromptError, OSError) as exc:
                return gr.update(), show.message(str(exc), "error")
        return handler

    def add_row(frame, text):
        text = " ".join((text or "").split())
        try:
            data.checked([text])
        except PromptError as exc:
            return gr.update(), show.message(str(exc), "error"), gr.update()
        return _frame(data.rows_of(frame) + [text]), "", ""

    table.change(on_table, table, [save_txt, save_json, set_status])
    load_builtin.click(edit(lambda rows, choice: data.builtin(choice)), [table, builtin], [table, set_status])
    add.click(add_row, [table, new], [table, set_status, new])
    new.submit(add_row, [table, new], [table, set_status, new])
    up.click(edit(lambda rows, n: data.moved(rows, n, -1)), [table, row_no], [table, set_status]).success(
        lambda n: max(1, int(n or 1) - 1), row_no, row_no)
    down.click(edit(lambda rows, n: data.moved(rows, n, +1)), [table, row_no], [table, set_status]).success(
        lambda n: int(n or 1) + 1, row_no, row_no)
    remove.click(edit(lambda rows, n: [r for i, r in enumerate(rows, 1) if i != int(n or 0)]),
                 [table, row_no], [table, set_status])
    load_file.upload(edit(lambda rows, f: data.templates_from_file(f)), [table, load_file], [table, set_status])
    example.change(lambda name: EXAMPLES[name].read_text(encoding="utf-8") if name in EXAMPLES else "",
                   example, desc_text)

    # ---- a run ------------------------------------------------------------------------------------
    def on_run(frame, folder_text, files, label_text, desc_json, desc_path, use_name, weighting_name, row,
               compare_builtins, cos_threshold, prob_threshold, progress=gr.Progress()):
        empty = ("", "", "", gr.update(visible=False), "", None)
        model = slot.model
        if model is None:
            return (show.message(f"No model is loaded. {slot.error or ''} Load one in the Model panel above.",
                                 "error"),) + empty
        use_key = data.USES[use_name]
        try:
            templates = data.checked(data.rows_of(frame)) if use_key != "descriptions" else None
            descriptions = data.descriptions_from(desc_json, desc_path)
            if not files and not (folder_text or "").strip():
                raise ValueError("give the images: " + ("upload a zip or images" if settings.hosted
                                                        else "type a folder path, or upload a zip or images"))
            progress(0, desc="Embedding images")
            rate = RateText("images embedded")
            images = data.image_set(model, settings, folder_text, files,
                                    progress=lambda done, total: progress(done / max(total, 1),
                                                                          desc=rate(done, total)))
            progress(1, desc="Scoring the prompts")
            report = data.run_lab(model, images, label_text, templates, descriptions, use_key,
                                  data.WEIGHTINGS[weighting_name], row, compare_builtins)
        except ValueError as exc:  # PromptError and PathRefused are ValueErrors with a plain message
            return (show.message(str(exc), "error"),) + empty
        state = dict(names=report.image_names, predicted=report.predicted, true=report.true,
                     max_cosine=report.max_cosine, max_probability=report.max_probability)
        result = report.result
        heading = "<h4>{}</h4>".format
        return (show.summary(report),
                heading("Per prompt") + show.per_template(report),
                heading("Prompt sets compared") + show.comparison(report.comparison)
                if report.comparison else "",
                heading("Per class") + show.per_class(result) if result is not None else "",
                gr.update(value=plots.confusion_heatmap(result.class_names, result.confusion), visible=True)
                if result is not None else gr.update(visible=False),
                heading("None of these") + show.none_table(state, cos_threshold, prob_threshold),
                state)

    inputs = [table, folder, uploads, labels, desc_text, desc_file, use, weighting, single_row, compare_on,
              min_cos, min_prob]
    outputs = [summary, templates_html, compare_html, class_html, confusion, none_html, flags]
    run.click(on_run, inputs, outputs, concurrency_limit=2)

    def on_threshold(state, cos_threshold, prob_threshold):
        return "<h4>None of these</h4>" + show.none_table(state, cos_threshold, prob_threshold) if state else ""

    for slider in (min_cos, min_prob):
        slider.release(on_threshold, [flags, min_cos, min_prob], none_html)
