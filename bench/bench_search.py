"""Search speed and recall at scale: exact vs the automatically chosen index.

    .venv/bin/python bench/bench_search.py                  # 1,000,000 x 512-d (about 6 minutes, ~8 GB RAM)
    .venv/bin/python bench/bench_search.py --n 200000       # smaller
    .venv/bin/python bench/bench_search.py --quick          # 40,000 x 64-d, a few seconds
    .venv/bin/python bench/bench_search.py --n 2000000 --memory-mb 1500   # the compressed branch
    .venv/bin/python bench/bench_search.py --json           # only the JSON document on stdout

The vectors are synthetic, normalised, and clustered (points around random centres, cosine to
their centre ~0.86, 100 points per centre unless --clusters says otherwise), as embeddings of real
photo collections are; uniformly random vectors on the sphere have no neighbours worth finding and
make every approximate index look bad. Queries are held-out points from the same distribution. The
approximate index is the one build_index picks for this size and memory
(explorer.index.faiss_ops.auto_factory; --memory-mb forces the memory budget, as EXPLORER_FAISS_MEMORY_MB
does), trained, filled and tuned by the same code, or the --factory given.

Single queries are timed one at a time on one thread, as the app sends them (faiss_ops.search), and
reported as the median (other work on a shared machine inflates the mean); batches of 64 use every
thread. The last thing printed is one JSON document with single_query_ms, batch_query_ms,
recall_at_10, build_s, bytes_per_vector (of the saved index), exact_single_query_ms and the rest.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from explorer.index import faiss_ops

K = 10


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator, centres=None):
    if centres is None:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks, to keep the temporary arrays small
        m = min(100_000, n - start)
        chunk = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, dim), dtype=np.float32)
        x[start:start + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return x, centres


def single_query_ms(index, queries: np.ndarray, repeats: int) -> tuple[float, float]:
    """(median, mean) milliseconds of one query at a time, as the app sends them."""
    faiss_ops.search(index, queries[:1], K)  # warm up
    times = []
    for r in range(repeats):
        query = queries[r % len(queries)][None]
        start = time.perf_counter()
        faiss_ops.search(index, query, K)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), 1000 * float(np.mean(times))


def batch_query_ms(index, queries: np.ndarray, batch: int, repeats: int) -> float:
    """Mean milliseconds per query when queries are sent `batch` at a time."""
    index.search(queries[:batch], K)  # warm up
    start = time.perf_counter()
    sent = 0
    for r in range(repeats):
        chunk = queries[(r * batch) % len(queries):][:batch]
        index.search(chunk, K)
        sent += len(chunk)
    return (time.perf_counter() - start) * 1000 / sent


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    with open("/proc/self/statm") as fp:
        return int(fp.read().split()[1]) * resource.getpagesize() / 2**20


def saved_size(index) -> int:
    """Bytes of the index as faiss_ops.save writes it (through a temporary file: no second copy in memory)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "faiss.index"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def measure_exact(ids, vectors, queries, say) -> dict:
    start = time.perf_counter()
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    exact.add_with_ids(vectors, ids)
    build = time.perf_counter() - start
    single, single_mean = single_query_ms(exact, queries, 20)
    batch = batch_query_ms(exact, queries, 64, 3)
    size = vectors.nbytes + ids.nbytes  # what serialize_index writes, without a second copy in memory
    say(f"exact (Flat): single {single:.2f} ms, 64-batch {batch:.3f} ms/query")
    return {
        "exact_build_s": build, "exact_single_query_ms": single, "exact_single_query_mean_ms": single_mean,
        "exact_batch_query_ms": batch, "exact_bytes_per_vector": size / len(ids)
    }


def measure_index(factory, ids, vectors, queries, truth, say) -> dict:
    say(f"building {factory} ...")
    before = rss_mb()
    start = time.perf_counter()
    index, params = faiss_ops.build(ids, vectors, factory)
    build = time.perf_counter() - start
    grown = rss_mb() - before
    single, single_mean = single_query_ms(index, queries, 300)
    batch = batch_query_ms(index, queries, 64, 8)
    _, found = index.search(queries, K)
    size = saved_size(index)
    n = len(ids)
    estimate = faiss_ops.estimated_bytes(factory, n, vectors.shape[1])
    return {"index_type": factory, "params": params, "build_s": build, "single_query_ms": single,
            "single_query_mean_ms": single_mean, "batch_query_ms": batch,
            "recall_at_10": faiss_ops.recall(found, truth), "bytes_per_vector": size / n,
            "index_mb": size / 2**20, "estimated_bytes_per_vector": estimate and estimate / n,
            "rss_growth_mb": grown}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="vectors in the index (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=None, help="dimension (default 512)")
    parser.add_argument("--clusters", type=int, default=None, help="cluster centres (default n / 100)")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries for recall and timing")
    parser.add_argument("--factory", default=None,
                        help="an index_factory string instead of the automatic choice")
    parser.add_argument("--memory-mb", type=float, default=None,
                        help="memory budget for the automatic choice (default: half of what is available)")
    parser.add_argument("--quick", action="store_true", help="40,000 x 64-d: a few seconds")
    parser.add_argument("--json", action="store_true", help="print only the JSON document on stdout")
    args = parser.parse_args(argv)
    args.n = args.n or (40_000 if args.quick else 1_000_000)
    args.dim = args.dim or (64 if args.quick else 512)
    args.clusters = args.clusters or max(args.n // 100, 10)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    say(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}")
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    vectors, centres = clustered(args.n, args.dim, args.clusters, rng)
    queries, _ = clustered(args.queries, args.dim, args.clusters, rng, centres)
    ids = np.arange(args.n, dtype=np.int64)
    say(f"data: {args.n:,} x {args.dim} float32 ({vectors.nbytes / 2**30:.2f} GiB), "
        f"{args.clusters:,} clusters, made in {time.perf_counter() - start:.1f}s")
    _, truth = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    result = {
        "n": args.n, "dim": args.dim, "threads": faiss.omp_get_max_threads(),
        **measure_exact(ids, vectors, queries, say)
    }
    budget = None if args.memory_mb is None else int(args.memory_mb * 2**20)
    factory = args.factory or faiss_ops.auto_factory(args.n, args.dim, budget)
    result["memory_budget_mb"] = (budget or faiss_ops.memory_budget_bytes()) / 2**20
    result.update(measure_index(factory, ids, vectors, queries, truth, say))
    result["speedup_single"] = result["exact_single_query_ms"] / result["single_query_ms"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.json:
        report(result)
    print(
        json.dumps(
            {key: round(value, 4) if isinstance(value, float) else value
             for key, value in result.items()}))
    return result


def report(r: dict) -> None:
    print(f"\n{'index':<40}{'build s':>9}{'1 query ms':>12}{'64-batch ms/q':>15}{'bytes/vec':>11}"
          f"{'recall@10':>11}")
    print(f"{'exact (Flat)':<40}{r['exact_build_s']:9.1f}{r['exact_single_query_ms']:12.2f}"
          f"{r['exact_batch_query_ms']:15.3f}{r['exact_bytes_per_vector']:11.0f}{1.0:11.3f}")
    label = f"{r['index_type']} {r['params']}"
    print(f"{label:<40}{r['build_s']:9.1f}{r['single_query_ms']:12.2f}{r['batch_query_ms']:15.3f}"
          f"{r['bytes_per_vector']:11.0f}{r['recall_at_10']:11.3f}")
    print(
        f"\nspeed-up over exact: {r['speedup_single']:.1f}x single, "
        f"{r['exact_batch_query_ms'] / r['batch_query_ms']:.1f}x batched; recall@10 {r['recall_at_10']:.3f} "
        f"(target >= 0.95); peak RSS {r['peak_rss_mb']:.0f} MiB\n")


if __name__ == "__main__":
    main()
