"""A fitted few-shot classifier on disk: NAME.safetensors (its arrays) beside NAME.json (what it is:
method, class names, hyper-parameters, the model that made the embeddings and the prompt set of
its zero-shot part, and, from files written since, the run's provenance: the record
fewshot_experiment.Provenance that `clip-explorer fewshot --json` prints, with the same keys, and
beside the params how they were chosen ("how_chosen", "informative": false when every value of the
search tied and the default was used) and the method's departures from its paper).
Either path may be given to `load`; a classifier is only used with the model it was made with,
since its weights live in that model's embedding space. `export_zip` packs the pair into one zip,
the Teach tab's download. Files without a provenance (older ones) load as before.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from explorer.inputs import gate
from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

from .fewshot import METHODS, FewShotClassifier

FORMAT = "clip-explorer-classifier/1"
MAX_BYTES = 256 << 20   # the arrays; a Tip-Adapter cache of 16 shots x 1,000 classes x 768-d is 49 MB
META_MAX_BYTES = 4 << 20  # the .json (also at most max_text_kb): names, hyper-parameters, the prompt set
HEADER_MAX_BYTES = 1 << 20  # the safetensors header (a few hundred bytes for the arrays below)
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I32": 4, "I64": 8}
# The arrays and hyper-parameters each method's FewShotClassifier uses (fewshot.fit makes them).
ARRAYS = {"zero-shot": ("text",), "prototype": ("text", "prototypes"), "gda": ("text", "W", "b"),
          "tip-adapter": ("text", "keys", "key_labels")}
PARAMS = {"zero-shot": (), "prototype": ("weight",), "gda": ("alpha",), "tip-adapter": ("alpha", "beta")}


class ClassifierFileError(ValueError):
    """The file is not a classifier, is damaged, or belongs to another model; the message says which."""


def _pair(path) -> tuple[Path, Path]:
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save(classifier: FewShotClassifier, path, model_identity: dict, prompts: dict,
         provenance: dict | None = None) -> tuple[Path, Path]:
    """Write the pair; returns (json path, safetensors path). `provenance` (a plain dict, e.g.
    fewshot_experiment.Provenance.as_dict()) is kept under the key "provenance" when given."""
    from safetensors.numpy import save_file

    meta_path, array_path = _pair(path)
    arrays = {"text": classifier.text, **classifier.arrays}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(array_path))
    meta = {"format": FORMAT, "method": classifier.method, "class_names": classifier.class_names,
            "logit_scale": classifier.logit_scale, "params": classifier.params, "model": model_identity,
            "prompts": prompts, "arrays": array_path.name}
    if provenance is not None:
        meta.update(_selection(provenance, classifier.method))
        meta["provenance"] = provenance
    meta_path.write_text(_dumps(meta), encoding="utf-8")
    return meta_path, array_path


def _selection(provenance: dict, method: str) -> dict:
    """How the params were chosen, from the run's provenance (seed SHOTS_SEED's draw, the one saved)."""
    out = {}
    if method in provenance.get("how_chosen", {}):
        out["how_chosen"] = provenance["how_chosen"][method]
    informative = provenance.get("informative", {}).get(method)
    if informative:
        out["informative"] = bool(informative[0])
    if method in provenance.get("departures", {}):
        out["departures"] = provenance["departures"][method]
    return out


_NUMBERS = re.compile(r"\[[-+.\deE,\s]*\]")


def _dumps(meta: dict) -> str:
    """Indented JSON with each list of numbers on one line (a search's scores stay a few kB)."""
    text = json.dumps(meta, indent=2)
    return _NUMBERS.sub(lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text) + "\n"


def export_zip(classifier: FewShotClassifier, folder, model_identity: dict, prompts: dict,
               stem: str = "classifier", provenance: dict | None = None) -> Path:
    """The classifier pair (NAME.json + NAME.safetensors, `save`) zipped into `folder` as
    NAME.zip, NAME = STEM-METHOD; nothing else is left in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{classifier.method}"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        pair = save(classifier, Path(scratch) / name, model_identity, prompts, provenance)
        target = folder / f"{name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for path in pair:
                z.write(path, path.name)
    return target


def load(path, model_identity: dict | None = None, model_name: str = "the loaded model",
         limits: TextLimits = DEFAULT_TEXT_LIMITS) -> tuple[FewShotClassifier, dict]:
    """(classifier, metadata). With `model_identity`, a classifier made with another model is refused,
    naming both. Everything is checked before the arrays are read (see `load_upload`)."""
    meta_path, array_path = _pair(path)
    try:
        meta_text = _read_file(meta_path, _meta_bytes(limits))
    except FileNotFoundError:
        raise ClassifierFileError(f"{meta_path}: no such classifier file") from None
    except OSError as exc:
        raise ClassifierFileError(f"{meta_path}: not a readable classifier ({exc})") from None
    meta = _meta(meta_text, meta_path, model_identity, model_name, limits)
    try:
        arrays = _read_file(array_path, MAX_BYTES)
    except OSError as exc:
        raise ClassifierFileError(f"{array_path}: cannot read the classifier's arrays ({exc})") from None
    return _classifier(meta, arrays, array_path, _dim(model_identity)), meta


def load_upload(paths, model_identity: dict, model_name: str,
                limits: TextLimits = DEFAULT_TEXT_LIMITS) -> tuple[FewShotClassifier, dict]:
    """A classifier from uploaded files: the zip the app's Teach tab downloads, or the .json and
    .safetensors pair. Nothing is written to disk, and a stranger may send anything: the .json is
    read up to its limit (max_text_kb, at most META_MAX_BYTES) and parsed within `limits` (depth,
    class count, name length) before the arrays are read; the arrays' header (shapes, types,
    offsets) is checked against the description and the model before any array is made.
    Every problem is a ClassifierFileError or gate.Refused (both ValueErrors) that says what is wrong."""
    paths = [Path(p) for p in paths if p]
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        return _from_zip(paths[0], model_identity, model_name, limits)
    found = {p.suffix.lower(): p for p in paths if p.suffix.lower() in (".json", ".safetensors")}
    if set(found) != {".json", ".safetensors"} or len(paths) != 2:
        raise ClassifierFileError(MEMBERS_NEEDED)
    try:
        meta = _meta(_read_file(found[".json"], _meta_bytes(limits)), found[".json"], model_identity,
                     model_name, limits)
        arrays = _read_file(found[".safetensors"], MAX_BYTES)
    except OSError as exc:
        raise ClassifierFileError(f"cannot read the classifier files ({exc.strerror or exc})") from None
    return _classifier(meta, arrays, found[".safetensors"], _dim(model_identity)), meta


MEMBERS_NEEDED = "a classifier is a .zip from Teach by example, or its .json and .safetensors files together"


def summary(meta: dict, source: str) -> dict:
    """What a report says about the classifier that made its numbers."""
    return {"file": source, "method": meta.get("method"), "classes": len(meta.get("class_names", [])),
            "params": meta.get("params"), "how_chosen": meta.get("how_chosen"),
            "prompts": meta.get("prompts"), "model": meta.get("model"), "provenance": meta.get("provenance")}


def _meta_bytes(limits: TextLimits) -> int:
    return min(limits.max_bytes, META_MAX_BYTES)


def _dim(model_identity: dict | None) -> int | None:
    dim = (model_identity or {}).get("embed_dim")
    return int(dim) if isinstance(dim, int) else None


def _read_file(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of `path`; ClassifierFileError when it holds more (the size on disk may lie)."""
    with open(path, "rb") as fp:
        data = fp.read(limit + 1)
    if len(data) > limit:
        raise ClassifierFileError(f"{path.name}: larger than a classifier's {path.suffix} file can be "
                                  f"({limit:,} bytes)")
    return data


def _from_zip(path: Path, model_identity: dict, model_name: str, limits: TextLimits):
    try:
        with zipfile.ZipFile(path) as z:
            members = _zip_members(z, path)
            meta = _meta(_zip_read(z, members[".json"], _meta_bytes(limits), path),
                         Path(members[".json"].filename), model_identity, model_name, limits)
            arrays = _zip_read(z, members[".safetensors"], MAX_BYTES, path)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
        raise ClassifierFileError(f"{path.name}: not a readable zip ({exc})") from None
    return _classifier(meta, arrays, Path(members[".safetensors"].filename), _dim(model_identity)), meta


def _zip_members(z: zipfile.ZipFile, path: Path) -> dict:
    """The zip's one .json and one .safetensors entry (nothing read yet)."""
    found = {}
    for info in z.infolist():
        suffix = Path(info.filename).suffix.lower()
        if info.is_dir() or suffix not in (".json", ".safetensors"):
            continue
        if suffix in found:
            raise ClassifierFileError(f"{path.name} holds more than one {suffix} file")
        found[suffix] = info
    if set(found) != {".json", ".safetensors"}:
        raise ClassifierFileError(f"{path.name}: {MEMBERS_NEEDED}")
    return found


def _zip_read(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    """One entry, read no further than `limit` bytes whatever its header declares."""
    name = Path(info.filename).name
    if info.file_size > limit:
        raise ClassifierFileError(
            f"{path.name}: {name} is larger than a classifier's file can be ({limit:,} bytes)")
    with z.open(info) as member:
        data = member.read(limit + 1)  # a header may lie about the size
    if len(data) > limit:
        raise ClassifierFileError(
            f"{path.name}: {name} is larger than a classifier's file can be ({limit:,} bytes)")
    return data


def _meta(text: bytes, meta_path: Path, model_identity: dict | None, model_name: str,
          limits: TextLimits = DEFAULT_TEXT_LIMITS) -> dict:
    """The description, parsed within `limits` and checked field by field."""
    try:
        meta = gate.json_document(text, meta_path.name, limits)
    except gate.Refused:
        raise
    except ValueError as exc:
        raise ClassifierFileError(f"{meta_path.name}: not a readable classifier ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ClassifierFileError(
            f"{meta_path.name}: not a CLIP Explorer classifier (expected format {FORMAT})")
    if model_identity is not None and meta.get("model") != model_identity:
        made = meta.get("model", {})
        made = _describe(made if isinstance(made, dict) else {})
        raise ClassifierFileError(
            f"{meta_path.name} was made with {made}, but {model_name} "
            "is loaded; its weights only mean something in the embedding space of the model that made it")
    _check_fields(meta, meta_path.name, limits)
    return meta


def _check_fields(meta: dict, name: str, limits: TextLimits) -> None:
    """method, class_names, logit_scale and params as the method needs them; ClassifierFileError naming
    the field, gate.Refused past the class limits."""
    method, classes, scale, params = (meta.get(k) for k in ("method", "class_names", "logit_scale", "params"))
    if method not in METHODS:
        raise ClassifierFileError(
            f"{name}: unknown method {str(method)[:40]!r} (expected one of {', '.join(METHODS)})")
    if not isinstance(classes, list) or len(classes) < 1 or not all(isinstance(c, str) for c in classes):
        raise ClassifierFileError(f"{name}: class_names must be a list of class names (strings)")
    gate.within(classes, f"{name}: class names", limits, noun="class")
    if not _number(scale) or scale <= 0:
        raise ClassifierFileError(f"{name}: logit_scale must be a positive number")
    if not isinstance(params, dict):
        raise ClassifierFileError(f"{name}: params must be an object")
    missing = [k for k in PARAMS[method] if not _number(params.get(k))]
    if missing:
        raise ClassifierFileError(
            f"{name}: the {method} classifier needs the number(s) {', '.join(missing)} in params")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _classifier(meta: dict, data: bytes, array_path: Path, dim: int | None = None) -> FewShotClassifier:
    """The arrays, after their header has been checked against the description (`_check_header`)."""
    from safetensors.numpy import load as load_arrays

    _check_header(_header(data, array_path.name), meta, array_path.name, dim)
    try:
        arrays = load_arrays(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ClassifierFileError(f"{array_path.name}: cannot read the classifier's arrays ({exc})") from None
    arrays = {key: value.astype(np.int64 if key == "key_labels" else np.float32, copy=False)
              for key, value in arrays.items()}
    classes = len(meta["class_names"])
    labels = arrays.get("key_labels")
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ClassifierFileError(
            f"{array_path.name}: key_labels must be class numbers from 0 to {classes - 1}")
    if not all(np.isfinite(v).all() for v in arrays.values()):
        raise ClassifierFileError(f"{array_path.name}: the arrays hold values that are not finite numbers")
    text = arrays.pop("text")
    return FewShotClassifier(str(meta["method"]), [str(n) for n in meta["class_names"]], text,
                             float(meta["logit_scale"]), dict(meta["params"]), arrays)


def _header(data: bytes, name: str) -> dict:
    """The safetensors header ({array: {dtype, shape, data_offsets}}), read without making any array."""
    if len(data) < 8:
        raise ClassifierFileError(f"{name}: too short to be a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if size > min(HEADER_MAX_BYTES, len(data) - 8):
        raise ClassifierFileError(f"{name}: damaged safetensors header (declares {size:,} bytes)")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ClassifierFileError(f"{name}: damaged safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ClassifierFileError(f"{name}: damaged safetensors header (not an object)")
    header.pop("__metadata__", None)
    body = len(data) - 8 - size
    for key, entry in header.items():
        _check_entry(key, entry, body, name)
    return header


def _check_entry(key: str, entry, body: int, name: str) -> None:
    """One array's declared type, shape and byte range agree with each other and with the file."""
    ok = isinstance(entry, dict) and entry.get("dtype") in DTYPE_BYTES
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
    ok = ok and isinstance(shape, list) and all(isinstance(n, int) and n >= 0
                                                for n in shape) and len(shape) <= 2
    ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)
    if not ok:
        raise ClassifierFileError(f"{name}: damaged safetensors header (array {key[:40]!r})")
    begin, end = offsets
    if not (0 <= begin <= end <= body) or end - begin != math.prod(shape) * DTYPE_BYTES[entry["dtype"]]:
        raise ClassifierFileError(f"{name}: array {key[:40]!r} declares {shape} but its bytes do not match")


def _check_header(header: dict, meta: dict, name: str, dim: int | None) -> None:
    """The arrays the method needs, with the shapes the class count (and the model's dimension) demand."""
    classes, method = len(meta["class_names"]), meta["method"]
    missing = [key for key in ARRAYS[method] if key not in header]
    if missing:
        raise ClassifierFileError(f"{name}: the {method} classifier needs the array(s) {', '.join(missing)}; "
                                  "missing")
    text = header["text"]["shape"]
    if len(text) != 2 or text[0] != classes:
        raise ClassifierFileError(f"{name}: text is {text}, but the classifier has {classes} classes "
                                  f"(expected [{classes}, dimension])")
    width = text[1]
    if dim is not None and width != dim:
        raise ClassifierFileError(f"{name}: its embeddings are {width}-d, but the loaded model's are {dim}-d")
    keys = header.get("keys", {}).get("shape", [0, width])
    expected = {
        "text": [classes, width], "prototypes": [classes, width], "W": [classes, width], "b": [classes],
        "keys": [keys[0], width], "key_labels": [keys[0]]
    }
    for key in ARRAYS[method]:
        if header[key]["shape"] != expected[key]:
            raise ClassifierFileError(
                f"{name}: array {key} is {header[key]['shape']}, expected {expected[key]}")


def _describe(identity: dict) -> str:
    name, pretrained = identity.get("name", "an unknown model"), identity.get("pretrained")
    return f"{name} ({pretrained})" if pretrained else str(name)
