"""Image indexes of a folder: build (incremental, resumable), open, search.

An index is a folder (the `--index PATH`) holding three files:

    index.db       SQLite, the source of truth (see store.py): one row per image file with its path
                   relative to the indexed folder, size, mtime_ns and float32 embedding (or the
                   reason it failed); meta rows with the model identity (name, pretrained tag or
                   checkpoint, embedding dim, image size, preprocessing), the folder, the requested
                   index type, and a generation counter bumped by every change.
    faiss.index    the FAISS index (an IndexIDMap2 whose ids are index.db row ids), derived data.
    manifest.json  what faiss.index was built from: {"version", "generation", "count", "dim",
                   "index_type", "params" (nprobe/efSearch), "identity", "root"}, for people and
                   for the staleness check.

Crash safety: embeddings are committed to index.db a batch per transaction (WAL), so a `kill -9`
leaves every finished batch and nothing half-written; the next run embeds only what is missing.
faiss.index and manifest.json are each replaced atomically (temp file, fsync, rename), manifest last.
Whenever manifest.json's generation differs from index.db's (a crash between the two, or a file
deleted by hand), faiss.index is rebuilt from the stored embeddings, which needs no model.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import search as faiss_ops
from .images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageError, ImageFailure, load_image, scan_folder
from .model import describe
from .search import combine_queries, find_duplicates  # noqa: F401  (part of this module's API)
from .store import IndexFormatError, Store

FAISS_NAME = "faiss.index"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

Progress = Callable[[int, int], None]


class IndexMismatchError(ValueError):
    """An index is used with a model (or folder) other than the one that made it."""


@dataclass
class IndexReport:
    """What one indexing run did. `failed` lists every file that is currently unusable, including
    unchanged bad files from earlier runs (which are not decoded again)."""
    added: int
    updated: int
    removed: int
    unchanged: int
    failed: list[ImageFailure]
    total: int            # images searchable in the index after the run
    seconds: float
    index_type: str       # the FAISS factory string in use
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    rank: int             # 1-based
    path: str             # relative to the indexed folder, posix separators
    absolute: Path
    score: float          # cosine similarity


def default_index_path(index_dir: str | os.PathLike, root: str | os.PathLike, model) -> Path:
    """Where the app keeps the index of `root` made with `model`: one folder per (folder, model) pair,
    named by a SHA-1 of both, so the same folder and model always find the same index."""
    import hashlib

    key = json.dumps({"root": str(Path(root).resolve()), "model": model.identity.as_dict()}, sort_keys=True,
                     default=str)
    return Path(index_dir) / hashlib.sha1(key.encode()).hexdigest()[:20]


def existing_index_for(index_dir: str | os.PathLike | None, root: str | os.PathLike, model):
    """The app's index of `root` made with `model`, opened, if one exists; else None."""
    if index_dir is None:
        return None
    path = default_index_path(index_dir, root, model)
    if not (path / "index.db").is_file():
        return None
    try:
        index = open_index(path)
        index.check_model(model)
        return index
    except (ValueError, OSError):
        return None


# ---- building --------------------------------------------------------------------------------
def build_index(model, root: str | os.PathLike, index_path: str | os.PathLike, *, batch_size: int = 32,
                workers: int = 2, index_type: str | None = None, progress: Progress | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> IndexReport:
    """Index the images under `root` into the folder `index_path`, or bring an existing index up to
    date: embed new and changed files (by path, size, mtime), drop files that are gone, keep the rest.

    Decoding and preprocessing run in `workers` processes (0: inline) while `model` encodes.
    `index_type` is a FAISS index_factory string ("Flat", "IVF1024,Flat", "HNSW32,Flat"); None keeps
    the index's earlier choice, or picks automatically by size. `progress(done, total)` is called
    after each batch. Bad files never stop the run; they are listed in the report.
    Raises IndexMismatchError when the index was made by another model or for another folder.
    """
    started = time.perf_counter()
    if batch_size < 1 or workers < 0:
        raise ValueError("batch size must be at least 1 and workers at least 0")
    root = Path(root).expanduser().resolve()
    try:
        files = scan_folder(root)
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    if index_type:
        faiss_ops.check_factory(index_type, model.embed_dim)
    folder = Path(index_path).expanduser()
    store = Store(folder, create=True)
    try:
        _claim(store, folder, model, root)
        plan = _plan(store, root, files)
        requested = index_type or store.get_meta("index_type", "auto")
        needed = 0 if requested == "auto" else faiss_ops.training_minimum(requested, model.embed_dim)
        if needed > plan.unchanged + len(plan.todo):  # fail before the embedding work, not after
            raise ValueError(f"FAISS index type {requested!r} needs at least {needed} images to train; "
                             f"the folder has at most {plan.unchanged + len(plan.todo)} (use a smaller one, or Flat)")
        store.set_meta("index_type", requested)
        store.remove(plan.gone)
        embedded = _embed(store, model, root, plan.todo, batch_size, workers, progress,
                          max_bytes, max_pixels)
        faiss_index, manifest = _refresh(store, folder)
        failures = [ImageFailure(path, reason) for path, reason in store.failures()]
        new_paths = {rel for rel, *_ in plan.todo if rel not in plan.known}
        added = sum(1 for rel in embedded if rel in new_paths)
        return IndexReport(added=added, updated=len(embedded) - added, removed=len(plan.gone),
                           unchanged=plan.unchanged, failed=failures, total=faiss_index.ntotal,
                           seconds=time.perf_counter() - started, index_type=manifest["index_type"],
                           params=manifest["params"])
    finally:
        store.close()


def _claim(store: Store, folder: Path, model, root: Path) -> None:
    """Record model and folder in a new index; refuse an index made for others."""
    identity = _jsonable(model.identity.as_dict())
    with store.transaction():
        stored = store.get_meta("identity")
        if stored is None:
            store.set_meta("identity", identity)
        elif stored != identity:
            raise IndexMismatchError(_mismatch_message(folder, stored, model))
        stored_root = store.get_meta("root")
        if stored_root is None:
            store.set_meta("root", str(root))
        elif Path(stored_root) != root:
            raise IndexMismatchError(f"index {folder} is for the folder {stored_root}, not {root}; "
                                     "give each folder its own --index")


@dataclass
class _Plan:
    todo: list[tuple[str, int, int]]       # (relative path, size, mtime_ns) to embed
    known: set[str]                        # paths the index had before this run
    gone: list[str]
    unchanged: int                         # unchanged files with an embedding


def _plan(store: Store, root: Path, files: list[Path]) -> _Plan:
    states = store.states()
    todo, seen, unchanged = [], set(), 0
    for path in files:
        rel = path.relative_to(root).as_posix()
        seen.add(rel)
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # vanished or unreadable: try it, record the reason, retry next run
        state = states.get(rel)
        if state is not None and state.size == size and state.mtime_ns == mtime and size >= 0:
            unchanged += state.error is None
            continue
        todo.append((rel, size, mtime))
    gone = sorted(set(states) - seen)
    return _Plan(todo, set(states), gone, unchanged)


class _Decode(torch.utils.data.Dataset):
    """Decode + preprocess one file; failures come back as data, never as exceptions."""

    def __init__(self, root: Path, todo, preprocess, max_bytes: int, max_pixels: int):
        self.root, self.todo, self.preprocess = root, todo, preprocess
        self.max_bytes, self.max_pixels = max_bytes, max_pixels

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int):
        rel = self.todo[i][0]
        try:
            image = load_image(self.root / rel, max_bytes=self.max_bytes, max_pixels=self.max_pixels, name=rel)
            return i, self.preprocess(image), None
        except ImageError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a preprocessing failure on one odd image must not end the run
            return i, None, f"preprocessing failed ({type(exc).__name__}: {exc})"


def _collate(samples):
    good = [(i, pixels) for i, pixels, error in samples if error is None]
    bad = [(i, error) for i, _, error in samples if error is not None]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [i for i, _ in good], pixels, bad


def _embed(store: Store, model, root: Path, todo, batch_size: int, workers: int,
           progress: Progress | None, max_bytes: int, max_pixels: int) -> list[str]:
    """Embed `todo` in batches, committing each batch; returns the paths embedded."""
    if progress:
        progress(0, len(todo))
    if not todo:
        return []
    loader = torch.utils.data.DataLoader(
        _Decode(root, todo, model.preprocess, max_bytes, max_pixels), batch_size=batch_size,
        num_workers=workers, collate_fn=_collate, prefetch_factor=4 if workers else None)
    # Workers are forked when iteration starts; no child may inherit the database connection.
    store.close()
    batches = iter(loader)
    store.open()
    embedded, done = [], 0
    for good, pixels, bad in batches:
        vectors = model.encode_pixels(pixels) if pixels is not None else []
        rows = [(*todo[i], vector) for i, vector in zip(good, vectors)]
        store.write_batch(rows, [(*todo[i], reason) for i, reason in bad])
        embedded.extend(todo[i][0] for i in good)
        done += len(good) + len(bad)
        if progress:
            progress(done, len(todo))
    return embedded


# ---- the FAISS side --------------------------------------------------------------------------
def _refresh(store: Store, folder: Path, *, write: bool = True):
    """Load faiss.index if it matches index.db; otherwise rebuild it from the stored embeddings
    (and save it when `write`). Returns (faiss index on CPU, manifest dict)."""
    manifest = _read_manifest(folder)
    identity = store.get_meta("identity")
    generation = store.generation
    requested = store.get_meta("index_type", "auto")
    faiss_file = folder / FAISS_NAME
    if (manifest is not None and manifest.get("generation") == generation and faiss_file.is_file()
            and manifest.get("requested") == requested):
        try:
            index = faiss_ops.load(faiss_file)
            faiss_ops.apply_parameters(index, manifest.get("params", {}))
            return index, manifest
        except (RuntimeError, OSError):
            pass  # unreadable: rebuild below
    dim = int(identity["embed_dim"])
    ids, vectors = store.embeddings(dim)
    factory = faiss_ops.auto_factory(len(ids)) if requested == "auto" else requested
    index, params = faiss_ops.build(ids, vectors, factory)
    manifest = {"version": MANIFEST_VERSION, "generation": generation, "count": int(len(ids)), "dim": dim,
                "index_type": factory, "requested": requested, "params": params, "identity": identity,
                "root": store.get_meta("root")}
    if write:
        try:
            faiss_ops.save(index, faiss_file)
            faiss_ops.write_atomic(folder / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
        except OSError:
            pass  # a read-only index still works; it is rebuilt in memory each time it is opened
    return index, manifest


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("version") == MANIFEST_VERSION else None


# ---- using an index --------------------------------------------------------------------------
class ImageIndex:
    """An opened index: search it, look up stored embeddings, check a model against it.
    Safe to share between threads (calls are serialised)."""

    def __init__(self, folder: Path, store: Store, faiss_index, manifest: dict):
        self.folder = folder
        self.store = store
        self.manifest = manifest
        self.identity: dict = store.get_meta("identity")
        self.root = Path(store.get_meta("root"))
        self.dim = int(self.identity["embed_dim"])
        self.index_type: str = manifest["index_type"]
        self.faiss = faiss_ops.to_device(faiss_index)
        self._lock = threading.RLock()

    @property
    def count(self) -> int:
        """Images that can be found."""
        return int(self.faiss.ntotal)

    def describe_model(self) -> str:
        return describe(self.identity["name"], self.identity.get("pretrained"))

    def check_model(self, model) -> None:
        """Raise IndexMismatchError, naming both models, unless `model` made this index."""
        if _jsonable(model.identity.as_dict()) != self.identity:
            raise IndexMismatchError(_mismatch_message(self.folder, self.identity, model))

    def search(self, query_vectors: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """Top-k images per query row ([Q, D] or [D], normalised) by cosine, best first."""
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query vectors are {queries.shape[1]}-d; this index holds {self.dim}-d embeddings")
        if k < 1:
            raise ValueError("k must be at least 1")
        k = min(k, self.count)
        if k == 0:
            return [[] for _ in queries]
        with self._lock:
            scores, ids = self.faiss.search(queries, k)
            names = self.store.paths_of(ids.ravel())
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [(float(s), names[int(i)]) for s, i in zip(row_scores, row_ids) if int(i) in names]
            results.append([SearchHit(rank, path, self.root / path, score)
                            for rank, (score, path) in enumerate(hits, start=1)])
        return results

    def embedding_of(self, rel_path: str) -> np.ndarray | None:
        """The stored embedding of one indexed file (path relative to the root), or None."""
        with self._lock:
            return self.store.embedding_of(Path(rel_path).as_posix())

    def file_states(self) -> dict:
        """Every stored file: relative path -> store.FileState (id, size, mtime_ns, error); no embeddings read."""
        with self._lock:
            return self.store.states()

    def all_embeddings(self) -> tuple[list[str], np.ndarray]:
        """(relative paths, float32 [N, D] embeddings) of every searchable file, read in one go."""
        with self._lock:
            ids, vectors = self.store.embeddings(self.dim)
            names = self.store.paths_of(ids)
        keep = [i for i, id_ in enumerate(ids) if int(id_) in names]
        return [names[int(ids[i])] for i in keep], vectors[keep]

    def failures(self) -> list[ImageFailure]:
        with self._lock:
            return [ImageFailure(p, r) for p, r in self.store.failures()]

    def close(self) -> None:
        self.store.close()


def open_index(path: str | os.PathLike) -> ImageIndex:
    """Open an index folder made by build_index. Raises IndexFormatError (a ValueError) when the
    folder is not an index or no run has got as far as recording its model."""
    folder = Path(path).expanduser()
    store = Store(folder)
    try:
        if store.get_meta("identity") is None or store.get_meta("root") is None:
            raise IndexFormatError(f"{folder}: the index is empty (no indexing run has started)")
        faiss_index, manifest = _refresh(store, folder, write=os.access(folder, os.W_OK))
    except BaseException:
        store.close()
        raise
    return ImageIndex(folder, store, faiss_index, manifest)


def _jsonable(value):
    return json.loads(json.dumps(value))


def _mismatch_message(folder: Path, stored: dict, model) -> str:
    made_by = describe(stored["name"], stored.get("pretrained"))
    if made_by == model.identifier:  # same name, different weights or preprocessing
        made_by += f" ({stored['embed_dim']}-d, image size {stored['image_size']})"
        given = f"{model.identifier} ({model.embed_dim}-d, image size {model.image_size})"
    else:
        given = model.identifier
    return (f"index {folder} was made by {made_by}; it cannot be used with {given}. "
            "Use the same model, or build a new index with this one")
