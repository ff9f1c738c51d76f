"""The FAISS layer of image indexes: choose an index type, build and tune it, save and load it
atomically, and move it to the GPU when there is one. Searching lives with the opened index (index.py).

All vectors are L2-normalised float32, so inner product is cosine similarity. Every index is an
`IndexIDMap2` around the chosen index, so FAISS returns the store's ids (see store.py).
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import faiss
import numpy as np

from .vectors import normalize

# Up to this many vectors an exact (flat) search answers a single query in a few tens of ms on a
# 2-core CPU (bench/bench_search.py measures it); beyond it an IVF index is faster.
EXACT_LIMIT = 100_000
TARGET_RECALL = 0.97      # recall@10 against exact that the automatic tuning aims for
CALIBRATION_QUERIES = 200
TRAIN_POINTS_PER_LIST = 40


def auto_factory(count: int) -> str:
    """The factory string used when none is given: exact up to EXACT_LIMIT, then IVF with about
    sqrt(count) lists (a power of two)."""
    if count <= EXACT_LIMIT:
        return "Flat"
    nlist = 2 ** round(math.log2(math.sqrt(count)))
    return f"IVF{min(max(nlist, 64), 65536)},Flat"


def check_factory(factory: str, dim: int) -> None:
    """Raise ValueError with FAISS's reason when `factory` is not a usable index_factory string."""
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise ValueError(f"bad FAISS index type {factory!r}: {reason}") from None


def training_minimum(factory: str, dim: int) -> int:
    """How many vectors `factory` needs to train: its number of IVF lists (0 when untrained use is fine)."""
    ivf = _ivf(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    return int(ivf.nlist) if ivf is not None else 0


def build(ids: np.ndarray, vectors: np.ndarray, factory: str, seed: int = 0) -> tuple[faiss.Index, dict]:
    """Build an ID-mapped index over `vectors` ([N, D], normalised) with `factory`; train it on a
    sample when it needs training, then tune its search parameter (nprobe / efSearch) to reach
    TARGET_RECALL. Returns (index, {parameter: value}) — the parameters are also set on the index."""
    n, dim = vectors.shape
    inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not inner.is_trained:
        ivf = _ivf(inner)
        needed = ivf.nlist if ivf is not None else 1
        if n < needed:
            raise ValueError(f"FAISS index type {factory!r} needs at least {needed} images to train; "
                             f"the index has {n} (use a smaller one, or Flat)")
        rng = np.random.default_rng(seed)
        sample_size = min(n, needed * TRAIN_POINTS_PER_LIST if ivf is not None else 100_000)
        sample = vectors[np.sort(rng.choice(n, sample_size, replace=False))] if sample_size < n else vectors
        inner.train(sample)
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    params = tune(index, vectors, seed=seed)
    return index, params


def tune(index: faiss.Index, vectors: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """Smallest nprobe (IVF) or efSearch (HNSW) whose recall@k against exact search reaches
    TARGET_RECALL. Calibration queries are midpoints of random pairs of stored vectors: they fall
    between clusters, as text queries do, so they are harder than an image querying itself."""
    name, values = _search_parameter(index)
    if name is None or len(vectors) <= k:
        return {}
    rng = np.random.default_rng(seed + 1)
    a, b = rng.integers(0, len(vectors), (2, min(CALIBRATION_QUERIES, len(vectors))))
    queries = normalize(vectors[a] + vectors[b])
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    id_map = faiss.vector_to_array(index.id_map)
    truth = id_map[truth]
    space = faiss.ParameterSpace()
    chosen = values[-1]
    for value in values:
        space.set_index_parameter(index, name, value)
        _, found = index.search(queries, k)
        if recall(found, truth) >= TARGET_RECALL:
            chosen = value
            break
    space.set_index_parameter(index, name, chosen)
    return {name: chosen}


def apply_parameters(index: faiss.Index, params: dict) -> None:
    """Set search parameters recorded at build time (nprobe, efSearch) on a loaded index."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` that appears in the same row of `found`."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


class ChecksumError(ValueError):
    """A saved index file is not the one that was written (damaged on disk)."""


def save(index: faiss.Index, path: Path) -> str:
    """Write `index` so that a crash leaves either the old file or the new one, never half of one.
    Returns the SHA-256 (hex) of the bytes written, for `load` to check."""
    data = faiss.serialize_index(_to_cpu(index))
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def load(path: Path, sha256: str | None = None) -> faiss.Index:
    """Read an index saved by `save`. With `sha256`, raise ChecksumError unless the bytes match it:
    FAISS parses many damaged files without complaint and then returns garbage scores. SHA-256 runs
    at about 1.6 GB/s on one core with SHA extensions: a 1M x 512 flat index (2 GB) takes ~1.3 s
    more to load, on top of ~4 s to read and parse it."""
    data = np.fromfile(path, dtype=np.uint8)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ChecksumError(f"{Path(path).name} does not match the checksum it was saved with")
    return faiss.deserialize_index(data)


def write_atomic(path: Path, data) -> None:
    """Write `data` (bytes or any buffer): temp file in the same folder, fsync, rename over `path`,
    fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def to_device(index: faiss.Index) -> faiss.Index:
    """Move `index` to the GPU when this faiss build has GPUs; keep it on the CPU for index types
    FAISS cannot run there (HNSW, for one). The GPU and CPU paths give the same results up to
    float rounding. Unverified here: this project was built on CPU-only machines."""
    if faiss.get_num_gpus() <= 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError):
        return index


def _to_cpu(index: faiss.Index) -> faiss.Index:
    if faiss.get_num_gpus() > 0 and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        return faiss.index_gpu_to_cpu(index)
    return index


def _ivf(index: faiss.Index):
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _search_parameter(index: faiss.Index) -> tuple[str | None, list[int]]:
    ivf = _ivf(index)
    if ivf is not None:
        return "nprobe", [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if v < ivf.nlist] + [ivf.nlist]
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if hasattr(inner, "hnsw"):
        return "efSearch", [16, 32, 64, 128, 256, 512, 1024]
    return None, []
