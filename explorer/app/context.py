"""The application context: what every tab of the app shares, made once by `build_app`.

Settings, the model slot (one resident model), the workspaces (locally one upload area and index
folder; hosted, one private pair per visitor's session, see workspace.py), one image-embedding
cache (keyed by file contents, so it tells no one anything they did not upload themselves) and one
thumbnail cache. Each request works on `ctx.scoped(session)`: the same context with that session's
upload area and indexes. What a person chose to look at (uploads, a typed folder, an index) is
resolved here, once for every tab: `embed_choice` embeds it, `index_choice` indexes it. No gradio
here: tab handlers receive the context and hand its parts to core functions, so a unit test can
build one without a browser.
"""
from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from explorer.embed.images import Thumbnails
from explorer.embed.model import ClipModel, ModelLoadError, ModelSlot, load_model, parked
from explorer.index.build import IndexReport, build_index
from explorer.index.embedding_store import Stored, stored_embeddings
from explorer.index.image_index import ImageIndex
from explorer.index.registry import IndexInfo, IndexRegistry, prune_orphans
from explorer.index.store import DB_NAME
from explorer.inputs.archives import ArchiveLimits, expected_bytes
from explorer.inputs.remote import is_uri
from explorer.inputs.roots import DEFAULT_UPLOAD_DIR, PathRefused, UploadArea, allowed_folder, inside_roots
from explorer.inputs.settings import Settings
from explorer.inputs.sources import (
    Embedded,
    EmbeddingCache,
    Progress,
    embed_folder,
    embed_index,
    single_top_folder,
)
from explorer.science.model_compare import ModelChoice
from explorer.science.test_time import ViewCache

from .workspace import Workspace, Workspaces

log = logging.getLogger(__name__)


class NoModel(ValueError):
    """Asked for the model while none is loaded; the message says what failed and what to do."""


def no_model_message(error: str | None) -> str:
    """What a tab says when no model is loaded: that, why the last load failed (as a sentence of its
    own), and what to do."""
    why = (error or "").strip()
    if why:
        why = why[0].upper() + why[1:] + ("" if why.endswith((".", "!", "?")) else ".") + " "
    return f"No model is loaded. {why}Load one in the Model panel above."


@dataclass
class Indexed:
    """What `AppContext.index_choice` did: the run's report and the index it built, reopened."""
    report: IndexReport
    index: ImageIndex
    shown: str          # how to name what was indexed: its folder, or "your upload (N file(s))"
    uploaded: bool      # uploads (named so, never by their folder on the server) or a typed folder
    notes: list[str] = field(default_factory=list)  # what unpacking the uploads said


@dataclass
class AppContext:
    settings: Settings
    slot: ModelSlot
    indexes: IndexRegistry
    uploads: UploadArea
    embeddings: EmbeddingCache = field(default_factory=EmbeddingCache)
    views: ViewCache = field(default_factory=ViewCache)  # the test-time switches' view features
    thumbnails: Thumbnails | None = None
    workspaces: Workspaces | None = None
    workspace: Workspace | None = None   # set on a scoped context

    @classmethod
    def create(cls, settings: Settings, slot: ModelSlot | None = None, upload_dir: Path = DEFAULT_UPLOAD_DIR,
               hosted_dir: Path | None = None, *, own_hosted_dir: bool | None = None,
               counted: tuple[Path, ...] = ()) -> AppContext:
        """`hosted_dir`, `own_hosted_dir`, `counted`: Workspaces' base, own_base and counted."""
        shared = Workspace("local", UploadArea(upload_dir), IndexRegistry(settings.index_dir))
        workspaces = Workspaces(shared, hosted=settings.hosted, base=hosted_dir,
                                ttl_seconds=settings.session_ttl_minutes * 60,
                                session_quota=int(settings.session_quota_mb * 2**20),
                                total_quota=int(settings.hosted_quota_mb * 2**20),
                                upload_total=settings.max_upload_total_bytes, counted=counted,
                                own_base=own_hosted_dir)
        return cls(settings, slot or ModelSlot(), shared.indexes, shared.uploads,
                   thumbnails=Thumbnails(settings.limits),
                   workspaces=workspaces, workspace=None if settings.hosted else shared)

    def scoped(self, session: str | None) -> AppContext:
        """This context as seen by one session: its upload area and its indexes (hosted), or the
        shared ones (local). PathRefused in hosted mode when there is no session."""
        ws = self.workspaces.get(session)
        return replace(self, uploads=ws.uploads, indexes=ws.indexes, workspace=ws)

    def _own(self) -> Workspace:
        if self.workspace is None:  # hosted, and not scoped to a session: nothing is the caller's
            raise PathRefused("this request has no session; reload the page")
        return self.workspace

    def downloads(self, kind: str, name: str | None = None) -> Path:
        """A folder for files offered for download (Workspace.downloads): hosted, in the session's
        workspace (counted in its quota, deleted with it). PathRefused when hosted and not scoped."""
        return self._own().downloads(kind, name)

    def model(self) -> ClipModel:
        """The resident model, or NoModel with the reason the last load failed."""
        if self.slot.model is None:
            raise NoModel(no_model_message(self.slot.error))
        return self.slot.model

    def servable(self, path: Path) -> bool:
        """True when the app may show files from `path`: the session's uploads, or (locally) a
        folder inside the allowed roots; never an object-store folder (remote.py)."""
        if self.workspace is None or is_uri(str(path)):
            return False
        if self.uploads.contains(path):
            return True
        return not self.settings.hosted and inside_roots(path, tuple(self.settings.allowed_roots))

    def unpack(self, uploads: list[str]) -> tuple[Path, list[str]]:
        """Uploaded files and zips unpacked into the session's upload area -> (folder, notes), within
        its disk quota: the room is reserved before unpacking (uploads running at once cannot pass
        the quota together) and the settings max_upload_files and max_upload_total_mb hold for all
        `uploads` together. Indexes of uploads that have since expired are deleted on the way."""
        ws, s = self._own(), self.settings
        limits = ArchiveLimits(max_bytes=s.max_upload_total_bytes, max_files=s.max_upload_files,
                               max_entry_bytes=s.max_upload_bytes)
        wanted = expected_bytes([Path(u) for u in uploads if u], limits)
        with self.workspaces.reserve(ws, wanted) as room:
            try:
                root, notes = self.uploads.unpack(uploads, s.max_upload_files, room, limits)
            except PathRefused as exc:
                if room >= min(wanted, s.max_upload_total_bytes):
                    raise
                raise PathRefused(f"{exc}: the room left for your uploads is {room / 2**20:,.1f} MiB "
                                  "(this session's share of the demo's disk)") from None
        ws.gone = None
        prune_orphans(self.indexes.index_dir, self.uploads.base)
        return root, notes

    @contextmanager
    def upload_named(self, root: Path):
        """Errors raised inside call the unpacked upload `root` "your upload", not by its server path."""
        try:
            yield
        except ValueError as exc:
            if str(root) not in str(exc):
                raise
            raise ValueError(str(exc).replace(str(root), "your upload")) from None

    def visible_indexes(self, model=None) -> list[IndexInfo]:
        """The indexes this session may use: its own (hosted), or (locally) those of folders inside
        the allowed roots or the upload area; with `model`, only those it made."""
        self._own()
        return [info for info in self.indexes.listed(model) if self.servable(info.root)]

    def index_label(self, info: IndexInfo) -> str:
        """How a listing names an index: an upload by when it was made (its folder says nothing
        to a person and, hosted, is not theirs to know), a typed folder by its path."""
        if self.uploads.contains(info.root):
            try:
                when = time.strftime("%d %b %H:%M", time.localtime(info.root.stat().st_mtime))
            except OSError:
                when = "earlier"
            return f"your upload of {when} · {info.count:,} images · {info.model}"
        return info.label()

    def open_index(self, folder: str) -> ImageIndex:
        """An index this session may use, by its folder (a value that came from the page);
        PathRefused for any other folder, said the same way whether or not it exists."""
        self._own()
        wanted, refused = Path(folder or
                               ""), PathRefused(self.workspace.gone or
                                                "that index is not one of yours; build it in the Search tab")
        if not folder or not self.indexes.is_listed(wanted) or not (wanted / DB_NAME).is_file():
            raise refused
        index = self.indexes.get(wanted)  # cached: a search does not list or re-open anything
        if not self.servable(index.root):
            raise refused
        return index

    def open_external(self, typed: str) -> ImageIndex:
        """An index folder a person typed (made by `clip-explorer index DIR --index PATH`), opened
        and listed with this session's indexes from now on. Local mode only; the folder and the
        images it indexes must lie inside the allowed roots, and the loaded model must have made it.
        ValueError (PathRefused, IndexMismatchError naming both models, IndexFormatError) says why not."""
        model = self.model()
        folder = self.folder(typed)  # refused when hosted, outside the roots, or not a folder
        if not (folder / DB_NAME).is_file():
            raise PathRefused(f"{typed.strip()}: not an index folder (it has no {DB_NAME}); "
                              "make one with `clip-explorer index DIR --index PATH`")
        index = self.indexes.get(folder)
        index.check_model(model)
        if is_uri(str(index.root)):
            raise PathRefused(
                f"{typed.strip()}: it indexes {index.root}, an object-store folder; the app shows "
                "local folders only: search it with `clip-explorer search --index PATH`")
        if not self.servable(index.root):
            raise PathRefused(
                f"{typed.strip()}: the images it indexes ({index.root}) lie outside the folders "
                "this app may read")
        self.indexes.add_external(folder)
        return index

    def folder(self, typed: str) -> Path:
        """A folder a person typed, if allowed (PathRefused says why not)."""
        return allowed_folder(typed, self.settings.allowed_roots, self.settings.hosted)

    def index_choice(self, *, folder: str | None = None, uploads: list[str] | None = None,
                     progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                     workers: int | None = None) -> Indexed:
        """Build, or bring up to date, the index of the images a person chose: a typed `folder` (inside
        the allowed roots), or else `uploads` (unpacked into the session's upload area). Hosted, only
        uploads count: a typed folder is not even looked at. The same folder and model always update
        the same index, one build of it at a time, and the registry reopens it. When `should_stop()`
        turns true the build stops after its batch in flight, keeping what it did. `workers`: as for
        build.build_index (None: by the machine). ValueError (PathRefused, IndexMismatchError...) says
        why not."""
        model = self.model()
        uploaded = self.settings.hosted or folder is None
        notes: list[str] = []
        if uploaded:
            uploads = [u for u in uploads or [] if u]
            if not uploads:
                raise ValueError("Upload images, a folder or a zip first.")
            root, notes = self.unpack(uploads)
            shown = f"your upload ({len(uploads)} file(s))"
        else:
            root = self.folder(folder)
            shown = str(root)
        target = self.indexes.path_for(root, model)
        with self.indexes.build_lock(target), self.upload_named(root) if uploaded else nullcontext():
            report = build_index(model, root, target, workers=workers, limits=self.settings.limits,
                                 progress=progress, should_stop=should_stop)
            index = self.indexes.reopen(target)
        return Indexed(report, index, shown, uploaded, notes)

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
            with self.upload_named(root):
                found = embed_folder(model, single_top_folder(root), labelled=labelled,
                                     source=f"{len(uploads)} uploaded file(s)", **common)
            found.notes[:0] = notes
            return found
        if index_folder:
            return embed_index(model, self.open_index(index_folder), labelled=labelled)
        if folder is not None and folder.strip():
            root = self.folder(folder)
            return embed_folder(model, root, labelled=labelled, index=self.indexes.find_for(root, model),
                                **common)
        raise ValueError("Choose the images first: " + ("upload images or a zip" if self.settings.hosted
                                                          else "type a folder, or upload images or a zip"))

    # ---- Compare models ---------------------------------------------------------------------------
    @contextmanager
    def compared_model(self, choice: ModelChoice) -> Iterator[ClipModel]:
        """A model to compare, for the block's duration: the resident model itself when it is the one
        chosen (never reloaded, never moved); else `choice` loaded on the settings' device and
        precision, with the resident model parked on the CPU meanwhile when on CUDA (model.parked: the
        same object back after), and freed on leaving. ValueError when it cannot be loaded: what failed
        (hosted: the model's name only, the reason goes to the server log)."""
        if self.settings.hosted and choice not in {ModelChoice.of(*offered)
                                                   for offered in self.settings.model_choices()}:
            raise ValueError("That model is not offered here; pick one of the demo's models.")
        resident = self.slot.model
        if resident is not None and choice.matches(resident):
            yield resident
            return
        with parked(resident):
            model = self._load_compared(choice)
            device = model.device
            try:
                yield model
            finally:
                del model
                gc.collect()
                if device.type == "cuda":
                    import torch
                    torch.cuda.empty_cache()

    def _load_compared(self, choice: ModelChoice) -> ClipModel:
        try:
            return load_model(choice.name, choice.pretrained, self.settings.device, self.settings.precision)
        except ModelLoadError as exc:
            log.warning("compared model failed to load: %s", exc)
            if self.settings.hosted:
                raise ValueError(f"Could not load {choice.label()} to compare it.") from None
            why = exc.advice.reason if exc.advice else str(exc)
            raise ValueError(f"Could not load {choice.label()} to compare it: {why}") from None

    def compare_root(self, *, uploads: list[str] | None = None, folder: str | None = None,
                     index_folder: str | None = None) -> tuple[Path, list[str]]:
        """The folder of the images to compare models on, and what unpacking said: uploads (unpacked
        into the session's upload area; a zip's single top folder is stepped into), else an index's
        images folder (one of this session's indexes, of a local folder), else a typed folder (inside
        the allowed roots; never hosted). ValueError (PathRefused) says why not."""
        uploads = [u for u in (uploads or []) if u]
        if uploads:
            root, notes = self.unpack(uploads)
            return single_top_folder(root), notes
        if index_folder:
            index = self.open_index(index_folder)  # refused unless servable: never an object store
            if is_uri(str(index.root)):
                raise PathRefused("that index holds an object-store folder; compare models on local images")
            return Path(index.root), []
        if folder is not None and folder.strip():
            return self.folder(folder), []
        raise ValueError("Choose the images first: " + ("upload images or a zip" if self.settings.hosted
                                                          else "type a folder, or upload images or a zip"))

    def stored(self, model: ClipModel, root: Path, *, labelled: bool | None = None,
               progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
               workers: int | None = None) -> Stored:
        """`model`'s embeddings of the images under `root`, kept in this session's index of that
        folder for that model (embedding_store.stored_embeddings): a second comparison, or a later
        Search or lab of the folder with that model, encodes nothing. An upload is called "your upload"
        in errors, never by its folder on the server."""
        named = self.upload_named(root) if self.uploads.contains(root) else nullcontext()
        with named:
            return stored_embeddings(model, root, self.indexes, labelled=labelled,
                                     limits=self.settings.limits, progress=progress, should_stop=should_stop,
                                     workers=workers)
