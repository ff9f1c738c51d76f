"""Modality-gap tab plumbing: where the images and texts come from, and what one run keeps.

No maths here: embeddings come from explorer.gap_inputs (the same code as `python -m explorer gap`),
numbers from explorer.gap. A run's embeddings are kept in the page's gr.State (a `GapRun`), so the
projection method and the shift slider recompute from them and never re-encode. Image embeddings
are also cached per (source, model), so changing only the texts does not re-encode the images.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..captions import CaptionError, read_sidecar_captions
from ..gap import evaluate_shift, gap_measures
from ..gap_inputs import (GapImages, caption_texts, csv_captions_for, embed_files, embed_folder, index_embeddings,
                          label_texts, sidecar_captions_for)
from ..images import IMAGE_EXTENSIONS, file_key, scan_folder, thumbnail_uri
from ..index import open_index
from ..paths import PathRefused, allowed_folder, fresh_upload_dir, inside_roots, unpack_uploads
from ..prompts import PromptError, load_template_set, parse_labels
from ..store import Store
from .search_indexes import UPLOAD_DIR

UPLOAD, FOLDER, INDEXED = "Upload images or a zip", "Folder on this machine", "Indexed folder (Search tab)"
LABELS, CSV, SIDECAR = "Labels + templates", "Captions CSV (path,caption)", "Caption .txt beside each image"
TEMPLATE_SETS = {"Single: a photo of a {}.": "single", "7 templates (OpenAI subset)": "simple",
                 "80 templates (OpenAI ImageNet)": "openai"}
SHIFT_STEPS = np.round(np.linspace(0.0, 1.0, 11), 2)
WORK_DIR = Path(tempfile.gettempdir()) / "clip-explorer-gap"
CACHE_SIZE = 4
MAX_THUMBNAILS = 400   # hover previews in the projection; more would bloat the figure sent to the browser


@dataclass
class GapRun:
    """One computed run: everything the figures and the slider need, without the model."""
    names: list[str]                 # image names shown on hover (relative paths or file names)
    thumbnails: list                 # data: URIs (or None) for hover previews, indexed like names
    texts: list[str]
    image_emb: np.ndarray
    text_emb: np.ndarray
    matches: np.ndarray
    kind: str                        # "labels" or "captions"
    source: str
    measures: object = None          # gap.GapMeasures
    curve: list = field(default_factory=list)   # gap.ShiftPoint for SHIFT_STEPS
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return "zero-shot accuracy" if self.kind == "labels" else "caption retrieval R@1"


# ---- images ---------------------------------------------------------------------------------------
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()



def _cached(key, make):
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = make()
    with _lock:
        _cache[key] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _relative(paths: list[str], root: Path) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(Path(p).relative_to(root).as_posix())
        except ValueError:
            out.append(os.path.basename(p))
    return out


def indexed_folders(index_dir: Path | None, model) -> list[tuple[str, str]]:
    """(shown name, index folder) for the indexes under `index_dir` that `model` made."""
    if model is None or index_dir is None or not Path(index_dir).is_dir():
        return []
    wanted = json.loads(json.dumps(model.identity.as_dict(), default=str))
    found = []
    for sub in sorted(Path(index_dir).iterdir()):
        try:
            store = Store(sub)
        except Exception:  # not an index, or one that cannot be read: not offered
            continue
        try:
            root, identity, count = store.get_meta("root"), store.get_meta("identity"), store.count()
        finally:
            store.close()
        if root and identity == wanted:
            found.append((f"{root} ({count:,} images)", str(sub)))
    return found


@dataclass
class Images:
    found: GapImages
    names: list[str]
    root: Path                 # the folder the names are relative to
    source: str
    notes: list[str] = field(default_factory=list)
    uploaded: bool = False     # copies of uploads, deleted once embedded (no .txt beside them)
    thumbnails: list = field(default_factory=list)


def _thumbnails(paths: list[str], settings) -> list:
    limits = dict(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    return [thumbnail_uri(p, **limits) if i < MAX_THUMBNAILS else None for i, p in enumerate(paths)]


def images_from(model, settings, source: str, files, folder_text: str, index_choice: str | None,
                progress=None) -> Images:
    """Embedded images from uploads, a typed folder or an index. Raises PathRefused / ValueError."""
    limits = dict(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    if source == UPLOAD:
        uploads = [f for f in (files or []) if f and Path(f).suffix.lower() in IMAGE_EXTENSIONS | {".zip"}]
        if not uploads:
            raise ValueError("Drop some images (or a zip of them) first.")
        key = ("upload", tuple(file_key(u) for u in uploads), model.identifier)

        def make():
            dest = fresh_upload_dir(WORK_DIR)
            try:
                root, notes = unpack_uploads(uploads, dest)
                found = embed_files(model, scan_folder(root), progress=progress, **limits)
                return Images(found, _relative(found.paths, root), root, f"{len(uploads)} uploaded file(s)", notes,
                              uploaded=True, thumbnails=_thumbnails(found.paths, settings))
            finally:
                shutil.rmtree(dest, ignore_errors=True)
        return _cached(key, make)
    if source == FOLDER:
        root = allowed_folder(folder_text, settings.allowed_roots, settings.hosted)
        found = embed_folder(model, root, progress=progress, **limits)  # the model caches by path, size, mtime
        return Images(found, _relative(found.paths, root), root, str(root),
                      thumbnails=_thumbnails(found.paths, settings))
    if not index_choice:
        raise ValueError("Pick an indexed folder (build one in the Search tab), or choose another image source.")
    index = open_index(index_choice)
    try:
        found = index_embeddings(index, model)
        root = index.root
    finally:
        index.close()
    servable = inside_roots(root, tuple(settings.allowed_roots) + (UPLOAD_DIR.resolve(),))
    return Images(found, _relative(found.paths, root), root, f"the index of {root}",
                  ["stored embeddings from the Search tab's index: nothing was re-encoded"],
                  thumbnails=_thumbnails(found.paths, settings) if servable else [])


# ---- texts ----------------------------------------------------------------------------------------
def texts_for(model, settings, images: Images, text_source: str, label_text: str, template_choice: str,
              csv_file: str | None, files) -> tuple:
    """GapTexts for the images, plus notes. Raises PromptError / CaptionError / ValueError."""
    paths = images.found.paths
    if text_source == LABELS:
        parsed = parse_labels(label_text)
        labels, notes = parsed.labels, list(parsed.notes)
        if not labels:
            folders = sorted({n.split("/")[0] for n in images.names if "/" in n})
            if len(folders) >= 2:
                labels, notes = folders, [f"labels taken from the {len(folders)} sub-folder names"]
        if len(labels) < 2:
            raise PromptError("Type at least two labels (or use images in class sub-folders).")
        return label_texts(model, paths, labels, load_template_set(TEMPLATE_SETS[template_choice])), notes
    if text_source == CSV:
        if not csv_file:
            raise CaptionError("Upload a CSV whose first line is path,caption.")
        return caption_texts(model, paths, csv_captions_for(csv_file, paths, images.root), "the CSV"), []
    if images.uploaded:  # uploads: .txt files dropped with the images, matched by stem
        text_files = [f for f in (files or []) if f and Path(f).suffix.lower() == ".txt"]
        if not text_files:
            raise CaptionError("Drop the caption .txt files together with the images (cat.jpg with cat.txt).")
        return caption_texts(model, paths, sidecar_captions_for(paths, text_files), "the .txt files"), []
    if not inside_roots(images.root, tuple(settings.allowed_roots) + (UPLOAD_DIR.resolve(),)):
        raise PathRefused(f"{images.root} is outside the folders this app may read, so its .txt files cannot be read")
    return caption_texts(model, paths, read_sidecar_captions(paths), "the .txt files"), []


def compute(model, settings, source, files, folder_text, index_choice, text_source, label_text,
            template_choice, csv_file, progress=None) -> GapRun:
    """Embed (or fetch cached embeddings), then measure. Raises one of the errors above with a message."""
    images = images_from(model, settings, source, files, folder_text, index_choice, progress)
    if not images.found.paths:
        raise ValueError("None of the images could be read.")
    texts, notes = texts_for(model, settings, images, text_source, label_text, template_choice, csv_file, files)
    run = GapRun(images.names, images.thumbnails, texts.texts, images.found.embeddings, texts.embeddings,
                 texts.matches, texts.kind,
                 images.source, notes=images.notes + notes + texts.problems,
                 failures=[_short(f, images.root) for f in images.found.failures])
    run.measures = gap_measures(run.image_emb, run.text_emb, run.matches)
    run.curve = evaluate_shift(run.image_emb, run.text_emb, SHIFT_STEPS, run.matches)
    return run


def shift_point(run: GapRun, lam: float):
    """The readout at one shift, from the run's embeddings (no encoding)."""
    return evaluate_shift(run.image_emb, run.text_emb, [float(lam)], run.matches)[0]


def _short(line: str, root: Path) -> str:
    return line.replace(f"{root}/", "")
