"""The Search tab's bookkeeping: indexes of expired uploads are pruned, others are kept."""
from __future__ import annotations

import numpy as np

from explorer.index import build_index, default_index_path
from explorer.ui.search_indexes import prune_upload_indexes
from tests import shapes


def _indexed_folder(model, root, index_dir):
    root.mkdir(parents=True)
    for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square")]):
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
    import shutil

    shutil.rmtree(uploads / "upload-old")  # what fresh_upload_dir does after 24 h
    shutil.rmtree(local_root)              # a user's own folder that is gone: not ours to delete
    assert prune_upload_indexes(index_dir, uploads) == 1
    assert not expired.exists() and alive.exists() and local.exists()
