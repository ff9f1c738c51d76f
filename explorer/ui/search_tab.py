"""Search tab: index a folder (typed, or uploaded), then find images by text, by image, or both.

Handlers: `build_search_index`, `search`, `search_like` and `results_view` (plain inputs in, a
SearchView out); `build` lays out and wires. Indexing and search are index_build.py and index.py,
HTML is search_html.py. The last results are kept in a gr.State (index folder, query, hits as
relative path + score), so moving the threshold never searches again, and a click on a result
searches with that image's stored embedding (no re-encoding).

Result thumbnails are made through images.Thumbnails (the same size and pixel limits apply) and
handed to the Gallery as PIL images: gradio copies them into its own cache, no server path is
sent to the browser, and nothing outside an indexed folder is read.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from ..context import AppContext
from ..images import ImageError
from ..index import ImageIndex
from ..index_build import build_index
from ..paths import PathRefused, inside_roots
from . import search_html as render
from .common import ZIP_TYPES, message, progress_reporter, session_of

FOLDER, UPLOAD = "A folder on this computer", "Upload images, a folder or a zip"
BUILD_WORKERS = 2
PLACEHOLDER_SIDE = 64


@dataclass
class SearchView:
    summary: str = ""
    gallery: list = field(default_factory=list)   # (PIL thumbnail, caption)
    table: str = ""
    state: dict = field(default_factory=dict)     # {"index", "root", "query", "hits": [{rank, path, score}]}


class Problem(ValueError):
    """Something the person can fix; shown as an error, the results stay as they were."""


def build_search_index(ctx: AppContext, choice: str, typed: str, files, folder_files,
                       progress=None) -> tuple[str, dict]:
    """Build or update the index of the chosen images -> (report HTML, new state). The same folder
    and model always update the same index; ValueError (PathRefused...) says why not."""
    model = ctx.model()
    uploaded = ctx.settings.hosted or choice == UPLOAD
    notes: list[str] = []
    if uploaded:
        uploads = [f for f in list(files or []) + list(folder_files or []) if f]
        if not uploads:
            raise Problem("Upload images, a folder or a zip first.")
        root, notes = ctx.unpack(uploads)
        shown = f"your upload ({len(uploads)} file(s))"
    else:
        root = ctx.folder(typed)
        shown = str(root)
    target = ctx.indexes.path_for(root, model)
    with ctx.indexes.build_lock(target), ctx.upload_named(root) if uploaded else nullcontext():
        result = build_index(model, root, target, workers=BUILD_WORKERS, limits=ctx.settings.limits,
                             progress=progress_reporter(progress, "images embedded"))
        index = ctx.indexes.reopen(target)
    return render.build_report(shown, result, notes, uploaded=uploaded), {"index": str(index.folder),
                                                                          "root": str(index.root)}


def _open(ctx: AppContext, state: dict) -> ImageIndex:
    if not state.get("index"):
        raise Problem("Build an index first (step 1).")
    try:
        return ctx.open_index(state["index"])
    except (ValueError, OSError) as exc:
        raise Problem(f"The index cannot be opened: {exc}. Build it again.") from None


def _ranked(ctx: AppContext, index: ImageIndex, vector, query: str, k: int, limit: float) -> SearchView:
    hits = [h for h in index.search(vector, int(k))[0] if inside_roots(h.absolute, (index.root,))]
    state = {"index": str(index.folder), "root": str(index.root), "query": query, "indexed": index.count,
             "hits": [{"rank": h.rank, "path": h.path, "score": h.score} for h in hits]}
    return results_view(ctx, state, limit)


def search(ctx: AppContext, state: dict, query_text: str, image_path: str | None, image_weight: float,
           k: int, limit: float) -> SearchView:
    """Search the session's index by a text, an image, or both (weighted by `image_weight`)."""
    model = ctx.model()
    index = _open(ctx, state)
    query_text = (query_text or "").strip()
    texts = [query_text] if query_text else []
    if not texts and not image_path:
        raise Problem("Type a text or drop an image to search by.")
    weights = [1 - image_weight, image_weight] if texts and image_path else None
    try:
        vector = index.query_vector(model, texts, [image_path] if image_path else [], weights, ctx.settings.limits)
    except ImageError as exc:
        raise Problem(f"The query image cannot be used: {exc.reason}") from None
    parts = []
    if texts:
        parts.append(f'text "{query_text}"' + (f" (weight {1 - image_weight:.2f})" if weights else ""))
    if image_path:
        parts.append(f"image {Path(image_path).name}" + (f" (weight {image_weight:.2f})" if weights else ""))
    return _ranked(ctx, index, vector, "Search by " + " + ".join(parts), k, limit)


def search_like(ctx: AppContext, state: dict, position: int, k: int, limit: float) -> SearchView | None:
    """Search by the stored embedding of the result shown at `position`; None when there is none."""
    index = _open(ctx, state)
    shown = [h for h in state.get("hits", []) if h["score"] >= limit]
    if not isinstance(position, int) or not 0 <= position < len(shown):
        return None
    picked = shown[position]["path"]
    vector = index.embedding_of(picked)
    if vector is None:
        raise Problem(f"{picked} is no longer in the index; build it again.")
    return _ranked(ctx, index, vector, f"Images like {picked}", k, limit)


def results_view(ctx: AppContext, state: dict, limit: float) -> SearchView:
    """The hits in `state` scoring >= `limit`, with thumbnails; no search is run."""
    hits = state.get("hits")
    if hits is None:
        return SearchView(state=state)
    root = Path(state["root"])
    shown, items = [], []
    for hit in hits:
        if hit["score"] < limit:
            continue
        path = root / hit["path"]
        thumb = ctx.thumbnails.image(path) if inside_roots(path, (root,)) else None
        shown.append(dict(hit, ok=thumb is not None))
        items.append((thumb or Image.new("RGB", (PLACEHOLDER_SIDE,) * 2, (200, 200, 200)), render.caption(hit)))
    return SearchView(render.summary(state["query"], len(shown), len(hits), limit, state.get("indexed")), items,
                      render.results(shown), state)


def build(ctx: AppContext) -> None:
    hosted = ctx.settings.hosted
    state = gr.State({})
    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown("**1. Choose the images to search**")
            source = gr.Radio([FOLDER, UPLOAD], value=UPLOAD if hosted else FOLDER, show_label=False,
                              visible=not hosted, elem_id="search-source")
            folder = gr.Textbox(label="Folder", elem_id="search-folder", visible=not hosted,
                                placeholder="an absolute path, e.g. " + str(Path.home() / "Pictures"),
                                info="Allowed: inside " + ", ".join(str(r) for r in ctx.settings.allowed_roots))
            with gr.Group(visible=hosted) as upload_group:
                upload_files = gr.File(label="Images or .zip files", file_count="multiple", height=120,
                                       file_types=ZIP_TYPES, elem_id="search-upload")
                upload_dir = gr.File(label="…or a whole folder", file_count="directory", height=120,
                                     elem_id="search-upload-dir")
            index_button = gr.Button("Build / update index", variant="primary", elem_id="search-build")
            report = gr.HTML(elem_id="search-report")
            gr.Markdown("**2. Search**")
            text = gr.Textbox(label="Text", placeholder="a red circle", elem_id="search-text")
            image = gr.Image(label="…and/or an image", type="filepath", sources=["upload", "clipboard"],
                             height=160, elem_id="search-image")
            weight = gr.Slider(0, 1, value=0.5, step=0.05, label="Image weight when searching by both",
                               info="0: only the text counts, 1: only the image", elem_id="search-weight")
            top_k = gr.Slider(1, 100, value=24, step=1, label="Results", elem_id="search-k")
            search_button = gr.Button("Search", variant="primary", elem_id="search-run")
        with gr.Column(scale=3):
            threshold = gr.Slider(-1, 1, value=0, step=0.01, label="Score threshold (cosine)",
                                  info="Hide results below this score; no new search", elem_id="search-threshold")
            summary = gr.HTML(elem_id="search-summary")
            gallery = gr.Gallery(label="Results (click one to search by it)", show_label=False, columns=6,
                                 height="auto", allow_preview=False, object_fit="contain", visible=False,
                                 elem_id="search-gallery", buttons=[])
            table = gr.HTML(elem_id="search-results")

    ui = SimpleNamespace(**locals())  # every component above, by name, for the wiring
    _wire(ui)


def _shown(view: SearchView):
    return (view.summary, gr.update(value=view.gallery, visible=bool(view.gallery), selected_index=None),
            view.table, view.state)


def _guarded(handler):
    """Run a search handler; a problem is shown and the results and state stay as they were."""
    def run(*args):
        current = args[0]
        try:
            view = handler(*args)
        except ValueError as exc:
            return message(str(exc), "error"), gr.update(), gr.update(), current
        return (gr.update(), gr.update(), gr.update(), current) if view is None else _shown(view)
    return run


def _wire(ui) -> None:
    ctx = ui.ctx

    def on_build(choice, typed, files, folder_files, current, request: gr.Request, progress=gr.Progress()):
        mine = session_of(ctx, request)
        try:
            html, new_state = build_search_index(mine, choice, typed, files, folder_files, progress)
        except ValueError as exc:
            prefix = "Refused" if isinstance(exc, PathRefused) else "Indexing failed"
            return message(f"{prefix}: {exc}", "error"), current, gr.update(), gr.update(), gr.update()
        return html, new_state, *_shown(results_view(mine, new_state, 0.0))[:3]

    def on_select(current, k, limit, evt: gr.SelectData, request: gr.Request):
        return _guarded(lambda cur: search_like(session_of(ctx, request), cur, evt.index, k, limit))(current)

    def on_search(current, text, image, weight, k, limit, request: gr.Request):
        return _guarded(lambda cur: search(session_of(ctx, request), cur, text, image, weight, k, limit))(current)

    def on_threshold(current, limit, request: gr.Request):
        return _shown(results_view(session_of(ctx, request), current, limit))[:3]

    ui.source.change(lambda s: (gr.update(visible=s == FOLDER), gr.update(visible=s == UPLOAD)),
                     ui.source, [ui.folder, ui.upload_group])
    results = [ui.summary, ui.gallery, ui.table]
    ui.index_button.click(on_build, [ui.source, ui.folder, ui.upload_files, ui.upload_dir, ui.state],
                          [ui.report, ui.state, *results], concurrency_limit=1, api_name="build_index")
    search_inputs = [ui.state, ui.text, ui.image, ui.weight, ui.top_k, ui.threshold]
    ui.search_button.click(on_search, search_inputs, [*results, ui.state], concurrency_limit=2, api_name="search")
    ui.text.submit(on_search, search_inputs, [*results, ui.state], concurrency_limit=2)
    ui.gallery.select(on_select, [ui.state, ui.top_k, ui.threshold], [*results, ui.state], concurrency_limit=2)
    ui.threshold.change(on_threshold, [ui.state, ui.threshold], results, show_progress="hidden")
