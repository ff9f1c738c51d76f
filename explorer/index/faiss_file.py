"""The FAISS file of an index, derived from its store, and the manifest that says what it was built from.

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

import json
from pathlib import Path

from . import faiss_ops
from .store import DB_NAME, Store

FAISS_NAME = "faiss.index"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2  # 2: "store" and "sha256"; a version-1 manifest is replaced on the next open


def refresh(store: Store, folder: Path, *, write: bool = True, stats: dict | None = None):
    """Load faiss.index if it is what manifest.json says was built from index.db as it is now (same
    store, generation and requested type, same SHA-256); otherwise rebuild it from the stored
    embeddings, and save it when `write` (the caller holds the folder's lock: store.folder_lock).
    Returns (faiss index on CPU, manifest dict, note): the note says why a damaged file was rebuilt,
    None when nothing was damaged (a merely stale file is rebuilt without one). A `stats` dict
    given gets "rebuilt": whether the index was rebuilt (True) or only loaded (False)."""
    loaded = load_current(store, folder)
    if stats is not None:
        stats["rebuilt"] = not isinstance(loaded, tuple)
    if isinstance(loaded, tuple):
        return (*loaded, None)
    index, manifest, saved = rebuild(store, folder, write)
    if loaded is None:
        return index, manifest, None
    note = f"{loaded}; rebuilt {FAISS_NAME} from the {manifest['count']} embeddings in {DB_NAME}"
    return index, manifest, note + ("" if saved else " (in memory only: it could not be saved)")


def load_current(store: Store, folder: Path):
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
    current = (manifest.get("store") == store.get_meta("uid") and
               manifest.get("generation") == store.generation and
               manifest.get("requested") == store.get_meta("index_type", "auto"))
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


def rebuild(store: Store, folder: Path, write: bool):
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
