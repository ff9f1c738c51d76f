"""Zero-shot classification tab: drop images, type labels, see ranked probabilities.

`classify` is the handler (plain inputs in, a ClassifyView out); `build` lays out and wires.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from explorer.app import examples, plots
from explorer.app.context import AppContext
from explorer.inputs import gate
from explorer.inputs.sources import display_names
from explorer.science import classifier_file
from explorer.science.prompts import builtin_template_set, parse_labels, parse_templates
from explorer.science.test_time import after_meaning
from explorer.science.zeroshot import ClassifyReport, check_prompts, classify_files

from .common import (
    COMBINES,
    CUSTOM,
    IMAGE_TYPES,
    TEMPLATE_CHOICES,
    failures_html,
    from_page,
    live,
    message,
    offer_examples,
    progress_reporter,
    session_of,
    switch_controls,
    switch_settings,
    switches_html,
    unchanged,
)

ZERO_VOTE = next(iter(COMBINES))  # the switches' default way to combine views (off until views > 1)


@dataclass
class ClassifyView:
    summary: str                          # HTML: the winners table, notes, skipped files, or the problem
    gallery: list | None = None           # (image path, caption) pairs; None hides the gallery
    bars: Any = None                      # plotly figure
    heatmap: Any = None                   # plotly figure; None hides it (one image)
    report: ClassifyReport | None = None  # the core result the page was drawn from


def templates_for(choice: str, custom_text: str,
                  limits: gate.TextLimits = gate.DEFAULT_TEXT_LIMITS) -> list[str]:
    """The templates a template choice means (PromptError for a bad custom list; a built-in set's
    name only, never a path)."""
    return parse_templates(custom_text, limits) if choice == CUSTOM else builtin_template_set(
        TEMPLATE_CHOICES[choice])


def taught_classifier(model, files, limits: gate.TextLimits = gate.DEFAULT_TEXT_LIMITS) -> tuple | None:
    """(classifier, summary) from the uploaded classifier files (the Teach tab's zip, or its .json +
    .safetensors); None when none. ClassifierFileError (a ValueError) when unusable or another
    model's."""
    files = [f for f in (files or []) if f]
    if not files:
        return None
    classifier, meta = classifier_file.load_upload(files, model.identity.as_dict(), model.identifier, limits)
    return classifier, classifier_file.summary(meta, Path(files[0]).name)


def classify(ctx: AppContext, paths, label_text: str, choice: str, custom_text: str, top_k: int,
             progress=None, classifier_files=None, views=0, combine: str = ZERO_VOTE,
             tda: bool = False) -> ClassifyView:
    """Classify the dropped images against the typed labels, or, when classifier files are given,
    by that taught classifier (its classes; the labels box is not used). `views`, `combine`, `tda`: the
    test-time switches (common.switch_settings; off by default): when on, the results are the switched
    ones and the page says what each switch did and cost."""
    try:
        model = ctx.model()
        if not paths:
            return ClassifyView(message("Drop one or more images first."))
        limits = gate.TextLimits.of(ctx.settings)  # this request's text limits (hosted: stricter)
        switches = switch_settings(views, combine, tda)
        taught = taught_classifier(model, classifier_files, limits)
        parsed = parse_labels("" if taught else label_text, limits)
        if not taught and len(parsed.labels) < 2:
            return ClassifyView(message("Type at least two different labels." + "".join(
                f" ({note})" for note in parsed.notes)))
        templates = [] if taught else templates_for(choice, custom_text, limits)
        check_prompts(parsed.labels, templates, limits)
        report = classify_files(
            model, list(paths), parsed.labels, templates, cache=ctx.embeddings, limits=ctx.settings.limits,
            progress=progress_reporter(progress, "images encoded"),
            names=display_names(list(paths), folders=False),  # 0.png, 0.png (2): rows never merge
            taught=taught, text_limits=limits, switches=switches, max_encodes=ctx.settings.max_view_encodes,
            view_cache=ctx.views)
    except ValueError as exc:  # NoModel, PromptError, ClassifierFileError, gate.Refused (max_view_encodes)
        return ClassifyView(message(str(exc), "error"))
    return _view(report, parsed.notes, int(top_k))


def _view(report: ClassifyReport, notes: list[str], top_k: int) -> ClassifyView:
    """The page drawn from a report: the table, the gallery, the bars and (several images) the heatmap."""
    if report.predictions is None:
        return ClassifyView(_summary(report, [], notes), report=report)
    ranked = [report.predictions.ranked(i, top_k) for i in range(len(report.names))]
    heat = None
    if len(report.names) > 1:
        heat = plots.similarity_heatmap(report.names, report.predictions.labels, report.predictions.cosines,
                                        report.predictions.probabilities, "probability", column="label",
                                        title="Probability per image and label",
                                        subtitle=_rule_words(report), rule=report.scoring.kind)
    return ClassifyView(_summary(report, ranked, notes),
                        [(path, f"{r[0][0]} ({r[0][1]:.0%})") for path, r in zip(report.paths, ranked)],
                        plots.probability_bars(report.names, ranked, rule=_bars_rule(report)), heat, report)


def _bars_rule(report: ClassifyReport) -> str:
    """What the bars' probabilities are: the model's rule, or what the switches made of them."""
    return after_meaning(report.switches.settings) if report.switches is not None else report.scoring.kind


def _rule_words(report: ClassifyReport) -> str:
    if report.taught:
        return "softmax of the taught classifier's logits"
    if report.switches is not None:
        return f"after the test-time switches: {report.switches.settings.describe()}"
    return plots.PROBABILITY_RULES[report.scoring.kind].format("label")


def _rule_html(report: ClassifyReport) -> str:
    if report.taught:
        about = report.taught
        return (f'<p class="explorer-muted" id="zs-rule">Classes and probabilities from the taught '
                f'{html.escape(str(about["method"]))} classifier in {html.escape(about["file"])} '
                f'({about["classes"]} classes; the labels box is not used): a softmax of its logits. '
                "The cosine is each image's cosine to the class's zero-shot text embedding.</p>")
    if report.switches is not None:  # the probabilities shown are the switched ones
        return (f'<p class="explorer-muted" id="zs-rule">{len(report.templates)} template(s) per label. '
                f"After the test-time switches (below), the probabilities are "
                f"{html.escape(after_meaning(report.switches.settings))}; the cosine is each image's "
                "(views' mean) feature's cosine to the label's text embedding.</p>")
    return (f'<p class="explorer-muted" id="zs-rule">{len(report.templates)} template(s) per label. '
            f'{html.escape(report.scoring.explain())}'
            + (" Check the cosine: it says how well the best label actually fits.</p>"
               if report.scoring.sums_to_one else "</p>"))


def _summary(report: ClassifyReport, ranked, notes) -> str:
    """An HTML table of each image's winning label, plus what was skipped and why."""
    rows = "".join(
        f'<tr><td class="zs-name">{html.escape(name)}</td><td class="zs-top">{html.escape(r[0][0])}</td>'
        f"<td>{r[0][1]:.1%}</td><td>{r[0][2]:.3f}</td></tr>"
        for name, r in zip(report.names, ranked))
    parts = []
    if rows:
        parts.append('<table class="explorer-table"><thead><tr><th>image</th><th>top label</th>'
                     f"<th>probability</th><th>cosine</th></tr></thead><tbody>{rows}</tbody></table>")
        parts.append(_rule_html(report))
    if rows and report.switches is not None:
        parts.append(switches_html(report.switches, report.names, "zs"))
    if notes:
        parts.append(f'<p class="explorer-note">Labels: {html.escape("; ".join(notes))}.</p>')
    if len(ranked) > plots.MAX_BAR_PANELS:
        cap = plots.cap_note(plots.MAX_BAR_PANELS, len(ranked), "images as bar charts",
                             "every image is in this table and the heatmap")
        parts.append(f'<p class="explorer-note zs-cap">Bar charts: {html.escape(cap)}.</p>')
    parts.append(failures_html(report.failures))
    return "".join(parts)


def _figures_update(view: ClassifyView, shown) -> tuple:
    """(gallery, bars, heatmap, shown) updates: the gallery and the heatmap are re-sent only when what
    they show changed (top-k changes only the bars; a label edit that leaves every top label and its
    rounded probability as it was leaves the gallery alone), so the browser neither receives nor
    redraws them. `shown`: the key of what is on screen, kept in the page's gr.State."""
    now = _shown_key(view)
    gallery = gr.skip() if unchanged(shown and shown[0], now and now[0]) else gr.update(
        value=view.gallery, visible=view.gallery is not None)
    heat = gr.skip() if unchanged(shown, now) else gr.update(value=view.heatmap,
                                                             visible=view.heatmap is not None)
    return gallery, view.bars, heat, now


def _shown_key(view: ClassifyView) -> tuple | None:
    """What the gallery and the heatmap show: (the gallery's images and captions, the classes, the
    prompts and the rule); None when nothing was classified."""
    report = view.report
    if report is None or report.predictions is None or view.gallery is None:
        return None
    switched = repr(report.switches.settings) if report.switches is not None else None
    return (tuple(map(tuple, view.gallery)), tuple(report.predictions.labels), tuple(report.templates),
            report.scoring.kind, str(report.taught), switched)


def build(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Images: drag and drop one or many", file_count="multiple",
                            file_types=IMAGE_TYPES, elem_id="zs-images", height=180)
            labels = gr.Textbox(label="Labels", lines=4, elem_id="zs-labels",
                                placeholder="one per line, or comma-separated: cat, dog, a red bicycle")
            template_choice = gr.Radio(list(TEMPLATE_CHOICES) + [CUSTOM], value=next(iter(TEMPLATE_CHOICES)),
                                       label="Prompt templates", elem_id="zs-templates")
            custom = gr.Textbox(label="Custom templates, one per line ({} is replaced by the label)",
                                lines=5, visible=False, value="a photo of a {}.\na close-up photo of a {}.",
                                elem_id="zs-custom")
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k labels per image", elem_id="zs-topk")
            with gr.Accordion("Use a taught classifier", open=False, elem_id="zs-taught"):
                taught = gr.File(
                    label="The .zip from Teach by example's download, or the .json + .safetensors "
                    "that `clip-explorer fewshot --save` writes; its classes replace the labels",
                    file_count="multiple", file_types=[".zip", ".json",
                                                       ".safetensors"], height=110, elem_id="zs-classifier")
            switches = switch_controls("zs", "in the order dropped")
            run = gr.Button("Classify", variant="primary", elem_id="zs-run")
            examples_box = gr.Column(elem_id="zs-examples-box")
        with gr.Column(scale=3):
            summary = gr.HTML(elem_id="zs-results")
            # Cells of a fifth of the column even for one image (fit_columns would make it the column's
            # width, and taller than the page); as tall as its rows, up to gradio's 55% of the window.
            gallery = gr.Gallery(label="Images with their top label", columns=5, height="auto",
                                 fit_columns=False, visible=False, elem_id="zs-gallery", object_fit="contain")
            bars = gr.Plot(label="Top labels", elem_id="zs-bars")
            heatmap = gr.Plot(label="All images x labels", visible=False, elem_id="zs-heatmap")
    shown_state = gr.State(None)  # what the gallery and heatmap on screen were drawn from (_figures_update)

    template_choice.change(lambda c: gr.update(visible=c == CUSTOM), template_choice, custom)

    # The switches come last, after the request, so that a caller of the handler itself that sends the
    # inputs it took before (tests, ZeroGPU's wrapper) still fits; the API lists them after classifier_files.
    def on_run(paths, label_text, choice, custom_text, k, classifier_files, shown, request: gr.Request,
               views=0, combine=ZERO_VOTE, tda=False, event: gr.EventData = None, progress=gr.Progress()):
        view = classify(session_of(ctx, request), paths, label_text, choice, custom_text, k, progress,
                        classifier_files, views, combine, tda)
        return (view.summary, *_figures_update(view, shown if from_page(event) else None))

    inputs = [files, labels, template_choice, custom, top_k, taught, shown_state, *switches.inputs()]
    outputs = [summary, gallery, bars, heatmap, shown_state]
    # Typing labels, picking templates, editing custom ones, moving top-k or dropping images all run it.
    live([labels, template_choice, custom, top_k, *switches.edits(), files.upload, taught.upload, run.click,
          labels.submit],
         on_run, inputs, outputs, concurrency_limit=2, api_name="classify")
    with examples_box:
        offer_examples([{files: examples.paths(examples.A_FEW), labels: examples.label_text()},
                        {files: examples.paths(), labels: examples.label_text()}],
                       ["Cat, coffee, rocket · 8 labels", "All 8 photos · 8 labels"], inputs, on_run, outputs,
                       "zs-examples")
