"""Building an image index: scan a folder, embed what is new or changed, drop what is gone.

Decoding (images.prepare: the same step every other image source uses) runs in DataLoader worker
processes while the model encodes; each batch of embeddings is committed to index.db in one
transaction, so a crash or `kill -9` loses at most the batch in flight and a re-run embeds only
what is missing. The FAISS file is then refreshed from the store (faiss_file.refresh). See faiss_file.py for
the index folder's layout. With `decode="gpu"` (the default on CUDA) the workers only read the files
and JPEGs are decoded and preprocessed a batch at a time on the model's device (gpu_decode.py).

A run can be stopped between batches: `should_stop()` (a threading.Event's is_set, a flag set by
Ctrl-C...) is asked before the first batch and after each commit; when it says yes the run stops
there, keeps every committed batch, brings the FAISS file up to date with them (the index is
usable for the images done) and reports `cancelled`; building again embeds only the rest.

A run holds the index folder's lock (store.folder_lock) from before it reads the store to after the
FAISS file is written, so a second run of the same index, from any process, waits for the first
and then re-uses its work; the report says how long it waited.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from explorer.embed import gpu_decode
from explorer.embed.images import (
    DEFAULT_LIMITS,
    IMAGE_EXTENSIONS,
    ImageError,
    ImageFailure,
    Limits,
    prepare,
    read_file,
)
from explorer.inputs import remote
from explorer.inputs.folders import walk_folder
from explorer.inputs.sources import Progress

from . import faiss_ops
from .faiss_file import refresh
from .image_index import WEIGHTS_META, IndexMismatchError, check_weights, jsonable, mismatch_message
from .names import ENGINES
from .store import Store, folder_lock

if TYPE_CHECKING:
    from .build_ray import RayOptions

@dataclass
class IndexReport:
    """What one indexing run did. `failed` lists every file that is currently unusable (files that
    failed before are tried again on every run). `notes` are sentences for the person: that the run
    waited `waited` seconds for another build of the index, or that a damaged faiss.index was rebuilt."""
    added: int
    updated: int
    removed: int
    unchanged: int
    failed: list[ImageFailure]
    total: int            # images searchable in the index after the run
    seconds: float        # the whole run: scan, waiting, reading + encoding, FAISS, bookkeeping
    index_type: str       # the FAISS factory string in use
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    waited: float = 0.0   # seconds spent waiting for another build of the same index
    encode_seconds: float = 0.0  # reading, decoding and encoding the new and changed files (and storing them)
    faiss_seconds: float = 0.0  # bringing the FAISS index up to date: rebuilt from the embeddings, or loaded
    faiss_rebuilt: bool = True    # False when the FAISS index was current and only loaded from disk
    todo: int = 0                 # files this run had to read (new, changed, failed before)
    done: int = 0                 # of those, how many it read before it ended (all, unless cancelled)
    cancelled: bool = False       # stopped by should_stop() before the last batch; build again to resume
    placement: dict = field(default_factory=dict)  # engine "ray": model actors, CPUs and GPUs each, device

    def cancel_text(self) -> str:
        """What a cancelled run did, in one sentence (the CLI and the Search tab both show it)."""
        return (f"cancelled after {self.done:,} of {self.todo:,} new or changed file(s); "
                "everything done is kept and searchable; build again to resume")

    def timing_text(self) -> str:
        """What each timing measures, in one sentence (the CLI and the Search tab both show it)."""
        faiss = "rebuilding" if self.faiss_rebuilt else "loading (it was current)"
        rest = "scanning the folder, waiting for another build, bookkeeping" if self.waited else \
            "scanning the folder and bookkeeping"
        return (
            f"{self.seconds:.1f} s in all: {self.encode_seconds:.1f} s reading and encoding new or changed "
            f"files ({self.added + self.updated} embedded), {self.faiss_seconds:.2f} s {faiss} the FAISS "
            f"{self.index_type} index of {self.total} embedding(s); the rest is {rest}")

    def timings(self) -> dict:
        """The timings for --json, in seconds."""
        return {"total": round(self.seconds, 3), "read_and_encode": round(self.encode_seconds, 3),
                "faiss": round(self.faiss_seconds, 3), "faiss_rebuilt": self.faiss_rebuilt,
                "waited": round(self.waited, 3)}



SPEED_META = "seconds_per_image"  # store meta: read+encode seconds per image of the last build that encoded


def build_index(model, root: str | os.PathLike, index_path: str | os.PathLike, *, batch_size: int = 32,
                workers: int | None = None, index_type: str | None = None, progress: Progress | None = None,
                limits: Limits = DEFAULT_LIMITS, should_stop: Callable[[], bool] | None = None,
                decode: str = "auto", engine: str = "local", ray: RayOptions | None = None) -> IndexReport:
    """Index the images under `root` into the folder `index_path`, or bring an existing index up to
    date: embed new and changed files (by path, size, mtime) and files that failed before, drop
    files that are gone, keep the rest. Waits while another run builds the same index.

    Decoding and preprocessing run in `workers` processes (0: inline; None: auto_workers) while
    `model` encodes.
    `index_type` is a FAISS index_factory string ("Flat", "IVF1024,Flat", "HNSW32,Flat"); None keeps
    the index's earlier choice, or picks automatically by size. `progress(done, total)` is called
    after each batch. Bad files never stop the run; they are listed in the report. `should_stop()`
    is asked before the first batch and after each commit: True ends the run there, with what is
    done kept and indexed (report.cancelled; the next run resumes).
    `decode`: "cpu" decodes in the workers (PIL); "gpu" has them only read files and decodes JPEGs a
    batch at a time on the model's device (gpu_decode); "auto" is "gpu" on CUDA when torchvision can.
    `engine` "ray" runs the embedding as a Ray Data pipeline (build_ray.py, options in `ray`), where
    `workers` and `decode` do not apply; `root` may then be a URI (remote.py).
    Raises IndexMismatchError when the index was made by another model or for another folder, and
    IndexDamagedError when its index.db is damaged (it is left as it is).
    """
    started = time.perf_counter()
    workers, decode = _checked(model, batch_size, workers, decode, engine)
    root, listing, skipped = _listing(root, engine)
    if index_type:
        faiss_ops.check_factory(index_type, model.embed_dim)
    folder = Path(index_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder) as waited, closing(Store(folder, create=True)) as store:
        _claim(store, folder, model, root)
        plan = _plan(store, listing)
        requested = index_type or store.get_meta("index_type", "auto")
        needed = 0 if requested == "auto" else faiss_ops.training_minimum(requested, model.embed_dim)
        if needed > plan.unchanged + len(plan.todo):  # fail before the embedding work, not after
            raise ValueError(
                f"FAISS index type {requested!r} needs at least {needed} images to train; "
                f"the folder has at most {plan.unchanged + len(plan.todo)} (use a smaller one, or Flat)")
        store.set_meta("index_type", requested)
        store.remove(plan.gone)
        encoding = time.perf_counter()
        placement: dict = {}
        embedded, done = _embedder(engine, workers, decode, ray, placement)(
            store, model, root, plan.todo, batch_size=batch_size, progress=progress, limits=limits,
            should_stop=should_stop)
        _record_speed(store, time.perf_counter() - encoding, len(embedded))
        indexing, how = time.perf_counter(), {}
        faiss_index, manifest, repaired = refresh(store, folder, stats=how)
        timings = dict(encode_seconds=indexing - encoding, faiss_seconds=time.perf_counter() - indexing,
                       faiss_rebuilt=how["rebuilt"])
        failures = skipped + [ImageFailure(path, reason) for path, reason in store.failures()]
        added = sum(1 for rel in embedded if rel not in plan.had_embedding)
        return IndexReport(added=added, updated=len(embedded) - added, removed=len(plan.gone),
                           unchanged=plan.unchanged, failed=failures, total=faiss_index.ntotal,
                           seconds=time.perf_counter() - started, index_type=manifest["index_type"],
                           params=manifest["params"],
                           notes=_notes(waited, placement, repaired) + empty_notes(
                               faiss_index.ntotal, len(listing), len(failures), done < len(plan.todo)),
                           waited=waited or 0.0, todo=len(plan.todo), done=done,
                           cancelled=done < len(plan.todo), placement=placement, **timings)


def _record_speed(store: Store, seconds: float, count: int) -> None:
    """This machine's measured read+encode seconds per image for the model (SPEED_META), when the build
    encoded any: a later run that encodes nothing still knows the model's speed."""
    if count:
        store.set_meta(SPEED_META, seconds / count)


def _notes(waited: float | None, placement: dict, repaired: str | None) -> list[str]:
    """The report's sentences: a wait for another build, where Ray ran the model, a repaired FAISS file."""
    notes = [f"waited {waited:.1f} s for another build of this index to finish"] if waited else []
    if placement:
        notes.append(f"on Ray: {placement['actors']} model actor(s) with {placement['actor_cpus']} "
                     f"CPU(s) and {placement['actor_gpus']} GPU(s) each, on {placement['device']}")
    return notes + ([repaired] if repaired else [])


# A search of an index that holds no image (the Search tab and `clip-explorer search` both say it).
EMPTY_INDEX = ("the index holds no images, so a search finds nothing: add images to its folder, or choose "
               "another folder, and build the index again")


def empty_notes(total: int, found: int, failed: int, cancelled: bool) -> list[str]:
    """The note of a run that leaves the index empty (`total` 0, not `cancelled`): no image file among
    the `found` files, or every one of them `failed`; what to do. The Search tab and `clip-explorer
    index` both show it. [] when the index holds images."""
    if total or cancelled:
        return []
    if found and failed:
        return [f"none of its {failed:,} image file(s) could be read, so nothing is searchable: fix or "
                "replace them (each is listed with its reason), or choose another folder, and build again"]
    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    return [f"no images found (no {kinds} files in this folder or its sub-folders), so nothing is "
            "searchable: add images to it, or choose another folder, and build again"]


def _checked(model, batch_size: int, workers: int | None, decode: str, engine: str) -> tuple[int, str]:
    """build_index's options checked, and `workers` and `decode` resolved for this model."""
    if batch_size < 1 or (workers is not None and workers < 0):
        raise ValueError("batch size must be at least 1 and workers at least 0")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    decode = gpu_decode.choose(decode, model.device, model.preprocess) if engine == "local" else "cpu"
    return (auto_workers(model.device, decode) if workers is None else workers), decode


def auto_workers(device: torch.device, decode: str, cpus: int | None = None) -> int:
    """Decoding processes for `workers=None`. On CPU the model is the bottleneck: a draft-decoding
    worker prepares a 1024x768 JPEG in a few ms while ViT-B-32 needs ~100 ms of a core to encode it,
    so one worker per 16 CPUs (measured on 2 cores: 1 worker 0.88-0.97x of model-only, 2 workers
    0.78-0.91x, the extra process only competing for the model's cores). With a GPU, decoding is the
    bottleneck: every CPU but one decodes, or up to 4 only read files when the GPU decodes."""
    cpus = cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if device.type == "cpu":
        return max(1, cpus // 16)
    return max(1, min(4, cpus - 1) if decode == "gpu" else cpus - 1)


def _embedder(engine: str, workers: int, decode: str, ray, placement: dict) -> Callable:
    """The embedding step of `engine`: embed(store, model, root, todo, *, batch_size, progress, limits,
    should_stop) -> (paths embedded, files read); see _embed. Ray fills `placement`."""
    if engine == "ray":
        from .build_ray import RayOptions, embed_on_ray
        return partial(embed_on_ray, options=ray or RayOptions(), placement=placement)
    return partial(_embed, workers=workers, decode=decode)


def _claim(store: Store, folder: Path, model, root: Path | str) -> None:
    """Record model (its identity and weights fingerprint) and folder in a new index; refuse an index
    made for others. An index from before fingerprints were recorded takes this model's."""
    identity = jsonable(model.identity.as_dict())
    with store.transaction():
        stored = store.get_meta("identity")
        if stored is None:
            store.set_meta("identity", identity)
        elif stored != identity:
            raise IndexMismatchError(mismatch_message(folder, stored, model))
        stored_weights = store.get_meta(WEIGHTS_META)
        check_weights(folder, stored_weights, model)
        if stored_weights is None:
            store.set_meta(WEIGHTS_META, model.weights_digest)
        stored_root = store.get_meta("root")
        if stored_root is None:
            store.set_meta("root", str(root))
        elif stored_root != str(root):
            raise IndexMismatchError(f"index {folder} is for the folder {stored_root}, not {root}; "
                                     "give each folder its own --index")


@dataclass
class _Plan:
    todo: list[tuple[str, int, int]]       # (relative path, size, mtime_ns) to embed
    had_embedding: set[str]                # paths that had an embedding before this run
    gone: list[str]
    unchanged: int                         # unchanged files with an embedding


def _listing(root, engine: str) -> tuple[Path | str, list[tuple[str, int, int]], list[ImageFailure]]:
    """The folder to index -> (its root as recorded, (relative path, size, mtime_ns) of each image
    file, the entries left out with their reason). A URI folder (remote.py) needs the Ray engine."""
    if remote.is_uri(str(root)):
        if engine != "ray":
            raise ValueError(f"{root}: a folder given as a URI is indexed with --engine ray")
        return remote.normalise(str(root)), remote.list_files(str(root)), []
    root = Path(root).expanduser().resolve()
    try:
        scan = walk_folder(root)  # .skipped: links leading out, broken links, FIFOs... with reasons
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    listing = []
    for path in scan.files:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # vanished or unreadable: try it, record the reason, retry next run
        listing.append((path.relative_to(root).as_posix(), size, mtime))
    return root, listing, scan.skipped_under(root)


def _plan(store: Store, listing: list[tuple[str, int, int]]) -> _Plan:
    states = store.states()
    todo, seen, unchanged = [], set(), 0
    for rel, size, mtime in listing:
        seen.add(rel)
        state = states.get(rel)
        # A file that failed is tried again even when unchanged: it may have been fixed behind the
        # same size and mtime (permissions, a disk that came back), and decoding a bad file is cheap.
        if (state is not None and state.error is None and state.size == size and state.mtime_ns == mtime
                and size >= 0):
            unchanged += 1
            continue
        todo.append((rel, size, mtime))
    gone = sorted(set(states) - seen)
    return _Plan(todo, {p for p, s in states.items() if s.error is None}, gone, unchanged)


class _Decode(torch.utils.data.Dataset):
    """images.prepare (decode + preprocess) of one file, in a worker; failures come back as data."""

    def __init__(self, root: Path, todo, preprocess, limits: Limits):
        self.root, self.todo, self.preprocess, self.limits = root, todo, preprocess, limits

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int):
        rel = self.todo[i][0]
        try:
            return i, prepare(self.root / rel, self.preprocess, self.limits, name=rel), None
        except ImageError as exc:
            return i, None, exc.reason


class _Read(_Decode):
    """For decoding on the model's device: one file read and sorted in a worker (gpu_decode.triage:
    a JPEG the device decodes stays bytes, any other file is decoded here); failures come back as data."""

    def __init__(self, root: Path, todo, preprocess, limits: Limits):
        super().__init__(root, todo, preprocess, limits)
        self.recipe = gpu_decode.recipe_of(preprocess)

    def __getitem__(self, i: int):
        rel = self.todo[i][0]
        try:
            data = read_file(self.root / rel, self.limits, name=rel)
            item = gpu_decode.triage(data, self.preprocess, self.recipe, self.limits, name=rel)
            return i, rel, (data, item) if isinstance(item, gpu_decode.JpegInfo) else item
        except ImageError as exc:
            return i, rel, exc.reason


def _collate(samples):
    good = [(i, pixels) for i, pixels, error in samples if error is None]
    bad = [(i, error) for i, _, error in samples if error is not None]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [i for i, _ in good], pixels, bad


def _quiet_worker(_: int) -> None:
    """Ctrl-C is the main process's to handle (it stops the run between batches); a worker ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _embed(store: Store, model, root: Path, todo, batch_size: int, workers: int, progress: Progress | None,
           limits: Limits, should_stop: Callable[[], bool] | None = None, decode: str = "cpu"
           ) -> tuple[list[str], int]:
    """Embed `todo` in batches, committing each batch, until done or `should_stop()` after a commit
    -> (the paths embedded, how many files of `todo` were read). `decode` "gpu": the workers read,
    the model's device decodes (gpu_decode.on_device, one batch ahead of the model)."""
    stop = should_stop or (lambda: False)
    if progress:
        progress(0, len(todo))
    if not todo or stop():
        return [], 0
    on_device = decode == "gpu"
    loader = torch.utils.data.DataLoader(
        (_Read if on_device else _Decode)(root, todo, model.preprocess, limits), batch_size=batch_size,
        num_workers=workers, collate_fn=gpu_decode.pack if on_device else _collate,
        pin_memory=on_device and model.device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=_quiet_worker if workers else None)
    # Workers are forked when iteration starts; no child may inherit the database connection.
    store.close()
    batches = iter(loader)
    store.open()
    if on_device:
        batches = gpu_decode.on_device(batches, model.preprocess, model.device, limits)
    embedded, done = [], 0
    for good, pixels, bad in batches:
        vectors = model.encode_pixels(pixels) if pixels is not None else []
        rows = [(*todo[i], vector) for i, vector in zip(good, vectors)]
        store.write_batch(rows, [(*todo[i], reason) for i, reason in bad])
        embedded.extend(todo[i][0] for i in good)
        done += len(good) + len(bad)
        if progress:
            progress(done, len(todo))
        if done < len(todo) and stop():
            break
    del batches  # a run stopped early shuts its decoding workers down here
    return embedded, done
