"""The Search tab's bookkeeping: where its indexes live, which are open, and result thumbnails.

Indexes: one index folder per (indexed folder, model) pair under `settings.index_dir`
(EXPLORER_INDEX_DIR, default ~/.cache/clip-explorer/indexes), named by a SHA-1 of the folder path and
the model identity, so indexing the same folder again with the same model updates its index in place,
and another model gets an index of its own.

Results are shown as thumbnails made here through images.load_image (so the same size and pixel
limits apply) and handed to the Gallery as PIL images: gradio copies them into its own cache, no
server path is ever sent to the browser, and nothing outside an indexed folder is read.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..images import ImageError, load_image
from ..index import ImageIndex, default_index_path, open_index
from ..paths import inside_roots

UPLOAD_DIR = Path(tempfile.gettempdir()) / "clip-explorer-uploads"
THUMB_SIZE = 256
_THUMB_CACHE_SIZE = 512


def index_folder(base: Path, root: Path, model) -> Path:
    """The index folder for `root` indexed with `model`: stable across runs, distinct per model."""
    return default_index_path(base, root, model)


def servable_roots(allowed_roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """Folders whose indexes may show results: the allowed roots and the app's upload folder."""
    return tuple(allowed_roots) + (UPLOAD_DIR.resolve(),)


def prune_upload_indexes(index_dir: Path, upload_dir: Path = UPLOAD_DIR) -> int:
    """Delete the indexes of uploads whose files have expired (paths.fresh_upload_dir removes old
    uploads), so a long-running hosted demo does not keep them forever. Returns how many went."""
    removed = 0
    for folder in Path(index_dir).glob("*"):
        try:
            root = Path(json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["root"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not root.exists() and inside_roots(root, (Path(upload_dir),)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class OpenIndexes:
    """Indexes this process has open, shared by all sessions (ImageIndex is thread-safe), and one
    build lock per index folder so two sessions never build the same index at once."""

    def __init__(self):
        self._open: dict[str, ImageIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def build_lock(self, folder: Path) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(str(folder), threading.Lock())

    def get(self, folder: str | Path) -> ImageIndex:
        key = str(folder)
        with self._lock:
            index = self._open.get(key)
            if index is None:
                index = self._open[key] = open_index(key)
            return index

    def reopen(self, folder: str | Path) -> ImageIndex:
        """Open the index afresh after a build (the old object stays valid for searches in flight)."""
        fresh = open_index(str(folder))
        with self._lock:
            self._open[str(folder)] = fresh
        return fresh


class Thumbnails:
    """Small RGB copies of indexed images, cached by path, size and mtime."""

    def __init__(self, max_bytes: int, max_pixels: int):
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self._cache: OrderedDict[tuple, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, root: Path) -> Image.Image | None:
        """A thumbnail of `path`, or None when it is outside `root`, gone, or no longer decodes."""
        if not inside_roots(path, (root,)):
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            image = load_image(path, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        except ImageError:
            return None
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        with self._lock:
            self._cache[key] = image
            while len(self._cache) > _THUMB_CACHE_SIZE:
                self._cache.popitem(last=False)
        return image


def placeholder() -> Image.Image:
    """Shown in place of a result whose file has gone or no longer decodes."""
    return Image.new("RGB", (THUMB_SIZE // 4, THUMB_SIZE // 4), (200, 200, 200))
