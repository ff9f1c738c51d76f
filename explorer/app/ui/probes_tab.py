"""Probes tab: what a CLIP model can and cannot read in your images, five ways: counting (Paiss et al.
2023), attributes x objects (the compositional grid), binding (the bag-of-words failure: "a red circle and
a blue square" against its swap), synonym swap (Parashar et al. 2024, REAL-Prompt: which name of a class
works best) and label geometry (Loki, Fréchet mean prediction over the label space).

`run_probe` is the handler (plain inputs in, a ProbeView out): it reads the kind's own text first (a bad
or over-limit list is refused before any image is read), embeds the chosen images through the app context
(the embedding cache re-used), and calls the probe's core function in explorer/science; probes_html draws
the summary (method, parameters, source, chance levels, evidence) and the tables, plots.py the figure.
`build` lays out and wires; the one endpoint `probe` takes every input (those of other kinds ignored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from explorer.app import plots
from explorer.app.context import AppContext
from explorer.inputs import gate
from explorer.science import binding as binding_core
from explorer.science import counting, loki, synonyms
from explorer.science.prompts import parse_labels

from . import probes_html as show
from .common import (
    TEMPLATE_CHOICES,
    ZIP_TYPES,
    message,
    notes_html,
    progress_reporter,
    session_of,
    template_set,
)

KINDS = {"Counting": "counting", "Attributes x objects": "grid", "Binding": "binding",
         "Synonym swap": "synonyms", "Label geometry (Loki)": "loki"}
FIRST_TEMPLATES = next(iter(TEMPLATE_CHOICES))


@dataclass
class ProbeInputs:
    """What a person typed or picked for the probes; each kind reads its own and ignores the rest."""
    object_name: str = ""      # counting: "dog", or "dog|dogs" (singular|plural)
    attributes: str = ""       # grid: one per line or comma-separated
    objects: str = ""          # grid
    binding: str = ""          # binding: "red circle and blue square" ("": from the class folders)
    classes: str = ""          # synonyms and Loki ("": the labelled folder's classes)
    synonyms: str = ""         # synonyms: "cat: kitty, feline" one class a line
    wordnet: bool = True       # synonyms: also WordNet's synonyms (the shipped list)
    extra: str = ""            # Loki: candidate labels outside the scored classes
    tree: str = ""             # Loki: "parent: child, child" one a line ("": distances between embeddings)
    templates: str = FIRST_TEMPLATES  # synonyms and Loki: a TEMPLATE_CHOICES key


@dataclass
class ProbeView:
    summary: str           # HTML: method, parameters, source, the numbers and what they do (not) show
    plot: Any = None       # plotly figure; None hides it
    details: str = ""      # HTML: the per-image or per-name table
    report: Any = None     # the core's report the page was drawn from (its as_dict() is the JSON)


def _labels(text: str, what: str, limits: gate.TextLimits) -> list[str]:
    parsed = parse_labels(gate.text(text, what, limits), limits)
    return parsed.labels


def _ask(kind: str, given: ProbeInputs, limits: gate.TextLimits) -> dict:
    """The kind's own arguments, read from the typed text (nothing encoded yet): ValueError says what
    is missing or refused."""
    if kind == "counting":
        name = gate.text(given.object_name, "Object to count", limits).strip()
        if not name:
            raise ValueError("Type the object to count: a noun such as dog (or dog|dogs: singular|plural).")
        gate.check_count("Object to count", len(name), limits.max_item_chars, "max_text_chars", "characters")
        return {"object_name": name}
    if kind == "grid":
        attributes = _labels(given.attributes, "Attributes", limits)
        objects = _labels(given.objects, "Objects", limits)
        if not attributes or not objects:
            raise ValueError("Type at least one attribute and one object (e.g. red, blue and circle).")
        gate.prompts(len(attributes) * len(objects), "Attribute x object prompts to encode", limits)
        return {"attributes": attributes, "objects": objects}
    if kind == "binding":
        text = gate.text(given.binding, "Binding", limits).strip()
        return {"binding": binding_core.parse_binding(text) if text else None}
    if kind == "synonyms":
        typed = synonyms.parse_typed_synonyms(given.synonyms, limits)
        return {"classes": _labels(given.classes, "Classes", limits) or None, "typed": typed,
                "templates": template_set(given.templates), "wordnet": bool(given.wordnet)}
    tree = gate.text(given.tree, "Tree", limits)
    return {"classes": _labels(given.classes, "Classes", limits),
            "extra": _labels(given.extra, "Extra candidates", limits),
            "templates": template_set(given.templates), "tree": tree if tree.strip() else None}


def _probe(kind: str, model, images, ask: dict, limits: gate.TextLimits):
    """The core's report of the probe `kind` on the embedded `images`."""
    if kind == "counting":
        return counting.counting_probe(model, images, ask["object_name"], limits=limits)
    if kind == "grid":
        return binding_core.attribute_grid(model, images, ask["attributes"], ask["objects"], limits=limits)
    if kind == "binding":
        return binding_core.binding_test(model, images, ask["binding"], limits=limits)
    if kind == "synonyms":
        return synonyms.synonym_swap(model, images, ask["classes"], ask["typed"], ask["templates"],
                                     wordnet=ask["wordnet"], limits=limits)
    return loki.loki_probe(model, images, ask["classes"], ask["extra"], ask["templates"], tree=ask["tree"],
                           limits=limits)


def run_probe(ctx: AppContext, kind_name: str, folder: str | None, uploads, given: ProbeInputs,
              progress=None) -> ProbeView:
    """One probe on the chosen images (uploads, or locally a typed folder)."""
    kind = KINDS.get(kind_name)
    if kind is None:
        return ProbeView(message(f"Choose a probe: {', '.join(KINDS)}.", "error"))
    try:
        model = ctx.model()
        limits = gate.TextLimits.of(ctx.settings)  # this request's text limits (hosted: stricter)
        ask = _ask(kind, given, limits)
        images = ctx.embed_choice(uploads=uploads, folder=folder,
                                  progress=progress_reporter(progress, "images embedded"))
        if not len(images):
            return ProbeView(message("No image could be read.", "error") + show.failures(images))
        report = _probe(kind, model, images, ask, limits)
    except ValueError as exc:  # NoModel, PromptError, PathRefused, gate.Refused ...
        return ProbeView(message(str(exc), "error"))
    return _view(kind, report, images, model.scoring.kind)


def _view(kind: str, report, images, rule: str) -> ProbeView:
    """The page's summary, figure and table of a probe's report."""
    summary = (show.SUMMARIES[kind](report) + notes_html(getattr(report, "notes", []))
               + show.images_line(images))
    details = show.DETAILS[kind](report)
    if kind == "counting":
        figure = plots.count_curves(list(report.counts), report.probabilities, report.true, report.names,
                                    rule)
    elif kind == "grid":
        figure = plots.attribute_heatmap(report.attributes, report.objects, report.probabilities,
                                         report.names, rule)
    elif kind == "binding":
        figure = plots.binding_bars(report.names, report.true_cosine, report.swapped_cosine, report.wins)
    elif kind == "synonyms":
        points, score = show.frequency_points(report)
        figure = plots.frequency_scatter(points, score) if points else None
    else:
        figure = plots.label_distance_heatmap(report.candidates, report.classes, report.distances,
                                              report.metric)
    return ProbeView(summary, figure, details, report)


def _visible(kind_name: str) -> list:
    """Which input groups a kind shows: counting, grid, binding, the shared classes box, synonyms,
    Loki's own, templates."""
    kind = KINDS.get(kind_name, "counting")
    shown = [kind == "counting", kind == "grid", kind == "binding", kind in ("synonyms", "loki"),
             kind == "synonyms", kind == "loki", kind in ("synonyms", "loki")]
    return [gr.update(visible=v) for v in shown]


def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Probe what the model reads in your images: counts, attributes bound to objects, which name of a "
        "class works best, and whether the label space's geometry corrects its mistakes. Each result says "
        "its method, its parameters and its source, and whether a difference is beyond chance.",
        elem_id="pr-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            kind = gr.Radio(list(KINDS), value="Counting", label="Probe", elem_id="pr-kind")
            if ctx.settings.hosted:
                folder = gr.State("")
            else:
                folder = gr.Textbox(label="Folder on this machine", elem_id="pr-folder",
                                    placeholder="/path/to/folder",
                                    info="Class sub-folders label the images (3/, 4/ for counting; "
                                    "red_circle_and_blue_square/ for binding). Or upload below instead.")
            uploads = gr.File(label="Upload images, or a zip of class folders (labelled)",
                              file_count="multiple", file_types=ZIP_TYPES, height=130, elem_id="pr-uploads")
            with gr.Column(visible=True) as counting_box:
                object_name = gr.Textbox("", label="Object to count", placeholder="dog, or dog|dogs",
                                         elem_id="pr-object",
                                         info="Prompts 'a photo of {n} {object}.' for n = 1..10, in words "
                                         "and in digits (singular|plural; default plural adds s).")
            with gr.Column(visible=False) as grid_box:
                attributes = gr.Textbox("", label="Attributes", placeholder="red, blue, green",
                                        elem_id="pr-attributes")
                objects = gr.Textbox("", label="Objects", placeholder="circle, square", elem_id="pr-objects")
            with gr.Column(visible=False) as binding_box:
                binding = gr.Textbox("", label="Binding", placeholder="red circle and blue square",
                                     elem_id="pr-binding",
                                     info="Empty: each image's class folder names its binding.")
            with gr.Column(visible=False) as classes_box:
                classes = gr.Textbox("", label="Classes (empty: the labelled folder's classes)", lines=2,
                                     placeholder="cat, dog, car", elem_id="pr-classes")
            with gr.Column(visible=False) as synonyms_box:
                synonyms_text = gr.Textbox("", label="Your candidate names, one class a line", lines=3,
                                           placeholder="cat: kitty, feline\ndog: puppy",
                                           elem_id="pr-synonyms")
                wordnet = gr.Checkbox(True, label="Also WordNet's synonyms (shipped list)",
                                      elem_id="pr-wordnet")
            with gr.Column(visible=False) as loki_box:
                extra = gr.Textbox("", label="Extra candidate labels (outside the classes)", lines=2,
                                   placeholder="purple circle, orange square", elem_id="pr-extra")
                tree = gr.Textbox("", label="Tree of the labels (optional; empty: distances between their "
                                  "text embeddings)", lines=3, placeholder="shape: circle, square\n"
                                  "circle: red circle, purple circle", elem_id="pr-tree")
            with gr.Column(visible=False) as templates_box:
                templates = gr.Radio(list(TEMPLATE_CHOICES), value=FIRST_TEMPLATES, label="Prompt templates",
                                     elem_id="pr-templates")
            run = gr.Button("Run the probe", variant="primary", elem_id="pr-run")
        with gr.Column(scale=3):
            summary = gr.HTML(elem_id="pr-summary")
            plot = gr.Plot(label="Probe", show_label=False, visible=False, elem_id="pr-plot")
            details = gr.HTML(elem_id="pr-details")

    kind.change(_visible, kind, [counting_box, grid_box, binding_box, classes_box, synonyms_box, loki_box,
                                 templates_box], show_progress="hidden")

    def on_run(kind, folder, uploads, object_name, attributes, objects, binding, classes, synonyms, wordnet,
               extra, tree, templates, request: gr.Request, progress=gr.Progress()):
        given = ProbeInputs(object_name, attributes, objects, binding, classes, synonyms, wordnet, extra,
                            tree, templates)
        view = run_probe(session_of(ctx, request), kind, folder, uploads, given, progress)
        return view.summary, gr.update(value=view.plot, visible=view.plot is not None), view.details

    inputs = [kind, folder, uploads, object_name, attributes, objects, binding, classes, synonyms_text,
              wordnet, extra, tree, templates]
    gr.on([run.click, object_name.submit, attributes.submit, objects.submit, binding.submit], on_run, inputs,
          [summary, plot, details], concurrency_limit=2, api_name="probe")
