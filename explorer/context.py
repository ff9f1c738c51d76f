"""The application context: what every tab of the app shares, made once by `build_app`.

Settings, the model slot (one resident model), one registry of open indexes, one upload area, one
image-embedding cache and one thumbnail cache. No gradio here: tab handlers receive the context and
hand its parts to core functions, so a unit test can build one without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .images import Thumbnails
from .index import IndexRegistry, prune_orphans
from .model import ClipModel, ModelSlot
from .paths import DEFAULT_UPLOAD_DIR, UploadArea, allowed_folder, inside_roots
from .settings import Settings
from .sources import Embedded, EmbeddingCache, Progress, embed_folder, embed_index, single_top_folder


class NoModel(ValueError):
    """Asked for the model while none is loaded; the message says what failed and what to do."""


@dataclass
class AppContext:
    settings: Settings
    slot: ModelSlot
    indexes: IndexRegistry
    uploads: UploadArea
    embeddings: EmbeddingCache = field(default_factory=EmbeddingCache)
    thumbnails: Thumbnails | None = None

    @classmethod
    def create(cls, settings: Settings, slot: ModelSlot | None = None,
               upload_dir: Path = DEFAULT_UPLOAD_DIR) -> "AppContext":
        return cls(settings, slot or ModelSlot(), IndexRegistry(settings.index_dir), UploadArea(upload_dir),
                   thumbnails=Thumbnails(settings.limits))

    def model(self) -> ClipModel:
        """The resident model, or NoModel with the reason the last load failed."""
        if self.slot.model is None:
            raise NoModel(f"No model is loaded. {self.slot.error or ''} Load one in the Model panel above.")
        return self.slot.model

    def servable(self, path: Path) -> bool:
        """True when the app may show files from `path`: inside the allowed roots or the upload area."""
        return inside_roots(path, tuple(self.settings.allowed_roots)) or self.uploads.contains(path)

    def unpack(self, uploads: list[str]) -> tuple[Path, list[str]]:
        """Uploaded files and zips unpacked into the upload area -> (folder, notes). Indexes of
        uploads that have since expired are deleted on the way."""
        root, notes = self.uploads.unpack(uploads)
        prune_orphans(self.settings.index_dir, self.uploads.base)
        return root, notes

    def folder(self, typed: str) -> Path:
        """A folder a person typed, if allowed (PathRefused says why not)."""
        return allowed_folder(typed, self.settings.allowed_roots, self.settings.hosted)

    def embed_choice(self, *, uploads: list[str] | None = None, folder: str | None = None,
                     index_folder: str | None = None, labelled: bool | None = None,
                     progress: Progress | None = None) -> Embedded:
        """The images a person chose, embedded: uploads (unpacked; a zip's single top folder is
        stepped into), a typed folder (inside the allowed roots; the app's index of it is re-used),
        or an index (its stored embeddings). ValueError (PathRefused, IndexMismatchError) says why not."""
        model = self.model()
        common = dict(cache=self.embeddings, limits=self.settings.limits, progress=progress)
        uploads = [u for u in (uploads or []) if u]
        if uploads:
            root, notes = self.unpack(uploads)
            found = embed_folder(model, single_top_folder(root), labelled=labelled,
                                 source=f"{len(uploads)} uploaded file(s)", **common)
            found.notes[:0] = notes
            return found
        if index_folder:
            return embed_index(model, self.indexes.get(index_folder), labelled=labelled)
        if folder is not None and folder.strip():
            root = self.folder(folder)
            return embed_folder(model, root, labelled=labelled, index=self.indexes.find_for(root, model), **common)
        raise ValueError("Choose the images first: " + ("upload images or a zip" if self.settings.hosted
                                                          else "type a folder, or upload images or a zip"))
