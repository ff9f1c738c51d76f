"""Where the indexes are: the app's index folder, the indexes in it, and one registry of the open ones."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from explorer.embed.names import describe
from explorer.inputs import remote

from .image_index import WEIGHTS_META, ImageIndex, jsonable, open_index, root_of
from .store import DB_NAME, IndexDamagedError, IndexFormatError, Store


def default_index_path(index_dir: str | os.PathLike, root: str | os.PathLike, model) -> Path:
    """Where the app keeps the index of `root` made with `model`: one folder per (folder, model) pair,
    named by a SHA-1 of both (the model's identity and its weights fingerprint), so the same folder and
    model always find the same index, and other weights under the same name get their own."""
    model_key = {**model.identity.as_dict(), "weights": model.weights_digest}
    key = json.dumps({"root": str(Path(root).resolve()), "model": model_key}, sort_keys=True, default=str)
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
        weights = store.get_meta(WEIGHTS_META)
    finally:
        store.close()
    other = model is not None and (identity != jsonable(model.identity.as_dict())
                                   or (weights and weights != model.weights_digest))
    if not root or not identity or other:
        return None
    return IndexInfo(Path(folder), root_of(root), count, describe(identity["name"],
                                                                  identity.get("pretrained")), identity)


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
