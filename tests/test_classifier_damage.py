"""Damaged, hostile and oversized classifier files: each refused with a message that says what is
wrong, before the arrays (or a JSON bomb) are made."""
from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from explorer.inputs.gate import Refused, TextLimits
from explorer.inputs.settings import HOSTED_DEFAULTS, Settings
from explorer.science import classifier_file, fewshot

D, C = 8, 3
IDENTITY = {"name": "test", "pretrained": None, "embed_dim": D, "image_size": 32, "preprocess": []}
HOSTED = TextLimits.of(Settings(**HOSTED_DEFAULTS))


def _fitted(method="prototype", classes=C):
    rng = np.random.default_rng(0)
    shots = rng.normal(size=(2 * classes, D)).astype(np.float32)
    labels = np.repeat(np.arange(classes), 2)
    text = rng.normal(size=(classes, D)).astype(np.float32)
    return fewshot.fit(method, shots, labels, [f"class {i}" for i in range(classes)], text, 50.0)


def _pair(tmp_path, method="prototype", classes=C, identity=IDENTITY):
    return classifier_file.save(_fitted(method, classes), tmp_path / "clf", identity, {"use": "templates"})


def _zip(tmp_path, meta: bytes, arrays: bytes, name="c.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("clf.json", meta)
        z.writestr("clf.safetensors", arrays)
    return path


def _load(tmp_path, meta: dict | bytes, arrays: bytes, limits=TextLimits()):
    data = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return classifier_file.load_upload([_zip(tmp_path, data, arrays)], IDENTITY, "the test model", limits)


def _safetensors(tensors: dict) -> bytes:
    from safetensors.numpy import save
    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()})


@pytest.mark.parametrize("method", fewshot.METHODS)
def test_a_sound_file_loads(tmp_path, method):
    meta_path, array_path = _pair(tmp_path, method)
    clf, _ = classifier_file.load_upload([meta_path, array_path], IDENTITY, "m")
    assert clf.method == method and clf.text.shape == (C, D)


def test_damaged_files_say_what_is_wrong(tmp_path):
    meta_path, array_path = _pair(tmp_path)
    meta, arrays = json.loads(meta_path.read_text()), array_path.read_bytes()
    text = _fitted().text
    cases = [
        (_safetensors({"text": text}), meta, "needs the array(s) prototypes; missing"),
        (_safetensors({
            "text": np.zeros((C, D + 1), np.float32), "prototypes": np.zeros((C, D + 1), np.float32)
        }), {**meta, "model": IDENTITY}, "9-d, but the loaded model's are 8-d"),
        (_safetensors({"text": np.zeros((C + 1, D), np.float32), "prototypes": np.zeros(
            (C, D), np.float32)}), meta, "text is [4, 8], but the classifier has 3 classes"),
        (_safetensors({"text": text, "prototypes": np.zeros(
            (C, D - 1), np.float32)}), meta, "array prototypes is [3, 7], expected [3, 8]"),
        (arrays[:-20], meta, "bytes do not match"),
        (b"\xff" * 8 + arrays[8:], meta, "damaged safetensors header"),
        (b"abc", meta, "too short"),
        (arrays, {**meta, "params": {}}, "needs the number(s) weight"),
        (arrays, {**meta, "method": "magic"}, "unknown method 'magic'"),
        (arrays, {**meta, "class_names": "cat"}, "class_names must be a list"),
        (arrays, {**meta, "logit_scale": "big"}, "logit_scale must be a positive number"),
        (arrays, b"{not json", "not valid JSON"),
    ]
    for data, described, expected in cases:
        with pytest.raises(
                classifier_file.ClassifierFileError,
                match=expected.replace("(", r"\(").replace(")", r"\)").replace("[",
                                                                               r"\[").replace("]", r"\]")):
            _load(tmp_path, described, data)


def test_tip_adapter_labels_out_of_range_are_refused(tmp_path):
    meta_path, _ = _pair(tmp_path, "tip-adapter")
    meta = json.loads(meta_path.read_text())
    clf = _fitted("tip-adapter")
    bad = _safetensors(
        {"text": clf.text, "keys": clf.arrays["keys"], "key_labels": np.full(2 * C, 7, np.int64)})
    with pytest.raises(classifier_file.ClassifierFileError, match="key_labels must be class numbers"):
        _load(tmp_path, meta, bad)


def test_a_json_bomb_is_refused_before_it_is_parsed(tmp_path):
    _, array_path = _pair(tmp_path)
    bomb = b'{"format": "clip-explorer-classifier/1", "x": [' + b"[]," * (
        20 << 20) + b"[]]}"  # 60 MB, ~60 KB zipped
    deep = b'{"format": "clip-explorer-classifier/1", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    tracemalloc.start()
    try:
        with pytest.raises(classifier_file.ClassifierFileError, match="larger than a classifier's"):
            _load(tmp_path, bomb, array_path.read_bytes())
        with pytest.raises(Refused, match="max-json-depth"):
            _load(tmp_path, deep, array_path.read_bytes())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_a_thousand_class_classifier_is_refused_before_its_arrays_are_read(tmp_path, monkeypatch):
    meta_path, array_path = _pair(tmp_path, "zero-shot", classes=1000)
    monkeypatch.setattr("safetensors.numpy.load", lambda *a: pytest.fail("arrays read before the checks"))
    with pytest.raises(Refused, match=r"1,000 entries is more than the limit of 256.*--max-texts"):
        classifier_file.load_upload([meta_path, array_path], IDENTITY, "m", HOSTED)


def test_the_classify_tab_reports_a_damaged_classifier_as_a_message(tmp_path):
    from types import SimpleNamespace

    from explorer.app.ui import classify_tab

    meta_path, _ = _pair(tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(_safetensors({"text": _fitted().text}))
    model = SimpleNamespace(identity=SimpleNamespace(as_dict=lambda: IDENTITY), identifier="m")
    ctx = SimpleNamespace(model=lambda: model, settings=Settings())
    view = classify_tab.classify(ctx, ["x.png"], "", "", "", 3,
                                 classifier_files=[str(meta_path), str(broken)])
    assert "explorer-error" in view.summary and "prototypes; missing" in view.summary
