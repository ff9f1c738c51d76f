"""A fitted few-shot classifier on disk: NAME.safetensors (its arrays) beside NAME.json (what it is:
method, class names, hyper-parameters, the model that made the embeddings and the prompt set of
its zero-shot part). Either path may be given to `load`; a classifier is only used with the model
it was made with, since its weights live in that model's embedding space.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .fewshot import METHODS, FewShotClassifier

FORMAT = "clip-explorer-classifier/1"
MAX_BYTES = 256 << 20   # per file; a Tip-Adapter cache of 16 shots x 1,000 classes x 768-d is 49 MB


class ClassifierFileError(ValueError):
    """The file is not a classifier, is damaged, or belongs to another model; the message says which."""


def _pair(path) -> tuple[Path, Path]:
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save(classifier: FewShotClassifier, path, model_identity: dict, prompts: dict) -> tuple[Path, Path]:
    """Write the pair; returns (json path, safetensors path)."""
    from safetensors.numpy import save_file

    meta_path, array_path = _pair(path)
    arrays = {"text": classifier.text, **classifier.arrays}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(array_path))
    meta = {"format": FORMAT, "method": classifier.method, "class_names": classifier.class_names,
            "logit_scale": classifier.logit_scale, "params": classifier.params, "model": model_identity,
            "prompts": prompts, "arrays": array_path.name}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta_path, array_path


def load(path, model_identity: dict | None = None, model_name: str = "the loaded model") -> tuple[FewShotClassifier, dict]:
    """(classifier, metadata). With `model_identity`, a classifier made with another model is refused,
    naming both."""
    meta_path, array_path = _pair(path)
    try:
        meta_text = meta_path.read_bytes()
    except FileNotFoundError:
        raise ClassifierFileError(f"{meta_path}: no such classifier file") from None
    except OSError as exc:
        raise ClassifierFileError(f"{meta_path}: not a readable classifier ({exc})") from None
    meta = _meta(meta_text, meta_path, model_identity, model_name)
    try:
        arrays = array_path.read_bytes()
    except OSError as exc:
        raise ClassifierFileError(f"{array_path}: cannot read the classifier's arrays ({exc})") from None
    return _classifier(meta, arrays, array_path), meta


def load_upload(paths, model_identity: dict, model_name: str) -> tuple[FewShotClassifier, dict]:
    """A classifier from uploaded files: the zip the app's Teach tab downloads, or the .json and
    .safetensors pair. Nothing is written to disk; sizes are checked before anything is read
    whole (a stranger may send anything)."""
    paths = [Path(p) for p in paths if p]
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        members = _zip_members(paths[0])
    else:
        members = {}
        for p in paths:
            if p.suffix.lower() in (".json", ".safetensors"):
                if p.stat().st_size > MAX_BYTES:
                    raise ClassifierFileError(f"{p.name}: larger than a classifier can be ({MAX_BYTES >> 20} MiB)")
                members[p.suffix.lower()] = (p.name, p.read_bytes())
    if set(members) != {".json", ".safetensors"}:
        raise ClassifierFileError("a classifier is a .zip from Teach by example, or its .json and .safetensors "
                                  "files together")
    (meta_name, meta_text), (array_name, arrays) = members[".json"], members[".safetensors"]
    meta = _meta(meta_text, Path(meta_name), model_identity, model_name)
    return _classifier(meta, arrays, Path(array_name)), meta


def summary(meta: dict, source: str) -> dict:
    """What a report says about the classifier that made its numbers."""
    return {"file": source, "method": meta.get("method"), "classes": len(meta.get("class_names", [])),
            "params": meta.get("params"), "prompts": meta.get("prompts"), "model": meta.get("model")}


def _zip_members(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            found = {}
            for info in z.infolist():
                suffix = Path(info.filename).suffix.lower()
                if info.is_dir() or suffix not in (".json", ".safetensors"):
                    continue
                if suffix in found:
                    raise ClassifierFileError(f"{path.name} holds more than one {suffix} file")
                if info.file_size > MAX_BYTES:
                    raise ClassifierFileError(f"{path.name}: {info.filename} is larger than a classifier can be")
                with z.open(info) as member:
                    data = member.read(MAX_BYTES + 1)  # a header may lie about the size
                if len(data) > MAX_BYTES:
                    raise ClassifierFileError(f"{path.name}: {info.filename} is larger than a classifier can be")
                found[suffix] = (Path(info.filename).name, data)
            return found
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise ClassifierFileError(f"{path.name}: not a readable zip ({exc})") from None


def _meta(text: bytes, meta_path: Path, model_identity: dict | None, model_name: str) -> dict:
    try:
        meta = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierFileError(f"{meta_path.name}: not a readable classifier ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ClassifierFileError(f"{meta_path.name}: not a CLIP Explorer classifier (expected format {FORMAT})")
    if model_identity is not None and meta.get("model") != model_identity:
        made = meta.get("model", {})
        raise ClassifierFileError(
            f"{meta_path.name} was made with {_describe(made if isinstance(made, dict) else {})}, but {model_name} "
            "is loaded; its weights only mean something in the embedding space of the model that made it")
    return meta


def _classifier(meta: dict, data: bytes, array_path: Path) -> FewShotClassifier:
    from safetensors.numpy import load as load_arrays

    try:
        arrays = load_arrays(data)
        text = arrays.pop("text")
        classifier = FewShotClassifier(str(meta["method"]), [str(n) for n in meta["class_names"]], text,
                                       float(meta["logit_scale"]), dict(meta["params"]), arrays)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ClassifierFileError(f"{array_path.name}: cannot read the classifier's arrays ({exc})") from None
    if classifier.method not in METHODS or text.ndim != 2 or len(text) != len(classifier.class_names):
        raise ClassifierFileError(f"{array_path.name}: the arrays do not match the classifier's description")
    return classifier


def _describe(identity: dict) -> str:
    name, pretrained = identity.get("name", "an unknown model"), identity.get("pretrained")
    return f"{name} ({pretrained})" if pretrained else str(name)
