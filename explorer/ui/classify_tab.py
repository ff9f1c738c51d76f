"""Zero-shot classification tab: drop images, type labels, see ranked probabilities."""
from __future__ import annotations

import html
import os

import gradio as gr

from .. import plots
from ..model import ModelSlot
from ..progress import RateText
from ..prompts import PromptError, load_template_set, parse_labels, parse_templates
from ..settings import Settings
from ..zeroshot import classify_files

TEMPLATE_CHOICES = {
    "Single: a photo of a {}.": "single",
    "7 templates (OpenAI subset)": "simple",
    "80 templates (OpenAI ImageNet)": "openai",
    "Custom (edit below)": "custom",
}
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"]


def build(settings: Settings, slot: ModelSlot) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Images: drag and drop one or many", file_count="multiple",
                            file_types=IMAGE_TYPES, elem_id="zs-images", height=180)
            labels = gr.Textbox(label="Labels", lines=4, elem_id="zs-labels",
                                placeholder="one per line, or comma-separated: cat, dog, a red bicycle")
            template_choice = gr.Radio(list(TEMPLATE_CHOICES), value=next(iter(TEMPLATE_CHOICES)),
                                       label="Prompt templates", elem_id="zs-templates")
            custom = gr.Textbox(label="Custom templates, one per line ({} is replaced by the label)",
                                lines=5, visible=False, value="a photo of a {}.\na close-up photo of a {}.",
                                elem_id="zs-custom")
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k labels per image")
            run = gr.Button("Classify", variant="primary", elem_id="zs-run")
        with gr.Column(scale=3):
            summary = gr.HTML(elem_id="zs-results")
            gallery = gr.Gallery(label="Images with their top label", columns=6, height=240,
                                 visible=False, elem_id="zs-gallery", object_fit="contain")
            bars = gr.Plot(label="Top labels", elem_id="zs-bars")
            heatmap = gr.Plot(label="All images x labels", visible=False, elem_id="zs-heatmap")

    template_choice.change(lambda c: gr.update(visible=TEMPLATE_CHOICES[c] == "custom"), template_choice, custom)

    def on_run(paths, label_text, choice, custom_text, k, progress=gr.Progress()):
        hidden = gr.update(visible=False)
        model = slot.model
        if model is None:
            return _message(f"No model is loaded. {slot.error or ''} Load one in the Model panel above."), \
                hidden, None, hidden
        if not paths:
            return _message("Drop one or more images first."), hidden, None, hidden
        parsed = parse_labels(label_text)
        if len(parsed.labels) < 2:
            return _message("Type at least two different labels."), hidden, None, hidden
        try:
            key = TEMPLATE_CHOICES[choice]
            templates = parse_templates(custom_text) if key == "custom" else load_template_set(key)
        except PromptError as exc:
            return _message(str(exc)), hidden, None, hidden
        progress(0, desc="Encoding images")
        rate = RateText("images encoded")
        report = classify_files(model, list(paths), parsed.labels, templates,
                                max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels,
                                progress=lambda done, total: progress(done / total, desc=rate(done, total)))
        names = [os.path.basename(p) for p in report.paths]
        failures = [(os.path.basename(f.path), f.reason) for f in report.failures]
        if report.predictions is None:
            return _summary([], [], failures, parsed.notes, len(templates)), hidden, None, hidden
        ranked = [report.predictions.ranked(i, int(k)) for i in range(len(names))]
        bar_figure = plots.probability_bars(names, ranked)
        many = len(names) > 1
        heat = plots.probability_heatmap(names, report.predictions.labels, report.predictions.probabilities,
                                         report.predictions.cosines) if many else None
        thumbnails = [(path, f"{r[0][0]} ({r[0][1]:.0%})") for path, r in zip(report.paths, ranked)]
        return (_summary(names, ranked, failures, parsed.notes, len(templates)),
                gr.update(value=thumbnails, visible=True), bar_figure, gr.update(value=heat, visible=many))

    inputs = [files, labels, template_choice, custom, top_k]
    outputs = [summary, gallery, bars, heatmap]
    run.click(on_run, inputs, outputs, concurrency_limit=2)
    labels.submit(on_run, inputs, outputs, concurrency_limit=2)


def _message(text: str) -> str:
    return f'<div class="explorer-note">{html.escape(text)}</div>'


def _summary(names, ranked, failures, notes, template_count) -> str:
    """An HTML table of each image's winning label, plus what was skipped and why."""
    rows = "".join(
        f'<tr><td class="zs-name">{html.escape(name)}</td><td class="zs-top">{html.escape(r[0][0])}</td>'
        f"<td>{r[0][1]:.1%}</td><td>{r[0][2]:.3f}</td></tr>"
        for name, r in zip(names, ranked))
    parts = []
    if rows:
        parts.append('<table class="explorer-table"><thead><tr><th>image</th><th>top label</th>'
                     f"<th>probability</th><th>cosine</th></tr></thead><tbody>{rows}</tbody></table>")
        parts.append(f'<p class="explorer-muted">{template_count} template(s) per label; probabilities are '
                     "a softmax over your labels with the model's learned temperature, so they always sum to 100% "
                     "even when no label fits — check the cosine.</p>")
    if notes:
        parts.append(f'<p class="explorer-note">Labels: {html.escape("; ".join(notes))}.</p>')
    for name, reason in failures:
        parts.append(f'<p class="explorer-error">Skipped {html.escape(name)}: {html.escape(reason)}</p>')
    return "".join(parts)
