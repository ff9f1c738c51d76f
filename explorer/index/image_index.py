"""An opened index: search it by vector, by texts and images, find near-duplicates, check that a
model made it. The files of an index are described in faiss_file.py; building is in build.py."""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.embed.images import DEFAULT_LIMITS, ImageError, ImageFailure, Limits
from explorer.embed.names import describe
from explorer.embed.vectors import normalize
from explorer.inputs import remote
from explorer.inputs.sources import embed_files

from . import faiss_ops
from .duplicates import DuplicateGroup, link_pairs, scored_groups
from .faiss_file import load_current, refresh
from .store import IndexFormatError, Store, folder_lock

log = logging.getLogger(__name__)


WEIGHTS_META = "weights_digest"  # meta key: the fingerprint of the weights that made the embeddings


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


def check_weights(folder: Path, stored_digest: str | None, model) -> None:
    """IndexMismatchError when the index records a weights fingerprint (embed/model.weights_digest) other
    than `model`'s: the same name, tag and size with other weights (a checkpoint replaced under the same
    path, a fine-tune saved over the original) must not share embeddings. An index from before the
    fingerprint was recorded has none and is not checked."""
    if stored_digest and stored_digest != model.weights_digest:
        raise IndexMismatchError(
            f"index {folder} was made by other weights than the loaded {model.identifier} (same name and "
            f"size; weights fingerprint {stored_digest[:12]}, the loaded model's "
            f"{model.weights_digest[:12]}). Load the weights that made it, or build a new index with these")


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


def encoded_queries(model, texts: Sequence[str] = (), images: Sequence = (), limits: Limits = DEFAULT_LIMITS,
                    cache=None) -> list[np.ndarray]:
    """The query parts a search combines: the texts encoded (the model's text cache), then the image
    files encoded (through `cache`, an EmbeddingCache); ImageError for an image that cannot be read."""
    parts = [model.encode_texts(list(texts))] if texts else []
    if images:
        found = embed_files(model, list(images), limits=limits, cache=cache)
        if found.failures:
            raise ImageError(found.failures[0].path, found.failures[0].reason)
        parts.append(found.embeddings)
    return parts


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
        self.weights_digest: str | None = store.get_meta(WEIGHTS_META)
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
        check_weights(self.folder, self.weights_digest, model)

    def search(self, query_vectors: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """Top-k images per query row ([Q, D] or [D], normalised) by cosine, best first."""
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"query vectors are {queries.shape[1]}-d; this index holds {self.dim}-d embeddings")
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
                     weights: Sequence[float] | None = None, limits: Limits = DEFAULT_LIMITS,
                     cache=None) -> np.ndarray:
        """One query vector from texts and image files (see combine_vectors); `weights` pair with the
        texts first, then the images. Raises ImageError for an image that cannot be read and
        IndexMismatchError for a model that did not make this index. `cache`: an EmbeddingCache, so a
        query image searched again (a new text beside it) is neither decoded nor encoded again."""
        texts, images = list(texts), list(images)
        if not texts and not images:
            raise ValueError("give at least one text or image query")
        if any(not t.strip() for t in texts):
            raise ValueError("a text query is empty")
        self.check_model(model)
        return combine_vectors(np.concatenate(encoded_queries(model, texts, images, limits, cache)), weights)

    def duplicate_groups(self, threshold: float = 0.95, k: int = 16,
                         batch: int = 4096) -> list[DuplicateGroup]:
        """Groups of near-duplicate images: images joined when their cosine is at least `threshold`
        (each links to its k nearest neighbours), grouped by connectivity, each with the exact
        cosines of its links and its min/max cosine (see duplicates.py). Each group is sorted by
        path; groups by size (largest first), then path."""
        with self._lock:
            ids, vectors = self.store.embeddings(self.dim)
            if len(ids) < 2:
                return []
            k = min(k, len(ids))
            found = [
                self.faiss.search(vectors[start:start + batch], k) for start in range(0, len(ids), batch)
            ]
        links = link_pairs(ids, found, threshold, batch)
        with self._lock:
            names = self.store.paths_of(sorted({i for pair in links for i in pair}))
        return scored_groups(ids, vectors, links, names)

    def embedding_of(self, rel_path: str) -> np.ndarray | None:
        """The stored embedding of one indexed file (path relative to the root), or None."""
        with self._lock:
            return self.store.embedding_of(Path(rel_path).as_posix())

    def file_states(self) -> dict:
        """Every stored file: relative path -> store.FileState (id, size, mtime_ns, error); no embeddings
        read."""
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
        loaded = load_current(store, folder)  # the usual case: current and verified, without the lock
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
