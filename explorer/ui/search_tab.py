"""Search tab: index a folder (typed, or uploaded), then find images by text, by image, or both.

Layout and wiring only; indexing and search live in explorer/index.py, bookkeeping and thumbnails
in search_indexes.py, HTML in search_html.py. The last results are kept in a gr.State (index folder,
query, hits as relative path + score), so moving the threshold never searches again, and a click on
a result searches with that image's stored embedding (no re-encoding).
"""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from .. import paths
from ..images import IMAGE_EXTENSIONS, ImageError, load_image
from ..index import IndexMismatchError, build_index, combine_queries
from ..model import ModelSlot
from ..progress import RateText
from ..settings import Settings
from . import search_html as render
from .search_indexes import (UPLOAD_DIR, OpenIndexes, Thumbnails, index_folder, placeholder, prune_upload_indexes,
                             servable_roots)

FOLDER, UPLOAD = "A folder on this computer", "Upload images, a folder or a zip"
BUILD_WORKERS = 2
DEFAULT_INDEX_DIR = Path.home() / ".cache" / "clip-explorer" / "indexes"


def build(settings: Settings, slot: ModelSlot) -> None:
    indexes = OpenIndexes()
    thumbs = Thumbnails(settings.max_upload_bytes, settings.max_pixels)
    base = Path(settings.index_dir or DEFAULT_INDEX_DIR)
    served = servable_roots(settings.allowed_roots)
    state = gr.State({})

    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown("**1. Choose the images to search**")
            source = gr.Radio([FOLDER, UPLOAD], value=UPLOAD if settings.hosted else FOLDER, show_label=False,
                              visible=not settings.hosted, elem_id="search-source")
            folder = gr.Textbox(label="Folder", elem_id="search-folder", visible=not settings.hosted,
                                placeholder="an absolute path, e.g. " + str(Path.home() / "Pictures"),
                                info="Allowed: inside " + ", ".join(str(r) for r in settings.allowed_roots))
            with gr.Group(visible=settings.hosted) as upload_group:
                upload_files = gr.File(label="Images or .zip files", file_count="multiple", height=120,
                                       file_types=sorted(IMAGE_EXTENSIONS) + [".zip"], elem_id="search-upload")
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
            gallery = gr.Gallery(label="Results (click one to search by it)", show_label=False,
                                 columns=6, height="auto",
                                 allow_preview=False, object_fit="contain", visible=False,
                                 elem_id="search-gallery", buttons=[])
            table = gr.HTML(elem_id="search-results")

    source.change(lambda s: (gr.update(visible=s == FOLDER), gr.update(visible=s == UPLOAD)),
                  source, [folder, upload_group])

    def show(new_state: dict, limit: float):
        """(summary HTML, gallery update, table HTML) for the hits in `new_state` scoring >= `limit`."""
        hits = new_state.get("hits")
        if hits is None:
            return "", gr.update(value=[], visible=False), ""
        root = Path(new_state["root"])
        shown, items = [], []
        for hit in hits:
            if hit["score"] < limit:
                continue
            thumb = thumbs.get(root / hit["path"], root)
            shown.append(dict(hit, ok=thumb is not None))
            items.append((thumb if thumb is not None else placeholder(), render.caption(hit)))
        return (render.summary(new_state["query"], len(shown), len(hits), limit),
                gr.update(value=items, visible=bool(items), selected_index=None), render.results(shown))

    def problem(text: str, current: dict):
        """Search outputs that show `text` and leave the results and state as they were."""
        return render.message(text, "error"), gr.update(), gr.update(), current

    def run_search(index, vector, query: str, k: int, limit: float):
        hits = [h for h in index.search(vector, int(k))[0] if paths.inside_roots(h.absolute, (index.root,))]
        new_state = {"index": str(index.folder), "root": str(index.root), "query": query,
                     "hits": [{"rank": h.rank, "path": h.path, "score": h.score} for h in hits]}
        return (*show(new_state, limit), new_state)

    def open_for_search(current: dict):
        """(the session's index, None) or (None, why there is none)."""
        if not current.get("index"):
            return None, "Build an index first (step 1)."
        try:
            index = indexes.get(current["index"])
        except (ValueError, OSError) as exc:
            return None, f"The index cannot be opened: {exc}. Build it again."
        if not paths.inside_roots(index.root, served):
            return None, f"{index.root} is not a folder this app may show."
        return index, None

    def on_build(choice, typed, files, folder_files, current, progress=gr.Progress()):
        def refuse(text: str):
            return (render.message(text, "error"), current, gr.update(), gr.update(), gr.update())

        model = slot.model
        if model is None:
            return refuse(f"No model is loaded. {slot.error or ''} Load one in the Model panel above.")
        notes: list[str] = []
        uploaded = settings.hosted or choice == UPLOAD
        try:
            if uploaded:
                uploads = list(files or []) + list(folder_files or [])
                if not uploads:
                    return refuse("Upload images, a folder or a zip first.")
                progress(0, desc="Unpacking the upload")
                root, notes = paths.unpack_uploads(uploads, paths.fresh_upload_dir(UPLOAD_DIR))
                prune_upload_indexes(base)
                shown_name = f"your upload ({len(uploads)} file(s))"
            else:
                root = paths.allowed_folder(typed, settings.allowed_roots, settings.hosted)
                shown_name = str(root)
            target = index_folder(base, root, model)
            progress(0, desc="Scanning the folder")

            rate = RateText("images embedded")

            def step(done: int, total: int) -> None:
                progress(done / total if total else 1.0, desc=rate(done, total))

            with indexes.build_lock(target):
                result = build_index(model, root, target, workers=BUILD_WORKERS, progress=step,
                                     max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
                index = indexes.reopen(target)
        except paths.PathRefused as exc:
            return refuse(f"Refused: {exc}")
        except (IndexMismatchError, ValueError, OSError) as exc:
            return refuse(f"Indexing failed: {exc}")
        new_state = {"index": str(index.folder), "root": str(index.root)}
        return (render.build_report(shown_name, result, notes, uploaded=uploaded), new_state,
                *show(new_state, 0.0))

    def on_search(query_text, image_path, image_weight, k, limit, current):
        model = slot.model
        if model is None:
            return problem("No model is loaded; load one in the Model panel above.", current)
        index, why = open_for_search(current)
        if why:
            return problem(why, current)
        query_text = (query_text or "").strip()
        texts = [query_text] if query_text else []
        if not texts and not image_path:
            return problem("Type a text or drop an image to search by.", current)
        weights = [1 - image_weight, image_weight] if texts and image_path else None
        try:
            index.check_model(model)
            images = [load_image(image_path, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels,
                                 name=os.path.basename(image_path))] if image_path else []
            vector = combine_queries(model, texts, images, weights)
        except ImageError as exc:
            return problem(f"The query image cannot be used: {exc.reason}", current)
        except (IndexMismatchError, ValueError) as exc:
            return problem(str(exc), current)
        parts = []
        if texts:
            parts.append(f'text "{query_text}"' + (f" (weight {1 - image_weight:.2f})" if weights else ""))
        if image_path:
            parts.append(f"image {os.path.basename(image_path)}"
                         + (f" (weight {image_weight:.2f})" if weights else ""))
        return run_search(index, vector, "Search by " + " + ".join(parts), k, limit)

    def on_select(current, k, limit, evt: gr.SelectData):
        index, why = open_for_search(current)
        if why:
            return problem(why, current)
        shown = [h for h in current.get("hits", []) if h["score"] >= limit]
        if not isinstance(evt.index, int) or not 0 <= evt.index < len(shown):
            return gr.update(), gr.update(), gr.update(), current
        picked = shown[evt.index]["path"]
        vector = index.embedding_of(picked)
        if vector is None:
            return problem(f"{picked} is no longer in the index; build it again.", current)
        return run_search(index, vector, f"Images like {picked}", k, limit)

    results = [summary, gallery, table]
    index_button.click(on_build, [source, folder, upload_files, upload_dir, state], [report, state, *results],
                       concurrency_limit=1)
    search_inputs = [text, image, weight, top_k, threshold, state]
    search_button.click(on_search, search_inputs, [*results, state], concurrency_limit=2)
    text.submit(on_search, search_inputs, [*results, state], concurrency_limit=2)
    gallery.select(on_select, [state, top_k, threshold], [*results, state], concurrency_limit=2)
    threshold.change(show, [state, threshold], results, show_progress="hidden")
