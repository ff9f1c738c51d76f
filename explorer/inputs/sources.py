"""Any image source -> embeddings: the one way images become vectors outside the indexer.

Sources: a list of files (uploads, command-line arguments), a folder, a labelled folder (one
sub-folder per class: the ImageFolder layout), or an existing index (its stored embeddings, no
encoding). Files stream through one loop (`embed_files`): read a batch, decode and preprocess it
(images.prepare, the step the indexer's workers run too), encode it, keep only the vectors, so
memory does not grow with the number of files. Every source reports progress as
progress(done, total) and unreadable files as ImageFailure(name, reason), the same everywhere.

One cache (`EmbeddingCache`) keys each embedding by the model instance and a digest of the file's
bytes: while an entry lives, the same image is not encoded twice by the same model, whatever its
path or upload, and a changed file is encoded again. Within one call the same holds without a
cache: repeated images are encoded once.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from explorer.embed.cache import LRU
from explorer.embed.images import (
    DEFAULT_LIMITS,
    IMAGE_EXTENSIONS,
    ImageError,
    ImageFailure,
    Limits,
    prepare,
    read_file,
)

from .folders import class_entries, class_folders, walk_folder

Progress = Callable[[int, int], None]
BATCH_SIZE = 32


class EmbeddingCache:
    """Image embeddings by (model instance, SHA-1 of the file's bytes)."""

    def __init__(self, capacity: int = 20_000, max_bytes: int = 128 << 20):
        self._lru = LRU(capacity, max_bytes)  # bounded in entries and in bytes (cache.LRU)

    def get(self, model, digest: bytes) -> np.ndarray | None:
        return self._lru.get((model.instance, digest))

    def put(self, model, digest: bytes, vector: np.ndarray) -> None:
        self._lru.put((model.instance, digest), vector)

    def __len__(self) -> int:
        return len(self._lru)


@dataclass
class Embedded:
    """Images turned into embeddings, in a stable order, and what could not be used."""
    names: list[str]                 # unique, for people: relative to `root`, or file names
    paths: list[Path]                # the files (for index images: where they were indexed)
    embeddings: np.ndarray           # [N, D] float32, L2-normalised
    failures: list[ImageFailure] = field(default_factory=list)
    root: Path | None = None
    source: str = ""                 # for people: "/data/photos", "3 uploaded file(s)", ...
    class_names: list[str] | None = None   # labelled sources: the classes, in folder order
    class_folders: list[str] | None = None
    labels: np.ndarray | None = None       # [N] class index of each image (labelled sources)
    encoded: int = 0                 # images run through the model for this call
    cached: int = 0                  # served from the embedding cache (or repeated in this call)
    reused: int = 0                  # taken from an index's stored embeddings
    notes: list[str] = field(default_factory=list)
    sub_folders: list[str] | None = None   # unlabelled folders and indexes: the sub-folders seen (0 or 1)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.names)


# ---- files ----------------------------------------------------------------------------------------
def unique_names(names: list[str]) -> list[str]:
    """Names made distinct by numbering repeats: a.png, a.png (2), a.png (3)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 1
            out.append(name)
            continue
        n = seen[name]
        candidate = name
        while candidate in taken:
            n += 1
            candidate = f"{name} ({n})"
        seen[name] = n
        taken.add(candidate)
        out.append(candidate)
    return out


def _distinct_tails(paths: list[Path]) -> list[str]:
    """For files that share a name: the shortest trailing part of their paths that tells them apart
    (a/0.png, b/0.png), the same depth for all of them; the file name where no depth does."""
    deepest = max(len(p.parts) for p in paths)
    for depth in range(2, deepest + 1):
        tails = [PurePosixPath(*p.parts[-depth:]).as_posix() for p in paths]
        if len(set(tails)) == len(tails):
            return tails
    return [p.name for p in paths]


def display_names(files: list, root: Path | None = None, *, folders: bool = True) -> list[str]:
    """Relative paths (posix) under `root`; else file names, where files share a name (red/0.png,
    blue/0.png) the end of their paths that tells them apart, when `folders` (uploads: False, the
    folders of their copies mean nothing to people); made unique either way (0.png, 0.png (2))."""
    names = []
    for f in files:
        try:
            names.append(Path(f).relative_to(root).as_posix() if root is not None else Path(f).name)
        except ValueError:
            names.append(Path(f).name)
    if root is None and folders:
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_name.setdefault(name, []).append(i)
        for rows in (r for r in by_name.values() if len(r) > 1):
            for i, tail in zip(rows, _distinct_tails([Path(os.path.abspath(files[i])) for i in rows])):
                names[i] = tail
    return unique_names(names)


def embed_files(model, files: list, *, names: list[str] | None = None, root: Path | None = None,
                labels: list[int] | None = None, cache: EmbeddingCache | None = None,
                limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None,
                reuse: Callable[[Path], np.ndarray | None] | None = None,
                batch_size: int = BATCH_SIZE, source: str = "") -> Embedded:
    """Embed image files in batches, keeping their order; bad files become failures, never errors.

    `names`: what people see (default: display_names). `labels`: a class index per file, kept for
    the files that could be read. `reuse(path)`: a stored embedding to take instead of encoding
    (an index of the folder), or None. `progress(done, total)` after each batch.
    """
    import torch  # here, not at the top: commands that need no model import this module without torch

    files = [Path(f) for f in files]
    names = list(names) if names is not None else display_names(files, root)
    if cache is None:  # still never encode one image twice within this call
        cache = EmbeddingCache(capacity=max(len(files), 1))
    vectors: list[np.ndarray | None] = [None] * len(files)
    failures, encoded, cached, reused = [], 0, 0, 0
    for start in range(0, len(files), batch_size):
        pending: dict[bytes, tuple[list[int], torch.Tensor]] = {}  # digest -> (rows, pixels)
        for i in range(start, min(start + batch_size, len(files))):
            hit = reuse(files[i]) if reuse is not None else None
            if hit is not None:
                vectors[i], reused = hit, reused + 1
                continue
            try:
                data = read_file(files[i], limits, name=names[i])
                digest = hashlib.sha1(data).digest()
                hit = cache.get(model, digest)
                if hit is not None:
                    vectors[i], cached = hit, cached + 1
                elif digest in pending:  # the same image again in this batch
                    pending[digest][0].append(i)
                    cached += 1
                else:
                    pending[digest] = ([i], prepare(data, model.preprocess, limits, name=names[i]))
            except ImageError as exc:
                failures.append(ImageFailure(names[i], exc.reason))
        if pending:
            batch = model.encode_pixels(torch.stack([pixels for _, pixels in pending.values()]))
            encoded += len(pending)
            for (digest, (rows, _)), vector in zip(pending.items(), batch):
                cache.put(model, digest, vector)
                for i in rows:
                    vectors[i] = vector
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    keep = [i for i, v in enumerate(vectors) if v is not None]
    embeddings = np.stack([vectors[i] for i in keep]).astype(np.float32) if keep else \
        np.zeros((0, model.embed_dim), np.float32)
    return Embedded([names[i] for i in keep], [files[i] for i in keep], embeddings, failures, root, source,
                    labels=None if labels is None else np.asarray([labels[i] for i in keep], dtype=np.int64),
                    encoded=encoded, cached=cached, reused=reused)


# ---- folders --------------------------------------------------------------------------------------
def load_classnames(source: str | Path) -> dict[str, str]:
    """A JSON object {folder: class name}, from a file path or from the JSON text itself."""
    text, where = str(source), "classnames"
    if not text.lstrip().startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"classnames: {text!r} is neither JSON text nor an existing file")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise ValueError(
            f"{where}: expected a JSON object mapping each folder name to a non-empty class name")
    return {str(k): " ".join(v.split()) for k, v in data.items()}


def class_name(folder: str) -> str:
    """A class folder's name as a label: underscores are spaces (a_red_circle -> a red circle)."""
    return " ".join(folder.replace("_", " ").split())


def single_top_folder(root: Path) -> Path:
    """A zip often wraps everything in one folder (data/cat/1.jpg): step into it."""
    while True:
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir(follow_symlinks=False):  # never into a link
            return root
        root = Path(entries[0].path)


def _folder(path) -> Path:
    root = Path(os.path.abspath(Path(path).expanduser()))
    if not root.is_dir():
        raise ValueError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    return root


def embed_folder(model, folder, *, labelled: bool | None = None, classnames: dict[str, str] | None = None,
                 index=None, cache: EmbeddingCache | None = None, limits: Limits = DEFAULT_LIMITS,
                 progress: Progress | None = None, source: str | None = None) -> Embedded:
    """Every image under `folder`, embedded; names are paths relative to it.

    `labelled`: True reads one sub-folder per class (ValueError with fewer than two: no images at all,
    no class sub-folder, one); None decides by the folder (two or more sub-folders: labelled); False
    never labels. A class folder that gives no image (none, or none readable) is no class: left out and
    said in a note (ValueError when fewer than two classes are left). `classnames` maps class
    folders to names (default: the folder name with underscores as spaces). `index`: an open
    ImageIndex of this folder or a parent, made by `model`; files it holds unchanged are taken from
    it instead of being encoded.
    """
    root = _folder(folder)
    reuse = _index_reuse(index, model, root)
    if labelled is None:
        labelled = len(class_folders(root)) >= 2
    if not labelled:
        try:
            scan = walk_folder(root)
        except ImageError as exc:
            raise ValueError(f"{exc.path}: {exc.reason}") from None
        found = embed_files(model, scan.files, root=root, cache=cache, limits=limits, progress=progress,
                            reuse=reuse, source=source or str(root))
        found.failures[:0] = scan.skipped_under(root)
        found.sub_folders = class_folders(root)
    else:
        # the folder by its path (the app calls an upload's folder "your upload": context.upload_named)
        folders, names, notes, skipped = _read_classes(root, classnames, str(root))
        # each class is walked inside itself, and must itself lie inside the folder the user chose
        scans = [walk_folder(root / f, within=root) for f in folders]
        per_class = [scan.files for scan in scans]
        files = [p for found in per_class for p in found]
        labels = [k for k, found in enumerate(per_class) for _ in found]
        found = embed_files(model, files, root=root, labels=labels, cache=cache, limits=limits,
                            progress=progress, reuse=reuse, source=source or str(root))
        found = replace(
            found, class_names=names, class_folders=folders, notes=notes,
            failures=skipped + [f for scan in scans for f in scan.skipped_under(root)] + found.failures)
        found = _without_empty_classes(found, [len(listed) for listed in per_class])
    if found.reused and index is not None:
        found.notes.append(f"{found.reused} embedding(s) re-used from the index")
    return found


def _read_classes(root: Path, classnames: dict[str, str] | None, where: str
                  ) -> tuple[list[str], list[str], list[str], list[ImageFailure]]:
    """(class folders, class names, notes, links that are no class) of a labelled folder; ValueError
    when it is not one (no_images_message for a folder without images, else class_folders_message)."""
    folders, skipped = class_entries(root)
    if len(folders) < 2:
        scan = walk_folder(root)
        if not scan.files:
            raise ValueError(no_images_message(where, scan.skipped_under(root)))
        raise ValueError(class_folders_message(where, folders))
    classnames = classnames or {}
    unknown = sorted(set(classnames) - set(folders))
    if unknown:
        raise ValueError(f"classnames: no such class folder: {', '.join(unknown)}")
    notes = []
    unnamed = [f for f in folders if classnames and f not in classnames]
    if unnamed:
        notes.append(f"no class name given for {', '.join(unnamed)}: using the folder name")
    names = [classnames.get(f) or class_name(f) for f in folders]
    seen: dict[str, str] = {}
    for folder, name in zip(folders, names):
        if name.casefold() in seen:
            raise ValueError(
                f"folders {seen[name.casefold()]!r} and {folder!r} both give the class name {name!r}")
        seen[name.casefold()] = folder
    loose = [e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith(".")]
    if loose:
        notes.append(
            f"{len(loose)} file(s) directly in {root.name or root} belong to no class and were ignored")
    return folders, names, notes, skipped


# ---- what a source lacks, in the same words for every tab and command ---------------------------
LAYOUT = "one sub-folder of images per class, at least two (the ImageFolder layout)"
FOR_UNLABELLED = "or give at least two class names to classify them as unlabelled images"


def class_folders_message(where: str, folders: list[str], alternative: str = "") -> str:
    """Why `where` (a folder, or the uploads) is no labelled source: it has no class sub-folders, or
    only one (named); `alternative`: what else the caller could do (FOR_UNLABELLED), said after."""
    if folders:
        said = f"{where}: found one class sub-folder ({folders[0]!r}); labelled images need {LAYOUT}"
    else:
        said = f"{where}: no class sub-folders; labelled images need {LAYOUT}"
    return f"{said}, {alternative}" if alternative else said


def no_images_message(where: str, failures: list[ImageFailure]) -> str:
    """Why `where` gave no image at all: it holds no image files, or none of them could be read
    (`failures`, the first named)."""
    if not failures:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        return (f"{where}: no images found (no {kinds} files in it or its sub-folders): choose a folder "
                "or upload that holds images")
    first = failures[0]
    more = f", and {len(failures) - 1} more" if len(failures) > 1 else ""
    return (f"{where}: none of its {len(failures)} image file(s) could be read ({first.path}: "
            f"{first.reason}{more}): choose images this app can open")


def require_images(images: Embedded) -> None:
    """ValueError (no_images_message) when `images` holds no image."""
    if len(images) == 0:
        raise ValueError(no_images_message(images.source or str(images.root or "the images"),
                                           images.failures))


def require_classes(images: Embedded, alternative: str = "") -> None:
    """ValueError when `images` hold no image (require_images), or are not labelled: no class
    sub-folders, or only one (class_folders_message, with `alternative`)."""
    require_images(images)
    if not images.labelled:
        raise ValueError(class_folders_message(images.source or str(images.root or "the images"),
                                               images.sub_folders or [], alternative))


def _without_empty_classes(found: Embedded, listed: list[int]) -> Embedded:
    """A labelled read without its classes that gave no image (`listed`: image files per class), each
    said in a note; ValueError when fewer than two classes are left."""
    counts = np.bincount(found.labels, minlength=len(found.class_names))
    gone = [k for k, count in enumerate(counts) if count == 0]
    if not gone:
        return found
    why = [f"class folder {found.class_folders[k]!r} left out: " +
           (f"none of its {listed[k]} image file(s) could be read" if listed[k] else "it holds no images")
           for k in gone]
    kept = [k for k in range(len(counts)) if counts[k]]
    where = str(found.root)
    if not kept:
        raise ValueError(no_images_message(where, found.failures))
    if len(kept) < 2:
        raise ValueError(f"{where}: only the class folder {found.class_folders[kept[0]]!r} has images that "
                         f"could be read ({'; '.join(why)}); labelled images need two classes or more: "
                         "add images this app can open")
    number = np.full(len(counts), -1, dtype=np.int64)
    number[kept] = np.arange(len(kept))
    return replace(found, class_names=[found.class_names[k] for k in kept],
                   class_folders=[found.class_folders[k] for k in kept], labels=number[found.labels],
                   notes=found.notes + why)


def _index_reuse(index, model, root: Path):
    """path -> stored embedding or None, from an index (explorer.index.image_index.ImageIndex) of `root` or a
    parent made by `model`; a file whose size or mtime changed since it was indexed gives None."""
    if index is None:
        return None
    index.check_model(model)  # raises IndexMismatchError naming both models
    index_root = Path(index.root).resolve()
    if not root.resolve().is_relative_to(index_root):
        raise ValueError(f"the index covers {index_root}, which does not contain {root}")
    prefix = root.resolve().relative_to(index_root)
    states = index.file_states()

    def reuse(path: Path):
        rel = (prefix / path.relative_to(root)).as_posix()
        state = states.get(rel)
        if state is None or state.error is not None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != (state.size, state.mtime_ns):
            return None
        return index.embedding_of(rel)

    return reuse


# ---- indexes --------------------------------------------------------------------------------------
def embed_index(model, index, *, sample: int | None = None, seed: int = 0,
                labelled: bool | None = False) -> Embedded:
    """The stored embeddings of an open index made by `model` (checked), all or a seeded sample of
    `sample`; nothing is decoded or encoded. Stored failures come back as failures. `labelled` as
    for embed_folder: with None, an index of two or more sub-folders is labelled by them."""
    index.check_model(model)
    names, vectors = index.all_embeddings()
    if sample is not None and sample < len(names):
        picked = np.sort(np.random.default_rng(seed).choice(len(names), size=max(sample, 0), replace=False))
        names, vectors = [names[i] for i in picked], vectors[picked]
    found = Embedded(list(names), [index.root / n for n in names], vectors, index.failures(), index.root,
                     f"the index of {index.root}", reused=len(names))
    folders = sorted({n.split("/")[0] for n in names if "/" in n})
    found.sub_folders = folders
    if labelled or (labelled is None and len(folders) >= 2):
        if len(folders) < 2:
            raise ValueError(class_folders_message(found.source, folders))
        keep = [i for i, n in enumerate(names) if "/" in n]
        number = {folder: k for k, folder in enumerate(folders)}  # not folders.index: linear in the classes
        found = replace(found, names=[names[i] for i in keep], paths=[found.paths[i] for i in keep],
                        embeddings=vectors[keep], class_folders=folders, sub_folders=None,
                        class_names=[class_name(f) for f in folders],
                        labels=np.array([number[names[i].split("/")[0]] for i in keep], dtype=np.int64))
        unread = sorted({f.path.split("/")[0] for f in found.failures if "/" in f.path} - set(folders))
        found.notes += [f"class folder {f!r} left out: none of its image files could be read" for f in unread]
        if len(keep) < len(names):
            found.notes.append(
                f"{len(names) - len(keep)} indexed file(s) directly in {index.root.name} belong to no "
                "class and were left out")
    return found


def join(parts: list[Embedded]) -> Embedded:
    """Several sources as one (for an image x text matrix): names made unique, failures kept."""
    parts = [p for p in parts if p is not None]
    dim = next((p.embeddings.shape[1] for p in parts if p.embeddings.size), 0)
    vectors = [p.embeddings for p in parts if len(p)]
    return Embedded(unique_names([n for p in parts for n in p.names]), [f for p in parts for f in p.paths],
                    np.concatenate(vectors) if vectors else np.zeros(
                        (0, dim), np.float32), [f for p in parts for f in p.failures],
                    source=" and ".join(p.source for p in parts if p.source),
                    encoded=sum(p.encoded for p in parts), cached=sum(p.cached for p in parts),
                    reused=sum(p.reused for p in parts), notes=[n for p in parts for n in p.notes])
