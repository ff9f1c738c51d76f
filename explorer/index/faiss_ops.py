"""The FAISS layer of image indexes: choose an index type, build and tune it, save and load it
atomically, and move it to the GPU when there is one. Searching lives with the opened index (image_index.py).

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

from explorer.embed.vectors import normalize

# Up to this many vectors an exact (flat) search answers a single query in about 4 ms on one core
# of the 2-core development CPU (it reads every vector: ~0.14 us each at 512-d; bench/bench_search.py
# measures it); beyond it an IVF index answers in well under a millisecond.
EXACT_LIMIT = 30_000
TARGET_RECALL = 0.97      # recall@10 against exact that the automatic tuning aims for
CALIBRATION_QUERIES = 200
TRAIN_POINTS_PER_LIST = 40
MIN_POINTS_PER_LIST = 39  # below this FAISS warns that k-means is under-trained
MAX_LISTS = 4096          # k-means time grows with lists x training points: 4,096 lists ~2 min on 2 cores
MEMORY_ENV = "EXPLORER_FAISS_MEMORY_MB"  # the memory an automatically chosen index may use
MEMORY_SHARE = 0.5        # without it: this share of the memory available when the index is built
# What an automatic IVF index stores per vector, from the most accurate to the smallest, with its
# size in bytes at dimension d (ID_BYTES comes on top). Measured on 2,000,000 x 512 clustered vectors
# (bench/bench_search.py): half floats lose no recall; 8-bit codes keep recall@10 ~0.95. Product
# quantization is not offered: 64-byte PQ codes found a third of the true neighbours, and re-ranking
# them with 8-bit codes (`PQ64x4fs,Refine(SQ8)`) needs as much memory as SQ8 alone for the same recall.
CODECS = (("Flat", lambda d: 4 * d),
          ("SQfp16", lambda d: 2 * d),
          ("SQ8", lambda d: d))
ID_BYTES = 64             # the IVF list's id, IndexIDMap2's id and its reverse-map entry
REFINE_K_FACTORS = (4, 8, 16, 32)  # candidates re-ranked: k_factor_rf x k


def auto_factory(count: int, dim: int = 512, memory_budget: int | None = None) -> str:
    """The factory string used when none is given, for `count` vectors of `dim` floats: exact
    (Flat) up to EXACT_LIMIT; beyond, IVF with about 4 sqrt(count) lists (a power of two) storing the
    vectors whole when they fit in `memory_budget` bytes (default: memory_budget_bytes()), else the
    most accurate of CODECS that fits (the smallest when none does)."""
    if count <= EXACT_LIMIT:
        return "Flat"
    budget = memory_budget_bytes() if memory_budget is None else memory_budget
    ivf = f"IVF{ivf_lists(count)}"
    fitting = [codec for codec, _ in CODECS if estimated_bytes(f"{ivf},{codec}", count, dim) <= budget]
    return f"{ivf},{(fitting or [CODECS[-1][0]])[0]}"


def ivf_lists(count: int) -> int:
    """The number of IVF lists for `count` vectors: the power of two nearest 4 sqrt(count), at
    most MAX_LISTS, and few enough that each list gets MIN_POINTS_PER_LIST training points."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    nlist = min(max(nlist, 64), MAX_LISTS)
    while nlist > 1 and nlist * MIN_POINTS_PER_LIST > count:
        nlist //= 2
    return nlist


def estimated_bytes(factory: str, count: int, dim: int) -> int | None:
    """Roughly what an index of a type auto_factory picks takes in memory for `count` vectors
    (None for other types)."""
    codec = "Flat" if factory == "Flat" else factory.partition(",")[2]
    sizes = [size for name, size in CODECS if name == codec]
    return count * (sizes[0](dim) + ID_BYTES) if sizes else None


def memory_budget_bytes() -> int:
    """The memory an automatically chosen index may use: EXPLORER_FAISS_MEMORY_MB when set, else
    MEMORY_SHARE of the memory available now (unlimited when it cannot be found out)."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        try:
            return int(float(raw) * 2**20)
        except ValueError:
            raise ValueError(f"{MEMORY_ENV} must be a number of megabytes, not {raw!r}") from None
    available = available_memory()
    return int(available * MEMORY_SHARE) if available else 2**62


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (psutil, else /proc/meminfo, else sysconf)."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fp:
            for line in fp:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
    TARGET_RECALL; when no value does (a compressed index), the smallest one within 0.01 of the
    best recall it reaches (the search stops once recall no longer grows). A re-ranking index
    (`...,Refine(...)`) also gets the smallest k_factor_rf of REFINE_K_FACTORS that reaches it.
    Calibration queries are midpoints of random pairs of stored vectors: they fall between
    clusters, as text queries do, so they are harder than an image querying itself."""
    name, values = _search_parameter(index)
    if name is None or len(vectors) <= k:
        return {}
    rng = np.random.default_rng(seed + 1)
    a, b = rng.integers(0, len(vectors), (2, min(CALIBRATION_QUERIES, len(vectors))))
    queries = normalize(vectors[a] + vectors[b])
    _, truth = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)  # exact, without a copy
    truth = faiss.vector_to_array(index.id_map)[truth]
    for factor in REFINE_K_FACTORS if _is_refined(index) else (None,):
        fixed = {} if factor is None else {"k_factor_rf": factor}
        apply_parameters(index, fixed)
        chosen, reached = _sweep(index, name, values, queries, truth)
        if reached >= TARGET_RECALL:
            break
    apply_parameters(index, {name: chosen})
    return {**fixed, name: chosen}


def _sweep(index: faiss.Index, name: str, values: list[int], queries: np.ndarray, truth: np.ndarray):
    """(the value of `name` that tune picks, the recall it gives) with the other parameters as set."""
    space = faiss.ParameterSpace()
    reached: list[tuple[int, float]] = []
    for value in values:
        space.set_index_parameter(index, name, value)
        reached.append((value, recall(index.search(queries, truth.shape[1])[1], truth)))
        if reached[-1][1] >= TARGET_RECALL or _levelled_off([r for _, r in reached]):
            break
    best = max(r for _, r in reached)
    return next((v, r) for v, r in reached if r >= min(TARGET_RECALL, best - 0.01))


def _levelled_off(recalls: list[float], steps: int = 3, gain: float = 0.002) -> bool:
    """Whether the last `steps` doublings of the search parameter gained less than `gain` recall."""
    return len(recalls) > steps and recalls[-1] - recalls[-1 - steps] < gain


def apply_parameters(index: faiss.Index, params: dict) -> None:
    """Set search parameters recorded at build time (nprobe, efSearch) on a loaded index."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """index.search, on one OpenMP thread for a single query: FAISS spreads its work over queries,
    so a second thread has nothing to do and waking it costs more than the search (on the 2-core
    development machine a single IVF query took 0.26 ms on one thread and up to 8 ms on two while
    other work held the cores). The setting is the calling thread's own; batches use every thread."""
    if len(queries) > 1:
        return index.search(queries, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k)
    finally:
        faiss.omp_set_num_threads(threads)


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


def _is_refined(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return isinstance(inner, faiss.IndexRefine)


def _search_parameter(index: faiss.Index) -> tuple[str | None, list[int]]:
    ivf = _ivf(index)
    if ivf is not None:
        return "nprobe", [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if v < ivf.nlist
                          ] + [ivf.nlist]
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if hasattr(inner, "hnsw"):
        return "efSearch", [16, 32, 64, 128, 256, 512, 1024]
    return None, []
