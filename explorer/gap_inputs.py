"""Gathering the inputs of the modality-gap explorer: image embeddings and the texts that go with them.

Shared by `python -m explorer gap` and the web UI's "Modality gap" tab, so both read folders,
indexes, labels and captions the same way. No statistics here (those are in gap.py).

Images come from a folder (encoded in batches; the model caches embeddings by path, size and mtime),
from a list of files, or from an index (its stored embeddings: nothing is re-encoded). Texts are
either class labels (zero-shot class embeddings; an image's label is the name of its folder, or the
start of its file name: `red_circle_3.png` belongs to "a red circle") or captions, one per image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .captions import Captions, _key, _label_key, labels_from_folders, read_caption_csv
from .images import ImageError, file_key, load_images, scan_folder
from .zeroshot import build_classifier

BATCH = 32


@dataclass
class GapImages:
    """Embedded images: absolute paths, embeddings [N, D] (normalised), and what could not be read."""
    paths: list[str]
    embeddings: np.ndarray
    failures: list[str] = field(default_factory=list)


@dataclass
class GapTexts:
    """The texts, their embeddings [M, D], and matches [N] (each image's text index, or -1)."""
    kind: str                       # "labels" or "captions"
    texts: list[str]
    embeddings: np.ndarray
    matches: np.ndarray
    problems: list[str] = field(default_factory=list)


def embed_files(model, files, *, max_bytes: int, max_pixels: int, progress=None) -> GapImages:
    """Decode and encode image files in batches; `progress(done, total)` after each batch."""
    files = list(files)
    paths, chunks, failures = [], [], []
    for start in range(0, len(files), BATCH):
        loaded, failed = load_images(files[start:start + BATCH], max_bytes=max_bytes, max_pixels=max_pixels)
        failures += [f"{f.path}: {f.reason}" for f in failed]
        if loaded:
            keys = [file_key(item.path) for item in loaded]
            chunks.append(model.encode_images([item.image for item in loaded], batch_size=BATCH, keys=keys))
            paths += [item.path for item in loaded]
        if progress is not None:
            progress(min(start + BATCH, len(files)), len(files))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32)
    return GapImages(paths, emb, failures)


def embed_folder(model, root, *, max_bytes: int, max_pixels: int, progress=None) -> GapImages:
    """Every image under `root` (recursively), embedded. ValueError for a folder that cannot be read."""
    try:
        files = scan_folder(root)
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    return embed_files(model, files, max_bytes=max_bytes, max_pixels=max_pixels, progress=progress)


def index_embeddings(index, model) -> GapImages:
    """The stored embeddings of an opened ImageIndex (after checking `model` made it)."""
    index.check_model(model)
    names, vectors = index.all_embeddings()
    failures = [f"{f.path}: {f.reason}" for f in index.failures()]
    return GapImages([str(index.root / name) for name in names], vectors, failures)


def labels_of_images(image_paths, labels: list[str]) -> list[int]:
    """Each image's label index: from its folder's name (ImageFolder layout), else from the start of
    its file name (`red_circle_3.png`, `a red circle.png` -> "red circle"; the longest label wins), else -1."""
    by_folder = labels_from_folders(image_paths, labels)
    keys = sorted(((_label_key(label), i) for i, label in enumerate(labels)), key=lambda kv: -len(kv[0]))
    out = []
    for path, found in zip(image_paths, by_folder):
        if found < 0:
            stem = _label_key(Path(path).stem)
            found = next((i for key, i in keys if key and (stem == key or stem.startswith(key + " "))), -1)
        out.append(found)
    return out


def label_texts(model, image_paths, labels: list[str], templates: list[str]) -> GapTexts:
    """Class embeddings of `labels` (templates averaged) and each image's label from its folder or name."""
    embeddings = build_classifier(model, labels, templates)
    matches = np.array(labels_of_images(image_paths, labels), dtype=np.int64).reshape(-1)
    problems = []
    unlabelled = int((matches < 0).sum())
    if unlabelled:
        problems.append(f"{unlabelled} of {len(matches)} images have no label: neither their folder's name nor "
                        "the start of their file name is one of the labels")
    return GapTexts("labels", list(labels), embeddings, matches, problems)


def caption_texts(model, image_paths, captions: Captions, source: str = "the captions") -> GapTexts:
    """Text i is the caption of the i-th image that has one; images without a caption match nothing.
    ValueError when no image has a caption."""
    found = [captions.caption_of(p) for p in image_paths]
    have = [i for i, c in enumerate(found) if c is not None]
    if not have:
        raise ValueError("no image has a caption: check the CSV's paths (relative to the CSV's folder or "
                         "the image folder) or the .txt files beside the images")
    problems = list(captions.problems)
    if len(have) < len(found):
        problems.append(f"{len(found) - len(have)} of {len(found)} images have no caption in {source}")
    texts = [found[i] for i in have]
    matches = np.full(len(found), -1, dtype=np.int64)
    matches[have] = np.arange(len(have))
    return GapTexts("captions", texts, model.encode_texts(texts), matches, problems)


def csv_captions_for(csv_path, image_paths, root=None) -> Captions:
    """Captions from a path,caption CSV for these images. A row's path may be absolute, relative to
    the CSV's folder, relative to `root` (the image folder), or just a file name that is unique among
    the images (for uploaded files, whose folders are not the user's)."""
    table = read_caption_csv(csv_path, check_images=False)
    base = Path(csv_path).resolve().parent
    relative = {os.path.relpath(k, base): v for k, v in table.by_path.items()}
    by_name: dict[str, list[str]] = {}
    for k, v in table.by_path.items():
        by_name.setdefault(os.path.basename(k), []).append(v)
    names = [os.path.basename(p) for p in image_paths]
    out = Captions(problems=list(table.problems))
    for path, name in zip(image_paths, names):
        text = table.caption_of(path)
        if text is None and root is not None:
            text = relative.get(os.path.relpath(_key(path), _key(root)))
        if text is None and len(by_name.get(name, ())) == 1 and names.count(name) == 1:
            text = by_name[name][0]
        if text is not None:
            out.by_path[_key(path)] = text
    return out


def sidecar_captions_for(image_paths, text_files) -> Captions:
    """Captions from uploaded .txt files matched to images by file stem (cat.jpg <- cat.txt)."""
    by_stem: dict[str, str] = {}
    out = Captions()
    for path in text_files:
        try:
            if os.path.getsize(path) > 1024 * 1024:
                out.problems.append(f"{Path(path).name}: caption file larger than 1 MiB")
                continue
            text = " ".join(Path(path).read_text(encoding="utf-8-sig").split())
        except (OSError, UnicodeDecodeError):
            out.problems.append(f"{Path(path).name}: not readable UTF-8 text")
            continue
        if text:
            by_stem[Path(path).stem] = text
    for image in image_paths:
        text = by_stem.get(Path(image).stem)
        if text is None:
            out.problems.append(f"{Path(image).name}: no caption file {Path(image).stem}.txt")
        else:
            out.by_path[_key(image)] = text
    return out
