"""Image indexes of a folder, opened: search by vector, by texts and images, find near-duplicates;
and where the indexes are (the app's index folder, one registry of open ones). Building is in
index_build.py.

An index is a folder (the `--index PATH`) holding three files:

    index.db       SQLite, the source of truth (see store.py): one row per image file with its path
                   relative to the indexed folder, size, mtime_ns and float32 embedding (or the
                   reason it failed); meta rows with the model identity (name, pretrained tag or
                   checkpoint, embedding dim, image size, preprocessing), the folder, the requested
                   index type, and a generation counter bumped by every change.
    faiss.index    the FAISS index (an IndexIDMap2 whose ids are index.db row ids), derived data.
    manifest.json  what faiss.index was built from: {"version", "store" (index.db's uid),
                   "generation", "count", "dim", "index_type", "requested", "params"
                   (nprobe/efSearch), "identity", "root", "sha256" (of faiss.index as written)},
                   for people and for the staleness and damage checks.
    .lock          taken (flock) by every build and repair of the index: see store.folder_lock.

faiss.index and manifest.json are each replaced atomically (temp file, fsync, rename), manifest last.
Whenever manifest.json does not describe index.db's current generation (a crash between the two, or
a file deleted by hand), faiss.index is rebuilt from the stored embeddings, which needs no model;
when faiss.index does not match the manifest's SHA-256 (damaged on disk), the same happens and the
opened index says so (`ImageIndex.repaired`, the build report's notes). The hash is checked once
per open: the app keeps indexes open (IndexRegistry), so a search never pays for it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import faiss_ops, remote
from .duplicates import DuplicateGroup, link_pairs, scored_groups
from .images import DEFAULT_LIMITS, ImageError, ImageFailure, Limits
from .model import describe
from .sources import embed_files
from .store import DB_NAME, IndexDamagedError, IndexFormatError, Store, folder_lock
from .vectors import normalize

FAISS_NAME = "faiss.index"
MANIFEST_NAME = "manifest.json"
log = logging.getLogger(__name__)
MANIFEST_VERSION = 2  # 2: "store" and "sha256"; a version-1 manifest is replaced on the next open


class IndexMismatchError(ValueError):
    """An index is used with a model (or folder) other than the one that made it."""


@dataclass(frozen=True)
class SearchHit:
    rank: int             # 1-based
    path: str             # relative to the indexed folder, posix separators
    absolute: Path
    score: float          # cosine similarity


def root_of(recorded: str):
    """An index's recorded root: a Path, or for a URI folder (remote.py) a RemoteRoot, which
    joins `root / relative` the same way."""
    return remote.RemoteRoot(recorded) if remote.is_uri(recorded) else Path(recorded)


def jsonable(value):
    return json.loads(json.dumps(value, default=str))


def mismatch_message(folder: Path, stored: dict, model) -> str:
    made_by = describe(stored["name"], stored.get("pretrained"))
    if made_by == model.identifier:  # same name, different weights or preprocessing
        made_by += f" ({stored['embed_dim']}-d, image size {stored['image_size']})"
        given = f"{model.identifier} ({model.embed_dim}-d, image size {model.image_size})"
    else:
        given = model.identifier
    return (f"index {folder} was made by {made_by}; it cannot be used with {given}. "
            "Use the same model, or build a new index with this one")


def combine_vectors(vectors: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """One query [D]: the normalised weighted sum of the normalised `vectors` [Q, D] (default
    weight 1.0 each; a negative weight steers away, as in "beach" minus "people")."""
    vectors = normalize(np.atleast_2d(vectors))
    weights = np.ones(len(vectors), np.float32) if weights is None else np.asarray(weights, np.float32)
    if weights.shape != (len(vectors),):
        raise ValueError(f"got {len(weights)} weights for {len(vectors)} queries; give one per query or none")
    total = (weights[:, None] * vectors).sum(axis=0)
    if np.linalg.norm(total) < 1e-6:
        raise ValueError("the weighted queries cancel out: their weighted sum is zero")
    return normalize(total)


# ---- the FAISS file, derived from the store ----------------------------------------------------------
def refresh(store: Store, folder: Path, *, write: bool = True, stats: dict | None = None):
    """Load faiss.index if it is what manifest.json says was built from index.db as it is now (same
    store, generation and requested type, same SHA-256); otherwise rebuild it from the stored
    embeddings, and save it when `write` (the caller holds the folder's lock: store.folder_lock).
    Returns (faiss index on CPU, manifest dict, note): the note says why a damaged file was rebuilt,
    None when nothing was damaged (a merely stale file is rebuilt without one). A `stats` dict
    given gets "rebuilt": whether the index was rebuilt (True) or only loaded (False)."""
    loaded = _load(store, folder)
    if stats is not None:
        stats["rebuilt"] = not isinstance(loaded, tuple)
    if isinstance(loaded, tuple):
        return (*loaded, None)
    index, manifest, saved = _rebuild(store, folder, write)
    if loaded is None:
        return index, manifest, None
    note = f"{loaded}; rebuilt {FAISS_NAME} from the {manifest['count']} embeddings in {DB_NAME}"
    return index, manifest, note + ("" if saved else " (in memory only: it could not be saved)")


def _load(store: Store, folder: Path):
    """(faiss index, manifest) when faiss.index is current and intact; None when it is stale;
    a sentence saying what is wrong when it is damaged."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return f"{MANIFEST_NAME} could not be read"
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return None
    current = (manifest.get("store") == store.get_meta("uid") and manifest.get("generation") == store.generation
               and manifest.get("requested") == store.get_meta("index_type", "auto"))
    if not current:
        return None
    try:
        index = faiss_ops.load(folder / FAISS_NAME, manifest.get("sha256") or "")
        faiss_ops.apply_parameters(index, manifest.get("params", {}))
    except FileNotFoundError:
        return f"{FAISS_NAME} was missing"
    except faiss_ops.ChecksumError:
        return f"{FAISS_NAME} was damaged (it does not match the SHA-256 recorded in {MANIFEST_NAME})"
    except (RuntimeError, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        return f"{FAISS_NAME} could not be read ({reason})"
    return index, manifest


def _rebuild(store: Store, folder: Path, write: bool):
    """Build the FAISS index from the stored embeddings -> (index, manifest, saved)."""
    identity = store.get_meta("identity")
    requested = store.get_meta("index_type", "auto")
    generation = store.generation
    dim = int(identity["embed_dim"])
    ids, vectors = store.embeddings(dim)
    factory = faiss_ops.auto_factory(len(ids), dim) if requested == "auto" else requested
    index, params = faiss_ops.build(ids, vectors, factory)
    manifest = {"version": MANIFEST_VERSION, "store": store.get_meta("uid"), "generation": generation,
                "count": int(len(ids)), "dim": dim, "index_type": factory, "requested": requested,
                "params": params, "identity": identity, "root": store.get_meta("root"), "sha256": None}
    if not write:
        return index, manifest, False
    try:
        manifest["sha256"] = faiss_ops.save(index, folder / FAISS_NAME)
        faiss_ops.write_atomic(folder / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
    except OSError:
        return index, manifest, False  # a read-only index still works; it is rebuilt in memory on each open
    return index, manifest, True


# ---- an opened index ---------------------------------------------------------------------------------
class ImageIndex:
    """An opened index: search it, look up stored embeddings, check a model against it.
    Safe to share between threads: every use of the store and the FAISS index takes one lock.
    `repaired` says what was wrong when faiss.index was found damaged and rebuilt on opening."""

    def __init__(self, folder: Path, store: Store, faiss_index, manifest: dict, repaired: str | None = None):
        self.folder = folder
        self.store = store
        self.manifest = manifest
        self.repaired = repaired
        self.identity: dict = store.get_meta("identity")
        self.root = root_of(store.get_meta("root"))
        self.dim = int(self.identity["embed_dim"])
        self.index_type: str = manifest["index_type"]
        self.faiss = faiss_ops.to_device(faiss_index)
        self._lock = threading.RLock()

    @property
    def count(self) -> int:
        """Images that can be found."""
        return int(self.faiss.ntotal)

    def check_model(self, model) -> None:
        """Raise IndexMismatchError, naming both models, unless `model` made this index."""
        if jsonable(model.identity.as_dict()) != self.identity:
            raise IndexMismatchError(mismatch_message(self.folder, self.identity, model))

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
            scores, ids = faiss_ops.search(self.faiss, queries, k)
            names = self.store.paths_of(ids.ravel())
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [(float(s), names[int(i)]) for s, i in zip(row_scores, row_ids) if int(i) in names]
            results.append([SearchHit(rank, path, self.root / path, score)
                            for rank, (score, path) in enumerate(hits, start=1)])
        return results

    def query_vector(self, model, texts: Sequence[str] = (), images: Sequence = (),
                     weights: Sequence[float] | None = None, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
        """One query vector from texts and image files (see combine_vectors); `weights` pair with the
        texts first, then the images. Raises ImageError for an image that cannot be read and
        IndexMismatchError for a model that did not make this index."""
        texts, images = list(texts), list(images)
        if not texts and not images:
            raise ValueError("give at least one text or image query")
        if any(not t.strip() for t in texts):
            raise ValueError("a text query is empty")
        self.check_model(model)
        parts = [model.encode_texts(texts)] if texts else []
        if images:
            found = embed_files(model, images, limits=limits)
            if found.failures:
                raise ImageError(found.failures[0].path, found.failures[0].reason)
            parts.append(found.embeddings)
        return combine_vectors(np.concatenate(parts), weights)

    def duplicates(self, threshold: float = 0.95, k: int = 16, batch: int = 4096) -> list[list[str]]:
        """Groups of near-duplicate images (paths only): see duplicate_groups."""
        return [group.paths for group in self.duplicate_groups(threshold, k, batch)]

    def duplicate_groups(self, threshold: float = 0.95, k: int = 16, batch: int = 4096) -> list[DuplicateGroup]:
        """Groups of near-duplicate images: images joined when their cosine is at least `threshold`
        (each links to its k nearest neighbours), grouped by connectivity, each with the exact
        cosines of its links and its min/max cosine (see duplicates.py). Each group is sorted by
        path; groups by size (largest first), then path."""
        with self._lock:
            ids, vectors = self.store.embeddings(self.dim)
            if len(ids) < 2:
                return []
            k = min(k, len(ids))
            found = [self.faiss.search(vectors[start:start + batch], k) for start in range(0, len(ids), batch)]
        links = link_pairs(ids, found, threshold, batch)
        with self._lock:
            names = self.store.paths_of(sorted({i for pair in links for i in pair}))
        return scored_groups(ids, vectors, links, names)

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
    """Open an index folder made by build_index, repairing a damaged faiss.index (see `repaired`).
    Raises IndexFormatError (a ValueError; IndexDamagedError for a damaged index.db) when the
    folder is not an index or no run has got as far as recording its model."""
    folder = Path(path).expanduser()
    store = Store(folder)
    try:
        if store.get_meta("identity") is None or store.get_meta("root") is None:
            raise IndexFormatError(f"{folder}: the index is empty (no indexing run has started)")
        loaded = _load(store, folder)  # the usual case: current and verified, without the lock
        if isinstance(loaded, tuple):
            faiss_index, manifest, note = (*loaded, None)
        else:  # rebuild, and save the result unless a build holds the lock (it saves its own)
            with folder_lock(folder, wait=False) as held:
                writable = held is not None and os.access(folder, os.W_OK)
                faiss_index, manifest, note = refresh(store, folder, write=writable)
            if held is None:
                note = None  # what looked damaged may be that build's write in progress; it checks for itself
    except BaseException:
        store.close()
        raise
    if note:
        log.warning("%s: %s", folder, note)  # the commands show it on stderr, the app in its log
    return ImageIndex(folder, store, faiss_index, manifest, note)


# ---- where the indexes are ---------------------------------------------------------------------------
def default_index_path(index_dir: str | os.PathLike, root: str | os.PathLike, model) -> Path:
    """Where the app keeps the index of `root` made with `model`: one folder per (folder, model) pair,
    named by a SHA-1 of both, so the same folder and model always find the same index."""
    key = json.dumps({"root": str(Path(root).resolve()), "model": model.identity.as_dict()}, sort_keys=True,
                     default=str)
    return Path(index_dir) / hashlib.sha1(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class IndexInfo:
    """What a listing says about one index, read from its store without loading FAISS."""
    folder: Path
    root: Path
    count: int
    model: str           # the model that made it, as a person would type it
    identity: dict

    def label(self) -> str:
        return f"{self.root} · {self.count:,} images · {self.model}"


def list_indexes(index_dir: str | os.PathLike | None, model=None) -> list[IndexInfo]:
    """Every readable index directly under `index_dir` (the app's, or any folder of `explorer index`
    outputs), sorted by folder; with `model`, only those it made. Damaged ones are left out: see
    `damaged_indexes`."""
    if index_dir is None or not Path(index_dir).is_dir():
        return []
    found = (index_info(p, model) for p in sorted(Path(index_dir).iterdir()) if (p / DB_NAME).is_file())
    return [info for info in found if info is not None]


def index_info(folder: str | os.PathLike, model=None) -> IndexInfo | None:
    """What a listing says about the index in `folder`; None when it is not a readable index (or,
    with `model`, one that model did not make)."""
    try:
        store = Store(Path(folder))
    except (IndexFormatError, OSError, sqlite3.Error):
        return None
    try:
        root, identity, count = store.get_meta("root"), store.get_meta("identity"), store.count()
    finally:
        store.close()
    if not root or not identity or (model is not None and identity != jsonable(model.identity.as_dict())):
        return None
    return IndexInfo(Path(folder), root_of(root), count, describe(identity["name"], identity.get("pretrained")), identity)


def damaged_indexes(index_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """(folder, what is wrong) for each index directly under `index_dir` whose index.db is damaged."""
    if index_dir is None or not Path(index_dir).is_dir():
        return []
    damaged = []
    for folder in sorted(p for p in Path(index_dir).iterdir() if (p / DB_NAME).exists()):
        try:
            Store(folder).close()
        except IndexDamagedError as exc:
            damaged.append((folder, str(exc)))
        except (IndexFormatError, OSError, sqlite3.Error):
            continue
    return damaged


def prune_orphans(index_dir: str | os.PathLike, under: Path) -> int:
    """Delete the indexes whose indexed folder lay under `under` (the upload area) and is gone, so
    the indexes of expired uploads go with them. Returns how many were deleted."""
    removed = 0
    for info in list_indexes(index_dir):
        if isinstance(info.root, remote.RemoteRoot):
            continue  # an object-store folder is never an upload
        if not info.root.exists() and info.root.resolve().is_relative_to(Path(under).resolve()):
            shutil.rmtree(info.folder, ignore_errors=True)
            removed += 1
    return removed


class IndexRegistry:
    """The indexes this process has open, one ImageIndex per folder shared by every caller, and
    one build lock per folder for callers that build and then reopen as one step (build_index itself
    also takes the folder's flock, which makes builds from any thread or process take turns).
    Besides the indexes in `index_dir`, it lists the folders given to `add_external` (indexes made
    anywhere by `clip-explorer index DIR --index PATH` and opened in the app)."""

    def __init__(self, index_dir: str | os.PathLike | None = None):
        self.index_dir = None if index_dir is None else Path(index_dir)
        self._open: dict[str, ImageIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._external: dict[str, Path] = {}
        self._lock = threading.Lock()

    def add_external(self, folder: str | os.PathLike) -> None:
        """List (and let callers open) the index in `folder`, outside `index_dir`; the caller checked it."""
        with self._lock:
            self._external[str(Path(folder))] = Path(folder)

    def is_listed(self, folder: str | os.PathLike) -> bool:
        """True for a folder directly in `index_dir`, or one given to add_external."""
        folder = Path(folder)
        with self._lock:
            external = str(folder) in self._external
        return external or (self.index_dir is not None and folder.parent == self.index_dir)

    def get(self, folder: str | os.PathLike) -> ImageIndex:
        key = str(Path(folder))
        with self._lock:
            if key not in self._open:
                self._open[key] = open_index(key)
            return self._open[key]

    def reopen(self, folder: str | os.PathLike) -> ImageIndex:
        """Open the index afresh after a build; searches in flight keep the old object."""
        fresh = open_index(folder)
        with self._lock:
            self._open[str(Path(folder))] = fresh
        return fresh

    def build_lock(self, folder: str | os.PathLike) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(str(Path(folder)), threading.Lock())

    def path_for(self, root: str | os.PathLike, model) -> Path:
        return default_index_path(self.index_dir, root, model)

    def find_for(self, root: str | os.PathLike, model) -> ImageIndex | None:
        """The app's index of `root` made with `model`, if one exists (its embeddings can be re-used)."""
        if self.index_dir is None:
            return None
        folder = self.path_for(root, model)
        if not (folder / DB_NAME).is_file():
            return None
        try:
            index = self.get(folder)
            index.check_model(model)
            return index
        except (ValueError, OSError):
            return None

    def listed(self, model=None) -> list[IndexInfo]:
        with self._lock:
            external = [folder for folder in self._external.values() if folder.parent != self.index_dir]
        found = (index_info(folder, model) for folder in external if (folder / DB_NAME).is_file())
        return list_indexes(self.index_dir, model) + [info for info in found if info is not None]

    def close_all(self) -> None:
        """Close every open index (its workspace is being deleted)."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for index in opened:
            index.close()
