"""Evaluation on a labelled folder: accuracy per class and per template, ZPE weights, confusion
matrix, and the open-set "none of these" scores.

The folder uses the ImageFolder layout (root/<class folder>/<images, any depth>). Images are
embedded once (`embed_labelled_folder`); every prompt set and weighting is then scored on the same
embeddings (`evaluate`, `compare`), so changing prompts never touches an image again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .descriptions import PromptSet
from .images import ImageFailure, file_key, load_images, scan_folder
from .weighting import ZPEResult, zpe_weights
from .zeroshot import ensemble, softmax

WEIGHTINGS = ("mean", "zpe", "single")
_CHUNK = 2048


# ---- the labelled folder ------------------------------------------------------------------------
def load_classnames(source: str | Path) -> dict[str, str]:
    """A JSON object {folder: class name}, from a file path or from the JSON text itself."""
    text = str(source)
    where = "classnames"
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
        raise ValueError(f"{where}: expected a JSON object mapping each folder name to a non-empty class name")
    return {str(k): " ".join(v.split()) for k, v in data.items()}


@dataclass
class ClassFolders:
    """The classes of a labelled folder, in sorted folder order, and their image files."""
    root: Path
    folders: list[str]
    names: list[str]
    files: list[list[Path]]
    notes: list[str] = field(default_factory=list)


def read_class_folders(root: str | Path, classnames: dict[str, str] | None = None) -> ClassFolders:
    """List root's class sub-folders and their images. A class is named by `classnames[folder]`,
    else by the folder name with underscores as spaces. Raises ValueError for fewer than two classes,
    mapping keys that name no folder, or two folders with the same class name."""
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        raise ValueError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    folders = sorted(entry.name for entry in os.scandir(root)
                     if not entry.name.startswith(".") and entry.is_dir())
    if len(folders) < 2:
        raise ValueError(f"{root}: needs one sub-folder per class (the ImageFolder layout); found {len(folders)}")
    notes = []
    classnames = classnames or {}
    unknown = sorted(set(classnames) - set(folders))
    if unknown:
        raise ValueError(f"classnames: no such class folder: {', '.join(unknown)}")
    unnamed = [f for f in folders if classnames and f not in classnames]
    if unnamed:
        notes.append(f"no class name given for {', '.join(unnamed)}: using the folder name")
    names = [classnames.get(f) or " ".join(f.replace("_", " ").split()) for f in folders]
    seen: dict[str, str] = {}
    for folder, name in zip(folders, names):
        if name.casefold() in seen:
            raise ValueError(f"folders {seen[name.casefold()]!r} and {folder!r} both give the class name {name!r}")
        seen[name.casefold()] = folder
    files = [scan_folder(root / folder) for folder in folders]
    empty = [f for f, found in zip(folders, files) if not found]
    if empty:
        notes.append(f"class folders with no images: {', '.join(empty)}")
    loose = [e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith(".")]
    if loose:
        notes.append(f"{len(loose)} file(s) directly in {root} belong to no class and were ignored")
    return ClassFolders(root, folders, names, files, notes)


@dataclass
class LabelledImages:
    """Embeddings of a labelled folder's readable images with their true classes."""
    root: Path
    class_names: list[str]
    class_folders: list[str]
    paths: list[str]          # relative to root, posix form, in embedding order
    true_idx: np.ndarray      # [N] int
    embeddings: np.ndarray    # [N, D] float32, normalised
    failures: list[ImageFailure]
    reused: int = 0           # embeddings taken from an index instead of encoded
    notes: list[str] = field(default_factory=list)


def embed_labelled_folder(model, root: str | Path, classnames: dict[str, str] | None = None, *,
                          max_bytes: int, max_pixels: int, batch_size: int = 32, progress=None,
                          index=None) -> LabelledImages:
    """Read an ImageFolder-layout folder and embed every image once.

    Bad images are listed in `failures` and skipped. `index`: an open image index (explorer.index)
    of this folder or a parent; files it holds unchanged, made by the same model, are taken from it
    instead of being decoded and encoded. `progress(done, total)` after each batch.
    """
    classes = read_class_folders(root, classnames)
    items = [(path, k) for k, files in enumerate(classes.files) for path in files]
    lookup = _index_lookup(index, model, classes.root)
    paths, labels, rows, failures, reused = [], [], [], [], 0
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        found = [lookup(path) if lookup else None for path, _ in batch]
        reused += sum(hit is not None for hit in found)
        todo = [os.fspath(path) for (path, _), hit in zip(batch, found) if hit is None]
        encoded: dict[str, np.ndarray] = {}
        if todo:
            loaded, bad = load_images(todo, max_bytes=max_bytes, max_pixels=max_pixels)
            failures += [ImageFailure(_relative(f.path, classes.root), f.reason) for f in bad]
            if loaded:
                keys = [file_key(item.path) for item in loaded]
                vectors = model.encode_images([item.image for item in loaded], batch_size=batch_size, keys=keys)
                encoded = {item.path: vector for item, vector in zip(loaded, vectors)}
        for (path, k), hit in zip(batch, found):  # keep folder order, whichever way it was embedded
            vector = hit if hit is not None else encoded.get(os.fspath(path))
            if vector is not None:
                paths.append(path)
                labels.append(k)
                rows.append(vector)
        if progress is not None:
            progress(min(start + batch_size, len(items)), len(items))
    dim = model.embed_dim
    embeddings = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    notes = list(classes.notes)
    if reused:
        notes.append(f"{reused} embedding(s) re-used from the index")
    return LabelledImages(classes.root, classes.names, classes.folders,
                          [_relative(p, classes.root) for p in paths], np.array(labels, dtype=np.int64),
                          embeddings, failures, reused, notes)


def _relative(path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return os.fspath(path)



def _index_lookup(index, model, root: Path):
    """path -> stored embedding or None, from an index (explorer.index.ImageIndex) of `root` or a
    parent, made by the same model; a file whose size or mtime changed since it was indexed is None."""
    if index is None:
        return None
    index.check_model(model)  # raises IndexMismatchError naming both models
    index_root = Path(index.root).resolve()
    if not root.resolve().is_relative_to(index_root):
        raise ValueError(f"the index covers {index_root}, which does not contain {root}")
    prefix = root.resolve().relative_to(index_root)
    states = index.file_states()

    def lookup(path: Path):
        rel = (prefix / path.relative_to(root)).as_posix()
        state = states.get(rel)
        if state is None or state.error is not None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if (stat.st_size, stat.st_mtime_ns) != (state.size, state.mtime_ns):
            return None
        embedding = index.embedding_of(rel)
        return None if embedding is None else np.asarray(embedding, dtype=np.float32)

    return lookup


# ---- scoring ------------------------------------------------------------------------------------
@dataclass
class TemplateScore:
    """One prompt slot: its accuracy when used alone, its weight in this result, its ZPE score."""
    template: str
    accuracy: float
    weight: float
    zpe_weight: float | None
    zpe_score: float | None


@dataclass
class EvalResult:
    """The outcome of one (prompt set, weighting) on labelled embeddings."""
    class_names: list[str]
    weighting: str
    top1: float
    top5: float
    top_k: int                       # the k of "top5" (fewer when there are fewer than 5 classes)
    per_class: dict[str, float | None]   # accuracy (recall) per class; None: no images of it
    class_counts: dict[str, int]
    per_template: list[TemplateScore]
    weights: np.ndarray              # [S] the slot weights used
    confusion: np.ndarray            # [C, C] counts, rows = true class, columns = predicted
    predictions: np.ndarray          # [N] predicted class index
    true_idx: np.ndarray             # [N]
    max_cosine: np.ndarray           # [N] open-set score: best class cosine
    max_probability: np.ndarray      # [N] open-set score: best class softmax probability
    zpe: ZPEResult | None

    def as_dict(self) -> dict:
        """JSON-friendly; the confusion matrix carries its class order."""
        return {
            "weighting": self.weighting, "top1": self.top1, "top5": self.top5, "top_k": self.top_k,
            "per_class": {name: {"accuracy": self.per_class[name], "images": self.class_counts[name]}
                          for name in self.class_names},
            "per_template": [vars(t) for t in self.per_template],
            "zpe": None if self.zpe is None else self.zpe.as_dict(),
            "confusion": {"classes": list(self.class_names), "rows": "true class", "columns": "predicted class",
                          "matrix": self.confusion.tolist()},
        }


def _check_inputs(image_emb, true_idx, prompt_emb, class_names, slots):
    image_emb = np.asarray(image_emb, dtype=np.float32)
    true_idx = np.asarray(true_idx, dtype=np.int64)
    prompt_emb = np.asarray(prompt_emb, dtype=np.float32)
    if len(image_emb) == 0:
        raise ValueError("no images to evaluate")
    if prompt_emb.ndim != 3 or prompt_emb.shape[0] != len(class_names) or prompt_emb.shape[1] != len(slots):
        raise ValueError(f"prompt embeddings {prompt_emb.shape} do not match {len(class_names)} classes "
                         f"x {len(slots)} templates")
    if true_idx.shape != (len(image_emb),) or true_idx.min() < 0 or true_idx.max() >= len(class_names):
        raise ValueError("true labels must be one class index per image")
    return image_emb, true_idx, prompt_emb


def per_template_accuracy(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """[S] top-1 accuracy of each prompt slot used alone (one matmul over all slots)."""
    classes, slots, dim = prompt_emb.shape
    flat = prompt_emb.reshape(classes * slots, dim).T
    correct = np.zeros(slots)
    for start in range(0, len(image_emb), _CHUNK):
        scores = (image_emb[start:start + _CHUNK] @ flat).reshape(-1, classes, slots)
        correct += (scores.argmax(axis=1) == true_idx[start:start + _CHUNK, None]).sum(axis=0)
    return correct / len(image_emb)


def evaluate(image_emb: np.ndarray, true_idx: np.ndarray, prompt_emb: np.ndarray, class_names: list[str],
             templates: list[str], logit_scale: float, weighting: str = "mean", *,
             mean_weights: np.ndarray | None = None, template: int | None = None,
             reference_emb: np.ndarray | None = None, reference_name: str | None = None) -> EvalResult:
    """Score one prompt set on labelled image embeddings.

    image_emb [N, D], true_idx [N], prompt_emb [C, S, D] with slot names `templates` [S].
    weighting: "mean" (`mean_weights`, default equal), "zpe" (ZPE weights from these images, with
    `reference_emb` standing in for pre-training images when given), or "single" (slot `template`).
    ZPE weights are always computed and reported per template, whichever weighting is used.
    """
    image_emb, true_idx, prompt_emb = _check_inputs(image_emb, true_idx, prompt_emb, class_names, templates)
    zpe = zpe_weights(image_emb, prompt_emb, logit_scale, reference_emb, reference_name)
    weights = _weights(weighting, len(templates), mean_weights, template, zpe)
    class_emb = ensemble(prompt_emb, weights)
    cosines = image_emb @ class_emb.T
    probabilities = softmax(logit_scale * cosines)
    predictions = cosines.argmax(axis=1)
    k = min(5, len(class_names))
    top_k = np.argpartition(-cosines, k - 1, axis=1)[:, :k] if k < len(class_names) else None
    top5 = 1.0 if top_k is None else float((top_k == true_idx[:, None]).any(axis=1).mean())
    C = len(class_names)
    confusion = np.bincount(true_idx * C + predictions, minlength=C * C).reshape(C, C)
    counts = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / counts[i]) if counts[i] else None)
                 for i, name in enumerate(class_names)}
    alone = per_template_accuracy(image_emb, true_idx, prompt_emb)
    per_template = [TemplateScore(t, float(alone[s]), float(weights[s]), float(zpe.weights[s]),
                                  float(zpe.scores[s])) for s, t in enumerate(templates)]
    return EvalResult(list(class_names), weighting, float((predictions == true_idx).mean()), top5, k,
                      per_class, {name: int(counts[i]) for i, name in enumerate(class_names)}, per_template,
                      weights, confusion, predictions, true_idx, cosines.max(axis=1), probabilities.max(axis=1), zpe)


def _weights(weighting: str, slots: int, mean_weights, template, zpe: ZPEResult) -> np.ndarray:
    if weighting == "mean":
        if mean_weights is None:
            return np.full(slots, 1.0 / slots, dtype=np.float32)
        return np.asarray(mean_weights, dtype=np.float32)
    if weighting == "zpe":
        return zpe.weights
    if weighting == "single":
        if template is None or not 0 <= template < slots:
            raise ValueError(f"single-template weighting needs a template number from 0 to {slots - 1}")
        weights = np.zeros(slots, dtype=np.float32)
        weights[template] = 1.0
        return weights
    raise ValueError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")


def evaluate_prompt_set(labelled, prompts: PromptSet, logit_scale: float, weighting: str = "mean",
                        **kwargs) -> EvalResult:
    """`evaluate` with a LabelledImages and a PromptSet (their slots and equal weights)."""
    return evaluate(labelled.embeddings, labelled.true_idx, prompts.embeddings, labelled.class_names,
                    prompts.slots, logit_scale, weighting, mean_weights=prompts.mean_weights, **kwargs)


@dataclass
class Comparison:
    """One row of a comparison table, with the full result behind it."""
    prompt_set: str
    weighting: str
    top1: float
    top5: float
    result: EvalResult


def compare(image_emb: np.ndarray, true_idx: np.ndarray, class_names: list[str],
            prompt_sets: dict[str, PromptSet], logit_scale: float,
            weightings: tuple[str, ...] = ("mean", "zpe"), **kwargs) -> list[Comparison]:
    """Evaluate every prompt set under every weighting on the same image embeddings (never
    re-encoded); rows in the order given."""
    rows = []
    for name, prompts in prompt_sets.items():
        for weighting in weightings:
            result = evaluate(image_emb, true_idx, prompts.embeddings, class_names, prompts.slots,
                              logit_scale, weighting, mean_weights=prompts.mean_weights, **kwargs)
            rows.append(Comparison(name, weighting, result.top1, result.top5, result))
    return rows


# ---- open set: "none of these" --------------------------------------------------------------------
def open_set_scores(image_emb: np.ndarray, class_emb: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image, (max cosine over the classes, max softmax probability over the classes).
    Low values mean no class fits well: the image may show something not in the label list."""
    cosines = np.asarray(image_emb, dtype=np.float32) @ np.asarray(class_emb, dtype=np.float32).T
    return cosines.max(axis=1), softmax(logit_scale * cosines).max(axis=1)


def none_of_these(max_cosine: np.ndarray, max_probability: np.ndarray, *, min_cosine: float | None = None,
                  min_probability: float | None = None) -> np.ndarray:
    """[N] bool: True where an image is flagged "none of these", i.e. its best cosine is below
    `min_cosine` or its best probability below `min_probability` (a None threshold is not used)."""
    flagged = np.zeros(len(max_cosine), dtype=bool)
    if min_cosine is not None:
        flagged |= np.asarray(max_cosine) < min_cosine
    if min_probability is not None:
        flagged |= np.asarray(max_probability) < min_probability
    return flagged
