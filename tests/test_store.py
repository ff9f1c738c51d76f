"""The index's SQLite store: a batch is one transaction, replaced rows get new ids, and the
generation counter moves once per change (the FAISS file's staleness check relies on it)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from explorer.index.build import build_index
from explorer.index.store import Store
from tests.shapes import CLASSES, make_labelled_folder


def vec(seed: int, dim: int = 4) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_batch_is_written_in_one_transaction(tmp_path):
    store = Store(tmp_path, create=True)
    store.write_batch([("a.png", 1, 10, vec(0)), ("b.png", 2, 20, vec(1))], [("c.png", 3, 30, "broken")])
    assert store.generation == 1 and store.count() == 2 and store.failures() == [("c.png", "broken")]
    # A batch that fails part-way leaves nothing of itself behind.
    with pytest.raises(sqlite3.IntegrityError):
        store.write_batch([("d.png", 4, 40, vec(2)), ("e.png", None, 50, vec(3))])  # NOT NULL size
    assert store.generation == 1 and set(store.states()) == {"a.png", "b.png", "c.png"}


def test_writing_a_file_again_replaces_its_row_with_a_new_id(tmp_path):
    store = Store(tmp_path, create=True)
    store.write_batch([("a.png", 1, 10, vec(0))])
    old_id = store.states()["a.png"].id
    store.write_batch([("a.png", 5, 11, vec(9))])
    state = store.states()["a.png"]
    assert state.id != old_id and (state.size, state.mtime_ns) == (5, 11) and store.count() == 1
    np.testing.assert_array_equal(store.embedding_of("a.png"), vec(9))
    store.write_batch([], [("a.png", 6, 12, "now broken")])  # a good file that went bad loses its embedding
    assert store.count() == 0 and store.embedding_of("a.png") is None
    store.remove(["a.png"])
    assert store.states() == {} and store.generation == 4


def test_the_indexer_commits_once_per_batch(tmp_path, shapes_model):
    make_labelled_folder(tmp_path / "photos", CLASSES[:5], 2, size=24)  # 10 images
    build_index(shapes_model, tmp_path / "photos", tmp_path / "idx", batch_size=4, workers=0)
    store = Store(tmp_path / "idx")
    assert store.count() == 10 and store.generation == 3  # batches of 4, 4 and 2
