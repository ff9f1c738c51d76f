"""A fitted few-shot classifier on disk: NAME.safetensors (its arrays) beside NAME.json (what it is:
method, class names, hyper-parameters, the model that made the embeddings and the prompt set of
its zero-shot part). Either path may be given to `load`; a classifier is only used with the model
it was made with, since its weights live in that model's embedding space.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .fewshot import FewShotClassifier

FORMAT = "clip-explorer-classifier/1"


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
    from safetensors.numpy import load_file

    meta_path, array_path = _pair(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClassifierFileError(f"{meta_path}: no such classifier file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierFileError(f"{meta_path}: not a readable classifier ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ClassifierFileError(f"{meta_path}: not a CLIP Explorer classifier (expected format {FORMAT})")
    if model_identity is not None and meta.get("model") != model_identity:
        made = meta.get("model", {})
        raise ClassifierFileError(
            f"{meta_path.name} was made with {_describe(made)}, but {model_name} is loaded; its weights only "
            "mean something in the embedding space of the model that made it")
    try:
        arrays = load_file(str(array_path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ClassifierFileError(f"{array_path}: cannot read the classifier's arrays ({exc})") from None
    text = arrays.pop("text")
    classifier = FewShotClassifier(meta["method"], list(meta["class_names"]), text, float(meta["logit_scale"]),
                                   dict(meta["params"]), arrays)
    return classifier, meta


def _describe(identity: dict) -> str:
    name, pretrained = identity.get("name", "an unknown model"), identity.get("pretrained")
    return f"{name} ({pretrained})" if pretrained else str(name)
