"""The Heatmaps tab's bookkeeping: which images are on the page, where their embeddings come from,
and the small HTML notes. No maths here: cosines, probabilities, patch maps and overlays all come
from explorer/heatmaps.py; images are decoded only through explorer/images.py.

Images are kept as plain dicts in a gr.State: {"name": unique display name, "path": server path}
for uploads, plus {"index": index folder, "rel": path inside the indexed folder} for images sampled
from a search index (their embeddings are read from the index, so nothing is re-encoded).
"""
from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..heatmaps import PatchMap
from ..images import ImageError, file_key, load_image, load_images
from ..index import IndexMismatchError
from ..paths import inside_roots

MAX_TEXTS = 64
MAX_IMAGES = 64
DISPLAY_SIDE = 640  # the overlay is drawn on a copy at most this many pixels on its longer side
# Anchors of the inferno map the core colours patch maps with (explorer/heatmaps.py), for the legend.
_INFERNO_CSS = "#000004, #1f0c48, #550f6d, #88226a, #ba3655, #e35933, #f98c0a, #f9c932, #fcffa4"


def parse_texts(text: str | None) -> tuple[list[str], list[str]]:
    """One text per line (commas are part of a text); blanks and repeats dropped -> (texts, notes)."""
    texts, notes, seen = [], [], set()
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if line in seen:
            notes.append(f"dropped the repeated text “{line}”")
            continue
        seen.add(line)
        texts.append(line)
    if len(texts) > MAX_TEXTS:
        notes.append(f"kept the first {MAX_TEXTS} of {len(texts)} texts")
        texts = texts[:MAX_TEXTS]
    return texts, notes


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    taken.add(candidate)
    return candidate


def upload_items(paths: list[str] | None) -> list[dict]:
    """Uploaded files as items, named by file name (made unique, so heatmap rows never merge)."""
    taken: set[str] = set()
    return [{"name": _unique(os.path.basename(p), taken), "path": str(p)} for p in (paths or [])][:MAX_IMAGES]


def add_index_items(items: list[dict], index, rels: list[str]) -> list[dict]:
    taken = {item["name"] for item in items}
    return items + [{"name": _unique(rel, taken), "path": str(index.root / rel), "index": str(index.folder),
                     "rel": rel} for rel in rels]


# ---- search indexes ----------------------------------------------------------------------------
def list_indexes(base: Path, indexes, served: tuple[Path, ...]) -> list[tuple[str, str]]:
    """(label, index folder) for every index under `base` whose folder this app may show."""
    choices = []
    if not base.is_dir():
        return choices
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            index = indexes.get(folder)
        except (ValueError, OSError):
            continue
        if index.count and inside_roots(index.root, served):
            choices.append((f"{index.root} · {index.count} images · {index.describe_model()}", str(folder)))
    return choices


def sample_index(indexes, folder: str, n: int, model, served: tuple[Path, ...], seed: int = 0):
    """Up to `n` indexed images, sampled reproducibly -> (index, relative paths). Raises ValueError
    (IndexMismatchError included) with a sentence for people."""
    index = indexes.get(folder)
    index.check_model(model)
    if not inside_roots(index.root, served):
        raise ValueError(f"{index.root} is not a folder this app may show")
    states = index.file_states()
    rels = sorted(path for path, state in states.items() if state.error is None)
    if not rels:
        raise ValueError(f"the index of {index.root} holds no images")
    picked = np.random.default_rng(seed).choice(len(rels), size=min(int(n), len(rels)), replace=False)
    return index, [rels[i] for i in sorted(picked)]


# ---- embeddings and images -------------------------------------------------------------------
def embed_items(model, items: list[dict], indexes, max_bytes: int, max_pixels: int):
    """Embeddings of the items -> (kept items, [N, D] array, failures as (name, reason)).
    Uploads are decoded and encoded (cached by path, size and mtime); index items use their stored
    embedding."""
    kept, rows, failures = [], [], []
    decoded = []  # (item, image): one file at a time, so repeated uploads of one path stay apart
    for item in items:
        if "index" in item:
            continue
        loaded, failed = load_images([item["path"]], max_bytes=max_bytes, max_pixels=max_pixels)
        failures += [(item["name"], f.reason) for f in failed]
        decoded += [(item, li.image) for li in loaded]
    if decoded:
        vectors = model.encode_images([image for _, image in decoded],
                                      keys=[file_key(item["path"]) for item, _ in decoded])
        kept += [item for item, _ in decoded]
        rows += list(vectors)
    for item in items:
        if "index" not in item:
            continue
        try:
            index = indexes.get(item["index"])
            index.check_model(model)
            vector = index.embedding_of(item["rel"])
        except (IndexMismatchError, ValueError, OSError) as exc:
            failures.append((item["name"], str(exc)))
            continue
        if vector is None:
            failures.append((item["name"], "no longer in the index"))
            continue
        kept.append(item)
        rows.append(vector)
    return kept, (np.stack(rows) if rows else None), failures


def load_display_image(item: dict, indexes, max_bytes: int, max_pixels: int) -> Image.Image:
    """The full image (for the patch map), refusing index items outside their indexed folder."""
    if "index" in item:
        root = indexes.get(item["index"]).root
        if not inside_roots(Path(item["path"]), (root,)):
            raise ImageError(item["name"], "is outside its indexed folder")
    return load_image(item["path"], max_bytes=max_bytes, max_pixels=max_pixels, name=item["name"])


def display_copy(image: Image.Image) -> Image.Image:
    """A copy small enough to blend quickly on every slider move (the overlay is resampled to it)."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    if min(copy.size) < 384:  # tiny images are enlarged so the patch grid is visible
        factor = 384 / min(copy.size)
        copy = copy.resize((round(copy.width * factor), round(copy.height * factor)), Image.NEAREST)
    return copy


# ---- HTML --------------------------------------------------------------------------------------
def message(text: str, kind: str = "note") -> str:
    return f'<div class="explorer-{kind}">{html.escape(text)}</div>'


def matrix_summary(names: list[str], texts: list[str], failures, notes, from_index: int) -> str:
    parts = [f'<p class="explorer-muted">{len(names)} image(s) × {len(texts)} text(s)'
             + (f", {from_index} of them sampled from a search index (stored embeddings)" if from_index else "")
             + ".</p>"]
    if notes:
        parts.append(f'<p class="explorer-note">Texts: {html.escape("; ".join(notes))}.</p>')
    parts += [f'<p class="explorer-error">Skipped {html.escape(n)}: {html.escape(r)}</p>' for n, r in failures]
    return "".join(parts)


def scale_note(view: str, cosines: np.ndarray, logit_scale: float) -> str:
    if view == "cosine":
        text = (f"Colour: image–text cosine, spanning this matrix's own range {float(cosines.min()):.3f} "
                f"to {float(cosines.max()):.3f} (image–text only, never mixed with image–image or "
                "text–text similarities). Hover a cell for the exact value and its probability.")
    else:
        text = (f"Colour: probability from 0% to 100%, a softmax over the texts for each image (row) with "
                f"the model's learned scale ×{logit_scale:.1f}; each row sums to 100% even when no text fits, "
                "so check the cosine on hover.")
    return f'<p class="explorer-muted" id="hm-scale-text">{html.escape(text)}</p>'


METHOD_HELP = {
    "tokens": "tokens: the last block's patch tokens, through the model's own final norm and projection.",
    "value": "value: the last block's value path only (each patch attending to itself, MaskCLIP / ClearCLIP); "
             "often cleaner on large CLIPs whose last layer spreads global information over every patch.",
}
SCALE_CHOICES = {"relative to the map's mean": "relative", "min to max": "minmax"}


def map_summary(pmap: PatchMap, scale: str) -> str:
    grid = pmap.grid
    gh, gw = grid.shape
    legend = ("dark = below the map's mean, bright = above (symmetric around the mean)" if scale == "relative"
              else "dark = the map's lowest patch, bright = its highest")
    return (f'<div class="hm-legend" style="display:flex;align-items:center;gap:6px;font-size:0.85rem">'
            f'<span>low</span><span style="display:inline-block;width:180px;height:12px;border-radius:3px;'
            f'background:linear-gradient(to right, {_INFERNO_CSS})"></span><span>high</span></div>'
            f'<p class="explorer-muted" id="hm-map-numbers">“{html.escape(pmap.text)}” · method '
            f"{html.escape(pmap.method)} · {gh}×{gw} patches. Raw patch–text cosines from "
            f"{float(grid.min()):.4f} to {float(grid.max()):.4f} (mean {float(grid.mean()):.4f}); "
            f"the whole image's cosine with the text is {pmap.image_cosine:.4f}. Colour: inferno, "
            f"{legend}. Patch cosines are small and share an offset, so read the map by its contrast, "
            "not its absolute values. Parts of the image the model did not see (cropped off) are dimmed.</p>")
