"""Prompt lab plumbing: the editable template list, where the images come from, and one run.

No maths here: every number comes from explorer.evaluate / weighting / zeroshot / descriptions.
Image embeddings are cached per (image source, model), so editing prompts never re-encodes images.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..descriptions import DESCRIPTIONS_SLOT, load_descriptions, prompt_set
from ..evaluate import (Comparison, EvalResult, LabelledImages, compare, embed_labelled_folder,
                        evaluate_prompt_set, open_set_scores)
from ..index import existing_index_for
from ..images import ImageError, file_key, load_images, scan_folder
from ..paths import allowed_folder, fresh_upload_dir, unpack_uploads
from ..prompts import PromptError, load_template_set, parse_labels, parse_templates
from ..weighting import ZPEResult, zpe_weights
from ..zeroshot import ensemble, predict

BUILTIN_SETS = {
    "Single: a photo of a {}.": "single",
    "7 templates (OpenAI subset)": "simple",
    "80 templates (OpenAI ImageNet)": "openai",
}
WEIGHTINGS = {"Equal average": "mean", "ZPE (weights from the images)": "zpe", "One chosen template": "single"}
USES = {"Templates": "templates", "Descriptions": "descriptions", "Both": "both"}
WORK_DIR = Path(tempfile.gettempdir()) / "clip-explorer-prompt-lab"
CACHE_SIZE = 4


# ---- the template list ----------------------------------------------------------------------------
def rows_of(table) -> list[str]:
    """The template column of the Dataframe value (pandas, list of lists or None), blanks dropped."""
    if table is None:
        return []
    values = table.iloc[:, 0].tolist() if hasattr(table, "iloc") else [row[0] if row else "" for row in table]
    return [" ".join(str(v).split()) for v in values if v is not None and str(v).strip()]


def checked(rows: list[str]) -> list[str]:
    """The rows as templates; PromptError naming every row without {} (rows numbered from 1)."""
    bad = [f"row {i}: {row!r}" for i, row in enumerate(rows, start=1) if "{}" not in row]
    if bad:
        raise PromptError("every template needs {} where the class name goes; these have none: " + "; ".join(bad))
    if not rows:
        raise PromptError("the prompt set is empty: add a template such as 'a photo of a {}.'")
    return rows


def templates_from_file(path: str) -> list[str]:
    """A saved set: .json (a list of strings, or {"templates": [...]}) or text, one template a line."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() != ".json":
        return parse_templates(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{Path(path).name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("templates")
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise PromptError(f"{Path(path).name}: expected a JSON list of templates, or {{\"templates\": [...]}}")
    return checked([" ".join(t.split()) for t in data if t.strip()])


def builtin(choice: str) -> list[str]:
    return load_template_set(BUILTIN_SETS[choice])


def save_files(rows: list[str]) -> tuple[str, str]:
    """Write the set as prompt-set.txt and prompt-set.json in a fresh folder; return both paths."""
    folder = Path(tempfile.mkdtemp(prefix="set-", dir=_work_dir()))
    txt, js = folder / "prompt-set.txt", folder / "prompt-set.json"
    txt.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    js.write_text(json.dumps({"templates": rows}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(txt), str(js)


def moved(rows: list[str], number, delta: int) -> list[str]:
    """Row `number` (from 1) moved by delta (-1 up, +1 down); unchanged at the ends."""
    i = int(number or 0) - 1
    j = i + delta
    if not (0 <= i < len(rows) and 0 <= j < len(rows)):
        return rows
    rows = list(rows)
    rows[i], rows[j] = rows[j], rows[i]
    return rows


def descriptions_from(text: str, path: str | None) -> dict[str, list[str]] | None:
    """Descriptions from an uploaded JSON file (wins) or the typed JSON; None when neither is given."""
    if path:
        return load_descriptions(path)
    if text and text.strip():
        return load_descriptions(text)
    return None


# ---- image sources and their cached embeddings ------------------------------------------------------
@dataclass
class ImageSet:
    """Embedded images: a labelled folder (`labelled`) or plain images (`names`, `embeddings`)."""
    source: str
    labelled: LabelledImages | None = None
    names: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    failures: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _work_dir() -> Path:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    return WORK_DIR


def _signature(root: Path) -> tuple:
    files = scan_folder(root)
    return tuple(file_key(p) for p in files)



def image_set(model, settings, folder_text: str, uploads: list[str] | None, progress=None) -> ImageSet:
    """Embed the images the user gave: uploads (images or zips) if any, else the typed folder.

    A folder with two or more sub-folders is a labelled one (ImageFolder layout); otherwise every
    image is unlabelled. Cached per source and model. Raises PathRefused / ValueError with a message."""
    uploads = [u for u in (uploads or []) if u]
    if uploads:
        key = ("upload", tuple(file_key(u) for u in uploads), model.identifier)
    else:
        root = allowed_folder(folder_text, settings.allowed_roots, settings.hosted)
        key = ("folder", os.fspath(root), _signature(root), model.identifier)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if uploads:
        dest = fresh_upload_dir(_work_dir() / "uploads")
        try:
            root, notes = unpack_uploads(uploads, dest)
            found = _embed(model, settings, _single_top_folder(root), progress)
            found.source = f"{len(uploads)} uploaded file(s)"
            found.notes = notes + found.notes
        finally:
            shutil.rmtree(dest, ignore_errors=True)
    else:
        found = _embed(model, settings, root, progress, index=existing_index_for(settings.index_dir, root, model))
        found.source = os.fspath(root)
    with _lock:
        _cache[key] = found
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def _single_top_folder(root: Path) -> Path:
    """A zip often wraps everything in one folder (data/cat/1.jpg): step into it."""
    while True:
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            root = Path(entries[0].path)
        else:
            return root


def _class_dirs(root: Path) -> list[str]:
    return [e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]


def _embed(model, settings, root: Path, progress, index=None) -> ImageSet:
    """`index`: the Search tab's index of this folder, if any; its stored embeddings are re-used."""
    limits = dict(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    if len(_class_dirs(root)) >= 2:
        labelled = embed_labelled_folder(model, root, progress=progress, index=index, **limits)
        return ImageSet("", labelled=labelled, failures=labelled.failures, notes=list(labelled.notes))
    try:
        files = scan_folder(root)
    except ImageError as exc:
        raise ValueError(f"{exc.path}: {exc.reason}") from None
    chunks, names, failures = [], [], []
    for start in range(0, len(files), 32):
        loaded, bad = load_images(files[start:start + 32], **limits)
        failures += bad
        if loaded:
            keys = [file_key(item.path) for item in loaded]
            chunks.append(model.encode_images([item.image for item in loaded], keys=keys))
            names += [Path(item.path).relative_to(root).as_posix() for item in loaded]
        if progress is not None:
            progress(min(start + 32, len(files)), len(files))
    failures = [type(f)(_relative(f.path, root), f.reason) for f in failures]
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32)
    return ImageSet("", names=names, embeddings=embeddings, failures=failures)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


# ---- one run --------------------------------------------------------------------------------------
@dataclass
class LabReport:
    """Everything the page shows after a run."""
    images: ImageSet
    class_names: list[str]
    slots: list[str]
    weighting: str
    weights: np.ndarray
    zpe: ZPEResult
    image_names: list[str]
    predicted: list[str]
    true: list[str] | None
    max_cosine: np.ndarray
    max_probability: np.ndarray
    result: EvalResult | None = None          # labelled images only
    comparison: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_lab(model, images: ImageSet, label_text: str, templates: list[str] | None,
            descriptions: dict | None, use: str, weighting: str, single_row, compare_builtins: bool) -> LabReport:
    """Score the prompt set on the embedded images (never re-encoding them)."""
    notes = []
    if images.labelled is not None:
        class_names = images.labelled.class_names
        if parse_labels(label_text).labels:
            notes.append("the class names come from the folder's sub-folders; the Class names box is not used")
    else:
        parsed = parse_labels(label_text)
        class_names, notes = parsed.labels, list(parsed.notes)
        if len(class_names) < 2:
            raise PromptError("these images have no labels (no class sub-folders): type at least two class "
                              "names so the prompts have something to tell apart")
    prompts = prompt_set(model, class_names, templates, descriptions, use)
    notes += prompts.notes
    template = None
    if weighting == "single":
        template = int(single_row or 1) - 1
        if not 0 <= template < len(prompts.slots):
            raise PromptError(f"'One chosen template' needs a row number from 1 to {len(prompts.slots)}"
                              + (" (the descriptions are the last one)" if DESCRIPTIONS_SLOT in prompts.slots else ""))
    if images.labelled is not None:
        labelled = images.labelled
        if len(labelled.embeddings) == 0:
            raise ValueError("no readable images in the class folders")
        result = evaluate_prompt_set(labelled, prompts, model.logit_scale, weighting, template=template)
        comparison = _comparison(model, labelled, templates, descriptions, use, prompts) if compare_builtins else []
        true = [class_names[k] for k in labelled.true_idx]
        return LabReport(images, class_names, prompts.slots, weighting, result.weights, result.zpe,
                         list(labelled.paths), [class_names[k] for k in result.predictions], true,
                         result.max_cosine, result.max_probability, result, comparison, notes)
    if images.embeddings is None or len(images.embeddings) == 0:
        raise ValueError("no readable images were given")
    zpe = zpe_weights(images.embeddings, prompts.embeddings, model.logit_scale)
    weights = {"mean": prompts.mean_weights, "zpe": zpe.weights}.get(weighting)
    if weights is None:
        weights = np.eye(len(prompts.slots), dtype=np.float32)[template]
    class_emb = ensemble(prompts.embeddings, weights)
    top = predict(images.embeddings, class_emb, class_names, model.logit_scale).top1()
    max_cos, max_prob = open_set_scores(images.embeddings, class_emb, model.logit_scale)
    return LabReport(images, class_names, prompts.slots, weighting, np.asarray(weights), zpe, list(images.names),
                     top, None, max_cos, max_prob, notes=notes)


def _comparison(model, labelled, templates, descriptions, use, current) -> list[Comparison]:
    """Your set vs the built-in sets (and the descriptions alone), each with mean and ZPE weighting."""
    names = labelled.class_names
    sets = {"your set": current}
    for label, key in (("single template", "single"), ("7 templates", "simple"), ("80 templates", "openai")):
        builtin_templates = load_template_set(key)
        if use == "templates" and builtin_templates == templates:
            continue
        sets[label] = prompt_set(model, names, builtin_templates)
    if descriptions and use != "descriptions":
        try:
            sets["descriptions only"] = prompt_set(model, names, None, descriptions, "descriptions")
        except PromptError:
            pass  # descriptions that miss a class cannot stand alone; the run's own notes say so
    return compare(labelled.embeddings, labelled.true_idx, names, sets, model.logit_scale)
