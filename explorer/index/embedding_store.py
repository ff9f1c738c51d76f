"""A folder's image embeddings for one model, kept where the app keeps them: its index of the folder.

The embedding store of a comparison is the app's own index of the folder for that model (the
registry's `path_for(root, model)`, keyed by the model's identity and weights digest), built or brought
up to date by build.build_index. A second comparison of the same folder, or a later Search, Map or
Prompt lab of it with the same model, encodes nothing: the files it holds unchanged are taken from it.
Each build that encodes (a comparison's or Search's) records how long reading and encoding took per
image (build.SPEED_META), so a later run that encodes nothing still has the model's measured speed on
this machine.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from explorer.embed.images import DEFAULT_LIMITS, Limits
from explorer.inputs.sources import Embedded, Progress, embed_index

from .build import SPEED_META, build_index
from .registry import IndexRegistry


@dataclass
class Stored:
    """A folder's embeddings for one model, read back from its index, and what getting them cost."""
    images: Embedded            # embed_index(model, index, labelled=labelled) of the (updated) index
    index_folder: Path
    encoded: int                # images encoded by this call (report.added + report.updated)
    seconds_per_image: float | None  # measured now when encoded > 0, else the stored SPEED_META (None: never)
    timed_now: bool             # seconds_per_image was measured by this call
    store_bytes: int            # bytes of the index folder on disk (index.db + faiss files)
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)


def stored_embeddings(model, root: Path, registry: IndexRegistry, *, labelled: bool | None = None,
                      limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None,
                      should_stop: Callable[[], bool] | None = None, workers: int | None = None) -> Stored:
    """The images under `root` embedded by `model`, through the registry's index of that folder for
    that model: built, or brought up to date (only new and changed files are encoded), under the
    folder's build lock, then reopened in the registry (so every tab sees the fresh index) and read
    back (embed_index; `labelled` as there). `progress(done, total)` after each batch; `should_stop()`
    ends the build after its batch in flight (`cancelled`: the embeddings done so far come back).
    `workers`: as for build_index. ValueError when the registry has no index folder, or the index
    was made by another model or for another folder (IndexMismatchError)."""
    if registry.index_dir is None:
        raise ValueError("no index folder is set (index_dir), so embeddings cannot be stored")
    target = registry.path_for(root, model)
    with registry.build_lock(target):
        report = build_index(model, root, target, workers=workers, limits=limits, progress=progress,
                             should_stop=should_stop)
        encoded = report.added + report.updated
        index = registry.reopen(target)
        speed = index.store.get_meta(SPEED_META)
    images = embed_index(model, index, labelled=labelled)
    return Stored(images, target, encoded, None if speed is None else float(speed), encoded > 0,
                  folder_bytes(target), report.cancelled, notes=list(report.notes))


def folder_bytes(folder: Path) -> int:
    """Bytes of the files directly in `folder` (an index: index.db and its journal, the FAISS files)."""
    total = 0
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total
