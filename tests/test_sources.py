"""explorer.inputs.sources: the one way from images to embeddings, its streaming, its failures and its
cache."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from explorer.embed.cache import LRU
from explorer.embed.images import Limits
from explorer.inputs.sources import (
    EmbeddingCache,
    display_names,
    embed_files,
    embed_folder,
    embed_index,
    join,
    unique_names,
)
from tests.helpers import encode_pil
from tests.shapes import CLASSES, draw_shape, make_labelled_folder


def shapes_files(folder, n=6, size=40, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        color, shape = CLASSES[i % len(CLASSES)]
        path = folder / f"{i}.png"
        draw_shape(color, shape, size=size, rng=rng).save(path)
        paths.append(path)
    return paths


def test_good_files_keep_their_order_and_bad_ones_become_reasons(shapes_model, tmp_path):
    good = shapes_files(tmp_path / "good", n=3)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300), (1, 2, 3)).save(big)
    files = [
        good[0], tmp_path / "empty.png", good[1], tmp_path / "missing.png", big, tmp_path / "junk.jpg",
        good[2]
    ]
    found = embed_files(shapes_model, files, labels=[0, 1, 2, 3, 4, 5, 6], limits=Limits(max_pixels=50_000))
    assert found.names == ["0.png", "1.png", "2.png"] and found.paths == good
    assert found.labels.tolist() == [0, 2, 6]  # labels follow the files that could be read
    reasons = {f.path: f.reason for f in found.failures}
    assert reasons == {"empty.png": "empty file", "missing.png": "file not found",
                       "big.png": reasons["big.png"], "junk.jpg": "not an image or unsupported format"}
    assert reasons["big.png"].startswith("image too large: 300x300")
    expected = encode_pil(shapes_model, [Image.open(p).convert("RGB") for p in good])
    np.testing.assert_allclose(found.embeddings, expected, atol=1e-5)
    assert found.encoded == 3 and found.reused == 0


def test_files_stream_in_batches(shapes_model, tmp_path, monkeypatch):
    files = shapes_files(tmp_path, n=9, size=24)
    batches = []
    real = shapes_model.encode_pixels
    monkeypatch.setattr(shapes_model, "encode_pixels",
                        lambda pixels: batches.append(len(pixels)) or real(pixels))
    seen = []
    found = embed_files(shapes_model, files, batch_size=4, progress=lambda done, total: seen.append(
        (done, total)))
    assert batches == [4, 4, 1] and len(found) == 9
    assert seen == [(4, 9), (8, 9), (9, 9)]


def test_same_names_in_different_folders_stay_apart(shapes_model, tmp_path):
    a = shapes_files(tmp_path / "a", n=2)
    b = shapes_files(tmp_path / "b", n=2, seed=1)
    found = embed_files(shapes_model, [a[0], b[0], a[1], b[1]])
    assert found.names == ["a/0.png", "b/0.png", "a/1.png",
                           "b/1.png"]  # the end of the path that tells them apart
    uploads = [str(p) for p in (a[0], b[0], a[1], b[1])]
    assert display_names(uploads, folders=False) == ["0.png", "0.png (2)", "1.png", "1.png (2)"]
    assert unique_names(["x", "x", "x (2)", "x"]) == ["x", "x (3)", "x (2)", "x (4)"]
    assert embed_files(shapes_model, [a[0], b[0]], root=tmp_path).names == ["a/0.png", "b/0.png"]


def test_cache_reuses_an_image_by_content_whatever_its_path(shapes_model, tmp_path):
    files = shapes_files(tmp_path / "one", n=4)
    cache = EmbeddingCache()
    first = embed_files(shapes_model, files, cache=cache)
    copies = tmp_path / "uploaded-again"
    copies.mkdir()
    for f in files:
        shutil.copy(f, copies / f"copy-{f.name}")
    before = shapes_model.image_encodes
    again = embed_files(shapes_model, sorted(copies.iterdir()), cache=cache)
    assert shapes_model.image_encodes == before and again.encoded == 0
    assert again.cached == 4 and again.reused == 0
    np.testing.assert_array_equal(again.embeddings, first.embeddings)


def test_cache_encodes_a_changed_file_again(shapes_model, tmp_path):
    path = shapes_files(tmp_path, n=1, size=48)[0]
    cache = EmbeddingCache()
    before = embed_files(shapes_model, [path], cache=cache).embeddings[0]
    stat = path.stat()
    draw_shape("blue", "square", size=48, rng=5).save(path)  # new content...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))    # ...behind the same mtime
    after = embed_files(shapes_model, [path], cache=cache)
    assert after.encoded == 1
    expected = encode_pil(shapes_model, [Image.open(path).convert("RGB")])[0]
    np.testing.assert_allclose(after.embeddings[0], expected, atol=1e-5)
    assert float(before @ after.embeddings[0]) < 0.999


def test_cache_never_serves_one_models_embedding_to_another(shapes_model, random_vit, tmp_path):
    files = shapes_files(tmp_path, n=2)
    cache = EmbeddingCache()
    embed_files(shapes_model, files, cache=cache)
    before = random_vit.image_encodes
    other = embed_files(random_vit, files, cache=cache)
    assert random_vit.image_encodes == before + 2 and other.embeddings.shape == (2, random_vit.embed_dim)
    expected = encode_pil(random_vit, [Image.open(p).convert("RGB") for p in files])
    np.testing.assert_allclose(other.embeddings, expected, atol=1e-4)


def test_lru_keeps_the_most_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1   # a is now the most recent
    lru.put("c", 3)            # so b goes
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2
    with pytest.raises(ValueError):
        LRU(0)


def test_labelled_folder_and_index_sources(shapes_model, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index

    make_labelled_folder(tmp_path / "data", CLASSES[:3], 2, size=32)
    folder = embed_folder(shapes_model, tmp_path / "data")
    folders = sorted(f"a_{color}_{shape}" for color, shape in CLASSES[:3])
    assert folder.labelled and folder.class_folders == folders
    assert folder.class_names == [f.replace("_", " ") for f in folders]
    assert sorted(set(folder.labels.tolist())) == [0, 1, 2] and len(folder) == 6
    build_index(shapes_model, tmp_path / "data", tmp_path / "idx", workers=0)
    index = open_index(tmp_path / "idx")
    before = shapes_model.image_encodes
    stored = embed_index(shapes_model, index)
    assert shapes_model.image_encodes == before and stored.reused == 6 and stored.names == folder.names
    np.testing.assert_allclose(stored.embeddings, folder.embeddings, atol=1e-4)
    sample = embed_index(shapes_model, index, sample=3)
    assert len(sample) == 3 and sample.names == embed_index(shapes_model, index, sample=3).names  # seeded
    picks = {seed: embed_index(shapes_model, index, sample=3, seed=seed).names for seed in range(4)}
    assert all(
        embed_index(shapes_model, index, sample=3, seed=s).names == names for s, names in picks.items())
    assert len({tuple(names) for names in picks.values()}) > 1  # ...by the seed given
    both = join([folder, sample])
    assert len(both) == 9 and len(set(both.names)) == 9


def test_index_reuse_encodes_a_file_edited_behind_the_same_size(shapes_model, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index

    data = tmp_path / "data"
    data.mkdir()
    for i, (color, shape) in enumerate(CLASSES[:3]):
        draw_shape(color, shape, size=40, rng=i).save(data / f"{i}.bmp")
    build_index(shapes_model, data, tmp_path / "idx", workers=0)
    edited = data / "0.bmp"
    size = edited.stat().st_size
    draw_shape("yellow", "cross", size=40, rng=9).save(edited)  # same dimensions: a BMP keeps its size
    assert edited.stat().st_size == size
    os.utime(edited, ns=(10**18, 10**18))
    index = open_index(tmp_path / "idx")
    try:
        found = embed_folder(shapes_model, data, index=index)
    finally:
        index.close()
    assert found.names == ["0.bmp", "1.bmp", "2.bmp"] and (found.reused, found.encoded) == (2, 1)
    expected = encode_pil(shapes_model, [Image.open(edited).convert("RGB")])[0]
    np.testing.assert_allclose(found.embeddings[0], expected, atol=1e-5)


def test_index_of_a_parent_folder_serves_its_sub_folder(shapes_model, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index

    data = tmp_path / "data"
    make_labelled_folder(data, CLASSES[:2], 2, size=32)
    for i, (color, shape) in enumerate(CLASSES[5:7]):  # loose files named like those in the sub-folders
        draw_shape(color, shape, size=32, rng=10 + i).save(data / f"{i}.png")
    build_index(shapes_model, data, tmp_path / "idx", workers=0)
    sub = data / "a_red_square"
    fresh = embed_folder(shapes_model, sub)
    index = open_index(tmp_path / "idx")
    try:
        before = shapes_model.image_encodes
        found = embed_folder(shapes_model, sub, index=index)
    finally:
        index.close()
    assert shapes_model.image_encodes == before and found.reused == 2 and found.names == fresh.names
    np.testing.assert_allclose(found.embeddings, fresh.embeddings, atol=1e-4)


def test_an_index_of_two_class_folders_is_labelled_when_left_to_decide(shapes_model, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index

    data = tmp_path / "data"
    make_labelled_folder(data, CLASSES[:2], 2, size=32)
    draw_shape("blue", "cross", size=32, rng=3).save(data / "loose.png")
    build_index(shapes_model, data, tmp_path / "idx", workers=0)
    index = open_index(tmp_path / "idx")
    try:
        found = embed_index(shapes_model, index, labelled=None)
        assert found.labelled and found.class_folders == ["a_red_circle", "a_red_square"]
        assert found.labels.tolist() == [0, 0, 1, 1] and "loose.png" not in found.names
        assert any("directly in data" in note for note in found.notes)
        assert not embed_index(shapes_model, index).labelled  # the default never labels
    finally:
        index.close()
    assert embed_folder(shapes_model, data).labelled  # a folder decides by the same rule


def test_an_image_given_twice_in_one_call_is_encoded_once(shapes_model, tmp_path):
    a, b = shapes_files(tmp_path, n=2)
    shutil.copy(a, tmp_path / "copy.png")
    before = shapes_model.image_encodes
    found = embed_files(shapes_model, [a, tmp_path / "copy.png", b, a], batch_size=3)  # no cache given
    assert shapes_model.image_encodes == before + 2 and (found.encoded, found.cached) == (2, 2)
    np.testing.assert_array_equal(found.embeddings[0], found.embeddings[1])
    np.testing.assert_array_equal(found.embeddings[0], found.embeddings[3])  # across batches too
    assert not np.allclose(found.embeddings[0], found.embeddings[2])


def test_the_index_note_counts_only_what_came_from_the_index(shapes_model, tmp_path):
    from explorer.index.build import build_index
    from explorer.index.image_index import open_index

    data = tmp_path / "data"
    shapes_files(data, n=3)
    build_index(shapes_model, data, tmp_path / "idx", workers=0)
    cache = EmbeddingCache()
    embed_files(shapes_model, sorted(data.iterdir()), cache=cache)
    for path in data.iterdir():  # every file looks changed to the index...
        os.utime(path, ns=(10**18, 10**18))
    index = open_index(tmp_path / "idx")
    try:
        found = embed_folder(shapes_model, data, index=index, cache=cache)  # ...but the cache knows them
    finally:
        index.close()
    assert (found.reused, found.cached, found.encoded) == (0, 3, 0)
    assert not any("re-used from the index" in note for note in found.notes)
