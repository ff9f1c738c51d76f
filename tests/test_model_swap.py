"""Fair time around the one model: a reload never leaves the slot empty, tokenising and cache
look-ups never hold the model's lock, caches are bounded in bytes, and no step is quadratic in the
number of names."""
from __future__ import annotations

import threading
import time

import numpy as np

from explorer.app.plots import axis_labels
from explorer.embed import model as model_module
from explorer.embed.cache import LRU
from explorer.embed.model import ModelLoadError, ModelSlot


class _Fake:
    def __init__(self, name):
        self.name, self.pretrained, self.device = name, None, model_module.torch.device("cpu")
        self.identifier, self.precision, self.embed_dim = name, "fp32", 8


def test_a_reload_under_twenty_concurrent_calls_never_meets_an_empty_slot(shapes_model_dir, monkeypatch):
    def slow_load(name, *args):
        time.sleep(0.05)
        if name == "broken":
            raise ModelLoadError("broken: cannot load")
        return _Fake(name)

    monkeypatch.setattr(model_module, "check_identifier", lambda *a: None)
    monkeypatch.setattr(model_module, "load_model", slow_load)
    slot = ModelSlot()
    slot.load("first")
    failures, calls, stop = [], [0], threading.Event()

    def caller():
        while not stop.is_set():
            if slot.model is None:
                failures.append(1)
            calls[0] += 1

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        for name in ("second", "broken", "third", "fourth"):
            slot.load(name)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and calls[0] > 100
    assert slot.model.name == "fourth"


def test_a_failed_load_keeps_the_model_loaded_before(monkeypatch):
    monkeypatch.setattr(model_module, "check_identifier", lambda *a: None)
    monkeypatch.setattr(
        model_module, "load_model", lambda name, *a: _Fake(name)
        if name == "good" else (_ for _ in ()).throw(ModelLoadError("no")))
    slot = ModelSlot()
    slot.load("good")
    assert slot.load("bad") is None and slot.model.name == "good" and "no" in slot.status()


def test_tokenising_and_cache_lookups_never_hold_the_model_lock(shapes_model, monkeypatch):
    model = shapes_model
    seen = []
    real = model_module._full_token_ids

    def watched(*args):
        seen.append(model._lock._is_owned())
        return real(*args)

    monkeypatch.setattr(model_module, "_full_token_ids", watched)
    monkeypatch.setattr(model._text_cache, "get", _watch(model._text_cache.get, model, seen))
    texts = [f"a photo of shape number {i} {time.time_ns()}" for i in range(40)]
    model.token_counts(texts[:5])
    out = model.encode_texts(texts)
    assert out.shape == (40, model.embed_dim) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)
    assert seen and not any(seen), "tokenised or looked up while holding the model lock"


def _watch(method, model, seen):
    def wrapper(*args, **kwargs):
        seen.append(model._lock._is_owned())
        return method(*args, **kwargs)
    return wrapper


def test_another_thread_encodes_while_a_long_request_tokenises(shapes_model, monkeypatch):
    """While one request's texts are tokenised, the model's lock is free for another's forward pass."""
    model = shapes_model
    real = model_module._full_token_ids
    inside, release = threading.Event(), threading.Event()

    def slow(*args):
        inside.set()
        release.wait(5)
        return real(*args)

    monkeypatch.setattr(model_module, "_full_token_ids", slow)
    worker = threading.Thread(target=model.encode_texts, args=([f"slow text {time.time_ns()}"],))
    worker.start()
    try:
        assert inside.wait(5)
        assert model._lock.acquire(timeout=1), "the model's lock was held while tokenising"
        model._lock.release()
    finally:
        release.set()
        worker.join()


def test_text_caches_are_bounded_in_bytes(shapes_model):
    assert shapes_model._text_cache.max_bytes == model_module.TEXT_CACHE_BYTES
    assert shapes_model._token_cache.max_bytes == model_module.TOKEN_CACHE_BYTES
    cache = LRU(1000, max_bytes=10 * 4096)
    for i in range(50):
        cache.put(i, np.zeros(1024, np.float32))  # 4,096 bytes each
    assert len(cache) == 10 and cache.bytes == 10 * 4096 and 49 in cache and 39 not in cache
    cache.put(49, np.zeros(2048, np.float32))  # replacing an entry counts its new size only
    assert cache.bytes == 11 * 4096 - 4096 and len(cache) == 9
    cache.put("huge", np.zeros(20_000, np.float32))  # larger than the whole budget: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 9
    assert len(LRU(3)) == 0 and LRU(3).max_bytes is None


def test_axis_labels_are_linear_in_the_names():
    names = [f"class number {i}" for i in range(200_000)]
    start = time.perf_counter()
    assert len(set(axis_labels(names))) == 200_000
    same = axis_labels(["0.png"] * 200_000)
    assert time.perf_counter() - start < 2.0
    assert same[:3] == ["0.png", "0.png (2)", "0.png (3)"] and len(set(same)) == 200_000


def test_axis_labels_still_never_make_two_equal():
    assert axis_labels(["a", "a", "a (2)"]) == ["a", "a (3)", "a (2)"]
    long = ["1" + "x" * 40, "2" + "x" * 40, "y" * 40]
    labels = axis_labels(long)
    assert labels[:2] == long[:2] and len(labels[2]) <= 28 and len(set(labels)) == 3


def test_label_prefix_matching_and_caption_matching_are_linear(tmp_path):
    from explorer.inputs.captions import labels_of_images, match_csv_captions

    labels = [f"kind {i}" for i in range(5_000)]
    paths = [tmp_path / f"kind_{i % 5_000}_{i}.png" for i in range(20_000)]
    start = time.perf_counter()
    found = labels_of_images(paths, labels)
    assert found[:3] == [0, 1, 2] and found[-1] == 19_999 % 5_000
    csv = tmp_path / "c.csv"
    csv.write_text("path,caption\n" + "".join(f"img{i}.png,caption {i}\n" for i in range(20_000)))
    captions = match_csv_captions(csv, [tmp_path / f"img{i}.png" for i in range(20_000)])
    assert len(captions) == 20_000
    assert time.perf_counter() - start < 10
