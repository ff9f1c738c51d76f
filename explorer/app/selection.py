"""A selection of indexed images (picked on the Map tab), and what can be done with it: export it, search
by it, make Teach classes of it, compare two of them.

A selection is a list of index-relative names that came from the page. None is trusted: each must be a
name the index stores an embedding for (`checked`), so a made-up name (`../../etc/passwd`, a file the
index never held) is refused before anything is read, and only files inside the indexed folder are ever
opened. The index is one this session may use (AppContext.open_index: hosted, its own). Files written for
the visitor go to ctx.downloads (hosted: the session's workspace, counted in its quota). No gradio here.
"""
from __future__ import annotations

import csv
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.embed.vectors import normalize
from explorer.index.image_index import ImageIndex, combine_vectors
from explorer.inputs import gate
from explorer.inputs.roots import PathRefused, inside_roots
from explorer.science.concepts import compare_selections
from explorer.science.vocabulary import Vocabulary, load_vocabulary, word_vectors

from .context import AppContext

MAX_NAME_CHARS = 1024        # one index-relative name (a longer one is no name the index holds)
MAX_CLASS_CHARS = 64         # a class name typed for Teach
MAX_CLASSES = 64             # classes a Teach run made from selections may have
CLASS_CHARS = re.compile(r"^[\w][\w '\-]*$")  # letters, digits, _ first; then spaces, ' and - too


@dataclass
class Selection:
    """Checked: every name is stored in `index` with an embedding, in the order picked, once."""
    index: ImageIndex
    names: list[str]
    embeddings: np.ndarray   # [N, D] float32: the stored embeddings of `names`, row for row

    @property
    def folder(self) -> str:
        return str(self.index.folder)


def checked(ctx: AppContext, index_folder: str | None, names, what: str = "Selection") -> Selection:
    """The `names` picked in the index at `index_folder` (a value from the page), checked: the index is
    one this session may use (PathRefused otherwise), `names` is a list of at most as many names as the
    index holds, each a text of at most MAX_NAME_CHARS that the index stores an embedding for (gate.Refused
    names the first that is not). ValueError when nothing is selected."""
    if not index_folder:
        raise ValueError("Pick an index on the map, and select images on it, first.")
    index = ctx.open_index(index_folder)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise gate.Refused(f"{what}: not a list of image names")
    if not names:
        raise ValueError(f"{what}: nothing is selected; select images on the map first.")
    if len(names) > index.count:
        raise gate.Refused(f"{what}: {len(names):,} names, more than the {index.count:,} images of this "
                           "index")
    unique = list(dict.fromkeys(names))
    stored = []
    for name in unique:
        vector = index.embedding_of(name) if len(name) <= MAX_NAME_CHARS and "\x00" not in name else None
        if vector is None:
            raise gate.Refused(f"{what}: {_shown(name)} is not an image of this index")
        stored.append(vector)
    return Selection(index, unique, np.stack(stored).astype(np.float32))


def _shown(name: str, limit: int = 80) -> str:
    text = name if len(name) <= limit else name[:limit] + "…"
    return repr(text)


def query_vector(selection: Selection) -> np.ndarray:
    """One query: the selection's stored embeddings combined (normalised mean of the normalised rows);
    nothing is encoded."""
    return combine_vectors(selection.embeddings)


def files(selection: Selection) -> list[tuple[str, Path]]:
    """(name, file) of each selected image still readable inside the indexed folder (a name whose file
    has gone, or now leads out of the folder through a link, is left out)."""
    root = selection.index.root
    found = []
    for name in selection.names:
        path = root / name
        if inside_roots(path, (root,)) and path.is_file():
            found.append((name, path))
    return found


# ---- export ---------------------------------------------------------------------------------------------
def export(ctx: AppContext, selection: Selection) -> Path:
    """The selection as a file to download, in ctx.downloads("selections"): locally a CSV of the images'
    paths (name relative to the indexed folder, and the absolute path); hosted a zip of the images
    themselves (a stranger gets their own images back, never a path of the server)."""
    folder = ctx.downloads("selections")
    if not ctx.settings.hosted:
        target = folder / "selection.csv"
        with open(target, "w", newline="", encoding="utf-8") as fp:
            out = csv.writer(fp)
            out.writerow(["name", "path"])
            out.writerows([name, str(selection.index.root / name)] for name in selection.names)
        return target
    found = files(selection)
    if not found:
        raise ValueError("None of the selected images can be read any more; build the index again.")
    target = folder / "selection.zip"
    write_zip(ctx, target, [(name, path) for name, path in found])
    return target


def write_zip(ctx: AppContext, target: Path, entries: list[tuple[str, Path]]) -> None:
    """A zip (stored: images are compressed already) of `entries` (name inside, file), of at most
    max_upload_files images and the room left (hosted: reserved in the session's quota first; at most
    max_upload_total_mb, what an upload may hold, so that Teach can take it back). PathRefused otherwise."""
    gate.check_count("Selected images", len(entries), ctx.settings.max_upload_files, "max_upload_files",
                     "files")
    wanted = sum(path.stat().st_size for _, path in entries) + 512 * len(entries) + 1024
    with ctx.workspaces.reserve(ctx.workspace, wanted) as room:
        if room < wanted:
            raise PathRefused(f"the selected images ({wanted / 2**20:,.1f} MiB) do not fit in the room left "
                              f"({room / 2**20:,.1f} MiB); select fewer")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            for name, path in entries:
                archive.write(path, name)


# ---- Teach: classes made of selections ------------------------------------------------------------------
@dataclass
class TaughtClass:
    """A class for Teach: its name and the selection it holds (index folder, names)."""
    name: str
    index: str
    names: list[str]


def class_name(typed: str | None) -> str:
    """A class name typed for Teach, checked: one line of letters, digits, spaces, _ ' and -, at most
    MAX_CLASS_CHARS (gate.Refused otherwise); it names a folder, so nothing else is taken."""
    name = " ".join(unicodedata.normalize("NFC", typed or "").split())
    if not name:
        raise ValueError("Name the class first.")
    gate.check_count("Class name", len(name), MAX_CLASS_CHARS, "max_text_chars", "characters")
    if not CLASS_CHARS.match(name):
        raise gate.Refused(f"Class name {_shown(name)}: use letters, digits, spaces, _ ' and - only")
    return name


def add_class(classes: list[TaughtClass] | None, name: str, selection: Selection) -> list[TaughtClass]:
    """`classes` with `selection` added as class `name` (typed, checked by class_name): a name already
    there gets the new images too (each image once)."""
    name = class_name(name)
    classes = [TaughtClass(c.name, c.index, list(c.names)) for c in classes or []]
    for taught in classes:
        if class_folder(taught.name).casefold() == class_folder(name).casefold():
            if taught.index != selection.folder:
                raise ValueError(f"Class {name!r} holds images of another index; name this one differently.")
            taught.names = list(dict.fromkeys(taught.names + selection.names))
            return classes
    gate.check_count("Classes", len(classes) + 1, MAX_CLASSES, "max_texts", "classes")
    return classes + [TaughtClass(name, selection.folder, list(selection.names))]


def class_folder(name: str) -> str:
    """A class's folder name: spaces as underscores (sources.class_name reads them back as spaces)."""
    return name.replace(" ", "_")


def classes_zip(ctx: AppContext, classes: list[TaughtClass]) -> Path:
    """A zip of class folders (`classes/<class>/<image>`) for Teach, in ctx.downloads("teach-classes"),
    holding each class's images (every name checked again against its index). ValueError with fewer than
    two classes."""
    if len(classes or []) < 2:
        raise ValueError("Add at least two classes (a selection each) before teaching.")
    entries = []
    for taught in classes:
        selection = checked(ctx, taught.index, taught.names, f"Class {taught.name!r}")
        folder, used = class_folder(class_name(taught.name)), set()
        for name, path in files(selection):
            flat = _flat(name)
            while flat in used:  # a/b__c.png and a__b/c.png
                flat = "_" + flat
            used.add(flat)
            entries.append((f"classes/{folder}/{flat}", path))
    target = ctx.downloads("teach-classes") / "classes.zip"
    write_zip(ctx, target, entries)
    return target


def _flat(name: str) -> str:
    """An index-relative name as one file name (a/b/1.png -> a__b__1.png): a class folder holds no
    sub-folders, and two selected images of one name in different folders stay two."""
    return name.replace("/", "__")



# ---- compare two selections -----------------------------------------------------------------------------
@dataclass
class Compared:
    """What changes from selection A to B (science/concepts.compare_selections), for the page: the words
    most along the direction each way, and the index's images furthest each way as (file, name, score)."""
    words_a: list[tuple[str, float]]
    words_b: list[tuple[str, float]]
    images_a: list[tuple[Path, str, float]]
    images_b: list[tuple[Path, str, float]]
    length: float          # |mean(B) - mean(A)|: how far apart the two selections' means are


def compare(ctx: AppContext, a: Selection, b: Selection, k: int = 10, vocabulary: Vocabulary | None = None,
            cache_dir=None, progress=None, words_k: int | None = None) -> Compared:
    """The direction from A's images to B's (both checked selections of one index made by the loaded
    model), named by the words of `vocabulary` (None: the shipped one; its vectors through the model's
    text encoder, kept on disk in `cache_dir` as vocabulary.word_vectors keeps them) and shown by the
    index's k images furthest each way (past the midpoint of A's and B's means along the direction: on
    that side). Only stored image embeddings are used: no image is encoded."""
    if a.folder != b.folder:
        raise ValueError("A and B were selected in different indexes; select both in one.")
    model = ctx.model()
    a.index.check_model(model)  # IndexMismatchError (a ValueError) naming both models
    names, embeddings = a.index.all_embeddings()
    position = {name: i for i, name in enumerate(names)}
    vocabulary = vocabulary if vocabulary is not None else load_vocabulary(None)
    words = word_vectors(model, vocabulary, cache_dir=cache_dir, progress=progress)
    a_rows = [position[n] for n in a.names if n in position]
    b_rows = [position[n] for n in b.names if n in position]
    found = compare_selections(embeddings, a_rows, b_rows, words, vocabulary.words, k)
    # An image is on B's side past the midpoint of the two means along the direction (on A's before it):
    # only those are shown each way, so a small index does not list A's own images as "towards B".
    along = normalize(embeddings) @ np.asarray(found.vector, dtype=np.float32)
    middle = float(along[a_rows].mean() + along[b_rows].mean()) / 2
    root = a.index.root

    def images(ranked, side: float) -> list[tuple[Path, str, float]]:
        return [(root / names[i], names[i], float(score)) for i, score in ranked
                if side * (along[i] - middle) > 0 and inside_roots(root / names[i], (root,))]

    kept = slice(0, words_k)
    return Compared(list(found.words_a)[kept], list(found.words_b)[kept], images(found.images_a, -1.0),
                    images(found.images_b, 1.0), float(found.length))
