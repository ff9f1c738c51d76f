"""Where the indexes are: one registry of open indexes, one listing, and the pruning of expired uploads."""
from __future__ import annotations

import shutil
from contextlib import closing

import numpy as np

from explorer.index.build import build_index
from explorer.index.registry import IndexRegistry, default_index_path, list_indexes, prune_orphans
from explorer.index.store import Store
from tests import shapes


def _indexed_folder(model, root, index_dir, n=2):
    root.mkdir(parents=True, exist_ok=True)
    for i, (color, shape) in enumerate(shapes.CLASSES[:n]):
        shapes.draw_shape(color, shape, size=32, rng=np.random.default_rng(i)).save(root / f"{i}.png")
    target = default_index_path(index_dir, root, model)
    build_index(model, root, target, workers=0)
    return target


def test_indexes_of_expired_uploads_are_pruned(shapes_model, tmp_path):
    uploads, index_dir = tmp_path / "uploads", tmp_path / "indexes"
    expired = _indexed_folder(shapes_model, uploads / "upload-old", index_dir)
    alive = _indexed_folder(shapes_model, uploads / "upload-new", index_dir)
    local_root = tmp_path / "photos"
    local = _indexed_folder(shapes_model, local_root, index_dir)
    remote = _indexed_folder(shapes_model, tmp_path / "bucket", index_dir)
    with closing(Store(remote)) as store:  # as `index s3://bucket/photos --engine ray` records its root
        store.set_meta("root", "s3://bucket/photos")
    shutil.rmtree(uploads / "upload-old")  # what UploadArea.prune does after 24 h
    shutil.rmtree(local_root)              # a user's own folder that is gone: not ours to delete
    assert prune_orphans(index_dir, uploads) == 1
    assert not expired.exists() and alive.exists() and local.exists() and remote.exists()


def test_one_registry_serves_the_rebuilt_index_to_everyone(shapes_model, tmp_path):
    registry = IndexRegistry(tmp_path / "indexes")
    root = tmp_path / "photos"
    target = _indexed_folder(shapes_model, root, registry.index_dir, n=2)
    assert registry.path_for(root, shapes_model) == target
    first = registry.get(target)
    assert registry.get(str(target)) is first and first.count == 2  # one object per folder, however named
    _indexed_folder(shapes_model, root, registry.index_dir, n=3)    # another tab rebuilds it...
    assert registry.get(target).count == 2                          # (still the old object until reopened)
    registry.reopen(target)
    assert registry.get(target).count == 3                          # ...and every caller sees the new one
    assert registry.find_for(root, shapes_model) is registry.get(target)
    assert registry.find_for(tmp_path / "elsewhere", shapes_model) is None
    assert registry.build_lock(target) is registry.build_lock(str(target))


def test_listing_reads_every_index_and_filters_by_model(shapes_model, random_vit, tmp_path):
    index_dir = tmp_path / "indexes"
    mine = _indexed_folder(shapes_model, tmp_path / "a", index_dir)
    (index_dir / "not-an-index").mkdir()
    (index_dir / "broken").mkdir()
    (index_dir / "broken" / "index.db").write_bytes(b"garbage" * 100)
    listed = list_indexes(index_dir)
    assert [i.folder for i in listed] == [mine]
    assert listed[0].root == (tmp_path / "a").resolve() and listed[0].count == 2
    assert listed[0].model == shapes_model.identifier
    assert list_indexes(index_dir, shapes_model) == listed and list_indexes(index_dir, random_vit) == []
    assert list_indexes(tmp_path / "missing") == []


def test_find_for_refuses_an_index_another_model_made(shapes_model, random_vit, tmp_path):
    registry = IndexRegistry(tmp_path / "indexes")
    root = tmp_path / "photos"
    root.mkdir()
    for i, (color, shape) in enumerate(shapes.CLASSES[:2]):
        shapes.draw_shape(color, shape, size=32, rng=i).save(root / f"{i}.png")
    # The shapes model's index of the folder where random_vit's would be (copied or renamed by hand):
    # its embeddings must not be served to random_vit.
    build_index(shapes_model, root, registry.path_for(root, random_vit), workers=0)
    assert registry.find_for(root, random_vit) is None
