"""The automatic FAISS index choice (explorer/index/faiss_ops.py): by collection size and memory budget,
and every branch it can take still finds the right neighbours, through the store -> FAISS path too."""
from __future__ import annotations

import numpy as np
import pytest

from explorer.index import faiss_ops
from explorer.index.faiss_file import refresh
from explorer.index.image_index import ImageIndex
from explorer.index.store import Store

GIB = 2**30
PLENTY = 64 * GIB


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("count, budget, expected", [
    (10, PLENTY, "Flat"),
    (faiss_ops.EXACT_LIMIT, PLENTY, "Flat"),
    (faiss_ops.EXACT_LIMIT, 1, "Flat"),                        # small enough for exact whatever the budget
    (faiss_ops.EXACT_LIMIT + 1, PLENTY, "IVF512,Flat"),
    (100_000, PLENTY, "IVF1024,Flat"),
    (1_000_000, PLENTY, "IVF4096,Flat"),
    (1_000_000, 4 * GIB, "IVF4096,Flat"),                      # 2.1 GB as floats
    (1_000_000, 1.5 * GIB, "IVF4096,SQfp16"),                  # floats do not fit; half floats (1.1 GB) do
    (1_000_000, GIB, "IVF4096,SQ8"),                           # 8-bit codes: 0.6 GB
    (2_000_000, 8 * GIB, "IVF4096,Flat"),
    (2_000_000, 3 * GIB, "IVF4096,SQfp16"),
    (2_000_000, 1.5 * GIB, "IVF4096,SQ8"),
    (2_000_000, 1, "IVF4096,SQ8"),                             # nothing fits: the smallest anyway
    (10_000_000, PLENTY, "IVF4096,Flat"),                      # lists stop growing: k-means time
])
def test_choice_by_size_and_memory(count, budget, expected):
    assert faiss_ops.auto_factory(count, 512, budget) == expected


def test_the_dimension_sets_the_sizes():
    assert faiss_ops.auto_factory(1_000_000, 768, 4 * GIB) == "IVF4096,Flat"
    assert faiss_ops.auto_factory(1_000_000, 768, 2.5 * GIB) == "IVF4096,SQfp16"   # 768-d floats take 3.1 GB
    assert faiss_ops.auto_factory(1_000_000, 768, 1.2 * GIB) == "IVF4096,SQ8"      # half floats 1.6 GB


def test_lists_are_powers_of_two_with_enough_training_points():
    previous = 0
    for count in (1_000, 10_000, faiss_ops.EXACT_LIMIT + 1, 50_000, 300_000, 1_000_000, 100_000_000):
        nlist = faiss_ops.ivf_lists(count)
        assert nlist & (nlist - 1) == 0 and nlist <= faiss_ops.MAX_LISTS and nlist >= previous
        assert nlist * faiss_ops.MIN_POINTS_PER_LIST <= count
        previous = nlist


def test_estimated_sizes_shrink_down_the_codecs():
    sizes = [faiss_ops.estimated_bytes(faiss_ops.auto_factory(10**6, 512, budget), 10**6, 512)
             for budget in (PLENTY, 1.5 * GIB, 1)]
    assert sizes[0] > 1.8 * sizes[1] and sizes[1] > 1.8 * sizes[2]
    assert faiss_ops.estimated_bytes("Flat", 100, 512) == 100 * (2048 + faiss_ops.ID_BYTES)
    assert faiss_ops.estimated_bytes("HNSW32", 100, 512) is None   # not one of the automatic types


def test_memory_budget_comes_from_the_environment_or_what_is_available(monkeypatch):
    monkeypatch.setenv(faiss_ops.MEMORY_ENV, "1500")
    assert faiss_ops.memory_budget_bytes() == 1500 * 2**20
    assert faiss_ops.auto_factory(2_000_000, 512) == "IVF4096,SQ8"
    assert faiss_ops.auto_factory(2_000_000, 512, 8 * GIB) == "IVF4096,Flat"   # a budget given wins
    monkeypatch.setenv(faiss_ops.MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match="megabytes"):
        faiss_ops.memory_budget_bytes()
    monkeypatch.delenv(faiss_ops.MEMORY_ENV)
    available = faiss_ops.available_memory()
    assert available is not None and available > 0
    assert 0 < faiss_ops.memory_budget_bytes() <= available


def branch_factories(count: int, dim: int, monkeypatch) -> list[str]:
    """Every index type the automatic choice can give for `count` vectors: made small by lowering
    EXACT_LIMIT, then each memory budget, from plenty to nothing."""
    monkeypatch.setattr(faiss_ops, "EXACT_LIMIT", count // 4)
    found = [faiss_ops.auto_factory(count, dim, budget) for budget in (PLENTY, count * (3 * dim), 1)]
    monkeypatch.undo()
    return ["Flat", *found]


def test_every_branch_finds_the_right_neighbours(monkeypatch):
    n, dim = 4000, 64
    vectors = clustered(n, dim, 40)
    factories = branch_factories(n, dim, monkeypatch)
    assert factories == ["Flat", "IVF64,Flat", "IVF64,SQfp16", "IVF64,SQ8"]
    factories.append("IVF64,PQ16x4fs,Refine(SQ8)")   # a re-ranking index given by hand is tuned too
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # ids need not be positions
    queries = vectors[:200] + vectors[200:400]   # midpoints fall between clusters, as text queries do
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    for factory in factories:
        index, params = faiss_ops.build(ids, vectors, factory)
        _, found = index.search(queries, 10)
        assert faiss_ops.recall(found, exact) >= 0.9, factory
        assert ("nprobe" in params) == (factory != "Flat")
        assert ("k_factor_rf" in params) == ("Refine" in factory)
        _, one = faiss_ops.search(index, queries[:1], 10)   # the one-thread path gives the same answer
        np.testing.assert_array_equal(one[0], found[0])


def test_the_compressed_branch_is_derived_from_the_store_and_reopened(tmp_path, monkeypatch):
    n, dim = 4000, 32
    vectors = clustered(n, dim, 40, seed=2)
    store = Store(tmp_path, create=True)
    store.set_meta("identity", {"embed_dim": dim, "model": "test"})
    store.set_meta("root", str(tmp_path / "photos"))
    store.write_batch([(f"{i}.png", 1, 1, v) for i, v in enumerate(vectors)])
    monkeypatch.setattr(faiss_ops, "EXACT_LIMIT", 1000)
    monkeypatch.setenv(faiss_ops.MEMORY_ENV, "0.01")
    stats = {}
    index, manifest, note = refresh(store, tmp_path, stats=stats)
    assert stats["rebuilt"] and note is None
    assert manifest["index_type"] == "IVF64,SQ8" and manifest["requested"] == "auto"
    assert manifest["params"]["nprobe"] >= 1
    again, manifest2, _ = refresh(store, tmp_path, stats=stats)   # current: loaded, with its parameters
    assert not stats["rebuilt"] and manifest2 == manifest
    opened = ImageIndex(tmp_path, store, again, manifest2)
    hits = opened.search(vectors[:20], k=5)
    assert sum(hits[i][0].path == f"{i}.png" for i in range(20)) >= 19   # each image finds itself
    store.close()
