"""Search tab: index a folder (typed, or uploaded), or open an index made by `clip-explorer index`;
then find images by text, by image, or both, open a result full size, and list near-duplicates.

Handlers: `build_search_index`, `open_index_folder`, `search`, `search_like`, `more_like`,
`results_view`, `open_result` and `duplicates_view` (plain inputs in, views or HTML out); `build`
lays out the page and `_wire_*` wire its `SearchHandles`. What to index is resolved and built by
AppContext.index_choice (index/build.py underneath), searching is index/image_index.py, HTML is
search_html.py. The last results are kept in a gr.State (a SearchState: index folder, query, hits
as relative path + score), so moving the threshold never searches again. A click on a result opens
it full size with its path and score; "More like this" searches with its stored embedding (no
re-encoding).

Every image shown is read through images.py (the same size and pixel limits apply) from inside the
indexed folder and handed to gradio as a PIL image, a data: URI, or (the results' thumbnails) a small
WebP file written once into gradio's own cache (Thumbnails.file): a new query hands gradio the paths of
thumbnails already made, which it neither encodes nor copies again, and the page gets the same URL for
the same thumbnail, which the browser already has. No file is served by its own server path. The
path shown with a result opened full size is absolute locally, and relative to the upload when hosted
or uploaded.

Cancel: a build asked for at time t stops after its next batch once Cancel is pressed after t
(Stops, per browser session); it keeps what it did and its report says so. gradio's own
`cancels=` is not used: it lets a running (non-generator) function finish and drops its report.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from explorer.app import examples, selection
from explorer.app.context import AppContext
from explorer.embed.images import Fit, ImageError, load_image, save_picture
from explorer.index.image_index import ImageIndex
from explorer.inputs import gate
from explorer.inputs.roots import PathRefused, inside_roots

from . import search_html as render
from .common import (
    IMAGE_TYPES,
    ZIP_TYPES,
    Stops,
    from_page,
    live,
    message,
    offer_examples,
    progress_reporter,
    session_of,
    unchanged,
)

FOLDER, UPLOAD = "A folder on this computer", "Upload images, a folder or a zip"
PLACEHOLDER_SIDE = 64
FULL_SIDE = 2048        # a result opened full size is sent at most this many pixels on a side
DUP_THUMB_SIDE = 192    # near-duplicate thumbnails (drawn at 128 CSS pixels)
PREVIEW_SIDE = 160      # the query image's preview


# ---- what a session keeps (gr.State: copied per session, plain data) ------------------------------------
@dataclass
class Hit:
    """One result of the last search."""
    rank: int       # 1-based
    path: str       # relative to the indexed folder, posix separators
    score: float    # cosine with the query


@dataclass
class SearchState:
    """The session's index and its last results."""
    index: str = ""                 # the index folder searched ("": none built or opened yet)
    root: str = ""                  # the folder it indexes
    query: str = ""                 # what the hits answer, as the summary says it
    indexed: int | None = None      # images in the index when it was searched
    hits: list[Hit] | None = None   # None: no search yet


@dataclass
class OpenedResult:
    """The result opened full size: what "More like this" searches by."""
    path: str = ""  # relative to the indexed folder ("": none opened)


@dataclass
class BuildAsked:
    """A click on "Build / update index": a Cancel pressed after it stops that build (Stops)."""
    at: float  # time.monotonic() of the click


@dataclass
class SearchView:
    summary: str = ""
    gallery: list = field(default_factory=list)   # (thumbnail file in gradio's cache, caption)
    table: str = ""
    state: SearchState = field(default_factory=SearchState)


@dataclass
class ResultView:
    image: Image.Image     # the result, decoded through images.py, at most FULL_SIDE on a side
    path: str              # absolute locally; relative to the upload when hosted or uploaded
    score: str             # HTML: rank and score for the query
    opened: OpenedResult   # what "More like this" searches by


class Problem(ValueError):
    """Something the person can fix; shown as an error, the results stay as they were."""


# ---- handlers -------------------------------------------------------------------------------------------
def build_search_index(ctx: AppContext, choice: str, typed: str, files, folder_files, progress=None,
                       should_stop: Callable[[], bool] | None = None) -> tuple[str, SearchState]:
    """Build or update the index of the chosen images (`choice`: the `typed` FOLDER, or the uploaded
    `files` and `folder_files`) -> (report HTML, new state), through AppContext.index_choice. The same
    folder and model always update the same index; ValueError (PathRefused...) says why not. When
    `should_stop()` turns true the build stops after its batch in flight, keeping what it did."""
    built = ctx.index_choice(folder=typed if choice == FOLDER else None,
                             uploads=[*(files or []), *(folder_files or [])],
                             progress=progress_reporter(progress, "images embedded"), should_stop=should_stop)
    html = render.build_report(built.shown, built.report, built.notes, uploaded=built.uploaded)
    return html, SearchState(index=str(built.index.folder), root=str(built.index.root))


def open_index_folder(ctx: AppContext, typed: str) -> tuple[str, SearchState]:
    """Open an index made by `clip-explorer index DIR --index PATH` and make it the one searched ->
    (report HTML, new state). Local mode only: the folder, and the images it indexes, must lie
    inside the allowed roots, and the loaded model must have made it (ValueError says why not)."""
    index = ctx.open_external(typed)
    html = render.opened(str(index.folder), str(index.root), index.count, ctx.model().identifier)
    return html, SearchState(index=str(index.folder), root=str(index.root))


def _open(ctx: AppContext, state: SearchState | None) -> ImageIndex:
    if state is None or not state.index:
        raise Problem("Build an index first (step 1).")
    try:
        return ctx.open_index(state.index)
    except (ValueError, OSError) as exc:
        raise Problem(f"The index cannot be opened: {exc}. Build it again.") from None


def _ranked(ctx: AppContext, index: ImageIndex, vector, query: str, k: int, limit: float) -> SearchView:
    hits = [h for h in index.search(vector, int(k))[0] if inside_roots(h.absolute, (index.root,))]
    state = SearchState(str(index.folder), str(index.root), query, index.count,
                        [Hit(h.rank, h.path, h.score) for h in hits])
    return results_view(ctx, state, limit)


def search(ctx: AppContext, state: SearchState | None, query_text: str, image_path: str | None,
           image_weight: float, k: int, limit: float) -> SearchView:
    """Search the session's index by a text, an image, or both (weighted by `image_weight`)."""
    model = ctx.model()
    index = _open(ctx, state)
    query_text = (query_text or "").strip()
    gate.within([query_text], "Search text", gate.TextLimits.of(ctx.settings),
                noun="text")  # Refused when too long
    texts = [query_text] if query_text else []
    if not texts and not image_path:
        raise Problem("Type a text or drop an image to search by.")
    weights = [1 - image_weight, image_weight] if texts and image_path else None
    try:
        vector = index.query_vector(model, texts, [image_path] if image_path else [], weights,
                                    ctx.settings.limits, cache=ctx.embeddings)  # the image: once
    except ImageError as exc:
        raise Problem(f"The query image cannot be used: {exc.reason}") from None
    parts = []
    if texts:
        parts.append(f'text "{query_text}"' + (f" (weight {1 - image_weight:.2f})" if weights else ""))
    if image_path:
        parts.append(f"image {Path(image_path).name}" + (f" (weight {image_weight:.2f})" if weights else ""))
    return _ranked(ctx, index, vector, "Search by " + " + ".join(parts), k, limit)


def query_preview(ctx: AppContext, path: str | None) -> Image.Image | None:
    """The query image, small, decoded by images.py within the app's limits (None: none, or unreadable:
    the search says why)."""
    if not path:
        return None
    try:
        return load_image(path, ctx.settings.limits, name=Path(path).name, fit=Fit((PREVIEW_SIDE, ) * 2,
                                                                                   "cap"))
    except ImageError:
        return None


def _shown_hit(state: SearchState, position: int, limit: float) -> Hit | None:
    shown = [h for h in state.hits or [] if h.score >= limit]
    return shown[position] if isinstance(position, int) and 0 <= position < len(shown) else None


def search_like(ctx: AppContext, state: SearchState | None, position: int, k: int,
                limit: float) -> SearchView | None:
    """Search by the stored embedding of the result shown at `position`; None when there is none."""
    _open(ctx, state)
    hit = _shown_hit(state, position, limit)
    return None if hit is None else more_like(ctx, state, hit.path, k, limit)


def more_like(ctx: AppContext, state: SearchState | None, rel: str, k: int, limit: float) -> SearchView:
    """Search by the stored embedding of the indexed file `rel` (relative to the indexed folder)."""
    index = _open(ctx, state)
    if not rel:
        raise Problem("Open a result first (click it).")
    vector = index.embedding_of(rel)
    if vector is None:
        raise Problem(f"{rel} is no longer in the index; build it again.")
    return _ranked(ctx, index, vector, f"Images like {rel}", k, limit)


def search_selection(ctx: AppContext, index_folder: str, names, k: int, limit: float) -> SearchView:
    """Search the index at `index_folder` (one this session may use) by the images `names` picked in it
    (the Map tab's selection, each checked against the index: app/selection.py), their stored embeddings
    combined into one query; nothing is encoded. The index becomes the one this tab searches."""
    picked = selection.checked(ctx, index_folder, names)
    count = len(picked.names)
    about = picked.names[0] if count == 1 else f"{count} images selected on the map"
    return _ranked(ctx, picked.index, selection.query_vector(picked), f"Images like {about}", k, limit)


def open_result(ctx: AppContext, state: SearchState | None, position: int, limit: float) -> ResultView | None:
    """The result shown at `position`, full size (at most FULL_SIDE a side), with its path and score;
    None when there is none. Only a file inside the indexed folder is read, through images.py."""
    index = _open(ctx, state)
    hit = _shown_hit(state, position, limit)
    if hit is None:
        return None
    path = index.root / hit.path
    if not inside_roots(path, (index.root,)):
        raise Problem(f"{hit.path} now lies outside the indexed folder; build the index again.")
    try:
        image = load_image(path, ctx.settings.limits, name=hit.path, fit=Fit((FULL_SIDE, FULL_SIDE), "cap"))
    except ImageError as exc:
        raise Problem(f"{hit.path} cannot be shown: {exc.reason}. Build the index again.") from None
    relative = ctx.settings.hosted or ctx.uploads.contains(index.root)
    return ResultView(image, hit.path if relative else str(path), render.score_line(hit, state.query),
                      OpenedResult(hit.path))


def duplicates_view(ctx: AppContext, state: SearchState | None, threshold: float) -> str:
    """The near-duplicate groups of the session's current index at cosine >= `threshold` (see
    ImageIndex.duplicate_groups), with their min/max cosines and thumbnails, as HTML."""
    index = _open(ctx, state)
    if not -1.0 <= float(threshold) <= 1.0:
        raise Problem("The threshold is a cosine: between -1 and 1.")
    groups = index.duplicate_groups(float(threshold))
    drawn = [{"paths": g.paths, "min": g.min_score, "max": g.max_score, "over": g.over,
              "thumbs": [_thumb_uri(ctx, index.root, p) for p in g.paths[:render.MAX_MEMBERS_SHOWN]]
              if n < render.MAX_GROUPS_SHOWN else []} for n, g in enumerate(groups)]
    return render.duplicates(drawn, float(threshold), index.count)


def _thumb_uri(ctx: AppContext, root: Path, rel: str) -> str | None:
    path = root / rel
    return ctx.thumbnails.data_uri(path, DUP_THUMB_SIDE) if inside_roots(path, (root,)) else None


def _placeholder(folder: str) -> str:
    """A grey square file, shown for a result that can no longer be read."""
    return save_picture(Image.new("RGB", (PLACEHOLDER_SIDE, ) * 2, (200, 200, 200)), folder, name="missing")


def results_view(ctx: AppContext, state: SearchState | None, limit: float) -> SearchView:
    """The hits in `state` scoring >= `limit`, with thumbnails; no search is run."""
    state = state if state is not None else SearchState()
    if state.hits is None:
        return SearchView(state=state)
    root, folder = Path(state.root), get_upload_folder()  # gradio's cache: it takes these files as they are
    shown, items = [], []
    names = render.captions(state.hits)  # over every hit: a caption does not change with the threshold
    for hit in state.hits:
        if hit.score < limit:
            continue
        path = root / hit.path
        thumb = ctx.thumbnails.file(path, folder) if inside_roots(path, (root,)) else None
        shown.append((hit, thumb is not None))
        items.append((thumb or _placeholder(folder), render.caption(hit, names[hit.path])))
    return SearchView(render.summary(state.query, len(shown), len(state.hits), limit, state.indexed),
                      items, render.results(shown), state)


# ---- the page -------------------------------------------------------------------------------------------
@dataclass
class SearchHandles:
    """The tab's components, by name, for the wiring."""
    ctx: AppContext
    stops: Stops           # Cancel, per browser session
    source: gr.Radio
    folder: gr.Textbox
    upload_group: gr.Group
    upload_files: gr.File
    upload_dir: gr.File
    examples_box: gr.Column
    index_button: gr.Button
    cancel_button: gr.Button
    report: gr.HTML
    index_folder: gr.Textbox | None  # the "open an index" box: local mode only
    open_button: gr.Button | None
    text: gr.Textbox
    image: gr.File
    preview: gr.Image
    weight: gr.Slider
    top_k: gr.Slider
    search_button: gr.Button
    threshold: gr.Slider
    summary: gr.HTML
    viewer: gr.Column
    full: gr.Image
    path_box: gr.Textbox
    score: gr.HTML
    like_button: gr.Button
    close_button: gr.Button
    gallery: gr.Gallery
    table: gr.HTML
    dup_threshold: gr.Slider
    dup_button: gr.Button
    dups: gr.HTML
    state: gr.State    # SearchState
    opened: gr.State   # OpenedResult
    asked: gr.State    # BuildAsked | None: the build asked for and not yet done
    # (index folder, names, current state, k, limit, request, event) -> the results' outputs: searches by
    # a selection made elsewhere (the Map tab wires it; set by _wire_results)
    by_selection: Callable | None = None

    @property
    def results(self) -> list:
        """What a search updates: summary, gallery, table, state, and the viewer (closed)."""
        return [self.summary, self.gallery, self.table, self.state, self.viewer]


def build(ctx: AppContext) -> SearchHandles:
    hosted = ctx.settings.hosted
    state, opened, asked = gr.State(SearchState()), gr.State(OpenedResult()), gr.State(None)
    index_folder = open_button = None
    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown("**1. Choose the images to search**")
            source = gr.Radio([FOLDER, UPLOAD], value=UPLOAD if hosted else FOLDER, show_label=False,
                              visible=not hosted, elem_id="search-source")
            folder = gr.Textbox(
                label="Folder", elem_id="search-folder", visible=not hosted,
                placeholder="an absolute path, e.g. " + str(Path.home() / "Pictures"),
                info="Allowed: inside " + ", ".join(str(r) for r in ctx.settings.allowed_roots))
            with gr.Group(visible=hosted) as upload_group:
                upload_files = gr.File(label="Images or .zip files", file_count="multiple", height=120,
                                       file_types=ZIP_TYPES, elem_id="search-upload")
                upload_dir = gr.File(label="…or a whole folder", file_count="directory", height=120,
                                     elem_id="search-upload-dir")
            examples_box = gr.Column(elem_id="search-examples-box")
            with gr.Row():
                index_button = gr.Button("Build / update index", variant="primary", elem_id="search-build",
                                         scale=3)
                cancel_button = gr.Button("Cancel", variant="stop", visible=False, elem_id="search-cancel",
                                          scale=1)
            # css_template: room for the build's progress bar (min_height= is dropped while it shows)
            report = gr.HTML(elem_id="search-report", css_template="min-height: 52px;")
            if not hosted:  # hosted mode never offers server paths
                with gr.Accordion("…or open an index made with “clip-explorer index”", open=False,
                                  elem_id="search-open-acc"):
                    index_folder = gr.Textbox(
                        label="Open an index folder", elem_id="search-index-folder",
                        placeholder="the --index PATH of `clip-explorer index DIR --index PATH`",
                        info="Inside the allowed folders; made by the loaded model")
                    open_button = gr.Button("Open index", elem_id="search-open-index")
            gr.Markdown("**2. Search**")
            text = gr.Textbox(label="Text", placeholder="a red circle", elem_id="search-text")
            # A file, not gr.Image: gradio would decode and re-save it before the gate and images.py see it.
            with gr.Row():
                image = gr.File(label="…and/or an image", file_types=IMAGE_TYPES, file_count="single",
                                height=120, scale=3, elem_id="search-image")
                preview = gr.Image(label="Query image", type="pil", interactive=False, height=120, scale=1,
                                   buttons=[], elem_id="search-image-preview")
            weight = gr.Slider(0, 1, value=0.5, step=0.05, label="Image weight when searching by both",
                               info="0: only the text counts, 1: only the image", elem_id="search-weight")
            top_k = gr.Slider(1, 100, value=24, step=1, label="Results", elem_id="search-k")
            search_button = gr.Button("Search", variant="primary", elem_id="search-run")
        with gr.Column(scale=3):
            threshold = gr.Slider(-1, 1, value=0, step=0.01, label="Score threshold (cosine)",
                                  info="Hide results below this score; no new search",
                                  elem_id="search-threshold")
            summary = gr.HTML(elem_id="search-summary")
            with gr.Column(visible=False, variant="panel", elem_id="search-viewer") as viewer:
                full = gr.Image(label="Full size", type="pil", interactive=False, height=480,
                                elem_id="search-full", buttons=["download", "fullscreen"])
                path_box = gr.Textbox(label="File", interactive=False, max_lines=1, buttons=["copy"],
                                      elem_id="search-full-path")
                score = gr.HTML(elem_id="search-full-score", padding=True)
                with gr.Row():
                    like_button = gr.Button("More like this", variant="primary", elem_id="search-like")
                    close_button = gr.Button("Close", elem_id="search-full-close")
            # Cells of a sixth of the column however few the results (fit_columns would draw one result
            # as wide as the column, taller than the page).
            gallery = gr.Gallery(label="Results (click one to see it full size)", show_label=False, columns=6,
                                 height="auto", allow_preview=False, object_fit="contain", visible=False,
                                 fit_columns=False, elem_id="search-gallery", buttons=[])
            table = gr.HTML(elem_id="search-results")
    with gr.Accordion("Near-duplicates in this index", open=False, elem_id="search-dups-acc"):
        with gr.Row():
            dup_threshold = gr.Slider(0.8, 1, value=0.95, step=0.005, label="Duplicate threshold (cosine)",
                                      scale=3, info="Images at or above it are grouped",
                                      elem_id="search-dup-threshold")
            dup_button = gr.Button("Find near-duplicates", elem_id="search-dups-run", scale=1)
        dups = gr.HTML(elem_id="search-dups")

    ui = SearchHandles(
        ctx, Stops(), source=source, folder=folder, upload_group=upload_group, upload_files=upload_files,
        upload_dir=upload_dir, examples_box=examples_box, index_button=index_button,
        cancel_button=cancel_button, report=report, index_folder=index_folder, open_button=open_button,
        text=text, image=image, preview=preview, weight=weight, top_k=top_k, search_button=search_button,
        threshold=threshold, summary=summary, viewer=viewer, full=full, path_box=path_box, score=score,
        like_button=like_button, close_button=close_button, gallery=gallery, table=table,
        dup_threshold=dup_threshold, dup_button=dup_button, dups=dups, state=state, opened=opened,
        asked=asked)
    _wire_build(ui)
    _wire_results(ui)
    _wire_extras(ui)
    return ui


def _shown(view: SearchView):
    return (view.summary, gr.update(value=view.gallery, visible=bool(view.gallery), selected_index=None),
            view.table, view.state)


def _guarded(handler, page: bool = True):
    """Run a search handler; a problem is shown and the results and state stay as they were. A new
    list of results closes the result opened full size. To the page (`page`; not an API call, which gets
    every output) only what changed is sent (issue 29: a query typed live often ranks the same): the same
    hits as the page shows send only the summary, and the same images with the same scores (the query
    only reworded) keep the gallery as it is."""
    def run(*args):
        current = args[0]
        try:
            view = handler(*args)
        except ValueError as exc:
            return message(str(exc), "error"), gr.update(), gr.update(), current, gr.update()
        if view is None:
            return gr.update(), gr.update(), gr.update(), current, gr.update()
        summary, gallery, table, state = _shown(view)
        if not page:
            return summary, gallery, table, state, gr.update(visible=False)
        if unchanged(current, view.state):  # the summary still: it may show an error since
            return summary, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if current is not None and current.hits and unchanged((current.root, current.hits),
                                                              (view.state.root, view.state.hits)):
            gallery = gr.skip()
        return summary, gallery, table, state, gr.update(visible=False)
    return run


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


def _wire_build(ui: SearchHandles) -> None:
    ctx = ui.ctx

    def on_arm():  # at the click, before any wait in the queue: a Cancel from now on stops this build
        # The last report (an error, say) is cleared: the build's progress bar is drawn where it was.
        return BuildAsked(time.monotonic()), gr.update(visible=True, value="Cancel", interactive=True), ""

    def on_build(choice, typed, files, folder_files, current, asked, request: gr.Request,
                 progress=gr.Progress()):
        mine = session_of(ctx, request)
        stop = ui.stops.checker(_session(request), time.monotonic() if asked is None else asked.at)
        try:
            html, new_state = build_search_index(mine, choice, typed, files, folder_files, progress, stop)
        except ValueError as exc:
            prefix = "Refused" if isinstance(exc, PathRefused) else "Indexing failed"
            return message(f"{prefix}: {exc}",
                           "error"), current, gr.update(), gr.update(), gr.update(), gr.update()
        return html, new_state, *_shown(results_view(mine, new_state, 0.0))[:3], gr.update(visible=False)

    def on_cancel(request: gr.Request):
        ui.stops.cancel(_session(request))
        return gr.update(value="Cancelling after this batch…", interactive=False)

    quiet = dict(show_progress="hidden", api_visibility="private", concurrency_limit=None)
    armed = ui.index_button.click(on_arm, None, [ui.asked, ui.cancel_button, ui.report], **quiet)
    built = armed.then(on_build, [ui.source, ui.folder, ui.upload_files, ui.upload_dir, ui.state, ui.asked],
                       [ui.report, ui.state, ui.summary, ui.gallery, ui.table, ui.viewer],
                       concurrency_limit=1, api_name="build_index",
                       show_progress_on=[ui.report])  # one progress bar, on the report
    built.then(lambda: (None, gr.update(visible=False)), None, [ui.asked, ui.cancel_button], **quiet)
    ui.cancel_button.click(on_cancel, None, ui.cancel_button, show_progress="hidden", concurrency_limit=None,
                           api_name="cancel_build")

    def on_example(choice, files, request: gr.Request, progress=gr.Progress()):  # 8 photos: no Cancel needed
        return on_build(choice, "", files, None, SearchState(), None, request, progress)[:-1]

    with ui.examples_box:  # through the upload path, so a hosted visitor's quotas and workspace apply
        offer_examples([{ui.source: UPLOAD, ui.upload_files: examples.paths()}],
                       ["Index the 8 example photos"], [ui.source, ui.upload_files], on_example,
                       [ui.report, ui.state, ui.summary, ui.gallery, ui.table], "search-examples")


def _wire_results(ui: SearchHandles) -> None:
    ctx = ui.ctx

    def on_select(current, limit, evt: gr.SelectData, request: gr.Request):
        try:
            view = open_result(session_of(ctx, request), current, evt.index, limit)
        except ValueError as exc:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), message(str(exc), "error")
        if view is None:
            return (gr.update(),) * 6
        return gr.update(visible=True), view.image, view.path, view.score, view.opened, gr.update()

    def on_like(current, picked, k, limit, request: gr.Request, event: gr.EventData = None):  # picked
        rel = picked.path if picked is not None else ""
        return _guarded(lambda cur: more_like(session_of(ctx, request), cur, rel, k, limit),
                        from_page(event))(current)

    def on_search(current, text, image, weight, k, limit, request: gr.Request, event: gr.EventData = None):
        return _guarded(lambda cur: search(session_of(ctx, request), cur, text, image, weight, k, limit),
                        from_page(event))(current)

    def on_selection(index_folder, names, current, k, limit, request: gr.Request, event: gr.EventData = None):
        return _guarded(lambda cur: search_selection(session_of(ctx, request), index_folder, names, k, limit),
                        from_page(event))(current)

    ui.by_selection = on_selection

    def on_threshold(current, limit, request: gr.Request):
        return _shown(results_view(session_of(ctx, request), current, limit))[:3]

    ui.image.change(lambda path: query_preview(ctx, path), ui.image, ui.preview, show_progress="hidden",
                    api_visibility="private")
    ui.source.change(lambda s: (gr.update(visible=s == FOLDER), gr.update(visible=s == UPLOAD)),
                     ui.source, [ui.folder, ui.upload_group])
    results = [ui.summary, ui.gallery, ui.table, ui.state, ui.viewer]
    search_inputs = [ui.state, ui.text, ui.image, ui.weight, ui.top_k, ui.threshold]
    # Live (issue 29): one event for the button, Enter, typing the query and moving the count; only the
    # last edit runs. The query image and the weight stay on the button (an image is one drop).
    live([ui.text, ui.top_k, ui.search_button.click, ui.text.submit], on_search, search_inputs, results,
         concurrency_limit=2, api_name="search")
    ui.gallery.select(on_select, [ui.state, ui.threshold],
                      [ui.viewer, ui.full, ui.path_box, ui.score, ui.opened, ui.summary], concurrency_limit=2,
                      show_progress_on=[ui.full])
    ui.like_button.click(on_like, [ui.state, ui.opened, ui.top_k, ui.threshold], results, concurrency_limit=2,
                         api_name="more_like_this")
    ui.close_button.click(lambda: gr.update(visible=False), None, ui.viewer, show_progress="hidden",
                          api_visibility="private")
    ui.threshold.change(on_threshold, [ui.state, ui.threshold], results[:3], show_progress="hidden")


def _wire_extras(ui: SearchHandles) -> None:
    """Opening an index folder (local mode) and the near-duplicates view."""
    ctx = ui.ctx

    def on_open(typed, current, request: gr.Request):
        mine = session_of(ctx, request)
        try:
            html, new_state = open_index_folder(mine, typed)
        except (ValueError, OSError) as exc:
            prefix = "Refused" if isinstance(exc, PathRefused) else "The index cannot be opened"
            return message(f"{prefix}: {exc}",
                           "error"), current, gr.update(), gr.update(), gr.update(), gr.update()
        return html, new_state, *_shown(results_view(mine, new_state, 0.0))[:3], gr.update(visible=False)

    def on_duplicates(current, threshold, request: gr.Request):
        try:
            return duplicates_view(session_of(ctx, request), current, threshold)
        except ValueError as exc:
            return message(str(exc), "error")

    if ui.open_button is not None:  # the last report is cleared first: the progress bar is drawn there
        outputs = [ui.report, ui.state, ui.summary, ui.gallery, ui.table, ui.viewer]
        quiet = dict(show_progress="hidden", api_visibility="private", concurrency_limit=None)
        ui.open_button.click(lambda: "", None, ui.report, **quiet).then(
            on_open, [ui.index_folder, ui.state], outputs, concurrency_limit=2, api_name="open_index",
            show_progress_on=[ui.report])
        ui.index_folder.submit(lambda: "", None, ui.report, **quiet).then(
            on_open, [ui.index_folder, ui.state], outputs, concurrency_limit=2, show_progress_on=[ui.report])
    ui.dup_button.click(on_duplicates, [ui.state, ui.dup_threshold], ui.dups, concurrency_limit=2,
                        api_name="duplicates")
    ui.dup_threshold.release(on_duplicates, [ui.state, ui.dup_threshold], ui.dups, concurrency_limit=2)
