"""What can be done with the images selected on the Map tab: export them, search by them in the Search
tab, make Teach classes of them, and compare two selections.

Handlers (plain inputs in, plain values out; app/selection.py underneath): `export_selection` (a file
path), `add_class` (the classes and their HTML), `teach_zip` (a zip of class folders for Teach),
`pick_side` (a selection kept as A or B), `compare` (a CompareView). Every selection that came from the
page is checked against its index there (names the index stores, bounded), the index is one this
session may use, and the class name is checked before it names a folder. `build` lays the actions out in
the Map tab's place for them and wires them onto the Search and Teach tabs' handles, which it is given
(tabs do not import each other): a search by the selection runs the Search tab's own handler and shows
the Search tab; Teach runs its own handler on the classes put in its upload box.
"""
from __future__ import annotations

import html
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from explorer.app import selection as picked
from explorer.app.context import AppContext
from explorer.app.selection import TaughtClass
from explorer.inputs import gate
from explorer.science.vocabulary import parse_vocabulary

from .common import message, progress_reporter, session_of

MAX_SHOWN = 24   # images shown each way of a comparison
WORDS_SHOWN = 10  # words shown each way


@dataclass
class Side:
    """A selection kept as A or B of a comparison: its index and names (checked when kept)."""
    index: str
    names: list[str]


@dataclass
class CompareView:
    summary: str
    towards_a: list = field(default_factory=list)   # (thumbnail file, caption)
    towards_b: list = field(default_factory=list)


# ---- handlers -------------------------------------------------------------------------------------------
def export_selection(ctx: AppContext, index_folder: str, names) -> str:
    """The selection as a file to download (app/selection.export: locally a CSV of paths, hosted a zip
    of the images). ValueError says why not."""
    return str(picked.export(ctx, picked.checked(ctx, index_folder, names)))


def add_class(ctx: AppContext, classes: list[TaughtClass] | None, name: str, index_folder: str,
              names) -> tuple[list[TaughtClass], str]:
    """`classes` with the selection added as class `name` -> (classes, their HTML). ValueError says why
    not (the classes stay as they were)."""
    chosen = picked.checked(ctx, index_folder, names)
    classes = picked.add_class(classes, name, chosen)
    return classes, classes_html(classes)


def classes_html(classes: list[TaughtClass] | None) -> str:
    if not classes:
        return message("No class yet: select images on the map, name them, and add them as a class.", "muted")
    items = "".join(f"<li><b>{html.escape(c.name)}</b>: {len(c.names):,} image(s)</li>" for c in classes)
    more = "" if len(classes) >= 2 else "<p class='explorer-muted'>Add at least one more class to teach.</p>"
    return f"<ul id='map-classes-list'>{items}</ul>{more}"


def teach_zip(ctx: AppContext, classes: list[TaughtClass] | None) -> str:
    """A zip of the classes' images in class folders, for Teach's upload box. ValueError says why not."""
    return str(picked.classes_zip(ctx, classes or []))


def pick_side(ctx: AppContext, index_folder: str, names, side: str) -> Side:
    """The selection kept as side `side` ("A" or "B") of a comparison."""
    chosen = picked.checked(ctx, index_folder, names, f"Selection {side}")
    return Side(chosen.folder, chosen.names)


def sides_html(a: Side | None, b: Side | None) -> str:
    def line(side: Side | None) -> str:
        return f"{len(side.names):,} image(s)" if side is not None else "not set"
    return message(f"A: {line(a)} · B: {line(b)}", "note")


def compare(ctx: AppContext, a: Side | None, b: Side | None, vocabulary: str = "",
            progress=None) -> CompareView:
    """The direction from A's images to B's (app/selection.compare): the words (of the map's `vocabulary`
    as typed, never kept on disk; empty: the shipped one) and the index's images furthest along it each
    way. ValueError says why not."""
    if a is None or b is None:
        raise ValueError("Set a selection as A and another as B first.")
    if a.index != b.index:
        raise ValueError("A and B were selected in different indexes; select both in one.")
    first = picked.checked(ctx, a.index, a.names, "Selection A")
    second = picked.checked(ctx, b.index, b.names, "Selection B")
    typed = None
    if (vocabulary or "").strip():
        typed = parse_vocabulary(vocabulary, gate.TextLimits.of(ctx.settings))
    found = picked.compare(ctx, first, second, MAX_SHOWN, typed, cache_dir=False if typed else None,
                           progress=progress, words_k=WORDS_SHOWN)
    folder = get_upload_folder()  # gradio's cache: thumbnails written there are taken as they are
    return CompareView(compare_html(found, len(first.names), len(second.names)),
                       _thumbs(ctx, found.images_a, folder), _thumbs(ctx, found.images_b, folder))


def _thumbs(ctx: AppContext, hits, folder: str) -> list:
    shown = []
    for path, name, score in hits:
        thumb = ctx.thumbnails.file(path, folder)
        if thumb is not None:
            shown.append((thumb, f"{score:+.3f} · {name}"))
    return shown


def compare_html(found, count_a: int, count_b: int) -> str:
    def words(pairs) -> str:
        listed = [f"{html.escape(w)} <span class='explorer-muted'>({s:+.3f})</span>" for w, s in pairs]
        return ", ".join(listed) or "<span class='explorer-muted'>none</span>"

    return (f"<div id='map-compare-words'><p>From A ({count_a:,} images) to B ({count_b:,} images); their "
            f"mean embeddings lie {found.length:.3f} apart. The words furthest along the direction:</p>"
            f"<p><b>Towards B</b>: {words(found.words_b)}</p><p><b>Towards A</b>: {words(found.words_a)}</p>"
            "</div>")


# ---- the page -------------------------------------------------------------------------------------------
@dataclass
class MapActions:
    """The actions' components by name, for the wiring (and tests)."""
    ctx: AppContext
    index_folder: Any            # the Map tab's chosen index (its value: an index folder)
    selection: gr.State          # the Map tab's selection: index-relative names
    search: Any                  # search_tab.SearchHandles
    teach: Any                   # teach_tab.TeachPage
    tabs: gr.Tabs
    status: gr.HTML
    export: gr.Button
    export_file: gr.File
    query: gr.Button
    class_name: gr.Textbox
    add: gr.Button
    classes: gr.State            # list[TaughtClass]
    classes_view: gr.HTML
    teach_run: gr.Button
    clear: gr.Button
    set_a: gr.Button
    set_b: gr.Button
    side_a: gr.State             # Side | None
    side_b: gr.State
    sides: gr.HTML
    compare: gr.Button
    compare_view: gr.HTML
    towards_a: gr.Gallery
    towards_b: gr.Gallery
    vocabulary: Any = None       # the Map tab's vocabulary box (words typed; empty: the shipped ones)


def build(ctx: AppContext, index_folder, selection, search, teach, tabs: gr.Tabs, place=None,
          vocabulary=None) -> MapActions:
    """The actions, laid out inside `place` (the Map tab's column for them; None: where the caller is),
    wired onto the Map tab's index and selection, the Search tab's handles and the Teach tab's page."""
    gallery = dict(columns=4, height="auto", allow_preview=True, object_fit="contain", fit_columns=False,
                   visible=False, buttons=[])
    with place if place is not None else nullcontext():
        gr.Markdown("**With the selected images**", elem_id="map-actions-title")
        status = gr.HTML(elem_id="map-actions-status")
        with gr.Row():
            export = gr.Button("Export the selection", elem_id="map-export")
            query = gr.Button("Search by it (Search tab)", elem_id="map-search-by")
        export_file = gr.File(label="Selection", visible=False, interactive=False, elem_id="map-export-file")
        with gr.Accordion("Teach classes", open=False, elem_id="map-teach-acc"):
            with gr.Row():
                class_name = gr.Textbox(label="Class name", placeholder="e.g. red circles", max_lines=1,
                                        scale=3, elem_id="map-class-name")
                add = gr.Button("Add the selection as this class", scale=2, elem_id="map-add-class")
            classes_view = gr.HTML(classes_html(None), elem_id="map-classes")
            with gr.Row():
                teach_run = gr.Button("Teach on these classes (Teach tab)", variant="primary",
                                      elem_id="map-teach")
                clear = gr.Button("Clear the classes", elem_id="map-clear-classes")
        with gr.Accordion("Compare two selections", open=False, elem_id="map-compare-acc"):
            with gr.Row():
                set_a = gr.Button("Set as A", elem_id="map-set-a")
                set_b = gr.Button("Set as B", elem_id="map-set-b")
                compare_button = gr.Button("Compare A → B", variant="primary", elem_id="map-compare")
            sides = gr.HTML(elem_id="map-sides")
            compare_view = gr.HTML(elem_id="map-compare-view")
            towards_a = gr.Gallery(label="Furthest towards A", elem_id="map-towards-a", **gallery)
            towards_b = gr.Gallery(label="Furthest towards B", elem_id="map-towards-b", **gallery)
    ui = MapActions(ctx, index_folder, selection, search, teach, tabs, status, export, export_file, query,
                    class_name, add, gr.State([]), classes_view, teach_run, clear, set_a, set_b,
                    gr.State(None), gr.State(None), sides, compare_button, compare_view, towards_a, towards_b,
                    vocabulary if vocabulary is not None else gr.State(""))
    _wire_export_and_query(ui)
    _wire_teach(ui)
    _wire_compare(ui)
    return ui


QUIET = dict(show_progress="hidden", api_visibility="private")


def _refused(exc: Exception) -> str:
    return message(str(exc), "error")


def _wire_export_and_query(ui: MapActions) -> None:
    ctx = ui.ctx

    def on_export(index_folder, names, request: gr.Request):
        try:
            path = export_selection(session_of(ctx, request), index_folder, names)
        except ValueError as exc:
            return gr.update(value=None, visible=False), _refused(exc)
        return gr.update(value=path, visible=True), ""

    def on_query(index_folder, names, request: gr.Request):
        """Checks the selection first: a refused one stays on the Map tab, saying why (gr.Error stops
        the search chained after it)."""
        try:
            picked.checked(session_of(ctx, request), index_folder, names)
        except ValueError as exc:
            raise gr.Error(str(exc), title="Not searched") from None
        return gr.Tabs(selected="search"), ""

    ui.export.click(on_export, [ui.index_folder, ui.selection], [ui.export_file, ui.status],
                    api_name="map_export", **QUIET)
    if ui.search is not None and ui.search.by_selection is not None:
        ui.query.click(on_query, [ui.index_folder, ui.selection], [ui.tabs, ui.status], api_name="map_query",
                       **QUIET).success(
            ui.search.by_selection, [ui.index_folder, ui.selection, ui.search.state, ui.search.top_k,
                                     ui.search.threshold], ui.search.results, concurrency_limit=2,
            api_visibility="private")


def _wire_teach(ui: MapActions) -> None:
    ctx = ui.ctx

    def on_add(classes, name, index_folder, names, request: gr.Request):
        try:
            classes, shown = add_class(session_of(ctx, request), classes, name, index_folder, names)
        except ValueError as exc:
            return gr.skip(), gr.skip(), _refused(exc)
        return classes, shown, ""

    def on_teach(classes, request: gr.Request):
        try:
            path = teach_zip(session_of(ctx, request), classes)
        except ValueError as exc:
            raise gr.Error(str(exc), title="Not taught") from None
        return [path], gr.Tabs(selected="teach"), ""

    ui.add.click(on_add, [ui.classes, ui.class_name, ui.index_folder, ui.selection],
                 [ui.classes, ui.classes_view, ui.status], api_name="map_add_class", **QUIET)
    ui.class_name.submit(on_add, [ui.classes, ui.class_name, ui.index_folder, ui.selection],
                         [ui.classes, ui.classes_view, ui.status], **QUIET)
    ui.clear.click(lambda: ([], classes_html(None)), None, [ui.classes, ui.classes_view], **QUIET)
    if ui.teach is not None and ui.teach.run_handler is not None:
        ui.teach_run.click(on_teach, ui.classes, [ui.teach.uploads, ui.tabs, ui.status], api_name="map_teach",
                           **QUIET).success(
            ui.teach.run_handler, ui.teach.run_inputs, ui.teach.run_outputs, concurrency_limit=2,
            api_visibility="private")


def _wire_compare(ui: MapActions) -> None:
    ctx = ui.ctx

    def on_side(side: str):
        def keep(index_folder, names, a, b, request: gr.Request):
            try:
                kept = pick_side(session_of(ctx, request), index_folder, names, side)
            except ValueError as exc:
                return gr.skip(), gr.skip(), _refused(exc)
            return kept, sides_html(*((kept, b) if side == "A" else (a, kept))), ""
        return keep

    def on_compare(a, b, vocabulary, request: gr.Request, progress=gr.Progress()):
        try:
            view = compare(session_of(ctx, request), a, b, vocabulary,
                           progress=progress_reporter(progress, "words"))
        except ValueError as exc:
            return _refused(exc), gr.update(value=None, visible=False), gr.update(value=None, visible=False)
        return (view.summary, gr.update(value=view.towards_a, visible=bool(view.towards_a)),
                gr.update(value=view.towards_b, visible=bool(view.towards_b)))

    sides = [ui.index_folder, ui.selection, ui.side_a, ui.side_b]
    ui.set_a.click(on_side("A"), sides, [ui.side_a, ui.sides, ui.status], api_name="map_set_a", **QUIET)
    ui.set_b.click(on_side("B"), sides, [ui.side_b, ui.sides, ui.status], api_name="map_set_b", **QUIET)
    ui.compare.click(on_compare, [ui.side_a, ui.side_b, ui.vocabulary],
                     [ui.compare_view, ui.towards_a, ui.towards_b], concurrency_limit=2,
                     api_name="map_compare", api_visibility="private")
